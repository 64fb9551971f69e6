/* adapter — spans → triplets / trajectories / messages, following agentlightning 0.3's
 * adapter/triplet.py and adapter/messages.py rule by rule (algorithms.md §2.3–2.5). Trees and
 * scratch live in one arena per call; JSON values are jansson references. */
#include "adapter.h"
#include "agl_alloc.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

/* ---- spans ---- */

void adapter_spans_init(adapter_spans *s)
{
    memset(s, 0, sizeof *s);
}

void adapter_spans_free(adapter_spans *s)
{
    for (int i = 0; i < s->n; i++) json_decref(s->v[i].doc);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static const char *obj_str(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool obj_num(const json_t *o, const char *key, double *out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) return false;
    *out = json_number_value(v);
    return true;
}

agl_code adapter_spans_add(adapter_spans *s, const char *doc, agl_error *err)
{
    json_error_t je;
    json_t *j = json_loads(doc, JSON_DECODE_ANY, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return agl_error_set(err, AGL_E_INTERNAL, NULL, "stored span is not a JSON object: %s",
                             je.text);
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = agl_realloc(s->v, sizeof *s->v * (size_t)s->cap);
    }
    adapter_span *sp = &s->v[s->n++];
    memset(sp, 0, sizeof *sp);
    sp->doc = j;
    sp->span_id = obj_str(j, "span_id");
    if (!sp->span_id) sp->span_id = "";
    sp->parent_id = obj_str(j, "parent_id");
    sp->name = obj_str(j, "name");
    if (!sp->name) sp->name = "";
    json_t *seq = json_object_get(j, "sequence_id");
    sp->sequence_id = json_is_integer(seq) ? json_integer_value(seq) : 0;
    sp->has_start = obj_num(j, "start_time", &sp->start);
    sp->has_end = obj_num(j, "end_time", &sp->end);
    sp->attrs = json_object_get(j, "attributes");
    if (!json_is_object(sp->attrs)) {
        json_object_set_new(j, "attributes", json_object());
        sp->attrs = json_object_get(j, "attributes");
    }
    return AGL_OK;
}

/* ---- a small string → int map (open addressing, arena-backed) ---- */

typedef struct strmap {
    const char **keys;
    int *vals;
    size_t cap, n;
} strmap;

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void strmap_init(strmap *m, agl_arena *a, size_t expect)
{
    m->cap = 16;
    while (m->cap < expect * 2 + 2) m->cap *= 2;
    m->keys = agl_arena_calloc(a, sizeof *m->keys * m->cap);
    m->vals = agl_arena_calloc(a, sizeof *m->vals * m->cap);
    m->n = 0;
}

/* Returns the slot of key (existing or empty). The map is sized so it never fills. */
static size_t strmap_slot(const strmap *m, const char *key)
{
    size_t i = (size_t)str_hash(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key)) i = (i + 1) & (m->cap - 1);
    return i;
}

static int strmap_get(const strmap *m, const char *key, int def)
{
    size_t i = strmap_slot(m, key);
    return m->keys[i] ? m->vals[i] : def;
}

static void strmap_put(strmap *m, const char *key, int val)
{
    size_t i = strmap_slot(m, key);
    if (!m->keys[i]) m->keys[i] = key, m->n++;
    m->vals[i] = val;
}

/* ---- Python regexes on POSIX ERE ---- */

/* re.search patterns as the reference's defaults and users write them: the Python escapes
 * that ERE lacks (\d \D \s \S) are rewritten; everything else is ERE already. */
static int regex_compile(const char *py, regex_t *re)
{
    agl_buf b;
    agl_buf_init(&b);
    for (const char *p = py; *p; p++) {
        if (p[0] == '\\' && p[1]) {
            const char *rep = NULL;
            switch (p[1]) {
            case 'd':
                rep = "[0-9]";
                break;
            case 'D':
                rep = "[^0-9]";
                break;
            case 's':
                rep = "[[:space:]]";
                break;
            case 'S':
                rep = "[^[:space:]]";
                break;
            default:
                break;
            }
            if (rep) {
                agl_buf_puts(&b, rep);
            } else {
                agl_buf_put(&b, p, 2);
            }
            p++;
            continue;
        }
        agl_buf_putc(&b, *p);
    }
    agl_buf_putc(&b, 0);
    int rc = regcomp(re, b.data, REG_EXTENDED | REG_NOSUB);
    agl_buf_free(&b);
    return rc;
}

void adapter_opts_default(adapter_opts *o)
{
    o->kind = ADAPTER_TRACER;
    o->repair_hierarchy = true;
    o->llm_call_match = "openai\\.chat\\.completion";
    o->agent_match = NULL;
    o->exclude_llm_call_in_reward = true;
    o->reward_match = REWARD_FIRST_OCCURRENCE;
    o->skip_empty_token_spans = false;
}

agl_code adapter_opts_check(const adapter_opts *o, agl_error *err)
{
    const char *pats[2] = {o->llm_call_match, o->agent_match};
    const char *names[2] = {"llm_call_match", "agent_match"};
    for (int i = 0; i < 2; i++) {
        if (!pats[i]) continue;
        regex_t re;
        if (regex_compile(pats[i], &re) != 0)
            return agl_error_set(err, AGL_E_BAD_REQUEST, NULL,
                                 "%s is not a supported regular expression: '%s'", names[i],
                                 pats[i]);
        regfree(&re);
    }
    return AGL_OK;
}

/* ---- JSON writing with Python-style floats ---- */

/* ---- unflatten (utils/otel.py) ---- */

static bool is_digits(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return false;
    return true;
}

/* A dict whose keys are exactly "0".."n-1" (any order) becomes a list, recursively. Keys with
 * leading zeros keep the dict (the reference would fail a lookup on them). */
static json_t *convert_lists(json_t *node)
{
    if (!json_is_object(node)) return node;
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(node, tmp, k, v)
    {
        json_t *c = convert_lists(v);
        if (c != v) json_object_set_new(node, k, c);
    }
    size_t n = json_object_size(node);
    if (n == 0) return node;
    json_object_foreach(node, k, v)
    {
        size_t len = strlen(k);
        if (!is_digits(k, len) || (len > 1 && k[0] == '0')) return node;
        errno = 0;
        unsigned long idx = strtoul(k, NULL, 10);
        if (errno || idx >= n) return node;
    }
    /* n distinct canonical keys, all < n: exactly 0..n-1. */
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "%zu", i);
        json_array_append(arr, json_object_get(node, key));
    }
    return arr;
}

/* Holds a converted value; convert_lists may return a new array, so values are swapped in. */
static json_t *unflatten_pairs(json_t *flat)
{
    json_t *root = json_object();
    const char *key;
    json_t *value;
    json_object_foreach(flat, key, value)
    {
        json_t *cur = root;
        const char *p = key;
        for (;;) {
            const char *dot = strchr(p, '.');
            if (!dot) break;
            char part[256];
            size_t pl = (size_t)(dot - p);
            if (pl >= sizeof part) pl = sizeof part - 1;
            memcpy(part, p, pl);
            part[pl] = 0;
            json_t *next = json_object_get(cur, part);
            if (!json_is_object(next)) {
                next = json_object();
                json_object_set_new(cur, part, next);
            }
            cur = next;
            p = dot + 1;
        }
        json_object_set(cur, p, value);
    }
    json_t *out = convert_lists(root);
    if (out != root) json_decref(root);
    return out;
}

json_t *adapter_unflatten(const json_t *attrs, const char *prefix)
{
    size_t pl = strlen(prefix);
    json_t *flat = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)attrs, k, v)
    {
        /* The key equal to the prefix makes the reference raise; it is left out here. */
        if (!strncmp(k, prefix, pl) && k[pl] == '.') json_object_set(flat, k + pl + 1, v);
    }
    json_t *out = unflatten_pairs(flat);
    json_decref(flat);
    return out;
}

