/* embedded — create, start and stop stored's private PostgreSQL cluster. */
#include "embedded.h"
#include "agl_alloc.h"
#include "agl_log.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct embedded_pg {
    char bindir[PATH_MAX];
    char pgdata[PATH_MAX];
    char sockdir[PATH_MAX];
    char logfile[PATH_MAX];
    char conninfo[PATH_MAX + 64];
    bool drop_privs;
    uid_t uid;
    gid_t gid;
};

/* Runs argv (as the cluster user when needed) and returns its exit status, or -1. Output goes
 * to logpath (appended) so a failure can be diagnosed. */
static int run(const embedded_pg *e, char *const argv[], const char *logpath)
{
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL); /* stored blocks SIGTERM; children must not */
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            if (e->drop_privs && fchown(fd, e->uid, e->gid) != 0) {
            }
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        if (e->drop_privs) {
            if (setgid(e->gid) != 0 || setuid(e->uid) != 0) _exit(126);
        }
        setenv("LC_ALL", "C", 1);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool is_exe(const char *dir, const char *name)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, X_OK) == 0;
}

static agl_code find_bindir(const char *hint, char *out, size_t cap, agl_error *err)
{
    if (hint) {
        if (!is_exe(hint, "pg_ctl"))
            return agl_error_set(err, AGL_E_IO, "pg-bin", "no pg_ctl in %s", hint);
        snprintf(out, cap, "%s", hint);
        return AGL_OK;
    }
    FILE *f = popen("pg_config --bindir 2>/dev/null", "r");
    if (f) {
        char line[PATH_MAX] = "";
        if (fgets(line, sizeof line, f)) line[strcspn(line, "\n")] = 0;
        pclose(f);
        if (line[0] && is_exe(line, "initdb")) {
            snprintf(out, cap, "%s", line);
            return AGL_OK;
        }
    }
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin", 0, NULL, &g) == 0) {
        for (size_t i = g.gl_pathc; i-- > 0;) /* newest version sorts last */
            if (is_exe(g.gl_pathv[i], "initdb")) {
                snprintf(out, cap, "%s", g.gl_pathv[i]);
                globfree(&g);
                return AGL_OK;
            }
        globfree(&g);
    }
    static const char *const fallbacks[] = {"/usr/local/pgsql/bin", "/usr/local/bin", "/usr/bin"};
    for (size_t i = 0; i < 3; i++)
        if (is_exe(fallbacks[i], "initdb") && is_exe(fallbacks[i], "pg_ctl")) {
            snprintf(out, cap, "%s", fallbacks[i]);
            return AGL_OK;
        }
    return agl_error_set(err, AGL_E_IO, "pg-bin",
                         "PostgreSQL server binaries (initdb, pg_ctl) not found; install "
                         "postgresql (deploy/install-deps.sh) or pass --pg-bin or --db");
}

static agl_code make_dir(const embedded_pg *e, const char *path, mode_t mode, agl_error *err)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return agl_error_set(err, AGL_E_IO, "data-dir", "cannot create %s: %s", path,
                             strerror(errno));
    if (e->drop_privs && chown(path, e->uid, e->gid) != 0)
        return agl_error_set(err, AGL_E_IO, "data-dir", "cannot chown %s: %s", path,
                             strerror(errno));
    return AGL_OK;
}

/* mkdir -p for the data directory itself (owned by whoever runs stored). */
static agl_code make_parents(const char *path, agl_error *err)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return agl_error_set(err, AGL_E_IO, "data-dir", "cannot create %s: %s", tmp,
                                 strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return agl_error_set(err, AGL_E_IO, "data-dir", "cannot create %s: %s", tmp,
                             strerror(errno));
    return AGL_OK;
}

static agl_code create_database(embedded_pg *e, agl_error *err)
{
    char ci[sizeof e->conninfo];
    snprintf(ci, sizeof ci, "host=%s dbname=postgres user=agl", e->sockdir);
    PGconn *c = PQconnectdb(ci);
    agl_code code = AGL_OK;
    if (PQstatus(c) != CONNECTION_OK) {
        code =
            agl_error_set(err, AGL_E_UNAVAILABLE, NULL, "embedded postgres: %s", PQerrorMessage(c));
    } else {
        PGresult *r = PQexec(c, "SELECT 1 FROM pg_database WHERE datname = 'agl'");
        bool exists = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0;
        PQclear(r);
        if (!exists) {
            r = PQexec(c, "CREATE DATABASE agl");
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                code = agl_error_set(err, AGL_E_IO, NULL, "embedded postgres: %s",
                                     PQresultErrorMessage(r));
            PQclear(r);
        }
    }
    PQfinish(c);
    snprintf(e->conninfo, sizeof e->conninfo, "host=%s dbname=agl user=agl", e->sockdir);
    return code;
}

