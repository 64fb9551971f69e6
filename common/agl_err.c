/* agl_err — error codes, messages and their single mapping to HTTP. */
#include "agl_err.h"
#include "agl_buf.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int status;
} code_table[AGL_E__COUNT] = {
    [AGL_OK] = {"ok", 200},
    [AGL_E_INVALID] = {"invalid", 422},
    [AGL_E_BAD_REQUEST] = {"bad_request", 400},
    [AGL_E_NOT_FOUND] = {"not_found", 404},
    [AGL_E_METHOD] = {"method_not_allowed", 405},
    [AGL_E_CONFLICT] = {"conflict", 409},
    [AGL_E_TOO_LARGE] = {"too_large", 413},
    [AGL_E_UNAVAILABLE] = {"unavailable", 503},
    [AGL_E_INTERNAL] = {"internal", 500},
    [AGL_E_IO] = {"io", 500},
};

agl_code agl_error_vset(agl_error *e, agl_code code, const char *loc, const char *fmt, va_list ap)
{
    if (!e) return code;
    e->code = code;
    snprintf(e->loc, sizeof e->loc, "%s", loc ? loc : "");
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    return code;
}

agl_code agl_error_set(agl_error *e, agl_code code, const char *loc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    agl_error_vset(e, code, loc, fmt, ap);
    va_end(ap);
    return code;
}

void agl_error_clear(agl_error *e)
{
    memset(e, 0, sizeof *e);
}

const char *agl_code_name(agl_code code)
{
    if ((unsigned)code >= AGL_E__COUNT) return "internal";
    return code_table[code].name;
}

int agl_code_http_status(agl_code code)
{
    if ((unsigned)code >= AGL_E__COUNT) return 500;
    return code_table[code].status;
}

char *agl_error_http(const agl_error *e, int *status)
{
    agl_buf b;
    agl_buf_init(&b);
    *status = agl_code_http_status(e->code);
    if (e->code == AGL_E_INVALID) {
        /* pydantic v2 shape: loc is a list of path segments, numeric ones as integers. */
        agl_buf_puts(&b, "{\"detail\":[{\"type\":\"value_error\",\"loc\":[");
        const char *p = e->loc;
        int first = 1;
        while (*p) {
            const char *dot = strchr(p, '.');
            size_t n = dot ? (size_t)(dot - p) : strlen(p);
            if (!first) agl_buf_putc(&b, ',');
            first = 0;
            size_t k = 0;
            while (k < n && p[k] >= '0' && p[k] <= '9') k++;
            /* list indexes are integers in pydantic's loc; "007" or huge keys stay strings */
            if (k == n && n > 0 && n <= 18 && (p[0] != '0' || n == 1))
                agl_buf_put(&b, p, n);
            else
                agl_buf_json_strn(&b, p, n);
            p += n;
            if (*p == '.') p++;
        }
        agl_buf_puts(&b, "],\"msg\":");
        agl_buf_json_str(&b, e->msg);
        agl_buf_puts(&b, "}]}");
    } else {
        agl_buf_puts(&b, "{\"detail\":");
        if (e->loc[0]) {
            char detail[sizeof e->loc + sizeof e->msg + 4];
            snprintf(detail, sizeof detail, "%s: %s", e->loc, e->msg);
            agl_buf_json_str(&b, detail);
        } else {
            agl_buf_json_str(&b, e->msg);
        }
        agl_buf_puts(&b, ",\"error_type\":");
        agl_buf_json_str(&b, agl_code_name(e->code));
        agl_buf_putc(&b, '}');
    }
    return agl_buf_steal(&b);
}