static bool truthy(const json_t *j)
{
    if (!j) return false;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return json_object_size(j) > 0;
    case JSON_ARRAY:
        return json_array_size(j) > 0;
    case JSON_STRING:
        return json_string_length(j) > 0;
    case JSON_INTEGER:
        return json_integer_value(j) != 0;
    case JSON_REAL:
        return json_real_value(j) != 0;
    case JSON_TRUE:
        return true;
    default:
        return false;
    }
}

/* _attributes_unflatten_multiple: the first prefix giving a non-empty tree, else NULL. */
static json_t *unflatten_first(const json_t *attrs, const char *a, const char *b)
{
    json_t *t = adapter_unflatten(attrs, a);
    if (truthy(t)) return t;
    json_decref(t);
    t = adapter_unflatten(attrs, b);
    if (truthy(t)) return t;
    json_decref(t);
    return NULL;
}

/* ---- rewards (emitter/reward.py) ---- */

/* pydantic's lax float: numbers, bools, numeric strings. */
static bool lax_float(const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return true;
    }
    if (json_is_boolean(v)) {
        *out = json_is_true(v) ? 1.0 : 0.0;
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        while (isspace((unsigned char)*s)) s++;
        if (!*s) return false;
        double d = strtod(s, &end);
        while (isspace((unsigned char)*end)) end++;
        if (*end) return false;
        *out = d;
        return true;
    }
    return false;
}

bool adapter_reward_value(const char *name, const json_t *attrs, double *value)
{
    const char *k;
    json_t *v;
    bool any = false;
    json_object_foreach((json_t *)attrs, k, v) any |= !strncmp(k, "agentlightning.reward", 21);
    if (any) {
        /* v0.3: agentlightning.reward.<i>.{name,value}; the first entry is the primary. The
         * reference validates every entry and raises on a bad one: here it is no reward. */
        json_t *list = adapter_unflatten(attrs, "agentlightning.reward");
        bool ok = json_is_array(list);
        double first = 0;
        for (size_t i = 0; ok && i < json_array_size(list); i++) {
            json_t *e = json_array_get(list, i);
            double d;
            ok = json_is_object(e) && json_is_string(json_object_get(e, "name")) &&
                 lax_float(json_object_get(e, "value"), &d);
            if (ok && i == 0) first = d;
        }
        size_t n = json_array_size(list);
        json_decref(list);
        if (ok && n) {
            *value = first;
            return true;
        }
    }
    static const char *const agentops[] = {"agentops.task.output", "agentops.entity.output"};
    for (int i = 0; i < 2; i++) {
        json_t *out = json_object_get(attrs, agentops[i]);
        if (!truthy(out)) continue;
        json_t *d = NULL;
        if (json_is_object(out)) {
            d = json_incref(out);
        } else if (json_is_string(out)) {
            d = json_loads(json_string_value(out), JSON_DECODE_ANY, NULL);
        }
        bool is_reward = json_is_object(d) && json_is_string(json_object_get(d, "type")) &&
                         !strcmp(json_string_value(json_object_get(d, "type")), "reward");
        if (is_reward) {
            bool ok = lax_float(json_object_get(d, "value"), value);
            json_decref(d);
            return ok; /* a None value ends the search, as in the reference */
        }
        json_decref(d);
    }
    if (!strcmp(name, "agentlightning.annotation") && json_object_size(attrs))
        return lax_float(json_object_get(attrs, "reward"), value);
    return false;
}

json_t *adapter_span_final_reward(const adapter_spans *s)
{
    for (int i = s->n - 1; i >= 0; i--) {
        double v;
        if (adapter_reward_value(s->v[i].name, s->v[i].attrs, &v)) return json_real(v);
    }
    return NULL;
}

/* ---- the trace tree (TraceTree) ---- */

typedef struct tnode {
    const char *id;
    const char *name;
    json_t *attrs;
    bool has_start, has_end;
    double start, end;
    struct tnode **kids;
    int nkids, cap;
    /* derived, filled once */
    int reward_state; /* 0 unknown, 1 reward, 2 none */
    double reward;
    int order; /* position in the traverse() list, for stable sorting */
} tnode;

typedef struct tree_ctx {
    agl_arena a;
    const adapter_spans *s;
    json_t *empty; /* attributes of synthetic nodes */
} tree_ctx;

static void kid_add(tree_ctx *t, tnode *p, tnode *c)
{
    if (p->nkids == p->cap) {
        int cap = p->cap ? p->cap * 2 : 4;
        tnode **nk = agl_arena_alloc(&t->a, sizeof *nk * (size_t)cap);
        if (p->nkids) memcpy(nk, p->kids, sizeof *nk * (size_t)p->nkids);
        p->kids = nk;
        p->cap = cap;
    }
    p->kids[p->nkids++] = c;
}

static void kid_remove(tnode *p, tnode *c)
{
    for (int i = 0; i < p->nkids; i++)
        if (p->kids[i] == c) {
            memmove(&p->kids[i], &p->kids[i + 1], sizeof *p->kids * (size_t)(p->nkids - i - 1));
            p->nkids--;
            return;
        }
}

typedef struct build_ctx {
    tree_ctx *t;
    strmap id_to_span;  /* span_id → index of the last span with it */
    strmap parent_list; /* parent id → index into lists */
    int **lists;        /* child span indexes per parent id */
    int *lens, *caps;
    const char **parent_ids; /* in first-appearance order */
    int nparents;
    strmap on_stack; /* ids being visited: a duplicated span id must not loop */
} build_ctx;

static tnode *visit(build_ctx *b, const char *id)
{
    tree_ctx *t = b->t;
    tnode *n = agl_arena_calloc(&t->a, sizeof *n);
    n->id = id;
    strmap_put(&b->on_stack, id, 1);
    int li = strmap_get(&b->parent_list, id, -1);
    if (li >= 0)
        for (int i = 0; i < b->lens[li]; i++) {
            const adapter_span *c = &t->s->v[b->lists[li][i]];
            if (strmap_get(&b->on_stack, c->span_id, 0)) continue;
            kid_add(t, n, visit(b, c->span_id));
        }
    strmap_put(&b->on_stack, id, 0);
    int si = strmap_get(&b->id_to_span, id, -1);
    if (si >= 0) {
        const adapter_span *sp = &t->s->v[si];
        n->name = sp->name;
        n->attrs = sp->attrs;
        n->has_start = sp->has_start, n->start = sp->start;
        n->has_end = sp->has_end, n->end = sp->end;
    } else {
        /* A lost parent: min start / max end of its children. */
        n->name = "agentlightning.virtual";
        n->attrs = t->empty;
        for (int i = 0; i < n->nkids; i++) {
            tnode *c = n->kids[i];
            if (c->has_start && (!n->has_start || c->start < n->start))
                n->start = c->start, n->has_start = true;
            if (c->has_end && (!n->has_end || c->end > n->end)) n->end = c->end, n->has_end = true;
        }
    }
    return n;
}

