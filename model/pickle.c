// Pickle reader for torch state dicts: a tiny stack machine that knows only
// the opcodes and globals torch.save emits for tensors and plain values, so a
// hostile file can at worst produce an error. Objects live in one pool freed
// at the end, so memo cycles cannot leak or loop.
#define _POSIX_C_SOURCE 200809L  // strdup
#include "model/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MAX_STACK = 1 << 20,     // stack entries
    MAX_MARKS = 64,          // open MARKs
    MAX_MEMO = 1 << 22,      // memo slots
    MAX_OBJECTS = 1 << 22,   // objects created
    MAX_DEPTH = 32,          // nested dicts when flattening
    MAX_STORAGES = 1 << 16,
    MAX_NAME = 4096,
};

typedef enum {
    OBJ_NONE, OBJ_BOOL, OBJ_INT, OBJ_FLOAT, OBJ_STR, OBJ_TUPLE, OBJ_LIST, OBJ_DICT,
    OBJ_GLOBAL, OBJ_STORAGE, OBJ_TENSOR
} obj_type;

static const char *const obj_type_names[] = {
    "None", "bool", "int", "float", "str", "tuple", "list", "dict", "global", "storage", "tensor"};

typedef enum { G_ORDERED_DICT, G_REBUILD_TENSOR, G_REBUILD_PARAMETER, G_STORAGE } global_id;

// torch.<Name>Storage classes: element size and how to widen an element.
typedef enum { ST_FLOAT, ST_HALF, ST_BF16, ST_DOUBLE, ST_LONG, ST_INT, ST_SHORT, ST_CHAR,
               ST_BYTE, ST_BOOL, ST_COUNT } storage_type;
static const struct { const char *name; int esize; } storage_types[ST_COUNT] = {
    {"FloatStorage", 4}, {"HalfStorage", 2}, {"BFloat16Storage", 2}, {"DoubleStorage", 8},
    {"LongStorage", 8},  {"IntStorage", 4},  {"ShortStorage", 2},    {"CharStorage", 1},
    {"ByteStorage", 1},  {"BoolStorage", 1}};

typedef struct tensor_view {
    int storage;  // index into the unpickler's storages
    int ndim;
    int64_t offset, size[CKPT_MAX_DIMS], stride[CKPT_MAX_DIMS];
} tensor_view;

typedef struct obj {
    obj_type type;
    union {
        int64_t i;                                  // INT, BOOL
        double f;                                   // FLOAT
        struct { char *s; size_t len; } str;        // STR (NUL-terminated copy)
        struct { struct obj **v; size_t n, cap; } items;  // TUPLE, LIST; DICT: k0,v0,k1,v1..
        struct { global_id id; int stype; } g;      // GLOBAL
        int storage;                                // STORAGE
        tensor_view t;                              // TENSOR
    } u;
} obj;

typedef struct storage {
    char *key;
    int stype;
    int64_t numel;   // as the pickle claims
    uint8_t *bytes;  // record contents, nbytes long (may be shorter than claimed)
    size_t nbytes;
} storage;

typedef struct unpickler {
    const uint8_t *p;
    size_t len, pos;
    obj **stack;
    size_t sn, scap;
    size_t marks[MAX_MARKS];
    int nmarks;
    obj **memo;
    size_t memo_cap, memo_next;
    obj **all;  // pool of every object created
    size_t nall, capall;
    storage *st;
    int nst;
    uint64_t fetched, produced;  // bytes read from records / materialised
    pickle_fetch_fn fetch;
    void *ctx;
    const char *fname;
    char *err;
    size_t errlen;
} unpickler;

