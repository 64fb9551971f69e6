/* agent_exec — runs any program as the agent, one process per rollout: the task as JSON on
 * stdin, the proxy URL and ids in the environment, {"reward": x} on the last stdout line.
 * The process (its whole process group) is killed at the rollout's deadline or on abort.
 * Also holds what exec and http agents share: the task document and the reward parser. */
#define _GNU_SOURCE 1 /* pipe2 */
#include "agent.h"
#include "agl_alloc.h"
#include "agl_log.h"
#include "agl_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define STDOUT_KEEP (64 * 1024)

char *agent_task_json(const agent_ctx *ctx)
{
    json_t *j = json_object();
    json_object_set_new(j, "rollout_id", json_string(ctx->rollout->rollout_id));
    json_object_set_new(j, "attempt_id", json_string(ctx->attempt->attempt_id));
    json_object_set_new(j, "mode",
                        ctx->rollout->mode >= 0 ? json_string(agl_mode_names[ctx->rollout->mode])
                                                : json_null());
    json_object_set(j, "input", ctx->input);
    json_object_set(j, "resources", ctx->resources);
    json_object_set_new(
        j, "llm", json_pack("{s:s,s:s?}", "base_url", ctx->llm_base_url, "model", ctx->model));
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

bool agent_parse_reward(const char *text, size_t len, double *reward, bool *found_null)
{
    *found_null = false;
    json_t *j = json_loadb(text, len, 0, NULL);
    json_t *r = json_object_get(j, "reward");
    bool ok = false;
    if (json_is_number(r)) {
        *reward = json_number_value(r);
        ok = true;
    } else if (json_is_boolean(r)) {
        *reward = json_is_true(r) ? 1.0 : 0.0;
        ok = true;
    } else if (json_is_null(r)) {
        *found_null = true;
    }
    json_decref(j);
    return ok;
}

/* Keeps the last `limit` bytes appended. */
static void tail_put(agl_buf *b, const char *p, size_t n, size_t limit)
{
    agl_buf_put(b, p, n);
    if (b->len > limit) {
        size_t cut = b->len - limit;
        memmove(b->data, b->data + cut, limit);
        b->len = limit;
        b->data[b->len] = 0;
    }
}

static char **build_env(const agent_ctx *ctx)
{
    const char *drop[] = {"OPENAI_BASE_URL=", "OPENAI_API_BASE=", "OPENAI_API_KEY=",
                          "AGL_STORE_URL=",   "AGL_ROLLOUT_ID=",  "AGL_ATTEMPT_ID=",
                          "AGL_MODEL=",       "AGL_MODE=",        NULL};
    size_t n = 0;
    while (environ[n]) n++;
    char **env = agl_calloc(n + 16, sizeof *env);
    size_t k = 0;
    size_t kl = strlen(ctx->cfg->upstream_key_env);
    for (size_t i = 0; i < n; i++) {
        bool skip = !strncmp(environ[i], ctx->cfg->upstream_key_env, kl) && environ[i][kl] == '=';
        for (int d = 0; drop[d] && !skip; d++)
            skip = !strncmp(environ[i], drop[d], strlen(drop[d]));
        if (!skip) env[k++] = agl_strdup(environ[i]);
    }
    agl_buf b;
    agl_buf_init(&b);
#define ADD(fmt, ...)                                                                              \
    do {                                                                                           \
        agl_buf_printf(&b, fmt, __VA_ARGS__);                                                      \
        env[k++] = agl_buf_steal(&b);                                                              \
    } while (0)
    ADD("OPENAI_BASE_URL=%s", ctx->llm_base_url);
    ADD("OPENAI_API_BASE=%s", ctx->llm_base_url);
    /* Agents never hold the upstream key: the proxy injects it. SDKs insist on some key. */
    ADD("OPENAI_API_KEY=%s", "agl-proxy");
    ADD("AGL_STORE_URL=%s", ctx->cfg->store_url);
    ADD("AGL_ROLLOUT_ID=%s", ctx->rollout->rollout_id);
    ADD("AGL_ATTEMPT_ID=%s", ctx->attempt->attempt_id);
    ADD("AGL_MODE=%s", ctx->rollout->mode >= 0 ? agl_mode_names[ctx->rollout->mode] : "");
    if (ctx->model) ADD("AGL_MODEL=%s", ctx->model);
#undef ADD
    env[k] = NULL;
    return env;
}

static void free_env(char **env)
{
    for (size_t i = 0; env[i]; i++) free(env[i]);
    free(env);
}

/* A command made only of words (no quotes, redirections, variables, globs, ...) is split on
 * blanks and started directly: a /bin/sh in between costs a second exec per rollout, which is
 * measurable when the agent itself is a small C program (the GRPO demo starts 256 per step).
 * Anything else goes through `/bin/sh -c` as written. Returns a NULL-terminated argv (the
 * caller frees argv[0], the copy all words point into, and argv) or NULL for the shell path. */
static char **plain_argv(const char *cmd)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                             "_./:=@%+,- \t";
    size_t first = strcspn(cmd + strspn(cmd, " \t"), " \t");
    if (!*cmd || cmd[strspn(cmd, ok)] || memchr(cmd + strspn(cmd, " \t"), '=', first))
        return NULL; /* "VAR=x cmd" is the shell's */
    char *copy = agl_strdup(cmd);
    size_t n = 0, cap = 8;
    char **argv = agl_malloc(cap * sizeof *argv);
    for (char *save = NULL, *w = strtok_r(copy, " \t", &save); w;
         w = strtok_r(NULL, " \t", &save)) {
        if (n + 2 > cap) argv = agl_realloc(argv, (cap *= 2) * sizeof *argv);
        argv[n++] = w;
    }
    if (!n) {
        free(copy);
        free(argv);
        return NULL;
    }
    argv[n] = NULL;
    return argv; /* argv[0] == copy */
}