static tnode *tree_build(tree_ctx *t)
{
    const adapter_spans *s = t->s;
    build_ctx b;
    memset(&b, 0, sizeof b);
    b.t = t;
    strmap_init(&b.id_to_span, &t->a, (size_t)s->n);
    strmap_init(&b.parent_list, &t->a, (size_t)s->n);
    strmap_init(&b.on_stack, &t->a, (size_t)s->n * 2);
    b.lists = agl_arena_calloc(&t->a, sizeof *b.lists * (size_t)(s->n + 1));
    b.lens = agl_arena_calloc(&t->a, sizeof *b.lens * (size_t)(s->n + 1));
    b.caps = agl_arena_calloc(&t->a, sizeof *b.caps * (size_t)(s->n + 1));
    b.parent_ids = agl_arena_calloc(&t->a, sizeof *b.parent_ids * (size_t)(s->n + 1));
    const char **roots = agl_arena_calloc(&t->a, sizeof *roots * (size_t)(2 * s->n + 1));
    int nroots = 0;
    for (int i = 0; i < s->n; i++) strmap_put(&b.id_to_span, s->v[i].span_id, i);
    for (int i = 0; i < s->n; i++) {
        const adapter_span *sp = &s->v[i];
        if (!sp->parent_id) {
            roots[nroots++] = sp->span_id;
            continue;
        }
        int li = strmap_get(&b.parent_list, sp->parent_id, -1);
        if (li < 0) {
            li = b.nparents;
            b.parent_ids[b.nparents++] = sp->parent_id;
            strmap_put(&b.parent_list, sp->parent_id, li);
        }
        if (b.lens[li] == b.caps[li]) {
            int cap = b.caps[li] ? b.caps[li] * 2 : 4;
            int *nl = agl_arena_alloc(&t->a, sizeof *nl * (size_t)cap);
            if (b.lens[li]) memcpy(nl, b.lists[li], sizeof *nl * (size_t)b.lens[li]);
            b.lists[li] = nl;
            b.caps[li] = cap;
        }
        b.lists[li][b.lens[li]++] = i;
    }
    /* Lost parents (e.g. a dropped session span) become roots, in first-appearance order (the
     * reference iterates a set here, so its order among several lost parents is arbitrary). */
    for (int i = 0; i < b.nparents; i++)
        if (strmap_get(&b.id_to_span, b.parent_ids[i], -1) < 0) roots[nroots++] = b.parent_ids[i];
    if (nroots == 0) return NULL;
    if (nroots == 1) return visit(&b, roots[0]);
    tnode *vr = agl_arena_calloc(&t->a, sizeof *vr);
    vr->id = "virtual-root";
    vr->name = "virtual-root";
    vr->attrs = t->empty;
    for (int i = 0; i < nroots; i++) kid_add(t, vr, visit(&b, roots[i]));
    vr->has_start = vr->kids[0]->has_start, vr->start = vr->kids[0]->start;
    vr->has_end = vr->kids[nroots - 1]->has_end, vr->end = vr->kids[nroots - 1]->end;
    return vr;
}

typedef struct nodelist {
    tnode **v;
    int n, cap;
} nodelist;

static void nl_push(tree_ctx *t, nodelist *l, tnode *n)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        tnode **nv = agl_arena_alloc(&t->a, sizeof *nv * (size_t)cap);
        if (l->n) memcpy(nv, l->v, sizeof *nv * (size_t)l->n);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = n;
}

static void traverse(tree_ctx *t, tnode *n, nodelist *out)
{
    nl_push(t, out, n);
    for (int i = 0; i < n->nkids; i++) traverse(t, n->kids[i], out);
}

static bool is_descendant(const tnode *root, const tnode *n)
{
    if (root == n) return true;
    for (int i = 0; i < root->nkids; i++)
        if (is_descendant(root->kids[i], n)) return true;
    return false;
}

static void repair_hierarchy(tree_ctx *t, tnode *self)
{
    while (self->nkids == 1) self = self->kids[0];
    int nrep = self->nkids;
    tnode **snapshot = agl_arena_alloc(&t->a, sizeof *snapshot * (size_t)(nrep ? nrep : 1));
    if (nrep) memcpy(snapshot, self->kids, sizeof *snapshot * (size_t)nrep);
    for (int r = 0; r < nrep; r++) {
        if (self->nkids == 1) break;
        tnode *c = snapshot[r];
        if (!c->has_start || !c->has_end) continue;
        nodelist all = {0};
        traverse(t, self, &all);
        tnode *best = NULL;
        double best_delta = INFINITY;
        for (int i = 0; i < all.n; i++) {
            tnode *n = all.v[i];
            if (!strcmp(n->id, c->id) || n == self || !n->has_start || !n->has_end) continue;
            if (n->start <= c->start && n->end >= c->end) {
                double delta = n->end - c->end + c->start - n->start;
                /* Moving c under its own descendant would make a cycle (the reference then
                 * recurses forever); such candidates are skipped. */
                if (delta > 0 && delta < best_delta && !is_descendant(c, n)) {
                    best_delta = delta;
                    best = n;
                }
            }
        }
        if (best) {
            kid_remove(self, c);
            kid_add(t, best, c);
        }
    }
}

static const char *attr_str(const json_t *attrs, const char *key)
{
    return obj_str(attrs, key);
}

static bool attr_is(const json_t *attrs, const char *key, const char *want)
{
    const char *v = attr_str(attrs, key);
    return v && !strcmp(v, want);
}

static const char *agent_name(const tnode *n)
{
    const json_t *a = n->attrs;
    const char *v;
    if ((v = attr_str(a, "agent.name"))) return v;
    if (attr_is(a, "agentops.span.kind", "agent") && (v = attr_str(a, "operation.name"))) return v;
    if ((v = attr_str(a, "recipient_agent_type"))) return v;
    if ((v = attr_str(a, "langchain.chain.type"))) return v;
    if ((v = attr_str(a, "executor.id"))) return v;
    if (attr_is(a, "type", "agent") && (v = attr_str(a, "agentlightning.operation.input.name")))
        return v;
    if (!strncmp(n->name, "langchain.Chain.", 16) && (v = attr_str(a, "lc_name"))) return v;
    return NULL;
}

static bool node_reward(tnode *n, double *v)
{
    if (n->reward_state == 0) {
        n->reward_state = adapter_reward_value(n->name, n->attrs, &n->reward) ? 1 : 2;
    }
    *v = n->reward;
    return n->reward_state == 1;
}

static bool is_reward_span(tnode *n)
{
    double v;
    if (node_reward(n, &v)) return true;
    return !strcmp(n->name, "agentlightning.operation") &&
           attr_is(n->attrs, "agentlightning.operation.name", "agentlightning.reward");
}

typedef struct llm_call {
    tnode *node;
    const char *agent; /* within_matching_subtree at the call */
} llm_call;

typedef struct find_ctx {
    tree_ctx *t;
    regex_t llm_re, agent_re;
    bool has_agent_re;
    strmap seen; /* response ids */
    llm_call *calls;
    int ncalls, cap;
} find_ctx;

/* within_reward: -1 None, 0 False, 1 True; within_llm_call likewise (always starts False). */
static void find_llm_calls(find_ctx *f, tnode *n, const char *within_agent, int within_reward,
                           int within_llm_call)
{
    bool is_call =
        within_agent && within_reward != 1 && regexec(&f->llm_re, n->name, 0, NULL, 0) == 0;
    if (is_call) {
        const char *rid = attr_str(n->attrs, "gen_ai.response.id");
        if (!rid) rid = attr_str(n->attrs, "agentlightning.operation.output.id");
        if (!rid && within_llm_call == 1) is_call = false;
        if (rid && strmap_get(&f->seen, rid, 0)) is_call = false;
        if (is_call) {
            if (f->ncalls == f->cap) {
                int cap = f->cap ? f->cap * 2 : 16;
                llm_call *nc = agl_arena_alloc(&f->t->a, sizeof *nc * (size_t)cap);
                if (f->ncalls) memcpy(nc, f->calls, sizeof *nc * (size_t)f->ncalls);
                f->calls = nc;
                f->cap = cap;
            }
            f->calls[f->ncalls++] = (llm_call){n, within_agent};
            if (rid) {
                if (f->seen.n * 2 + 2 > f->seen.cap) {
                    strmap bigger;
                    strmap_init(&bigger, &f->t->a, f->seen.cap);
                    for (size_t i = 0; i < f->seen.cap; i++)
                        if (f->seen.keys[i]) strmap_put(&bigger, f->seen.keys[i], 1);
                    f->seen = bigger;
                }
                strmap_put(&f->seen, rid, 1);
            }
            if (within_llm_call != -1) within_llm_call = 1;
        }
    }
    const char *an = agent_name(n);
    if (an) {
        if (!f->has_agent_re || regexec(&f->agent_re, an, 0, NULL, 0) == 0)
            within_agent = an;
        else
            within_agent = NULL;
    }
    if (within_reward != -1 && is_reward_span(n)) within_reward = 1;
    for (int i = 0; i < n->nkids; i++)
        find_llm_calls(f, n->kids[i], within_agent, within_reward, within_llm_call);
}

