/* agl_util — ids and clocks.
 * Ids are prefix + random lowercase hex (the reference's ro-/at-/rs- formats). */
#ifndef AGL_UTIL_H
#define AGL_UTIL_H

#include <stddef.h>

/* Writes prefix + nhex random lowercase hex digits + NUL into out (cap bytes). */
void agl_id_new(char *out, size_t cap, const char *prefix, int nhex);
#define AGL_ROLLOUT_ID_LEN 15   /* "ro-" + 12 hex */
#define AGL_ATTEMPT_ID_LEN 11   /* "at-" + 8 hex */
#define AGL_RESOURCES_ID_LEN 15 /* "rs-" + 12 hex */

/* Wall clock, seconds since the Unix epoch with sub-microsecond fraction. */
double agl_now(void);
/* Monotonic seconds, for deadlines and latencies. */
double agl_monotonic(void);
/* Sleeps for the given seconds (fractions allowed). */
void agl_sleep(double seconds);

/* systemd readiness protocol (Type=notify): sends state (e.g. "READY=1", "STOPPING=1") to
 * $NOTIFY_SOCKET when the daemon runs under systemd; does nothing otherwise. */
void agl_sd_notify(const char *state);

#endif
