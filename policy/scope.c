/* scope.c - ops, name lists and scopes: parsing, matching and what an admin may grant. */
#include <stdlib.h>
#include <string.h>

#include "kbr_policy.h"

/* A name list longer than this is not a scope but an abuse of one. */
#define NAMELIST_MAX 1024

static const struct {
    kbr_op op;
    const char *name;
} op_names[] = {
    {KBR_OP_SIGN, "sign"},
    {KBR_OP_PROVISION, "provision"},
    {KBR_OP_ROTATE, "rotate"},
    {KBR_OP_DEBUG_AUTH, "debug-auth"},
    {KBR_OP_OTA_REPORT, "ota-report"},
    {KBR_OP_READ, "read"},
    {KBR_OP_ADMIN, "admin"},
};

#define N_OPS (sizeof(op_names) / sizeof(op_names[0]))

kbr_err kbr_op_from_name(const char *name, kbr_op *out)
{
    for (size_t i = 0; name != NULL && i < N_OPS; i++) {
        if (strcmp(name, op_names[i].name) == 0) {
            *out = op_names[i].op;
            return KBR_OK;
        }
    }
    return KBR_ERR_BAD_REQUEST;
}

const char *kbr_op_name(kbr_op op)
{
    for (size_t i = 0; i < N_OPS; i++)
        if (op_names[i].op == op)
            return op_names[i].name;
    return "unknown";
}

static void namelist_cleanup(kbr_namelist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

void kbr_scope_cleanup(kbr_scope *scope)
{
    if (scope == NULL)
        return;
    namelist_cleanup(&scope->keys);
    namelist_cleanup(&scope->products);
    namelist_cleanup(&scope->batches);
    namelist_cleanup(&scope->devices);
    scope->ops = 0;
    scope->max_uses = -1;
}

/* A name, or a prefix of one and '*' (common/names.c); "*" alone means any. */
static bool name_entry_ok(const char *s, size_t len)
{
    return strlen(s) == len && kbr_name_pattern_valid(s, len);
}

static kbr_err parse_name_entry(const json_t *v, const char *field, size_t i, char **out,
                                kbr_msg *msg)
{
    const char *s = json_string_value(v);

    *out = NULL;
    if (s == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s[%zu]: must be a string", field, i);
    if (!name_entry_ok(s, json_string_length(v)))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "%s[%zu]: must be 1-%d chars of [A-Za-z0-9._:/@+-], '*' only last", field,
                        i, KBR_NAME_MAX);
    *out = strdup(s);
    return *out == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

/* Absent or null: present=false ("any").  An empty array is a list that matches nothing. */
static kbr_err parse_namelist(const json_t *obj, const char *field, kbr_namelist *out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const json_t *arr = json_object_get(obj, field);
    kbr_namelist l = {0};
    size_t n = json_array_size(arr);

    if (arr == NULL || json_is_null(arr))
        goto out;
    if (!json_is_array(arr))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: must be an array of names", field);
    if (n > NAMELIST_MAX)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: more than %d entries", field, NAMELIST_MAX);
    l.present = true;
    l.items = calloc(n > 0 ? n : 1, sizeof(*l.items));
    KBR_ENSURE(l.items != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < n; i++) {
        KBR_GUARD(parse_name_entry(json_array_get(arr, i), field, i, &l.items[i], msg));
        l.n++;
    }
    *out = l;
    l = (kbr_namelist){0};
out:
    namelist_cleanup(&l);
    return err;
}

static kbr_err parse_ops(const json_t *obj, unsigned *out, kbr_msg *msg)
{
    const json_t *arr = json_object_get(obj, "ops");
    unsigned ops = 0;
    kbr_op op;

    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "ops: must be a non-empty array of op names");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *name = json_string_value(json_array_get(arr, i));
        if (name == NULL)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "ops[%zu]: must be a string", i);
        if (kbr_op_from_name(name, &op) != KBR_OK)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "ops[%zu]: unknown op \"%.64s\"", i, name);
        if (ops & op)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "ops[%zu]: duplicate op \"%s\"", i, name);
        ops |= op;
    }
    *out = ops;
    return KBR_OK;
}

static kbr_err parse_max_uses(const json_t *obj, int64_t *out, kbr_msg *msg)
{
    const json_t *v = json_object_get(obj, "max_uses");

    *out = -1;
    if (v == NULL || json_is_null(v))
        return KBR_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "max_uses: must be an integer >= 1");
    *out = json_integer_value(v);
    return KBR_OK;
}

kbr_err kbr_scope_from_json(const json_t *obj, kbr_scope *out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_scope s = {.max_uses = -1};

    memset(out, 0, sizeof(*out));
    out->max_uses = -1;
    if (!json_is_object(obj))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "scope: must be an object");
    KBR_GUARD(parse_ops(obj, &s.ops, msg));
    KBR_GUARD(parse_namelist(obj, "keys", &s.keys, msg));
    KBR_GUARD(parse_namelist(obj, "products", &s.products, msg));
    KBR_GUARD(parse_namelist(obj, "batches", &s.batches, msg));
    KBR_GUARD(parse_namelist(obj, "devices", &s.devices, msg));
    KBR_GUARD(parse_max_uses(obj, &s.max_uses, msg));
    *out = s;
    s = (kbr_scope){.max_uses = -1};
