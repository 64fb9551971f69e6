/* bench_proxy_load — closed-loop HTTP load generator for the proxy benchmark: C threads, each
 * with one kept-alive libcurl connection, POSTing the same body for a fixed time; prints one
 * JSON line {requests, errors, rps, p50_ms, p90_ms, p99_ms}.
 * Usage: bench_proxy_load URL BODY CONCURRENCY SECONDS [HEADER...] */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *url, *body;
    struct curl_slist *hdrs;
    double until;
    double *lat;
    size_t n, cap, errors;
} job;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t sink(char *p, size_t s, size_t n, void *u)
{
    (void)p, (void)u;
    return s * n;
}

static void *run(void *arg)
{
    job *j = arg;
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, j->url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, j->body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, j->hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    while (now() < j->until) {
        double t0 = now();
        CURLcode rc = curl_easy_perform(c);
        double dt = now() - t0;
        long st = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        if (rc != CURLE_OK || st != 200) {
            j->errors++;
            continue;
        }
        if (j->n == j->cap) {
            j->cap = j->cap ? j->cap * 2 : 4096;
            j->lat = realloc(j->lat, j->cap * sizeof *j->lat);
        }
        j->lat[j->n++] = dt;
    }
    curl_easy_cleanup(c);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bench_proxy_load URL BODY CONCURRENCY SECONDS [HEADER...]\n");
        return 2;
    }
    int conc = atoi(argv[3]);
    double secs = atof(argv[4]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    for (int i = 5; i < argc; i++) h = curl_slist_append(h, argv[i]);
    job *jobs = calloc((size_t)conc, sizeof *jobs);
    pthread_t *th = calloc((size_t)conc, sizeof *th);
    double t0 = now();
    for (int i = 0; i < conc; i++) {
        jobs[i] = (job){.url = argv[1], .body = argv[2], .hdrs = h, .until = t0 + secs};
        pthread_create(&th[i], NULL, run, &jobs[i]);
    }
    size_t total = 0, errors = 0;
    for (int i = 0; i < conc; i++) {
        pthread_join(th[i], NULL);
        total += jobs[i].n;
        errors += jobs[i].errors;
    }
    double el = now() - t0;
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < conc; i++) {
        memcpy(all + k, jobs[i].lat, jobs[i].n * sizeof *all);
        k += jobs[i].n;
        free(jobs[i].lat);
    }
    qsort(all, total, sizeof *all, cmp);
#define PCT(p) (total ? all[(size_t)((p) * (total - 1))] * 1000.0 : 0.0)
    printf("{\"requests\":%zu,\"errors\":%zu,\"rps\":%.1f,\"p50_ms\":%.4f,\"p90_ms\":%.4f,"
           "\"p99_ms\":%.4f}\n",
           total, errors, total / el, PCT(0.50), PCT(0.90), PCT(0.99));
    free(all);
    free(jobs);
    free(th);
    curl_slist_free_all(h);
    return 0;
}