int agent_exec_run(agent_ctx *ctx)
{
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        snprintf(ctx->error, sizeof ctx->error, "exec agent: pipe failed: %s", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGINT);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    char *sh_argv[] = {"/bin/sh", "-c", (char *)ctx->agent_arg, NULL};
    char **direct = plain_argv(ctx->agent_arg);
    char **argv = direct ? direct : sh_argv;
    char **env = build_env(ctx);
    pid_t pid;
    double t0 = agl_monotonic();
    /* posix_spawnp searches PATH of runnerd's environment, as the shell would */
    int rc = posix_spawnp(&pid, argv[0], &fa, &at, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free_env(env);
    char started[256];
    snprintf(started, sizeof started, "%s", argv[0]);
    if (direct) {
        free(direct[0]);
        free(direct);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (rc) {
        close(in[1]);
        close(out[0]);
        close(err[0]);
        snprintf(ctx->error, sizeof ctx->error, "exec agent: cannot start %s: %s", started,
                 strerror(rc));
        return -1;
    }
    agl_debug("exec agent: pid %d for rollout %s", (int)pid, ctx->rollout->rollout_id);

    char *task = agent_task_json(ctx);
    size_t task_len = strlen(task), task_off = 0;
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    agl_buf so, se;
    agl_buf_init(&so);
    agl_buf_init(&se);
    size_t err_limit = ctx->cfg->stderr_limit > 0 ? (size_t)ctx->cfg->stderr_limit : 16384;
    int fin = in[1], fout = out[0], ferr = err[0];
    const char *killed_for = NULL;
    double kill_at = 0;
    int status = 0;
    bool reaped = false;
    for (;;) {
        if (!reaped) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid) reaped = true;
        }
        if (reaped && fout < 0 && ferr < 0) break;
        double now = agl_monotonic();
        if (!killed_for && ctx->deadline > 0 && now >= ctx->deadline)
            killed_for = "timeout";
        else if (!killed_for && atomic_load(&runnerd_run.abort))
            killed_for = "abort";
        if (killed_for && !kill_at && !reaped) {
            kill(-pid, SIGTERM);
            kill_at = now + 1.0;
        }
        if (kill_at && now >= kill_at && !reaped) {
            kill(-pid, SIGKILL);
            kill_at = now + 3600;
        }
        if (reaped && killed_for) {
            /* descendants may hold the pipes open; do not wait for them */
            kill(-pid, SIGKILL);
            break;
        }
        struct pollfd pf[3];
        int np = 0;
        if (fin >= 0) pf[np++] = (struct pollfd){.fd = fin, .events = POLLOUT};
        if (fout >= 0) pf[np++] = (struct pollfd){.fd = fout, .events = POLLIN};
        if (ferr >= 0) pf[np++] = (struct pollfd){.fd = ferr, .events = POLLIN};
        poll(pf, (nfds_t)np, 50);
        for (int i = 0; i < np; i++) {
            if (!pf[i].revents) continue;
            if (pf[i].fd == fin) {
                ssize_t w = write(fin, task + task_off, task_len - task_off);
                if (w > 0) task_off += (size_t)w;
                if (w < 0 && errno != EAGAIN) task_off = task_len;
                if (task_off >= task_len) {
                    close(fin);
                    fin = -1;
                }
                continue;
            }
            char buf[8192];
            ssize_t r = read(pf[i].fd, buf, sizeof buf);
            if (r > 0) {
                if (pf[i].fd == fout)
                    tail_put(&so, buf, (size_t)r, STDOUT_KEEP);
                else
                    tail_put(&se, buf, (size_t)r, err_limit);
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(pf[i].fd);
                if (pf[i].fd == fout) fout = -1;
                if (pf[i].fd == ferr) ferr = -1;
            }
        }
    }
    if (!reaped) waitpid(pid, &status, 0);
    if (fin >= 0) close(fin);
    if (fout >= 0) close(fout);
    if (ferr >= 0) close(ferr);
    free(task);
    double dur = agl_monotonic() - t0;

    /* last non-empty stdout line */
    const char *s = so.data ? so.data : "";
    size_t end = so.len;
    while (end && (s[end - 1] == '\n' || s[end - 1] == '\r' || s[end - 1] == ' ')) end--;
    size_t start = end;
    while (start && s[start - 1] != '\n') start--;
    double reward = 0;
    bool was_null = false;
    bool got = end > start && agent_parse_reward(s + start, end - start, &reward, &was_null);

    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    if (killed_for && !strcmp(killed_for, "timeout"))
        snprintf(ctx->error, sizeof ctx->error,
                 "exec agent timed out after %.1f s (the rollout's timeout) and was killed", dur);
    else if (killed_for)
        snprintf(ctx->error, sizeof ctx->error, "exec agent aborted by a second SIGTERM");
    else if (sig)
        snprintf(ctx->error, sizeof ctx->error, "exec agent killed by signal %d", sig);
    else if (code != 0)
        snprintf(ctx->error, sizeof ctx->error, "exec agent exited with status %d", code);
    if (!ctx->error[0] && got) {
        ctx->has_reward = true;
        ctx->reward = reward;
    }

    char tid[33], sid[17];
    agl_trace_id_new(tid);
    agl_span_id_new(sid);
    double wend = agl_now();
    agl_otlp_span_begin(ctx->spans, tid, sid, NULL, "agentlightning.operation", wend - dur, wend,
                        ctx->error[0] ? AGL_SPAN_ERROR : AGL_SPAN_OK, ctx->error);
    agl_otlp_attr_str(ctx->spans, "agentlightning.operation.name", "runnerd.exec");
    agl_otlp_attr_str(ctx->spans, "runnerd.exec.command", ctx->agent_arg);
    agl_otlp_attr_int(ctx->spans, "runnerd.exec.exit_code", code);
    if (sig) agl_otlp_attr_int(ctx->spans, "runnerd.exec.signal", sig);
    agl_otlp_attr_double(ctx->spans, "runnerd.exec.duration_ms", dur * 1000.0);
    agl_otlp_attr_strn(ctx->spans, "runnerd.exec.stderr", se.data ? se.data : "", se.len);
    agl_otlp_attr_strn(ctx->spans, "runnerd.exec.stdout_last_line", s + start, end - start);
    agl_otlp_span_end(ctx->spans);
    agl_buf_free(&so);
    agl_buf_free(&se);
    return ctx->error[0] ? -1 : 0;
}