/* _attributes_get_ids_multiple: the first key holding a list of ints (an incref'd copy). */
static json_t *ids_first(const json_t *attrs, const char *const *keys, int n)
{
    for (int i = 0; i < n; i++) {
        json_t *v = json_object_get(attrs, keys[i]);
        if (!v) continue;
        if (!json_is_array(v)) continue;
        bool ok = true;
        for (size_t k = 0; ok && k < json_array_size(v); k++)
            ok = json_is_integer(json_array_get(v, k));
        if (ok) return json_deep_copy(v);
    }
    return json_array();
}

static void image_urls_of_message(const json_t *msg, json_t *out)
{
    if (!json_is_object(msg)) return;
    json_t *content = json_object_get(msg, "content");
    if (!content) return;
    json_t *parsed = NULL;
    if (json_is_string(content)) {
        parsed = json_loads(json_string_value(content), JSON_DECODE_ANY, NULL);
        if (!parsed) return;
        content = parsed;
    }
    if (json_is_array(content))
        for (size_t i = 0; i < json_array_size(content); i++) {
            json_t *part = json_array_get(content, i);
            if (!json_is_object(part) || !attr_is(part, "type", "image_url")) continue;
            json_t *iu = json_object_get(part, "image_url");
            if (!json_is_object(iu)) continue;
            json_t *url = json_object_get(iu, "url");
            if (url) json_array_append(out, url);
        }
    json_decref(parsed);
}

static json_t *image_urls(const json_t *raw)
{
    json_t *out = json_array();
    if (json_is_array(raw)) {
        for (size_t i = 0; i < json_array_size(raw); i++)
            image_urls_of_message(json_array_get(raw, i), out);
    } else if (json_is_object(raw)) {
        /* numeric keys in numeric order, else the dict is one message */
        size_t nnum = 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)raw, k, v) nnum += is_digits(k, strlen(k));
        if (!nnum) {
            image_urls_of_message(raw, out);
        } else {
            const char **keys = calloc(nnum, sizeof *keys);
            size_t m = 0;
            json_object_foreach((json_t *)raw, k, v) if (is_digits(k, strlen(k))) keys[m++] = k;
            /* insertion sort by integer value, stable */
            for (size_t i = 1; i < m; i++) {
                const char *x = keys[i];
                size_t j = i;
                while (j > 0 && strtoull(keys[j - 1], NULL, 10) > strtoull(x, NULL, 10)) {
                    keys[j] = keys[j - 1];
                    j--;
                }
                keys[j] = x;
            }
            for (size_t i = 0; i < m; i++)
                image_urls_of_message(json_object_get(raw, keys[i]), out);
            free(keys);
        }
    }
    return out;
}

static json_t *json_or_null(json_t *j)
{
    return j ? j : json_null();
}

static json_t *span_to_triplet(const tnode *n, const char *agent)
{
    static const char *const pkeys[] = {"prompt_token_ids",
                                        "agentlightning.operation.output.prompt_token_ids"};
    static const char *const rkeys[] = {
        "response_token_ids",
        "agentlightning.operation.output.response_token_ids.0",
        "agentlightning.operation.output.choices.0.token_ids",
        "agentlightning.operation.output.choices.0.provider_specific_fields.token_ids",
    };
    const json_t *a = n->attrs;
    const char *rid = attr_str(a, "gen_ai.response.id");
    if (!rid) rid = attr_str(a, "agentlightning.operation.output.id");
    json_t *req = unflatten_first(a, "gen_ai.request", "agentlightning.operation.input");
    json_t *resp = unflatten_first(a, "gen_ai.response", "agentlightning.operation.output");
    if (json_is_object(req)) json_object_del(req, "messages");
    if (json_is_object(resp)) {
        json_object_del(resp, "choices");
        json_object_del(resp, "prompt_token_ids");
        json_object_del(resp, "response_token_ids");
    }
    json_t *prompt_raw =
        unflatten_first(a, "gen_ai.prompt", "agentlightning.operation.input.messages");
    json_t *compl_raw =
        unflatten_first(a, "gen_ai.completion", "agentlightning.operation.output.choices");
    json_t *prompt = json_object();
    json_object_set_new(prompt, "token_ids", ids_first(a, pkeys, 2));
    json_object_set_new(prompt, "image_urls", image_urls(prompt_raw));
    json_object_set_new(prompt, "raw_content", json_or_null(prompt_raw));
    /* key order as the reference builds it */
    json_t *p2 = json_object();
    json_object_set(p2, "token_ids", json_object_get(prompt, "token_ids"));
    json_object_set(p2, "raw_content", json_object_get(prompt, "raw_content"));
    json_object_set(p2, "image_urls", json_object_get(prompt, "image_urls"));
    json_decref(prompt);
    json_t *response = json_object();
    json_object_set_new(response, "token_ids", ids_first(a, rkeys, 4));
    json_object_set_new(response, "raw_content", json_or_null(compl_raw));
    json_t *lp = json_object_get(a, "logprobs.content");
    if (json_is_string(lp)) {
        json_t *parsed = json_loads(json_string_value(lp), JSON_DECODE_ANY, NULL);
        if (parsed) json_object_set_new(response, "logprobs", parsed);
    }
    json_t *meta = json_object();
    json_object_set_new(meta, "request", json_or_null(req));
    json_object_set_new(meta, "response", json_or_null(resp));
    json_object_set_new(meta, "response_id", rid ? json_string(rid) : json_null());
    json_object_set_new(meta, "agent_name", json_string(agent));
    json_t *t = json_object();
    json_object_set_new(t, "prompt", p2);
    json_object_set_new(t, "response", response);
    json_object_set_new(t, "reward", json_null());
    json_object_set_new(t, "metadata", meta);
    return t;
}

static bool empty_ids(const json_t *part)
{
    return json_array_size(json_object_get(part, "token_ids")) == 0;
}

typedef struct pending {
    tnode *node;
    double end;
} pending;

static int cmp_start(const void *pa, const void *pb)
{
    const tnode *a = *(tnode *const *)pa, *b = *(tnode *const *)pb;
    double sa = a->has_start ? a->start : -INFINITY, sb = b->has_start ? b->start : -INFINITY;
    if (sa < sb) return -1;
    if (sa > sb) return 1;
    return a->order - b->order; /* stable */
}

/* Assigns one reward to the newest finished, unrewarded call among pend (match_rewards). */
static void assign_reward(tnode *rnode, double value, pending *pend, int npend, strmap *rewarded,
                          json_t **slots, strmap *slot_of)
{
    for (int i = npend - 1; i >= 0; i--) {
        double rs = rnode->has_start ? rnode->start : -INFINITY;
        if (pend[i].end > rs) continue;
        if (strmap_get(rewarded, pend[i].node->id, 0)) continue;
        strmap_put(rewarded, pend[i].node->id, 1);
        int si = strmap_get(slot_of, pend[i].node->id, -1);
        if (si >= 0) {
            json_decref(slots[si]);
            slots[si] = json_real(value);
        }
        return;
    }
}

