/* agl_config — long options, each also readable from an AGL_* environment variable.
 * Precedence: built-in default < environment < command line. --help and --version are
 * handled here so every daemon answers them the same way. */
#ifndef AGL_CONFIG_H
#define AGL_CONFIG_H

#include <stdio.h>

typedef enum {
    AGL_OPT_STR,    /* dst: const char ** */
    AGL_OPT_INT,    /* dst: long * */
    AGL_OPT_DOUBLE, /* dst: double * */
    AGL_OPT_FLAG,   /* dst: int *, takes no argument (env: 1/true/yes) */
} agl_opt_type;

typedef struct agl_option {
    const char *name; /* long option without dashes, e.g. "listen" */
    const char *env;  /* environment variable, e.g. "AGL_STORE_LISTEN", or NULL */
    agl_opt_type type;
    void *dst;
    const char *metavar; /* shown in --help, e.g. "HOST:PORT" */
    const char *help;
    const char *const *choices; /* NULL-terminated allowed values for AGL_OPT_STR, or NULL */
} agl_option;

typedef struct agl_cli {
    const char *prog;    /* e.g. "stored" */
    const char *usage;   /* one line after "usage: prog " */
    const char *summary; /* paragraph shown by --help */
    const char *epilog;  /* shown at the end of --help, or NULL */
    agl_option *opts;    /* terminated by an entry with name == NULL */
} agl_cli;

/* Parses argv[first..argc). Returns 0 to go on; 1 when --help/--version was printed (exit 0);
 * 2 after printing a one-line error to stderr (exit 2). Non-option arguments are returned in
 * *rest / *nrest (pointing into argv) when rest is non-NULL, otherwise they are an error. */
int agl_config_parse(const agl_cli *cli, int argc, char **argv, int first, char ***rest,
                     int *nrest);
void agl_config_help(const agl_cli *cli, FILE *out);

extern const char agl_version[];

#endif
