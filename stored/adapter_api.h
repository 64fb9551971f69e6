/* adapter_api — the adapter extensions of the HTTP API (docs/api.md, "Extensions"):
 * triplets and messages of many rollouts in one call, computed from the spans of each
 * rollout's latest attempt by adapter.c. Handlers are listed in api.c's route table. */
#ifndef STORED_ADAPTER_API_H
#define STORED_ADAPTER_API_H

#include "http.h"

/* POST /v1/agl/triplets/search */
agl_code adapter_h_triplets_search(agl_req *r, agl_error *err);
/* GET /v1/agl/rollouts/{id}/triplets */
agl_code adapter_h_rollout_triplets(agl_req *r, agl_error *err);
/* POST /v1/agl/messages/search */
agl_code adapter_h_messages_search(agl_req *r, agl_error *err);
/* GET /v1/agl/rollouts/{id}/messages */
agl_code adapter_h_rollout_messages(agl_req *r, agl_error *err);

#endif