static json_t *tracer_triplets(const adapter_spans *s, const adapter_opts *o)
{
    json_t *out = json_array();
    if (s->n == 0) return out;
    tree_ctx t;
    agl_arena_init(&t.a);
    t.s = s;
    t.empty = json_object();
    tnode *root = tree_build(&t);
    if (!root) goto done;
    if (o->repair_hierarchy) repair_hierarchy(&t, root);
    find_ctx f;
    memset(&f, 0, sizeof f);
    f.t = &t;
    if (regex_compile(o->llm_call_match, &f.llm_re) != 0) goto done;
    if (o->agent_match) {
        if (regex_compile(o->agent_match, &f.agent_re) != 0) {
            regfree(&f.llm_re);
            goto done;
        }
        f.has_agent_re = true;
    }
    strmap_init(&f.seen, &t.a, 64);
    find_llm_calls(&f, root, o->agent_match ? NULL : "*", o->exclude_llm_call_in_reward ? 0 : -1,
                   0);
    regfree(&f.llm_re);
    if (f.has_agent_re) regfree(&f.agent_re);

    /* Triplets of the kept calls; the reward slot is filled by matching below. */
    json_t **trip = agl_arena_calloc(&t.a, sizeof *trip * (size_t)(f.ncalls + 1));
    json_t **reward = agl_arena_calloc(&t.a, sizeof *reward * (size_t)(f.ncalls + 1));
    tnode **kept = agl_arena_calloc(&t.a, sizeof *kept * (size_t)(f.ncalls + 1));
    int nkept = 0;
    strmap slot_of;
    strmap_init(&slot_of, &t.a, (size_t)f.ncalls + 1);
    for (int i = 0; i < f.ncalls; i++) {
        json_t *tr = span_to_triplet(f.calls[i].node, f.calls[i].agent);
        if (o->skip_empty_token_spans && (empty_ids(json_object_get(tr, "prompt")) ||
                                          empty_ids(json_object_get(tr, "response")))) {
            json_decref(tr);
            continue;
        }
        trip[nkept] = tr;
        kept[nkept] = f.calls[i].node;
        reward[nkept] = json_null();
        /* rewards are keyed by node id: a repeated id shares the first slot's reward map entry
         * in the reference (rewards.get(id)); every triplet with that id reads it. */
        if (strmap_get(&slot_of, kept[nkept]->id, -1) < 0)
            strmap_put(&slot_of, kept[nkept]->id, nkept);
        nkept++;
    }
    strmap is_call;
    strmap_init(&is_call, &t.a, (size_t)nkept + 1);
    for (int i = 0; i < nkept; i++) strmap_put(&is_call, kept[i]->id, 1);
    strmap rewarded;
    strmap_init(&rewarded, &t.a, (size_t)nkept + 1);
    nodelist all = {0};
    traverse(&t, root, &all);
    for (int i = 0; i < all.n; i++) all.v[i]->order = i;
    pending *pend = agl_arena_alloc(&t.a, sizeof *pend * (size_t)(all.n + 1));
    if (o->reward_match == REWARD_FIRST_OCCURRENCE) {
        tnode **sorted = agl_arena_alloc(&t.a, sizeof *sorted * (size_t)all.n);
        memcpy(sorted, all.v, sizeof *sorted * (size_t)all.n);
        qsort(sorted, (size_t)all.n, sizeof *sorted, cmp_start);
        int npend = 0;
        for (int i = 0; i < all.n; i++) {
            tnode *it = sorted[i];
            if (strmap_get(&is_call, it->id, 0))
                pend[npend++] = (pending){it, it->has_end ? it->end : INFINITY};
            double v;
            if (node_reward(it, &v)) assign_reward(it, v, pend, npend, &rewarded, reward, &slot_of);
        }
    } else {
        for (int i = 0; i < all.n; i++) {
            tnode *it = all.v[i];
            int npend = 0;
            for (int k = 0; k < it->nkids; k++) {
                tnode *c = it->kids[k];
                if (strmap_get(&is_call, c->id, 0))
                    pend[npend++] = (pending){c, c->has_end ? c->end : INFINITY};
                double v;
                if (node_reward(c, &v))
                    assign_reward(c, v, pend, npend, &rewarded, reward, &slot_of);
            }
        }
    }
    for (int i = 0; i < nkept; i++) {
        int si = strmap_get(&slot_of, kept[i]->id, i);
        json_object_set(trip[i], "reward", reward[si]);
        json_array_append_new(out, trip[i]);
    }
    for (int i = 0; i < nkept; i++) json_decref(reward[i]);
done:
    json_decref(t.empty);
    agl_arena_free(&t.a);
    return out;
}

/* ---- LlmProxyTraceToTriplet ---- */

static json_t *literal_maybe(json_t *v)
{
    if (!json_is_string(v)) return json_incref(v);
    json_t *p = adapter_py_literal(json_string_value(v));
    return p ? p : json_incref(v);
}

static bool int_list(const json_t *v)
{
    if (!json_is_array(v)) return false;
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!json_is_integer(json_array_get(v, i))) return false;
    return true;
}

static void tokens_raw(const json_t *a, json_t **prompt, json_t **resp)
{
    json_t *p = literal_maybe(json_object_get(a, "llm.hosted_vllm.prompt_token_ids"));
    if (int_list(p)) *prompt = json_incref(p);
    json_decref(p);
    json_t *r = literal_maybe(json_object_get(a, "llm.hosted_vllm.response_token_ids"));
    if (json_is_array(r) && json_array_size(r) > 0 && json_is_array(json_array_get(r, 0)) &&
        int_list(json_array_get(r, 0)))
        *resp = json_incref(json_array_get(r, 0));
    json_decref(r);
    if (!*resp || !json_array_size(*resp)) {
        json_t *c = literal_maybe(json_object_get(a, "llm.hosted_vllm.choices"));
        if (json_is_array(c) && json_array_size(c) > 0) {
            json_t *cand = json_array_get(c, 0);
            json_t *tids = json_is_object(cand) ? json_object_get(cand, "token_ids") : NULL;
            if (int_list(tids)) {
                json_decref(*resp);
                *resp = json_incref(tids);
            }
        }
        json_decref(c);
    }
}

static void tokens_openai(const json_t *a, json_t **prompt, json_t **resp)
{
    const char *keys[2] = {"prompt_token_ids", "response_token_ids"};
    json_t **outs[2] = {prompt, resp};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(a, keys[i]);
        if (!truthy(v)) continue;
        json_t *p = literal_maybe(v);
        if (int_list(p)) *outs[i] = json_incref(p);
        json_decref(p);
    }
}

typedef struct proxy_item {
    const adapter_span *s;
    json_t *prompt, *resp;
    const char *rid;
    int order;
} proxy_item;

static int cmp_seq_start(const void *pa, const void *pb)
{
    const adapter_span *a = *(const adapter_span *const *)pa, *b = *(const adapter_span *const *)pb;
    if (a->sequence_id != b->sequence_id) return a->sequence_id < b->sequence_id ? -1 : 1;
    double sa = a->has_start ? a->start : -INFINITY, sb = b->has_start ? b->start : -INFINITY;
    if (sa != sb) return sa < sb ? -1 : 1;
    return a < b ? -1 : a > b; /* stable: input order */
}