out:
    kbr_scope_cleanup(&s);
    return err;
}

static int add_namelist(json_t *obj, const char *field, const kbr_namelist *l)
{
    json_t *arr = NULL;

    if (!l->present)
        return 0;
    arr = json_array();
    if (json_object_set_new(obj, field, arr) != 0)
        return -1;
    for (size_t i = 0; i < l->n; i++)
        if (json_array_append_new(arr, json_string(l->items[i])) != 0)
            return -1;
    return 0;
}

json_t *kbr_scope_to_json(const kbr_scope *scope)
{
    json_t *obj = json_object(), *ops = json_array();
    int rc = obj == NULL || json_object_set_new(obj, "ops", ops) != 0 ? -1 : 0;

    for (size_t i = 0; rc == 0 && i < N_OPS; i++)
        if (scope->ops & op_names[i].op)
            rc = json_array_append_new(ops, json_string(op_names[i].name));
    if (rc == 0)
        rc = add_namelist(obj, "keys", &scope->keys);
    if (rc == 0)
        rc = add_namelist(obj, "products", &scope->products);
    if (rc == 0)
        rc = add_namelist(obj, "batches", &scope->batches);
    if (rc == 0)
        rc = add_namelist(obj, "devices", &scope->devices);
    if (rc == 0 && scope->max_uses >= 0)
        rc = json_object_set_new(obj, "max_uses", json_integer(scope->max_uses));
    if (rc != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* Length of the prefix an entry stands for, or -1 when the entry is an exact name. */
bool kbr_namelist_match(const kbr_namelist *list, const char *name)
{
    if (!list->present)
        return true;
    for (size_t i = 0; name != NULL && i < list->n; i++)
        if (kbr_name_matches(list->items[i], name))
            return true;
    return false;
}

bool kbr_namelist_match_all(const kbr_namelist *list, const json_t *names)
{
    size_t i;
    const json_t *v;

    json_array_foreach(names, i, v)
    {
        if (!kbr_namelist_match(list, json_string_value(v)))
            return false;
    }
    return true;
}

bool kbr_namelist_match_any(const kbr_namelist *list, const json_t *names)
{
    size_t i;
    const json_t *v;

    if (!list->present)
        return true;
    json_array_foreach(names, i, v)
    {
        if (kbr_namelist_match(list, json_string_value(v)))
            return true;
    }
    return false;
}

/* Absent, or holding a lone "*": the list places no limit. */
bool kbr_namelist_is_any(const kbr_namelist *l)
{
    if (!l->present)
        return true;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i], "*") == 0)
            return true;
    return false;
}

static bool namelist_covers(const kbr_namelist *issuer, const char *req_entry)
{
    for (size_t i = 0; i < issuer->n; i++)
        if (kbr_name_pattern_covers(issuer->items[i], req_entry))
            return true;
    return false;
}

static kbr_err check_list_grantable(const char *field, const kbr_namelist *issuer,
                                    const kbr_namelist *req, kbr_msg *msg)
{
    if (kbr_namelist_is_any(issuer))
        return KBR_OK;
    if (!req->present)
        return kbr_fail(msg, KBR_ERR_FORBIDDEN,
                        "%s: required, the issuing token is limited to its own %s", field, field);
    for (size_t i = 0; i < req->n; i++)
        if (!namelist_covers(issuer, req->items[i]))
            return kbr_fail(msg, KBR_ERR_FORBIDDEN,
                            "%s[%zu]: \"%s\" is outside the issuing token's %s", field, i,
                            req->items[i], field);
    return KBR_OK;
}

kbr_err kbr_scope_covers(const kbr_scope *holder, const kbr_scope *target, kbr_msg *msg)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(check_list_grantable("keys", &holder->keys, &target->keys, msg));
    KBR_GUARD(check_list_grantable("products", &holder->products, &target->products, msg));
    KBR_GUARD(check_list_grantable("batches", &holder->batches, &target->batches, msg));
    KBR_GUARD(check_list_grantable("devices", &holder->devices, &target->devices, msg));
out:
    return err;
}

/* The issuer's max_uses caps its own key uses only: issuing is not a key use, so it is not checked.
 */
kbr_err kbr_scope_grantable(const kbr_scope *issuer, const kbr_scope *req, kbr_msg *msg)
{
    if (!(issuer->ops & KBR_OP_ADMIN))
        return kbr_fail(msg, KBR_ERR_FORBIDDEN, "ops: only a token holding admin issues tokens");
    return kbr_scope_covers(issuer, req, msg);
}

bool kbr_policy_allows_op(const kbr_token *tok, kbr_op op)
{
    if (tok == NULL || op == 0)
        return false;
    return (tok->scope.ops & KBR_OP_ADMIN) != 0 || (tok->scope.ops & (unsigned)op) == (unsigned)op;
}