static int fail(unpickler *u, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static int fail(unpickler *u, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return ckpt_errf(u->err, u->errlen, "%s: %s", u->fname, msg);
}

static const char *opcode_name(int op) {
    static const struct { unsigned char code; const char *name; } t[] = {
        {'I', "INT"}, {'J', "BININT"}, {'K', "BININT1"}, {'M', "BININT2"}, {'L', "LONG"},
        {0x8a, "LONG1"}, {0x8b, "LONG4"}, {'S', "STRING"}, {'T', "BINSTRING"},
        {'U', "SHORT_BINSTRING"}, {'B', "BINBYTES"}, {'C', "SHORT_BINBYTES"},
        {0x8e, "BINBYTES8"}, {0x96, "BYTEARRAY8"}, {0x97, "NEXT_BUFFER"},
        {0x98, "READONLY_BUFFER"}, {'N', "NONE"}, {0x88, "NEWTRUE"}, {0x89, "NEWFALSE"},
        {'V', "UNICODE"}, {0x8c, "SHORT_BINUNICODE"}, {'X', "BINUNICODE"},
        {0x8d, "BINUNICODE8"}, {'F', "FLOAT"}, {'G', "BINFLOAT"}, {']', "EMPTY_LIST"},
        {'a', "APPEND"}, {'e', "APPENDS"}, {'l', "LIST"}, {')', "EMPTY_TUPLE"},
        {'t', "TUPLE"}, {0x85, "TUPLE1"}, {0x86, "TUPLE2"}, {0x87, "TUPLE3"},
        {'}', "EMPTY_DICT"}, {'d', "DICT"}, {'s', "SETITEM"}, {'u', "SETITEMS"},
        {0x8f, "EMPTY_SET"}, {0x90, "ADDITEMS"}, {0x91, "FROZENSET"}, {'0', "POP"},
        {'2', "DUP"}, {'(', "MARK"}, {'1', "POP_MARK"}, {'g', "GET"}, {'h', "BINGET"},
        {'j', "LONG_BINGET"}, {'p', "PUT"}, {'q', "BINPUT"}, {'r', "LONG_BINPUT"},
        {0x94, "MEMOIZE"}, {0x82, "EXT1"}, {0x83, "EXT2"}, {0x84, "EXT4"}, {'c', "GLOBAL"},
        {0x93, "STACK_GLOBAL"}, {'R', "REDUCE"}, {'b', "BUILD"}, {'i', "INST"},
        {'o', "OBJ"}, {0x81, "NEWOBJ"}, {0x92, "NEWOBJ_EX"}, {0x80, "PROTO"}, {'.', "STOP"},
        {0x95, "FRAME"}, {'P', "PERSID"}, {'Q', "BINPERSID"}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (t[i].code == op) return t[i].name;
    return "unknown";
}

// --- objects, stack and memo ---

static obj *new_obj(unpickler *u, obj_type type) {
    if (u->nall == u->capall) {
        size_t cap = u->capall ? u->capall * 2 : 256;
        if (u->nall >= MAX_OBJECTS) {
            fail(u, "pickle creates more than %d objects", MAX_OBJECTS);
            return NULL;
        }
        obj **a = realloc(u->all, cap * sizeof(*a));
        if (!a) {
            fail(u, "out of memory reading the pickle");
            return NULL;
        }
        u->all = a;
        u->capall = cap;
    }
    obj *o = calloc(1, sizeof(*o));
    if (!o) {
        fail(u, "out of memory reading the pickle");
        return NULL;
    }
    o->type = type;
    u->all[u->nall++] = o;
    return o;
}

static void free_pool(unpickler *u) {
    for (size_t i = 0; i < u->nall; i++) {
        obj *o = u->all[i];
        if (o->type == OBJ_STR) free(o->u.str.s);
        if (o->type == OBJ_TUPLE || o->type == OBJ_LIST || o->type == OBJ_DICT)
            free(o->u.items.v);
        free(o);
    }
    free(u->all);
    for (int i = 0; i < u->nst; i++) {
        free(u->st[i].key);
        free(u->st[i].bytes);
    }
    free(u->st);
    free(u->stack);
    free(u->memo);
}

static int items_push(unpickler *u, obj *c, obj *item) {
    if (c->u.items.n == c->u.items.cap) {
        size_t cap = c->u.items.cap ? c->u.items.cap * 2 : 8;
        obj **v = realloc(c->u.items.v, cap * sizeof(*v));
        if (!v) return fail(u, "out of memory reading the pickle");
        c->u.items.v = v;
        c->u.items.cap = cap;
    }
    c->u.items.v[c->u.items.n++] = item;
    return 0;
}

static int push(unpickler *u, obj *o) {
    if (!o) return -1;
    if (u->sn == u->scap) {
        if (u->sn >= MAX_STACK) return fail(u, "pickle stack deeper than %d", MAX_STACK);
        size_t cap = u->scap ? u->scap * 2 : 64;
        obj **s = realloc(u->stack, cap * sizeof(*s));
        if (!s) return fail(u, "out of memory reading the pickle");
        u->stack = s;
        u->scap = cap;
    }
    u->stack[u->sn++] = o;
    return 0;
}

static size_t stack_floor(const unpickler *u) { return u->nmarks ? u->marks[u->nmarks - 1] : 0; }

static obj *pop(unpickler *u) {
    if (u->sn <= stack_floor(u)) {
        fail(u, "pickle stack underflow at offset %zu", u->pos);
        return NULL;
    }
    return u->stack[--u->sn];
}

static obj *top(unpickler *u) {
    if (u->sn <= stack_floor(u)) {
        fail(u, "pickle stack underflow at offset %zu", u->pos);
        return NULL;
    }
    return u->stack[u->sn - 1];
}

// Pops back to the last MARK; the popped items start at *first.
static int pop_mark(unpickler *u, size_t *first, size_t *count) {
    if (!u->nmarks) return fail(u, "pickle has no MARK at offset %zu", u->pos);
    size_t m = u->marks[--u->nmarks];
    *first = m;
    *count = u->sn - m;
    u->sn = m;
    return 0;
}

static int memo_put(unpickler *u, uint64_t idx) {
    obj *o = top(u);
    if (!o) return -1;
    if (idx >= MAX_MEMO) return fail(u, "pickle memo index %llu too large", (unsigned long long)idx);
    if (idx >= u->memo_cap) {
        size_t cap = u->memo_cap ? u->memo_cap : 64;
        while (cap <= idx) cap *= 2;
        obj **m = realloc(u->memo, cap * sizeof(*m));
        if (!m) return fail(u, "out of memory reading the pickle");
        memset(m + u->memo_cap, 0, (cap - u->memo_cap) * sizeof(*m));
        u->memo = m;
        u->memo_cap = cap;
    }
    u->memo[idx] = o;
    if (idx >= u->memo_next) u->memo_next = idx + 1;
    return 0;
}

static int memo_get(unpickler *u, uint64_t idx) {
    if (idx >= u->memo_cap || !u->memo[idx])
        return fail(u, "pickle memo index %llu is not set", (unsigned long long)idx);
    return push(u, u->memo[idx]);
}

// --- reading the byte stream ---

static int need(unpickler *u, uint64_t n) {
    if (n > u->len - u->pos) return fail(u, "pickle truncated at offset %zu", u->pos);
    return 0;
}

static uint64_t rd_le(unpickler *u, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | u->p[u->pos + (size_t)i];
    u->pos += (size_t)n;
    return v;
}

static int op_int_le(unpickler *u, int nbytes, int is_signed) {
    if (need(u, (uint64_t)nbytes)) return -1;
    uint64_t v = rd_le(u, nbytes);
    obj *o = new_obj(u, OBJ_INT);
    if (!o) return -1;
    o->u.i = is_signed ? (int64_t)(int32_t)(uint32_t)v : (int64_t)v;
    return push(u, o);
}

// LONG1: n-byte two's complement little-endian; we hold up to 64 bits.
static int op_long1(unpickler *u) {
    if (need(u, 1)) return -1;
    int n = u->p[u->pos++];
    if (n > 8) return fail(u, "pickle integer of %d bytes does not fit in 64 bits", n);
    if (need(u, (uint64_t)n)) return -1;
    uint64_t v = rd_le(u, n);
    if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~(uint64_t)0 << (8 * n);
    obj *o = new_obj(u, OBJ_INT);
    if (!o) return -1;
    o->u.i = (int64_t)v;
    return push(u, o);
}

// BINFLOAT is a big-endian IEEE double.
static int op_binfloat(unpickler *u) {
    if (need(u, 8)) return -1;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits = bits << 8 | u->p[u->pos++];
    obj *o = new_obj(u, OBJ_FLOAT);
    if (!o) return -1;
    memcpy(&o->u.f, &bits, 8);
    return push(u, o);
}

static obj *new_str(unpickler *u, const uint8_t *s, size_t n) {
    obj *o = new_obj(u, OBJ_STR);
    if (!o) return NULL;
    o->u.str.s = malloc(n + 1);
    if (!o->u.str.s) {
        fail(u, "out of memory reading the pickle");
        return NULL;
    }
    memcpy(o->u.str.s, s, n);
    o->u.str.s[n] = 0;
    o->u.str.len = n;
    return o;
}

static int op_unicode(unpickler *u, int lenbytes) {
    if (need(u, (uint64_t)lenbytes)) return -1;
    uint64_t n = rd_le(u, lenbytes);
    if (need(u, n)) return -1;
    obj *o = new_str(u, u->p + u->pos, (size_t)n);
    u->pos += (size_t)n;
    return push(u, o);
}

// --- globals ---

static int make_global(unpickler *u, const char *mod, const char *name) {
    obj *o = NULL;
    int stype = -1;
    if (strcmp(mod, "torch") == 0)
        for (int i = 0; i < ST_COUNT; i++)
            if (strcmp(name, storage_types[i].name) == 0) stype = i;
    int id = strcmp(mod, "collections") == 0 && strcmp(name, "OrderedDict") == 0 ? G_ORDERED_DICT
             : strcmp(mod, "torch._utils") == 0 && strcmp(name, "_rebuild_tensor_v2") == 0
                 ? G_REBUILD_TENSOR
             : strcmp(mod, "torch._utils") == 0 && strcmp(name, "_rebuild_parameter") == 0
                 ? G_REBUILD_PARAMETER
             : stype >= 0 ? G_STORAGE
                          : -1;
    if (id < 0)
        return fail(u,
                    "pickle global '%.100s %.100s' is not allowed (only OrderedDict, "
                    "_rebuild_tensor_v2, _rebuild_parameter, torch.*Storage)",
                    mod, name);
    o = new_obj(u, OBJ_GLOBAL);
    if (!o) return -1;
    o->u.g.id = (global_id)id;
    o->u.g.stype = stype;
    return push(u, o);
}

// Reads a '\n'-terminated line of at most 255 bytes into out.
static int read_line(unpickler *u, char *out) {
    for (size_t i = 0; i < 256; i++) {
        if (u->pos >= u->len) return fail(u, "pickle truncated in GLOBAL");
        char ch = (char)u->p[u->pos++];
        if (ch == '\n') {
            out[i] = 0;
            return 0;
        }
        if (i == 255) break;
        out[i] = ch;
    }
    return fail(u, "pickle GLOBAL name longer than 255 bytes");
}

static int op_global(unpickler *u) {
    char mod[256], name[256];
    if (read_line(u, mod) || read_line(u, name)) return -1;
    return make_global(u, mod, name);
}

static int op_stack_global(unpickler *u) {
    obj *name = pop(u), *mod = name ? pop(u) : NULL;
    if (!mod) return -1;
    if (mod->type != OBJ_STR || name->type != OBJ_STR)
        return fail(u, "pickle STACK_GLOBAL needs two strings");
    return make_global(u, mod->u.str.s, name->u.str.s);
}

// --- containers ---

static int op_tuple_n(unpickler *u, int n) {
    if (u->sn < stack_floor(u) + (size_t)n) return fail(u, "pickle stack underflow at offset %zu", u->pos);
    obj *t = new_obj(u, OBJ_TUPLE);
    if (!t) return -1;
    for (size_t i = u->sn - (size_t)n; i < u->sn; i++)
        if (items_push(u, t, u->stack[i])) return -1;
    u->sn -= (size_t)n;
    return push(u, t);
}

static int op_tuple_mark(unpickler *u) {
    size_t first = 0, count = 0;
    if (pop_mark(u, &first, &count)) return -1;
    obj *t = new_obj(u, OBJ_TUPLE);
    if (!t) return -1;
    for (size_t i = 0; i < count; i++)
        if (items_push(u, t, u->stack[first + i])) return -1;
    return push(u, t);
}

static int op_empty(unpickler *u, obj_type type) { return push(u, new_obj(u, type)); }

// APPEND/APPENDS (k == 1 or the marked count) into the list below the items.
static int add_items(unpickler *u, obj *target, obj_type want, size_t first, size_t count) {
    if (!target) return -1;
    if (target->type != want)
        return fail(u, "pickle %s on a %s at offset %zu", want == OBJ_DICT ? "SETITEM" : "APPEND",
                    obj_type_names[target->type], u->pos);
    if (want == OBJ_DICT && count % 2)
        return fail(u, "pickle SETITEMS with an odd number of items");
    for (size_t i = 0; i < count; i++)
        if (items_push(u, target, u->stack[first + i])) return -1;
    return 0;
}

static int op_append_or_setitem(unpickler *u, obj_type want) {
    size_t k = want == OBJ_DICT ? 2 : 1;
    if (u->sn < stack_floor(u) + k + 1) return fail(u, "pickle stack underflow at offset %zu", u->pos);
    u->sn -= k;
    return add_items(u, u->stack[u->sn - 1], want, u->sn, k);
}

static int op_appends_or_setitems(unpickler *u, obj_type want) {
    size_t first = 0, count = 0;
    if (pop_mark(u, &first, &count)) return -1;
    return add_items(u, top(u), want, first, count);
}

static int op_mark(unpickler *u) {
    if (u->nmarks >= MAX_MARKS) return fail(u, "pickle nests more than %d MARKs", MAX_MARKS);
    u->marks[u->nmarks++] = u->sn;
    return 0;
}

// --- persistent ids, REDUCE and BUILD ---

static int find_storage(unpickler *u, const char *key) {
    for (int i = u->nst - 1; i >= 0; i--)
        if (strcmp(u->st[i].key, key) == 0) return i;
    return -1;
}

// Fetches a new storage record; the record may be shorter than claimed, which
// is reported when a tensor needs it (naming the tensor).
static int add_storage(unpickler *u, const char *key, int stype, int64_t numel) {
    if (u->nst >= MAX_STORAGES) return fail(u, "more than %d storages", MAX_STORAGES);
    uint64_t esize = (uint64_t)storage_types[stype].esize;
    if (numel < 0 || (uint64_t)numel > UINT64_MAX / 8 / esize)
        return fail(u, "storage '%.100s' has a bad element count %lld", key, (long long)numel);
    storage *s = realloc(u->st, (size_t)(u->nst + 1) * sizeof(*s));
    if (!s) return fail(u, "out of memory");
    u->st = s;
    storage *n = &u->st[u->nst];
    memset(n, 0, sizeof(*n));
    n->key = strdup(key);
    if (!n->key) return fail(u, "out of memory");
    u->nst++;
    n->stype = stype;
    n->numel = numel;
    if (u->fetch(u->ctx, key, (uint64_t)numel * esize, &n->bytes, &n->nbytes, u->err, u->errlen))
        return -1;
    u->fetched += n->nbytes;
    return u->nst - 1;
}

// BINPERSID: ('storage', <torch.XStorage>, key, location, numel) as torch.save writes it.
static int op_binpersid(unpickler *u) {
    obj *pid = pop(u);
    if (!pid) return -1;
    obj **v = pid->u.items.v;
    if (pid->type != OBJ_TUPLE || pid->u.items.n != 5 || v[0]->type != OBJ_STR ||
        strcmp(v[0]->u.str.s, "storage") != 0 || v[1]->type != OBJ_GLOBAL ||
        v[1]->u.g.id != G_STORAGE || (v[2]->type != OBJ_STR && v[2]->type != OBJ_INT) ||
        v[4]->type != OBJ_INT)
        return fail(u, "pickle persistent id is not ('storage', torch.*Storage, key, location, numel)");
    char key[512];
    if (v[2]->type == OBJ_INT)
        snprintf(key, sizeof(key), "%lld", (long long)v[2]->u.i);
    else if (v[2]->u.str.len >= sizeof(key) || strlen(v[2]->u.str.s) != v[2]->u.str.len)
        return fail(u, "pickle storage key is too long or contains NUL");
    else
        memcpy(key, v[2]->u.str.s, v[2]->u.str.len + 1);
    int idx = find_storage(u, key);
    if (idx >= 0 && (u->st[idx].stype != v[1]->u.g.stype || u->st[idx].numel != v[4]->u.i))
        return fail(u, "storage '%s' is referenced with different types or sizes", key);
    if (idx < 0) idx = add_storage(u, key, v[1]->u.g.stype, v[4]->u.i);
    if (idx < 0) return -1;
    obj *o = new_obj(u, OBJ_STORAGE);
    if (!o) return -1;
    o->u.storage = idx;
    return push(u, o);
}

static int int_tuple(const obj *t, int64_t *out, int *n) {
    if (t->type != OBJ_TUPLE || t->u.items.n > CKPT_MAX_DIMS) return -1;
    for (size_t i = 0; i < t->u.items.n; i++) {
        if (t->u.items.v[i]->type != OBJ_INT || t->u.items.v[i]->u.i < 0) return -1;
        out[i] = t->u.items.v[i]->u.i;
    }
    *n = (int)t->u.items.n;
    return 0;
}

// torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
// backward_hooks[, metadata]); bounds are checked when the tensor is named.
static obj *rebuild_tensor(unpickler *u, obj *args) {
    obj **a = args->u.items.v;
    size_t n = args->u.items.n;
    int nd_size = 0, nd_stride = 0;
    obj *t = NULL;
    if ((n != 6 && n != 7) || a[0]->type != OBJ_STORAGE || a[1]->type != OBJ_INT || a[1]->u.i < 0)
        return fail(u, "_rebuild_tensor_v2 has bad arguments"), NULL;
    if (!(t = new_obj(u, OBJ_TENSOR))) return NULL;
    if (int_tuple(a[2], t->u.t.size, &nd_size) || int_tuple(a[3], t->u.t.stride, &nd_stride) ||
        nd_size != nd_stride)
        return fail(u, "_rebuild_tensor_v2 size/stride are not matching tuples of at most %d "
                       "non-negative ints", CKPT_MAX_DIMS), NULL;
    t->u.t.storage = a[0]->u.storage;
    t->u.t.offset = a[1]->u.i;
    t->u.t.ndim = nd_size;
    return t;
}

static int op_reduce(unpickler *u) {
    obj *args = pop(u), *fn = args ? pop(u) : NULL, *res = NULL;
    if (!fn) return -1;
    if (fn->type != OBJ_GLOBAL || args->type != OBJ_TUPLE)
        return fail(u, "pickle REDUCE on a %s at offset %zu", obj_type_names[fn->type], u->pos);
    switch (fn->u.g.id) {
    case G_ORDERED_DICT:
        if (args->u.items.n != 0) return fail(u, "OrderedDict called with arguments");
        res = new_obj(u, OBJ_DICT);
        break;
    case G_REBUILD_TENSOR:
        res = rebuild_tensor(u, args);
        break;
    case G_REBUILD_PARAMETER:  // torch._utils._rebuild_parameter(data, requires_grad, hooks)
        if (args->u.items.n != 3 || args->u.items.v[0]->type != OBJ_TENSOR)
            return fail(u, "_rebuild_parameter has bad arguments");
        res = args->u.items.v[0];
        break;
    case G_STORAGE:
        return fail(u, "pickle calls a storage class");
    }
    return push(u, res);
}

// BUILD: only the OrderedDict._metadata that state_dict() attaches; ignored.
static int op_build(unpickler *u) {
    obj *state = pop(u), *target = state ? top(u) : NULL;
    if (!target) return -1;
    if (target->type != OBJ_DICT)
        return fail(u, "pickle BUILD on a %s is not supported", obj_type_names[target->type]);
    return 0;
}

// --- the interpreter loop ---

static int op_memo(unpickler *u, int op) {
    switch (op) {
    case 'q': return need(u, 1) ? -1 : memo_put(u, rd_le(u, 1));
    case 'r': return need(u, 4) ? -1 : memo_put(u, rd_le(u, 4));
    case 0x94: return memo_put(u, u->memo_next);
    case 'h': return need(u, 1) ? -1 : memo_get(u, rd_le(u, 1));
    case 'j': return need(u, 4) ? -1 : memo_get(u, rd_le(u, 4));
    }
    return -1;
}

static int op_simple(unpickler *u, obj_type type, int64_t v) {
    obj *o = new_obj(u, type);
    if (!o) return -1;
    o->u.i = v;
    return push(u, o);
}

// Executes one opcode; returns 0, 1 at STOP, or -1.
static int step(unpickler *u, int op) {
    switch (op) {
    case 0x80: return need(u, 1) ? -1 : (u->p[u->pos++] > 5 ? fail(u, "pickle protocol above 5") : 0);
    case 0x95:  // FRAME: a length prefix only; the bytes follow in line
        if (need(u, 8)) return -1;
        return need(u, rd_le(u, 8));
    case '.': return 1;
    case 'c': return op_global(u);
    case 0x93: return op_stack_global(u);
    case 'q': case 'r': case 0x94: case 'h': case 'j': return op_memo(u, op);
    case ')': return op_empty(u, OBJ_TUPLE);
    case 't': return op_tuple_mark(u);
    case 0x85: case 0x86: case 0x87: return op_tuple_n(u, op - 0x84);
    case '(': return op_mark(u);
    case '}': return op_empty(u, OBJ_DICT);
    case ']': return op_empty(u, OBJ_LIST);
    case 'a': return op_append_or_setitem(u, OBJ_LIST);
    case 'e': return op_appends_or_setitems(u, OBJ_LIST);
    case 's': return op_append_or_setitem(u, OBJ_DICT);
    case 'u': return op_appends_or_setitems(u, OBJ_DICT);
    case 'X': return op_unicode(u, 4);
    case 0x8c: return op_unicode(u, 1);
    case 0x8d: return op_unicode(u, 8);
    case 'J': return op_int_le(u, 4, 1);
    case 'K': return op_int_le(u, 1, 0);
    case 'M': return op_int_le(u, 2, 0);
    case 0x8a: return op_long1(u);
    case 0x88: return op_simple(u, OBJ_BOOL, 1);
    case 0x89: return op_simple(u, OBJ_BOOL, 0);
    case 'N': return op_simple(u, OBJ_NONE, 0);
    case 'G': return op_binfloat(u);
    case 'Q': return op_binpersid(u);
    case 'R': return op_reduce(u);
    case 'b': return op_build(u);
    }
    return fail(u, "pickle opcode %s (0x%02x) at offset %zu is not supported", opcode_name(op),
                op, u->pos - 1);
}

static obj *run(unpickler *u) {
    while (u->pos < u->len) {
        int op = u->p[u->pos++];
        int rc = step(u, op);
        if (rc < 0) return NULL;
        if (rc == 1) return pop(u);
    }
    fail(u, "pickle ends without STOP");
    return NULL;
}

// --- flattening the result into the ckpt ---

static int add_overflows(int64_t a, int64_t b) { return b > INT64_MAX - a; }

// Highest element index the view touches (+1), or -1 on overflow; 0 if empty.
static int64_t view_extent(const tensor_view *t, int64_t *numel) {
    int64_t hi = t->offset, n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->size[i] == 0) n = 0;
        else if (n && n > INT64_MAX / t->size[i]) return -1;
        else n *= t->size[i];
    }
    *numel = n;
    if (n == 0) return 0;
    for (int i = 0; i < t->ndim; i++) {
        int64_t d = t->size[i] - 1;
        if (t->stride[i] && d > INT64_MAX / t->stride[i]) return -1;
        if (add_overflows(hi, d * t->stride[i])) return -1;
        hi += d * t->stride[i];
    }
    return add_overflows(hi, 1) ? -1 : hi + 1;
}