static json_t *proxy_triplets(const adapter_spans *s)
{
    json_t *out = json_array();
    int n = s->n;
    if (!n) return out;
    agl_arena a;
    agl_arena_init(&a);
    const adapter_span **sorted = agl_arena_alloc(&a, sizeof *sorted * (size_t)n);
    for (int i = 0; i < n; i++) sorted[i] = &s->v[i];
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_seq_start);
    proxy_item *items = agl_arena_calloc(&a, sizeof *items * (size_t)n);
    int ni = 0;
    strmap seen;
    strmap_init(&seen, &a, (size_t)n);
    for (int i = 0; i < n; i++) {
        const adapter_span *sp = sorted[i];
        json_t *prompt = NULL, *resp = NULL;
        if (!strcmp(sp->name, "raw_gen_ai_request"))
            tokens_raw(sp->attrs, &prompt, &resp);
        else if (!strcmp(sp->name, "litellm_request"))
            tokens_openai(sp->attrs, &prompt, &resp);
        if (json_array_size(prompt) && json_array_size(resp)) {
            json_t *rv = json_object_get(sp->attrs, "gen_ai.response.id");
            if (!truthy(rv)) rv = json_object_get(sp->attrs, "llm.hosted_vllm.id");
            const char *rid =
                json_is_string(rv) && json_string_length(rv) ? json_string_value(rv) : NULL;
            if (rid && strmap_get(&seen, rid, 0)) {
                json_decref(prompt);
                json_decref(resp);
                continue;
            }
            if (rid) strmap_put(&seen, rid, 1);
            items[ni] = (proxy_item){sp, prompt, resp, rid, ni};
            ni++;
        } else {
            json_decref(prompt);
            json_decref(resp);
        }
    }
    /* items are already in (sequence, start) order; the reference's re-sort by sequence is
     * stable and so changes nothing. Rewards by ascending sequence (stable). */
    bool *assigned = agl_arena_calloc(&a, (size_t)ni + 1);
    double *value = agl_arena_calloc(&a, sizeof *value * ((size_t)ni + 1));
    for (int i = 0; i < n; i++) {
        double v;
        if (!adapter_reward_value(sorted[i]->name, sorted[i]->attrs, &v)) continue;
        for (int k = ni - 1; k >= 0; k--) {
            if (assigned[k]) continue;
            if (items[k].s->sequence_id < sorted[i]->sequence_id) {
                assigned[k] = true;
                value[k] = v;
                break;
            }
        }
    }
    for (int k = 0; k < ni; k++) {
        json_t *t = json_object();
        json_t *p = json_object(), *r = json_object(), *m = json_object();
        json_object_set_new(p, "token_ids", items[k].prompt);
        json_object_set_new(r, "token_ids", items[k].resp);
        json_object_set_new(m, "response_id",
                            items[k].rid ? json_string(items[k].rid) : json_null());
        json_object_set_new(t, "prompt", p);
        json_object_set_new(t, "response", r);
        json_object_set_new(t, "reward", assigned[k] ? json_real(value[k]) : json_null());
        json_object_set_new(t, "metadata", m);
        json_array_append_new(out, t);
    }
    agl_arena_free(&a);
    return out;
}

json_t *adapter_triplets(const adapter_spans *s, const adapter_opts *o)
{
    adapter_kind k = o->kind;
    if (k == ADAPTER_AUTO) {
        k = ADAPTER_TRACER;
        for (int i = 0; i < s->n; i++)
            if (!strcmp(s->v[i].name, "raw_gen_ai_request") ||
                !strcmp(s->v[i].name, "litellm_request"))
                k = ADAPTER_LLM_PROXY;
    }
    return k == ADAPTER_LLM_PROXY ? proxy_triplets(s) : tracer_triplets(s, o);
}

json_t *adapter_final_reward(const json_t *triplets)
{
    for (size_t i = json_array_size(triplets); i-- > 0;) {
        json_t *r = json_object_get(json_array_get(triplets, i), "reward");
        if (r && !json_is_null(r)) return r;
    }
    return NULL;
}

/* ---- trajectory merging ---- */

static json_t *token_ids_of(const json_t *triplet, const char *part)
{
    json_t *ids = json_object_get(json_object_get(triplet, part), "token_ids");
    return json_is_array(ids) ? ids : NULL;
}

json_t *adapter_trajectories(const json_t *triplets, const json_t *final_reward)
{
    json_t *out = json_array();
    size_t n = json_array_size(triplets);
    json_t *group = NULL; /* the open group */
    json_t *ctx = json_array();
    for (size_t k = 0; k < n; k++) {
        const json_t *t = json_array_get(triplets, k);
        json_t *p = token_ids_of(t, "prompt"), *r = token_ids_of(t, "response");
        size_t pl = json_array_size(p), rl = json_array_size(r);
        json_t *full = json_array();
        for (size_t i = 0; i < pl; i++) json_array_append(full, json_array_get(p, i));
        for (size_t i = 0; i < rl; i++) json_array_append(full, json_array_get(r, i));
        bool prefix = json_array_size(ctx) <= json_array_size(full);
        for (size_t i = 0; prefix && i < json_array_size(ctx); i++)
            prefix = json_equal(json_array_get(ctx, i), json_array_get(full, i));
        if (group && prefix) {
            /* Tokens past the previous context: prompt part = observation (mask 0), then the
             * response (mask 1). The reference's [-new:] slice is the same when new > 0. */
            json_t *resp = json_object_get(group, "response_ids");
            json_t *mask = json_object_get(group, "response_mask");
            for (size_t i = json_array_size(ctx); i < pl + rl; i++) {
                json_array_append(resp, json_array_get(full, i));
                json_array_append_new(mask, json_integer(i < pl ? 0 : 1));
            }
            json_array_append_new(json_object_get(group, "turns"), json_integer((json_int_t)k));
        } else {
            if (group) json_array_append_new(out, group);
            group = json_object();
            json_t *turns = json_array();
            json_array_append_new(turns, json_integer((json_int_t)k));
            json_object_set_new(group, "turns", turns);
            json_object_set_new(group, "prompt_ids", p ? json_deep_copy(p) : json_array());
            json_object_set_new(group, "response_ids", r ? json_deep_copy(r) : json_array());
            json_t *mask = json_array();
            for (size_t i = 0; i < rl; i++) json_array_append_new(mask, json_integer(1));
            json_object_set_new(group, "response_mask", mask);
            json_object_set(group, "reward", final_reward ? (json_t *)final_reward : json_null());
        }
        json_decref(ctx);
        ctx = full;
    }
    if (group) json_array_append_new(out, group);
    json_decref(ctx);
    return out;
}

/* ---- TraceToMessages ---- */

static bool first_seg_digits(const char *k)
{
    const char *dot = strchr(k, '.');
    return is_digits(k, dot ? (size_t)(dot - k) : strlen(k));
}

