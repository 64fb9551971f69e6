/* agl_config — option parsing shared by the three daemons. */
#include "agl_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef AGL_VERSION
#define AGL_VERSION "0.1.0"
#endif
const char agl_version[] = AGL_VERSION;

static int set_value(const agl_cli *cli, agl_option *o, const char *val, const char *origin)
{
    char *end;
    switch (o->type) {
    case AGL_OPT_STR:
        if (o->choices) {
            int ok = 0;
            for (const char *const *c = o->choices; *c; c++)
                if (!strcmp(*c, val)) ok = 1;
            if (!ok) {
                fprintf(stderr, "%s: invalid value '%s' for %s (choose from", cli->prog, val,
                        origin);
                for (const char *const *c = o->choices; *c; c++) fprintf(stderr, " %s", *c);
                fprintf(stderr, ")\n");
                return 2;
            }
        }
        *(const char **)o->dst = val;
        return 0;
    case AGL_OPT_INT: {
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end) {
            fprintf(stderr, "%s: %s expects an integer, got '%s'\n", cli->prog, origin, val);
            return 2;
        }
        *(long *)o->dst = v;
        return 0;
    }
    case AGL_OPT_DOUBLE: {
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end) {
            fprintf(stderr, "%s: %s expects a number, got '%s'\n", cli->prog, origin, val);
            return 2;
        }
        *(double *)o->dst = v;
        return 0;
    }
    case AGL_OPT_FLAG:
        *(int *)o->dst = !strcmp(val, "1") || !strcasecmp(val, "true") || !strcasecmp(val, "yes");
        return 0;
    }
    return 2;
}

void agl_config_help(const agl_cli *cli, FILE *out)
{
    fprintf(out, "usage: %s %s\n\n%s\n\noptions:\n", cli->prog, cli->usage, cli->summary);
    for (agl_option *o = cli->opts; o->name; o++) {
        char left[64];
        if (o->type == AGL_OPT_FLAG)
            snprintf(left, sizeof left, "--%s", o->name);
        else
            snprintf(left, sizeof left, "--%s %s", o->name, o->metavar ? o->metavar : "VALUE");
        fprintf(out, "  %-28s %s", left, o->help);
        if (o->type == AGL_OPT_STR && o->dst && *(const char **)o->dst)
            fprintf(out, " (default: %s)", *(const char **)o->dst);
        else if (o->type == AGL_OPT_INT)
            fprintf(out, " (default: %ld)", *(long *)o->dst);
        else if (o->type == AGL_OPT_DOUBLE)
            fprintf(out, " (default: %g)", *(double *)o->dst);
        if (o->env) fprintf(out, " [env %s]", o->env);
        fputc('\n', out);
    }
    fprintf(out, "  %-28s %s\n  %-28s %s\n", "--help", "show this help and exit", "--version",
            "show the version and exit");
    if (cli->epilog) fprintf(out, "\n%s\n", cli->epilog);
}

int agl_config_parse(const agl_cli *cli, int argc, char **argv, int first, char ***rest, int *nrest)
{
    for (agl_option *o = cli->opts; o->name; o++) {
        const char *v = o->env ? getenv(o->env) : NULL;
        if (v && *v) {
            int rc = set_value(cli, o, v, o->env);
            if (rc) return rc;
        }
    }
    int nr = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            agl_config_help(cli, stdout);
            return 1;
        }
        if (!strcmp(a, "--version")) {
            printf("%s (agl) %s\n", cli->prog, agl_version);
            return 1;
        }
        if (!strcmp(a, "--")) {
            for (i++; i < argc; i++) {
                if (!rest) goto positional;
                argv[first + nr++] = argv[i];
            }
            break;
        }
        if (a[0] == '-' && a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
            agl_option *o = cli->opts;
            for (; o->name; o++)
                if (strlen(o->name) == nlen && !strncmp(o->name, name, nlen)) break;
            if (!o->name) {
                fprintf(stderr, "%s: unknown option '%s' (see --help)\n", cli->prog, a);
                return 2;
            }
            char origin[80];
            snprintf(origin, sizeof origin, "--%s", o->name);
            if (o->type == AGL_OPT_FLAG) {
                if (eq) {
                    int rc = set_value(cli, o, eq + 1, origin);
                    if (rc) return rc;
                } else {
                    *(int *)o->dst = 1;
                }
                continue;
            }
            const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!val) {
                fprintf(stderr, "%s: option '%s' needs a value\n", cli->prog, origin);
                return 2;
            }
            int rc = set_value(cli, o, val, origin);
            if (rc) return rc;
            continue;
        }
        if (a[0] == '-' && a[1]) {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", cli->prog, a);
            return 2;
        }
        if (!rest) {
        positional:
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", cli->prog, argv[i]);
            return 2;
        }
        argv[first + nr++] = argv[i];
    }
    if (rest) {
        *rest = argv + first;
        *nrest = nr;
    }
    return 0;
}
