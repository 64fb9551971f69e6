/* grader — the prompt agent's f-string renderer (PromptTemplate engine "f-string") and the
 * graders that turn an answer into a reward: exact, contains, regex, number, json. */
#include "agent.h"
#include "agl_alloc.h"

#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_value(agl_buf *b, json_t *v)
{
    if (json_is_string(v)) {
        agl_buf_put(b, json_string_value(v), json_string_length(v));
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        agl_buf_puts(b, s ? s : "");
        free(s);
    }
}

char *agent_render_fstring(const char *tmpl, json_t *input, char *err, size_t cap)
{
    agl_buf b;
    agl_buf_init(&b);
    agl_buf_puts(&b, "");
    for (const char *p = tmpl; *p; p++) {
        if (*p == '{' && p[1] == '{') {
            agl_buf_putc(&b, '{');
            p++;
            continue;
        }
        if (*p == '}' && p[1] == '}') {
            agl_buf_putc(&b, '}');
            p++;
            continue;
        }
        if (*p != '{') {
            agl_buf_putc(&b, *p);
            continue;
        }
        const char *end = strchr(p, '}');
        if (!end) {
            snprintf(err, cap, "template has an unclosed '{'");
            agl_buf_free(&b);
            return NULL;
        }
        size_t n = strcspn(p + 1, ":!}");
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)n, p + 1);
        json_t *v = json_is_object(input) ? json_object_get(input, key) : NULL;
        if (!v && !strcmp(key, "input")) v = input;
        if (!v) {
            snprintf(err, cap, "template placeholder '{%s}' is not a field of the task input", key);
            agl_buf_free(&b);
            return NULL;
        }
        put_value(&b, v);
        p = end;
    }
    return agl_buf_steal(&b);
}

/* Trimmed, lower-cased copy. */
static char *norm(const char *s)
{
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) n--;
    char *o = agl_strndup(s, n);
    for (char *q = o; *q; q++) *q = (char)tolower((unsigned char)*q);
    return o;
}

static char *value_text(json_t *v)
{
    if (json_is_string(v)) return agl_strdup(json_string_value(v));
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    char *o = agl_strdup(s ? s : "");
    free(s);
    return o;
}

/* The last number in s (commas between digits ignored); false when there is none. */
static bool last_number(const char *s, double *out)
{
    bool found = false;
    for (const char *p = s; *p;) {
        if (isdigit((unsigned char)*p) ||
            ((*p == '-' || *p == '.') && isdigit((unsigned char)p[1]))) {
            char buf[64];
            size_t k = 0;
            while (*p && k + 1 < sizeof buf &&
                   (isdigit((unsigned char)*p) || *p == '.' || *p == ',' || *p == 'e' ||
                    (k == 0 && *p == '-'))) {
                if (*p == 'e' && !isdigit((unsigned char)p[1])) break;
                if (*p != ',') buf[k++] = *p;
                p++;
            }
            buf[k] = 0;
            char *e;
            double v = strtod(buf, &e);
            if (e != buf) {
                *out = v;
                found = true;
            }
        } else {
            p++;
        }
    }
    return found;
}

/* First JSON value found in text: the whole text, else a ```json fence, else the first
 * {...} or [...] span. */
static json_t *find_json(const char *text)
{
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    if (j) return j;
    const char *f = strstr(text, "```");
    if (f) {
        f += 3;
        while (*f && *f != '\n') f++;
        const char *e = strstr(f, "```");
        if (e) {
            j = json_loadb(f, (size_t)(e - f), JSON_DECODE_ANY, NULL);
            if (j) return j;
        }
    }
    const char *o = strpbrk(text, "{[");
    if (!o) return NULL;
    char close = *o == '{' ? '}' : ']';
    const char *c = strrchr(text, close);
    if (!c || c < o) return NULL;
    return json_loadb(o, (size_t)(c - o + 1), JSON_DECODE_ANY, NULL);
}

double agent_grade(const char *grader, const char *answer, json_t *expected, char *err, size_t cap)
{
    if (!expected || json_is_null(expected)) {
        snprintf(err, cap,
                 "the task input has no expected answer (expected, answer, "
                 "expected_answer, target or label)");
        return -1;
    }
    double reward = 0;
    if (!strcmp(grader, "exact") || !strcmp(grader, "contains")) {
        char *e = value_text(expected);
        char *a = norm(answer), *x = norm(e);
        reward = !strcmp(grader, "exact") ? !strcmp(a, x) : strstr(a, x) != NULL;
        free(e);
        free(a);
        free(x);
    } else if (!strcmp(grader, "regex")) {
        if (!json_is_string(expected)) {
            snprintf(err, cap, "the regex grader needs the expected answer as a string");
            return -1;
        }
        regex_t re;
        int rc = regcomp(&re, json_string_value(expected), REG_EXTENDED | REG_NOSUB);
        if (rc) {
            char m[128];
            regerror(rc, &re, m, sizeof m);
            snprintf(err, cap, "expected answer is not a valid regex: %s", m);
            return -1;
        }
        reward = regexec(&re, answer, 0, NULL, 0) == 0;
        regfree(&re);
    } else if (!strcmp(grader, "number")) {
        double want, got;
        char *e = value_text(expected);
        bool ok = json_is_number(expected) ? (want = json_number_value(expected), true)
                                           : last_number(e, &want);
        free(e);
        if (!ok) {
            snprintf(err, cap, "the number grader needs a numeric expected answer");
            return -1;
        }
        reward = last_number(answer, &got) && fabs(got - want) <= 1e-6 * fmax(1.0, fabs(want));
    } else if (!strcmp(grader, "json")) {
        json_t *want = json_is_string(expected)
                           ? json_loads(json_string_value(expected), JSON_DECODE_ANY, NULL)
                           : json_incref(expected);
        if (!want) want = json_incref(expected);
        json_t *got = find_json(answer);
        reward = got && json_equal(got, want);
        json_decref(got);
        json_decref(want);
    } else {
        snprintf(err, cap, "unknown grader '%s' (exact, contains, regex, number, json)", grader);
        return -1;
    }
    return reward;
}
