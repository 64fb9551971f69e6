/* apo_eval — one evaluation of a candidate through the store, the reference's protocol
 * (algorithms.md §1.4): publish the candidate's resources under its version id, enqueue one
 * rollout per task with that resources_id, wait until they are terminal, read back rewards and
 * messages. Waiting is a long poll on POST /v1/agl/waits/rollouts, not sleeps; results come from
 * one POST /v1/agl/messages/search instead of a span query per rollout. */
#include "agl_alloc.h"
#include "agl_buf.h"
#include "agl_log.h"
#include "agl_util.h"
#include "apo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_POLL_S 10.0 /* one long poll; well under the store client's 30 s request limit */

agl_code apo_publish(agl_store_client *sc, const apo_seed *seed, const char *resources_id,
                     const char *template_text, agl_error *err)
{
    json_t *res = json_deep_copy(seed->resources);
    json_object_set_new(res, seed->resource_name,
                        json_pack("{s:s,s:s,s:s}", "resource_type", "prompt_template", "template",
                                  template_text, "engine", "f-string"));
    char *body = json_dumps(res, JSON_COMPACT);
    json_decref(res);
    agl_buf path;
    agl_buf_init(&path);
    agl_buf_puts(&path, "/v1/agl/resources");
    agl_store_path_segment(&path, resources_id);
    agl_code rc = agl_store_call(sc, "POST", path.data, body, NULL, err);
    agl_buf_free(&path);
    free(body);
    return rc;
}

agl_code apo_eval_enqueue(agl_store_client *sc, apo_eval *ev, agl_error *err)
{
    ev->rollout_ids = agl_calloc(ev->n ? ev->n : 1, sizeof(char *));
    if (ev->known_ids) {
        for (size_t i = 0; i < ev->n; i++) ev->rollout_ids[i] = agl_strdup(ev->known_ids[i]);
        return AGL_OK;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < ev->n; i++)
        json_array_append_new(
            list, json_pack("{s:O,s:s,s:s,s:n,s:n}", "input", ev->ds->items[ev->tasks[i]], "mode",
                            ev->mode, "resources_id", ev->resources_id, "config", "metadata"));
    json_t *body = json_pack("{s:o}", "rollouts", list);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    json_t *out = NULL;
    agl_code rc = agl_store_call(sc, "POST", "/v1/agl/queues/rollouts/enqueue", text, &out, err);
    free(text);
    if (rc == AGL_OK && json_array_size(out) != ev->n)
        rc = agl_error_set(err, AGL_E_INTERNAL, "", "store enqueued %zu rollouts instead of %zu",
                           json_array_size(out), ev->n);
    for (size_t i = 0; rc == AGL_OK && i < ev->n; i++) {
        const char *id = json_string_value(json_object_get(json_array_get(out, i), "rollout_id"));
        if (!id) {
            rc = agl_error_set(err, AGL_E_INTERNAL, "", "store answered a rollout without id");
            break;
        }
        ev->rollout_ids[i] = agl_strdup(id);
    }
    json_decref(out);
    return rc;
}

agl_code apo_eval_wait(agl_store_client *sc, apo_eval *ev, apo_progress *pg, agl_error *err)
{
    bool *done = agl_calloc(ev->n ? ev->n : 1, sizeof(bool));
    size_t ndone = 0;
    double deadline = agl_monotonic() + ev->timeout_s;
    agl_code rc = AGL_OK;
    while (ndone < ev->n) {
        double left = deadline - agl_monotonic();
        if (left <= 0) {
            agl_warn("apo: %zu of %zu %s rollouts of %s did not finish within %.0f s; scoring "
                     "without them",
                     ev->n - ndone, ev->n, ev->mode, ev->resources_id, ev->timeout_s);
            break;
        }
        json_t *ids = json_array();
        for (size_t i = 0; i < ev->n; i++)
            if (!done[i]) json_array_append_new(ids, json_string(ev->rollout_ids[i]));
        json_t *body = json_pack("{s:o,s:f}", "rollout_ids", ids, "timeout",
                                 left < WAIT_POLL_S ? left : WAIT_POLL_S);
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        json_t *out = NULL;
        rc = agl_store_call(sc, "POST", "/v1/agl/waits/rollouts", text, &out, err);
        free(text);
        if (rc != AGL_OK) break;
        size_t k;
        json_t *r;
        long newly = 0;
        json_array_foreach(out, k, r)
        {
            const char *id = json_string_value(json_object_get(r, "rollout_id"));
            for (size_t i = 0; id && i < ev->n; i++)
                if (!done[i] && !strcmp(ev->rollout_ids[i], id)) {
                    done[i] = true;
                    ndone++;
                    newly++;
                    break;
                }
        }
        json_decref(out);
        if (pg && newly) apo_progress_rollouts(pg, newly);
    }
    free(done);
    return rc;
}

agl_code apo_eval_collect(agl_store_client *sc, apo_eval *ev, bool want_results, agl_error *err)
{
    json_t *ids = json_array();
    for (size_t i = 0; i < ev->n; i++) json_array_append_new(ids, json_string(ev->rollout_ids[i]));
    /* only terminal rollouts count (§1.4 step 3: unfinished ones are left out) */
    json_t *body = json_pack("{s:o,s:[sss],s:i}", "rollout_id_in", ids, "status_in", "succeeded",
                             "failed", "cancelled", "limit", -1);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    json_t *page = NULL;
    agl_code rc = agl_store_call(sc, "POST", "/v1/agl/messages/search", text, &page, err);
    free(text);
    if (rc != AGL_OK) return rc;
    json_t *items = json_object_get(page, "items");
    json_decref(ev->results);
    ev->results = json_array();
    double sum = 0;
    size_t n = 0;
    /* in the order of rollout_ids, so the critic sees the batch in task order */
    for (size_t i = 0; i < ev->n; i++) {
        size_t k;
        json_t *it;
        json_array_foreach(items, k, it)
        {
            const char *id = json_string_value(json_object_get(it, "rollout_id"));
            if (!id || strcmp(id, ev->rollout_ids[i])) continue;
            json_t *rw = json_object_get(it, "final_reward");
            if (json_is_number(rw) && isfinite(json_number_value(rw))) sum += json_number_value(rw);
            n++;
            if (want_results)
                json_array_append_new(ev->results,
                                      json_pack("{s:O,s:O?,s:O?,s:O?}", "rollout_id",
                                                json_object_get(it, "rollout_id"), "status",
                                                json_object_get(it, "status"), "final_reward", rw,
                                                "messages", json_object_get(it, "messages")));
            break;
        }
    }
    json_decref(page);
    ev->n_finished = n;
    ev->score = sum / (double)(n ? n : 1);
    return AGL_OK;
}

void apo_eval_free(apo_eval *ev)
{
    if (ev->rollout_ids)
        for (size_t i = 0; i < ev->n; i++) free(ev->rollout_ids[i]);
    free(ev->rollout_ids);
    ev->rollout_ids = NULL;
    json_decref(ev->results);
    ev->results = NULL;
}
