/* agl_log — one line per event on stderr, as text or JSON (--log-format json).
 * Thread-safe: each line is written with a single locked fprintf. */
#ifndef AGL_LOG_H
#define AGL_LOG_H

typedef enum { AGL_LOG_DEBUG = 0, AGL_LOG_INFO, AGL_LOG_WARN, AGL_LOG_ERROR } agl_log_level;

/* name: daemon name shown in every line. format: "text" or "json". level: "debug".."error".
 * Returns 0, or -1 if format/level is unknown. */
int agl_log_setup(const char *name, const char *format, const char *level);
void agl_log(agl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int agl_log_enabled(agl_log_level level);

#define agl_debug(...) agl_log(AGL_LOG_DEBUG, __VA_ARGS__)
#define agl_info(...) agl_log(AGL_LOG_INFO, __VA_ARGS__)
#define agl_warn(...) agl_log(AGL_LOG_WARN, __VA_ARGS__)
#define agl_error(...) agl_log(AGL_LOG_ERROR, __VA_ARGS__)

#endif