static void format_dims(char *out, size_t n, const int64_t *d, int nd) {
    size_t k = (size_t)snprintf(out, n, "[");
    for (int i = 0; i < nd && k < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (k < n) snprintf(out + k, n - k, "]");
}

static void widen(const storage *s, int64_t idx, void *dst, int64_t j) {
    const uint8_t *b = s->bytes + (size_t)idx * (size_t)storage_types[s->stype].esize;
    float *f = dst;
    int64_t *l = dst;
    uint64_t v = 0;
    for (int i = storage_types[s->stype].esize - 1; i >= 0; i--) v = v << 8 | b[i];
    switch ((storage_type)s->stype) {
    case ST_FLOAT: { uint32_t w = (uint32_t)v; memcpy(&f[j], &w, 4); break; }
    case ST_HALF: f[j] = ckpt_half_to_f32((uint16_t)v); break;
    case ST_BF16: f[j] = ckpt_bf16_to_f32((uint16_t)v); break;
    case ST_DOUBLE: { double d; memcpy(&d, &v, 8); f[j] = (float)d; break; }  // torch .float() rounds to nearest
    case ST_LONG: l[j] = (int64_t)v; break;
    case ST_INT: l[j] = (int32_t)(uint32_t)v; break;
    case ST_SHORT: l[j] = (int16_t)(uint16_t)v; break;
    case ST_CHAR: l[j] = (int8_t)(uint8_t)v; break;
    case ST_BYTE: case ST_BOOL: l[j] = (int64_t)v; break;
    case ST_COUNT: break;
    }
}

// Copies the strided view into a new contiguous buffer, walking a counter.
static void gather(const storage *s, const tensor_view *t, void *dst, int64_t numel) {
    int64_t idx[CKPT_MAX_DIMS] = {0}, off = t->offset;
    for (int64_t j = 0; j < numel; j++) {
        widen(s, off, dst, j);
        for (int d = t->ndim - 1; d >= 0; d--) {
            off += t->stride[d];
            if (++idx[d] < t->size[d]) break;
            off -= t->stride[d] * t->size[d];
            idx[d] = 0;
        }
    }
}

static int materialise(unpickler *u, ckpt *c, const char *name, const tensor_view *t) {
    const storage *s = &u->st[t->storage];
    int64_t numel = 0, extent = view_extent(t, &numel);
    char sz[256], sd[256];
    format_dims(sz, sizeof(sz), t->size, t->ndim);
    format_dims(sd, sizeof(sd), t->stride, t->ndim);
    if (extent < 0 || extent > s->numel || (numel == 0 && t->offset > s->numel))
        return fail(u, "tensor '%s' (offset %lld, size %s, stride %s) exceeds its storage of %lld elements",
                    name, (long long)t->offset, sz, sd, (long long)s->numel);
    uint64_t esize = (uint64_t)storage_types[s->stype].esize, need_bytes = (uint64_t)s->numel * esize;
    if (s->nbytes < need_bytes)
        return fail(u, "storage 'data/%s' is %zu bytes but tensor '%s' needs %llu", s->key,
                    s->nbytes, name, (unsigned long long)need_bytes);
    if (numel > s->numel)
        return fail(u, "tensor '%s' has more elements than its storage (overlapping strides are "
                       "not supported)", name);
    int is_float = s->stype <= ST_DOUBLE;
    size_t out_es = is_float ? sizeof(float) : sizeof(int64_t), nbytes = (size_t)numel * out_es;
    // Many names may alias one big tensor; cap the copies relative to what was read.
    u->produced += nbytes;
    if (u->produced > 8 * u->fetched + ((uint64_t)64 << 20))
        return fail(u, "tensors alias their storages too many times");
    void *data = malloc(nbytes ? nbytes : 1);
    if (!data) return fail(u, "out of memory for tensor '%s'", name);
    gather(s, t, data, numel);
    if (ckpt_add_tensor_owned(c, name, is_float ? CKPT_F32 : CKPT_I64, t->ndim, t->size, data))
        return fail(u, "out of memory for tensor '%s'", name);
    return 0;
}

typedef struct key_ref { char *key; size_t pos; } key_ref;

static int cmp_key_ref(const void *a, const void *b) {
    const key_ref *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->pos < y->pos ? -1 : x->pos > y->pos);
}

