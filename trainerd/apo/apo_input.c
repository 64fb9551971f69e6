/* apo_input — reading what APO is given: JSON Lines datasets and the seed prompt (a text file or
 * a NamedResources JSON document). Every error names the file and, for datasets, the line. */
#include "agl_alloc.h"
#include "agl_model.h"
#include "apo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_file(const char *path, size_t *len, agl_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        agl_error_set(err, AGL_E_IO, "", "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = agl_malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) buf = agl_realloc(buf, cap *= 2);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        agl_error_set(err, AGL_E_IO, "", "cannot read %s", path);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static bool blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n", p[i])) return false;
    return true;
}

agl_code apo_dataset_load(const char *path, apo_dataset *out, agl_error *err)
{
    memset(out, 0, sizeof *out);
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text) return err ? err->code : AGL_E_IO;
    size_t cap = 64;
    out->items = agl_malloc(cap * sizeof(json_t *));
    out->text = text;
    size_t line = 0;
    for (char *p = text; p < text + len;) {
        line++;
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        if (!blank(p, n)) {
            json_error_t je;
            json_t *v = json_loadb(p, n, JSON_DECODE_ANY, &je);
            if (!v) {
                apo_dataset_free(out);
                return agl_error_set(err, AGL_E_INVALID, "", "%s:%zu: not valid JSON: %s", path,
                                     line, je.text);
            }
            if (out->n == cap) out->items = agl_realloc(out->items, (cap *= 2) * sizeof(json_t *));
            out->items[out->n++] = v;
        }
        p += n + 1;
    }
    if (out->n == 0) {
        apo_dataset_free(out);
        return agl_error_set(err, AGL_E_INVALID, "",
                             "%s: no tasks (expected one JSON value per line)", path);
    }
    return AGL_OK;
}

void apo_dataset_free(apo_dataset *d)
{
    for (size_t i = 0; i < d->n; i++) json_decref(d->items[i]);
    free(d->items);
    free(d->text);
    memset(d, 0, sizeof *d);
}

static bool is_prompt_template(json_t *v)
{
    const char *t = json_string_value(json_object_get(v, "resource_type"));
    return t && !strcmp(t, "prompt_template");
}

agl_code apo_seed_load(const char *path, const char *resource_name, apo_seed *out, agl_error *err)
{
    memset(out, 0, sizeof *out);
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text) return err ? err->code : AGL_E_IO;
    if (memchr(text, 0, len)) {
        free(text);
        return agl_error_set(err, AGL_E_INVALID, "", "%s: contains a NUL byte", path);
    }
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    json_t *doc = *p == '{' ? json_loads(text, 0, NULL) : NULL;
    bool resources = false;
    if (json_is_object(doc)) {
        /* NamedResources when every value is an object with a resource_type */
        const char *k;
        json_t *v;
        resources = json_object_size(doc) > 0;
        json_object_foreach(doc, k, v) if (!json_is_string(json_object_get(v, "resource_type")))
            resources = false;
    }
    if (!resources) {
        json_decref(doc);
        size_t n = strlen(text);
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) text[--n] = 0;
        if (n == 0 || blank(text, n)) {
            free(text);
            return agl_error_set(err, AGL_E_INVALID, "", "%s: the seed prompt is empty", path);
        }
        const char *name = resource_name ? resource_name : "prompt_template";
        out->resource_name = agl_strdup(name);
        out->template_text = text;
        out->resources = json_object();
        json_object_set_new(out->resources, name,
                            json_pack("{s:s,s:s,s:s}", "resource_type", "prompt_template",
                                      "template", text, "engine", "f-string"));
        return AGL_OK;
    }
    free(text);
    /* validate like the store will, so a bad file fails here and not at the first publish */
    agl_arena a;
    agl_arena_init(&a);
    const char *norm;
    agl_error e;
    if (agl_named_resources_parse(doc, "", &a, &norm, &e) != AGL_OK) {
        agl_arena_free(&a);
        json_decref(doc);
        return agl_error_set(err, AGL_E_INVALID, "", "%s: invalid resources at %s: %s", path, e.loc,
                             e.msg);
    }
    agl_arena_free(&a);
    const char *name = resource_name;
    json_t *tmpl = NULL;
    if (name) {
        tmpl = json_object_get(doc, name);
        if (!tmpl) {
            json_decref(doc);
            return agl_error_set(err, AGL_E_INVALID, "", "%s: has no resource named '%s'", path,
                                 name);
        }
        if (!is_prompt_template(tmpl)) {
            json_decref(doc);
            return agl_error_set(err, AGL_E_INVALID, "",
                                 "%s: resource '%s' is not a prompt_template", path, name);
        }
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(doc, k, v) if (!tmpl && is_prompt_template(v))
        {
            tmpl = v;
            name = k;
        }
        if (!tmpl) {
            json_decref(doc);
            return agl_error_set(err, AGL_E_INVALID, "", "%s: has no prompt_template resource",
                                 path);
        }
    }
    const char *t = json_string_value(json_object_get(tmpl, "template"));
    if (!t || !*t) {
        json_decref(doc);
        return agl_error_set(err, AGL_E_INVALID, "", "%s: resource '%s' has an empty template",
                             path, name);
    }
    out->resource_name = agl_strdup(name);
    out->template_text = agl_strdup(t);
    out->resources = doc;
    return AGL_OK;
}

void apo_seed_free(apo_seed *s)
{
    free(s->resource_name);
    free(s->template_text);
    json_decref(s->resources);
    memset(s, 0, sizeof *s);
}
