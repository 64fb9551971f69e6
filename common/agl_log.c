/* agl_log — stderr logging, text or JSON lines. */
#include "agl_log.h"
#include "agl_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *log_name = "agl";
static int log_json;
static agl_log_level log_min = AGL_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int agl_log_setup(const char *name, const char *format, const char *level)
{
    if (name) log_name = name;
    if (format) {
        if (!strcmp(format, "json"))
            log_json = 1;
        else if (!strcmp(format, "text"))
            log_json = 0;
        else
            return -1;
    }
    if (level) {
        int found = 0;
        for (int i = 0; i < 4; i++)
            if (!strcmp(level, level_names[i])) log_min = (agl_log_level)i, found = 1;
        if (!found) return -1;
    }
    return 0;
}

int agl_log_enabled(agl_log_level level)
{
    return level >= log_min;
}

void agl_log(agl_log_level level, const char *fmt, ...)
{
    if (level < log_min) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);

    agl_buf b;
    agl_buf_init(&b);
    if (log_json) {
        agl_buf_puts(&b, "{\"ts\":");
        agl_buf_json_str(&b, when);
        agl_buf_puts(&b, ",\"level\":");
        agl_buf_json_str(&b, level_names[level]);
        agl_buf_puts(&b, ",\"daemon\":");
        agl_buf_json_str(&b, log_name);
        agl_buf_puts(&b, ",\"msg\":");
        agl_buf_json_str(&b, msg);
        agl_buf_puts(&b, "}\n");
    } else {
        agl_buf_printf(&b, "%s %s %-5s %s\n", when, log_name, level_names[level], msg);
    }
    fwrite(b.data, 1, b.len, stderr);
    agl_buf_free(&b);
}