static int flatten(unpickler *u, ckpt *c, const obj *d, const char *prefix, int depth);

static int flatten_value(unpickler *u, ckpt *c, const char *name, const obj *v, int depth) {
    switch (v->type) {
    case OBJ_TENSOR: return materialise(u, c, name, &v->u.t);
    case OBJ_INT: case OBJ_BOOL: return ckpt_add_int(c, name, v->u.i) ? fail(u, "out of memory") : 0;
    case OBJ_FLOAT: return ckpt_add_float(c, name, v->u.f) ? fail(u, "out of memory") : 0;
    case OBJ_STR: return ckpt_add_string(c, name, v->u.str.s) ? fail(u, "out of memory") : 0;
    case OBJ_NONE: return 0;
    case OBJ_DICT: return flatten(u, c, v, name, depth + 1);
    default:
        return fail(u, "value of '%s' is a %s (only tensors, numbers, strings and dicts are supported)",
                    name, obj_type_names[v->type]);
    }
}

// Python dict semantics for repeated keys: first position, last value.
static int dedupe_keys(key_ref *k, size_t n, const obj *d, const obj **vals) {
    qsort(k, n, sizeof(*k), cmp_key_ref);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && strcmp(k[j + 1].key, k[i].key) == 0) j++;
        vals[k[i].pos] = d->u.items.v[2 * k[j].pos + 1];
        for (size_t m = i + 1; m <= j; m++) vals[k[m].pos] = NULL;
        i = j + 1;
    }
    return 0;
}

