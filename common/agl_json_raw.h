/* agl_json_raw — locate a value inside JSON text without parsing it into a tree.
 * The store keeps free-form JSON (inputs, metadata, stats) exactly as the client wrote it,
 * including integers too large for a C integer; this scanner finds the text of such a value
 * in the request body. */
#ifndef AGL_JSON_RAW_H
#define AGL_JSON_RAW_H

#include <stdbool.h>
#include <stddef.h>

/* Follows path (object keys; for arrays, decimal indexes) from the top-level value of text.
 * On success sets *off and *vlen to the value's text (no surrounding whitespace) and returns true.
 * With duplicate keys the last one wins, as in jansson. Keys written with escapes are not
 * matched (the caller then falls back to re-serialising the parsed value). Returns false for
 * malformed text or a missing path. */
bool agl_json_raw_find(const char *text, size_t len, const char *const *path, int depth,
                       size_t *off, size_t *vlen);

#endif