agl_code embedded_pg_start(const char *data_dir, const char *pg_bin, const char *pg_user,
                           embedded_pg **out, agl_error *err)
{
    embedded_pg *e = agl_calloc(1, sizeof *e);
    agl_code code = find_bindir(pg_bin, e->bindir, sizeof e->bindir, err);
    char dir[PATH_MAX - 64]; /* room for the file names appended below */
    char resolved[PATH_MAX];
    if (code == AGL_OK) code = make_parents(data_dir, err);
    if (code == AGL_OK && !realpath(data_dir, resolved))
        code = agl_error_set(err, AGL_E_IO, "data-dir", "%s: %s", data_dir, strerror(errno));
    if (code == AGL_OK && strlen(resolved) >= sizeof dir)
        code = agl_error_set(err, AGL_E_IO, "data-dir", "path too long: %s", resolved);
    if (code == AGL_OK) memcpy(dir, resolved, strlen(resolved) + 1);
    if (code != AGL_OK) {
        free(e);
        return code;
    }
    if (geteuid() == 0) {
        struct passwd *pw = NULL;
        if (pg_user)
            pw = getpwnam(pg_user);
        else if (!(pw = getpwnam("postgres")))
            pw = getpwnam("nobody");
        if (!pw) {
            free(e);
            return agl_error_set(err, AGL_E_IO, "pg-user", "no such user '%s'",
                                 pg_user ? pg_user : "postgres");
        }
        e->drop_privs = true;
        e->uid = pw->pw_uid;
        e->gid = pw->pw_gid;
    }
    snprintf(e->pgdata, sizeof e->pgdata, "%s/pg", dir);
    snprintf(e->logfile, sizeof e->logfile, "%s/postgres.log", dir);
    /* unix socket paths are limited to ~107 bytes */
    if (strlen(dir) < 80)
        snprintf(e->sockdir, sizeof e->sockdir, "%s/run", dir);
    else
        snprintf(e->sockdir, sizeof e->sockdir, "/tmp/agl-stored-%lx", (unsigned long)getpid());
    if (e->drop_privs && chown(dir, e->uid, e->gid) != 0) {
    }
    if ((code = make_dir(e, e->sockdir, 0700, err))) goto fail;

    char pgver[PATH_MAX + 16];
    snprintf(pgver, sizeof pgver, "%s/PG_VERSION", e->pgdata);
    char tool[PATH_MAX + 16];
    if (access(pgver, F_OK) != 0) {
        if ((code = make_dir(e, e->pgdata, 0700, err))) goto fail;
        agl_info("creating the embedded PostgreSQL cluster in %s", e->pgdata);
        snprintf(tool, sizeof tool, "%s/initdb", e->bindir);
        char *const argv[] = {tool,    "-D", e->pgdata, "-U",         "agl", "-A",
                              "trust", "-E", "UTF8",    "--locale=C", NULL};
        if (run(e, argv, e->logfile) != 0) {
            code = agl_error_set(err, AGL_E_IO, "data-dir",
                                 "initdb failed (is %s reachable by the cluster user?), see %s",
                                 e->pgdata, e->logfile);
            goto fail;
        }
    }
    snprintf(tool, sizeof tool, "%s/pg_ctl", e->bindir);
    {
        /* A cluster left running by a killed stored: stop it and start it our way. */
        char *const st[] = {tool, "status", "-D", e->pgdata, NULL};
        if (run(e, st, e->logfile) == 0) {
            char *const stop[] = {tool, "stop", "-D", e->pgdata, "-m", "fast", "-w", NULL};
            run(e, stop, e->logfile);
        }
    }
    char opts[PATH_MAX + 128];
    /* commit_delay: under concurrent load, let commits arriving within 200 us share one WAL
     * flush (group commit). Every acknowledged write is still flushed before the reply. */
    snprintf(opts, sizeof opts,
             "-c listen_addresses='' -c unix_socket_directories='%s' -c commit_delay=200"
             " -c commit_siblings=4",
             e->sockdir);
    char *const start[] = {tool,  "start", "-D",       e->pgdata, "-w", "-t",
                           "120", "-l",    e->logfile, "-o",      opts, NULL};
    if (run(e, start, e->logfile) != 0) {
        code = agl_error_set(err, AGL_E_IO, "data-dir",
                             "the embedded PostgreSQL did not start, see %s", e->logfile);
        goto fail;
    }
    if ((code = create_database(e, err))) {
        embedded_pg_stop(e);
        return code;
    }
    agl_info("embedded PostgreSQL running (socket %s)", e->sockdir);
    *out = e;
    return AGL_OK;
fail:
    free(e);
    return code;
}

const char *embedded_pg_conninfo(const embedded_pg *e)
{
    return e->conninfo;
}

void embedded_pg_stop(embedded_pg *e)
{
    if (!e) return;
    char tool[PATH_MAX + 16];
    snprintf(tool, sizeof tool, "%s/pg_ctl", e->bindir);
    char *const argv[] = {tool, "stop", "-D", e->pgdata, "-m", "fast", "-w", "-t", "60", NULL};
    if (run(e, argv, e->logfile) != 0) agl_warn("pg_ctl stop failed, see %s", e->logfile);
    free(e);
}