static int key_string(unpickler *u, const obj *k, char *buf, size_t n, const char **out) {
    if (k->type == OBJ_INT) {
        snprintf(buf, n, "%lld", (long long)k->u.i);
        *out = buf;
        return 0;
    }
    if (k->type != OBJ_STR || strlen(k->u.str.s) != k->u.str.len)
        return fail(u, "dict key is a %s (only strings and ints)", obj_type_names[k->type]);
    *out = k->u.str.s;
    return 0;
}

static int flatten_entries(unpickler *u, ckpt *c, const obj *d, const char *prefix, int depth,
                           key_ref *keys, const obj **vals, size_t n) {
    char *name = malloc(MAX_NAME + 1);
    if (!name) return fail(u, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!vals[i]) continue;
        const char *key = keys[i].key;
        int len = *prefix ? snprintf(name, MAX_NAME + 1, "%s.%s", prefix, key)
                          : snprintf(name, MAX_NAME + 1, "%s", key);
        if (len < 0 || len > MAX_NAME)
            rc = fail(u, "entry name longer than %d bytes", MAX_NAME);
        else
            rc = flatten_value(u, c, name, vals[i], depth);
    }
    (void)d;
    free(name);
    return rc;
}

static int flatten(unpickler *u, ckpt *c, const obj *d, const char *prefix, int depth) {
    if (depth > MAX_DEPTH) return fail(u, "dicts nested deeper than %d at '%s'", MAX_DEPTH, prefix);
    size_t n = d->u.items.n / 2;
    key_ref *keys = calloc(n ? n : 1, sizeof(*keys));
    key_ref *sorted = calloc(n ? n : 1, sizeof(*sorted));
    const obj **vals = calloc(n ? n : 1, sizeof(*vals));
    char *nums = malloc(n * 24 + 1);  // decimal forms of int keys
    int rc = (!keys || !sorted || !vals || !nums) ? fail(u, "out of memory") : 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *k = NULL;
        rc = key_string(u, d->u.items.v[2 * i], nums + 24 * i, 24, &k);
        keys[i].key = (char *)k;
        keys[i].pos = i;
        vals[i] = d->u.items.v[2 * i + 1];
    }
    if (rc == 0) {
        memcpy(sorted, keys, n * sizeof(*keys));
        dedupe_keys(sorted, n, d, vals);
        rc = flatten_entries(u, c, d, prefix, depth, keys, vals, n);
    }
    free(keys);
    free(sorted);
    free(vals);
    free(nums);
    return rc;
}