/* group_genai_dict over relative keys (prefix already stripped): flat is an object. */
static json_t *group_rel(const json_t *flat)
{
    const char *k;
    json_t *v;
    bool indexed = false;
    json_object_foreach((json_t *)flat, k, v) indexed |= first_seg_digits(k);
    if (indexed) {
        /* group by integer index; non-numeric keys are dropped */
        json_t *byidx = json_object(); /* canonical index → object of rest → v */
        json_object_foreach((json_t *)flat, k, v)
        {
            if (!first_seg_digits(k)) continue;
            const char *dot = strchr(k, '.');
            char idx[32];
            snprintf(idx, sizeof idx, "%llu", strtoull(k, NULL, 10));
            json_t *g = json_object_get(byidx, idx);
            if (!g) {
                g = json_object();
                json_object_set_new(byidx, idx, g);
            }
            json_object_set(g, dot ? dot + 1 : "", v);
        }
        size_t m = json_object_size(byidx);
        unsigned long long *idxs = calloc(m ? m : 1, sizeof *idxs);
        size_t i = 0;
        json_object_foreach(byidx, k, v) idxs[i++] = strtoull(k, NULL, 10);
        for (size_t a = 1; a < m; a++)
            for (size_t b = a; b > 0 && idxs[b - 1] > idxs[b]; b--) {
                unsigned long long x = idxs[b];
                idxs[b] = idxs[b - 1];
                idxs[b - 1] = x;
            }
        json_t *out = json_array();
        for (i = 0; i < m; i++) {
            char key[32];
            snprintf(key, sizeof key, "%llu", idxs[i]);
            json_array_append_new(out, group_rel(json_object_get(byidx, key)));
        }
        free(idxs);
        json_decref(byidx);
        return out;
    }
    json_t *out = json_object();
    json_t *nested = json_object(); /* head → object of tail → v */
    json_object_foreach((json_t *)flat, k, v)
    {
        const char *dot = strchr(k, '.');
        if (!dot) {
            json_object_set(out, k, v);
            continue;
        }
        char head[256];
        size_t hl = (size_t)(dot - k);
        if (hl >= sizeof head) hl = sizeof head - 1;
        memcpy(head, k, hl);
        head[hl] = 0;
        json_t *g = json_object_get(nested, head);
        if (!g) {
            g = json_object();
            json_object_set_new(nested, head, g);
        }
        json_object_set(g, dot + 1, v);
    }
    json_object_foreach(nested, k, v) json_object_set_new(out, k, group_rel(v));
    json_decref(nested);
    return out;
}

json_t *adapter_group_genai(const json_t *attrs, const char *prefix)
{
    size_t pl = strlen(prefix);
    json_t *flat = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)attrs, k, v) if (!strncmp(k, prefix, pl) && k[pl] == '.')
        json_object_set(flat, k + pl + 1, v);
    json_t *out = group_rel(flat);
    json_decref(flat);
    return out;
}

static json_t *str_or_copy(const json_t *v)
{
    return v ? json_incref((json_t *)v) : json_null();
}

/* One prompt message → OpenAI message; NULL + *why when the reference's validation fails. */
static json_t *prompt_message(const json_t *msg, const char **why)
{
    const char *role = json_is_object(msg) ? obj_str(msg, "role") : NULL;
    if (!role) {
        *why = "a prompt message has no role";
        return NULL;
    }
    json_t *m = json_object();
    json_t *tc = json_object_get(msg, "tool_calls");
    if (!strcmp(role, "assistant") && tc) {
        json_object_set_new(m, "role", json_string("assistant"));
        json_object_set_new(m, "content", json_null());
        json_t *calls = json_array();
        for (size_t i = 0; json_is_array(tc) && i < json_array_size(tc); i++) {
            json_t *c = json_array_get(tc, i);
            json_t *call = json_object(), *fn = json_object();
            json_object_set_new(call, "id", str_or_copy(json_object_get(c, "id")));
            json_object_set_new(call, "type", json_string("function"));
            json_object_set_new(fn, "name", str_or_copy(json_object_get(c, "name")));
            json_object_set_new(fn, "arguments", str_or_copy(json_object_get(c, "arguments")));
            json_object_set_new(call, "function", fn);
            json_array_append_new(calls, call);
        }
        json_object_set_new(m, "tool_calls", calls);
        return m;
    }
    /* ChatCompletionMessageParam validation: the role picks the message type; only the tool
     * message keeps tool_call_id (and needs it). */
    json_t *content = json_object_get(msg, "content");
    json_t *tcid = json_object_get(msg, "tool_call_id");
    bool known = !strcmp(role, "system") || !strcmp(role, "user") || !strcmp(role, "assistant") ||
                 !strcmp(role, "developer") || !strcmp(role, "tool");
    bool assistant = !strcmp(role, "assistant");
    bool content_ok = !content || json_is_string(content) || json_is_array(content) ||
                      (assistant && json_is_null(content));
    if (!known || !content_ok || (!strcmp(role, "tool") && !json_is_string(tcid))) {
        json_decref(m);
        *why = "a prompt message is not a valid chat message";
        return NULL;
    }
    json_object_set_new(m, "role", json_string(role));
    json_object_set_new(m, "content", content ? json_incref(content) : json_string(""));
    if (!strcmp(role, "tool")) json_object_set(m, "tool_call_id", tcid);
    return m;
}

json_t *adapter_messages(const adapter_spans *s, const char **why)
{
    json_t *out = json_array();
    for (int i = 0; i < s->n; i++) {
        const adapter_span *sp = &s->v[i];
        json_t *prompt = adapter_group_genai(sp->attrs, "gen_ai.prompt");
        json_t *compl = adapter_group_genai(sp->attrs, "gen_ai.completion");
        json_t *request = adapter_group_genai(sp->attrs, "gen_ai.request");
        json_t *response = adapter_group_genai(sp->attrs, "gen_ai.response");
        json_t *conv = NULL, *tools_calls = NULL;
        const char *bad = NULL;
        /* empty groups read as [] / {} */
        if (truthy(prompt) && !json_is_array(prompt)) bad = "a span's gen_ai.prompt is not a list";
        if (truthy(compl ) && !json_is_array(compl ))
            bad = "a span's gen_ai.completion is not a list";
        if (truthy(request) && !json_is_object(request))
            bad = "a span's gen_ai.request is not a dict";
        if (truthy(response) && !json_is_object(response))
            bad = "a span's gen_ai.response is not a dict";
        if (bad) goto fail;
        if (!truthy(prompt) && !truthy(compl ) && !truthy(request) && !truthy(response)) goto next;
        tools_calls = json_array();
        for (int k = 0; k < s->n; k++) {
            if (!s->v[k].parent_id || strcmp(s->v[k].parent_id, sp->span_id)) continue;
            json_t *tc = adapter_group_genai(s->v[k].attrs, "tool");
            if (!json_is_object(tc)) {
                json_decref(tc);
                bad = "a tool call span is not a dict";
                goto fail;
            }
            if (json_object_size(tc))
                json_array_append_new(tools_calls, tc);
            else
                json_decref(tc);
        }
        json_t *msgs = json_array();
        for (size_t k = 0; json_is_array(prompt) && k < json_array_size(prompt); k++) {
            json_t *m = prompt_message(json_array_get(prompt, k), &bad);
            if (!m) {
                json_decref(msgs);
                goto fail;
            }
            json_array_append_new(msgs, m);
        }
        for (size_t k = 0; json_is_array(compl ) && k < json_array_size(compl ); k++) {
            json_t *c = json_array_get(compl, k);
            if (!json_is_object(c)) {
                json_decref(msgs);
                bad = "a completion is not a dict";
                goto fail;
            }
            if (!attr_is(c, "role", "assistant")) continue;
            json_t *m = json_object();
            json_object_set_new(m, "role", json_string("assistant"));
            json_object_set_new(m, "content", str_or_copy(json_object_get(c, "content")));
            if (json_array_size(tools_calls)) {
                json_t *calls = json_array();
                for (size_t t = 0; t < json_array_size(tools_calls); t++) {
                    json_t *tool = json_array_get(tools_calls, t);
                    json_t *call = json_object_get(tool, "call");
                    json_t *tc = json_object(), *fn = json_object();
                    json_object_set_new(tc, "id", str_or_copy(json_object_get(call, "id")));
                    json_object_set_new(tc, "type", str_or_copy(json_object_get(call, "type")));
                    json_object_set_new(fn, "name", str_or_copy(json_object_get(tool, "name")));
                    json_object_set_new(fn, "arguments",
                                        str_or_copy(json_object_get(tool, "parameters")));
                    json_object_set_new(tc, "function", fn);
                    json_array_append_new(calls, tc);
                }
                json_object_set_new(m, "tool_calls", calls);
            }
            json_array_append_new(msgs, m);
        }
        conv = json_object();
        json_object_set_new(conv, "messages", msgs);
        json_t *fns = json_is_object(request) ? json_object_get(request, "functions") : NULL;
        if (fns) {
            json_t *tools = json_array();
            for (size_t k = 0; json_is_array(fns) && k < json_array_size(fns); k++) {
                json_t *fn = json_array_get(fns, k);
                json_t *tool = json_object(), *f = json_object();
                json_object_set_new(tool, "type", json_string("function"));
                json_object_set_new(f, "name", str_or_copy(json_object_get(fn, "name")));
                json_t *desc = json_object_get(fn, "description");
                json_object_set_new(f, "description", desc ? json_incref(desc) : json_string(""));
                json_t *params = json_object_get(fn, "parameters");
                json_t *pp = json_is_string(params)
                                 ? json_loads(json_string_value(params), JSON_DECODE_ANY, NULL)
                                 : (params ? json_incref(params) : json_null());
                json_object_set_new(f, "parameters", pp ? pp : json_incref(params));
                json_object_set_new(tool, "function", f);
                json_array_append_new(tools, tool);
            }
            json_object_set_new(conv, "tools", tools);
        } else {
            json_object_set_new(conv, "tools", json_null());
        }
        json_array_append_new(out, conv);
    next:
        json_decref(tools_calls);
        json_decref(prompt);
        json_decref(compl );
        json_decref(request);
        json_decref(response);
        continue;
    fail:
        json_decref(tools_calls);
        json_decref(prompt);
        json_decref(compl );
        json_decref(request);
        json_decref(response);
        json_decref(out);
        *why = bad;
        return NULL;
    }
    return out;
}