int pickle_read_state_dict(ckpt *c, const uint8_t *buf, size_t len, pickle_fetch_fn fetch,
                           void *ctx, const char *fname, char *err, size_t errlen) {
    unpickler u;
    memset(&u, 0, sizeof(u));
    u.p = buf;
    u.len = len;
    u.fetch = fetch;
    u.ctx = ctx;
    u.fname = fname;
    u.err = err;
    u.errlen = errlen;
    obj *res = run(&u);
    int rc = res ? 0 : -1;
    if (res && res->type != OBJ_DICT)
        rc = fail(&u, "pickle holds a %s, not a dict (a state_dict)", obj_type_names[res->type]);
    if (rc == 0) rc = flatten(&u, c, res, "", 0);
    free_pool(&u);
    return rc;
}

// --- writer ---

void pickle_buf_init(pickle_buf *b) { memset(b, 0, sizeof(*b)); }

void pickle_buf_free(pickle_buf *b) {
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void pickle_buf_put(pickle_buf *b, const void *data, size_t n) {
    if (b->oom) return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_op(pickle_buf *b, uint8_t op) { pickle_buf_put(b, &op, 1); }

static void put_le(pickle_buf *b, uint64_t v, int n) {
    uint8_t x[8];
    for (int i = 0; i < n; i++) x[i] = (uint8_t)(v >> (8 * i));
    pickle_buf_put(b, x, (size_t)n);
}

static void put_str(pickle_buf *b, const char *s) {
    size_t n = strlen(s);
    if (n > UINT32_MAX) {
        b->oom = 1;
        return;
    }
    put_op(b, 'X');  // BINUNICODE
    put_le(b, n, 4);
    pickle_buf_put(b, s, n);
}

// Python's pickle: BININT for 32-bit values, LONG1 with 8 bytes otherwise.
static void put_int(pickle_buf *b, int64_t v) {
    if (v >= INT32_MIN && v <= INT32_MAX) {
        put_op(b, 'J');
        put_le(b, (uint64_t)v, 4);
    } else {
        put_op(b, 0x8a);
        put_op(b, 8);
        put_le(b, (uint64_t)v, 8);
    }
}

static void put_float(pickle_buf *b, double f) {
    uint64_t bits;
    memcpy(&bits, &f, 8);
    put_op(b, 'G');
    for (int i = 7; i >= 0; i--) put_op(b, (uint8_t)(bits >> (8 * i)));
}

static void put_global(pickle_buf *b, const char *mod_name) {
    put_op(b, 'c');
    pickle_buf_put(b, mod_name, strlen(mod_name));
}

static void put_int_tuple(pickle_buf *b, const int64_t *v, int n) {
    if (n == 0) {
        put_op(b, ')');
        return;
    }
    put_op(b, '(');
    for (int i = 0; i < n; i++) put_int(b, v[i]);
    put_op(b, 't');
}

static void put_empty_ordered_dict(pickle_buf *b) {
    put_global(b, "collections\nOrderedDict\n");
    put_op(b, ')');
    put_op(b, 'R');
}

// _rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), 0, size,
// contiguous stride, False, OrderedDict()) as torch.save writes a tensor.
static void put_tensor(pickle_buf *b, const ckpt_entry *e, int key) {
    int64_t stride[CKPT_MAX_DIMS], s = 1;
    char k[24];
    for (int i = e->ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= e->shape[i];
    }
    snprintf(k, sizeof(k), "%d", key);
    put_global(b, "torch._utils\n_rebuild_tensor_v2\n");
    put_op(b, '(');
    put_op(b, '(');
    put_str(b, "storage");
    put_global(b, e->dtype == CKPT_F32 ? "torch\nFloatStorage\n" : "torch\nLongStorage\n");
    put_str(b, k);
    put_str(b, "cpu");
    put_int(b, e->numel);
    put_op(b, 't');
    put_op(b, 'Q');
    put_int(b, 0);
    put_int_tuple(b, e->shape, e->ndim);
    put_int_tuple(b, stride, e->ndim);
    put_op(b, 0x89);
    put_empty_ordered_dict(b);
    put_op(b, 't');
    put_op(b, 'R');
}

int pickle_write_state_dict(const ckpt *c, pickle_buf *out) {
    static const uint8_t proto[] = {0x80, 0x02};
    int key = 0;
    pickle_buf_put(out, proto, 2);
    put_empty_ordered_dict(out);
    for (int i = 0; i < c->n; i++) {
        const ckpt_entry *e = &c->e[i];
        if (i % 1000 == 0) put_op(out, '(');  // SETITEMS batches of 1000, as pickle does
        put_str(out, e->name);
        switch (e->kind) {
        case CKPT_TENSOR: put_tensor(out, e, key++); break;
        case CKPT_INT: put_int(out, e->ival); break;
        case CKPT_FLOAT: put_float(out, e->fval); break;
        case CKPT_STRING: put_str(out, e->sval ? e->sval : ""); break;
        }
        if (i % 1000 == 999 || i == c->n - 1) put_op(out, 'u');
    }
    put_op(out, '.');
    return out->oom ? -1 : 0;
}