/* ---- Python literals (ast.literal_eval) ---- */

typedef struct lit {
    const char *p;
    int depth;
} lit;

static void lit_ws(lit *l)
{
    while (isspace((unsigned char)*l->p)) l->p++;
}

static json_t *lit_value(lit *l);

static json_t *lit_string(lit *l)
{
    char q = *l->p++;
    agl_buf b;
    agl_buf_init(&b);
    agl_buf_putc(&b, 0);
    b.len = 0;
    for (;;) {
        char c = *l->p++;
        if (!c) {
            agl_buf_free(&b);
            return NULL;
        }
        if (c == q) break;
        if (c != '\\') {
            agl_buf_putc(&b, c);
            continue;
        }
        c = *l->p++;
        switch (c) {
        case 'n':
            agl_buf_putc(&b, '\n');
            break;
        case 't':
            agl_buf_putc(&b, '\t');
            break;
        case 'r':
            agl_buf_putc(&b, '\r');
            break;
        case '0':
            agl_buf_putc(&b, '\0');
            break;
        case '\\':
        case '\'':
        case '"':
            agl_buf_putc(&b, c);
            break;
        case 'x':
        case 'u': {
            int nd = c == 'x' ? 2 : 4;
            unsigned v = 0;
            for (int i = 0; i < nd; i++) {
                char h = *l->p++;
                if (!isxdigit((unsigned char)h)) {
                    agl_buf_free(&b);
                    return NULL;
                }
                v = v * 16 +
                    (unsigned)(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
            }
            /* UTF-8 encode */
            if (v < 0x80) {
                agl_buf_putc(&b, (char)v);
            } else if (v < 0x800) {
                agl_buf_putc(&b, (char)(0xC0 | (v >> 6)));
                agl_buf_putc(&b, (char)(0x80 | (v & 0x3F)));
            } else {
                agl_buf_putc(&b, (char)(0xE0 | (v >> 12)));
                agl_buf_putc(&b, (char)(0x80 | ((v >> 6) & 0x3F)));
                agl_buf_putc(&b, (char)(0x80 | (v & 0x3F)));
            }
            break;
        }
        default:
            if (!c) {
                agl_buf_free(&b);
                return NULL;
            }
            agl_buf_putc(&b, '\\');
            agl_buf_putc(&b, c);
        }
    }
    json_t *s = json_stringn(b.data ? b.data : "", b.len);
    agl_buf_free(&b);
    return s;
}

static json_t *lit_seq(lit *l, char close, bool is_dict)
{
    l->p++;
    json_t *out = is_dict ? json_object() : json_array();
    lit_ws(l);
    while (*l->p != close) {
        json_t *k = lit_value(l);
        if (!k) goto bad;
        lit_ws(l);
        if (is_dict) {
            if (*l->p != ':') {
                json_decref(k);
                goto bad;
            }
            l->p++;
            json_t *v = lit_value(l);
            if (!v) {
                json_decref(k);
                goto bad;
            }
            /* dict keys: strings as they are, other hashables by their JSON text */
            char *ks = json_is_string(k) ? NULL : json_dumps(k, JSON_ENCODE_ANY | JSON_COMPACT);
            json_object_set_new(out, ks ? ks : json_string_value(k), v);
            free(ks);
            json_decref(k);
        } else {
            json_array_append_new(out, k);
        }
        lit_ws(l);
        if (*l->p == ',') {
            l->p++;
            lit_ws(l);
        } else if (*l->p != close) {
            goto bad;
        }
    }
    l->p++;
    return out;
bad:
    json_decref(out);
    return NULL;
}

static json_t *lit_value(lit *l)
{
    if (++l->depth > 64) return NULL;
    lit_ws(l);
    json_t *v = NULL;
    char c = *l->p;
    if (c == '[') {
        v = lit_seq(l, ']', false);
    } else if (c == '(') {
        json_t *items = lit_seq(l, ')', false);
        if (items) {
            v = json_object();
            json_object_set_new(v, "__tuple__", items);
        }
    } else if (c == '{') {
        v = lit_seq(l, '}', true);
    } else if (c == '\'' || c == '"') {
        v = lit_string(l);
    } else if (!strncmp(l->p, "True", 4) && !isalnum((unsigned char)l->p[4])) {
        v = json_true(), l->p += 4;
    } else if (!strncmp(l->p, "False", 5) && !isalnum((unsigned char)l->p[5])) {
        v = json_false(), l->p += 5;
    } else if (!strncmp(l->p, "None", 4) && !isalnum((unsigned char)l->p[4])) {
        v = json_null(), l->p += 4;
    } else if (c == '-' || c == '+' || isdigit((unsigned char)c) || c == '.') {
        const char *s = l->p;
        const char *q = s + (c == '-' || c == '+');
        bool real = false;
        while (isdigit((unsigned char)*q) || *q == '.' || *q == 'e' || *q == 'E' || *q == '_' ||
               ((*q == '-' || *q == '+') && (q[-1] == 'e' || q[-1] == 'E'))) {
            real |= *q == '.' || *q == 'e' || *q == 'E';
            q++;
        }
        char num[64];
        size_t n = 0;
        for (const char *x = s; x < q && n + 1 < sizeof num; x++)
            if (*x != '_') num[n++] = *x;
        num[n] = 0;
        char *end;
        errno = 0;
        if (real) {
            double d = strtod(num, &end);
            if (*end == 0 && end != num) v = json_real(d);
        } else {
            long long i = strtoll(num, &end, 10);
            if (*end == 0 && end != num && !errno) v = json_integer(i);
        }
        if (v) l->p = q;
    }
    l->depth--;
    return v;
}

json_t *adapter_py_literal(const char *text)
{
    lit l = {text, 0};
    json_t *v = lit_value(&l);
    if (!v) return NULL;
    lit_ws(&l);
    if (*l.p) {
        json_decref(v);
        return NULL;
    }
    return v;
}
