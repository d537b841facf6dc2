/*
 * h_misc.c - discovery and the audit log reader (health and metrics: metrics.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "kbd.h"

#define AUDIT_PAGE_DEFAULT 100
#define AUDIT_PAGE_MAX     1000

/* The issuer keys a token may be verified with now: the current one first. */
kbr_err kbd_h_jwks(kbd_req *r)
{
    json_t *jwks = kbr_policy_jwks(r->d->policy, time(NULL));

    if (jwks == NULL)
        return KBR_ERR_NOMEM;
    kbd_req_reply_now(r, 200, jwks);
    return KBR_OK;
}

typedef struct {
    int64_t after, limit;
    kbr_scope scope; /* the reader's, copied for the worker */
} audit_page_ctx;

static void audit_page_ctx_free(void *p)
{
    audit_page_ctx *c = p;

    if (c != NULL)
        kbr_scope_cleanup(&c->scope);
    free(c);
}

static kbr_err parse_i64(const char *s, const char *name, int64_t min, int64_t max, int64_t *out,
                         kbr_msg *msg)
{
    char *end = NULL;
    long long v;

    if (s == NULL)
        return KBR_OK;
    v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: must be an integer between %lld and %lld",
                        name, (long long)min, (long long)max);
    *out = v;
    return KBR_OK;
}

static void audit_list_work(kbd_req *r, kbd_worker *w)
{
    audit_page_ctx *c = r->ctx;
    json_t *entries = NULL;
    /* a reader limited to products or keys reads the entries about them */
    kbr_audit_scope scope = kbd_audit_scope_of(&c->scope);
    kbr_err err = kbr_store_audit_page_within(w->store, c->after, c->limit, &scope, &entries);

    if (err != KBR_OK) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the audit log could not be read");
        return;
    }
    r->resp = json_pack("{s:o}", "entries", entries);
    json_object_set_new(r->rec->detail, "after", json_integer(c->after));
    json_object_set_new(r->rec->detail, "returned",
                        json_integer((json_int_t)json_array_size(entries)));
}

kbr_err kbd_h_audit_list(kbd_req *r)
{
    audit_page_ctx *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return KBR_ERR_NOMEM;
    r->ctx = c;
    r->ctx_free = audit_page_ctx_free;
    c->after = 0;
    c->limit = AUDIT_PAGE_DEFAULT;
    if (kbd_scope_copy(&r->tok->scope, &c->scope) != KBR_OK)
        return KBR_ERR_NOMEM;
    if (parse_i64(kbd_req_query(r, "after"), "after", 0, INT64_MAX, &c->after, &r->msg) != KBR_OK ||
        parse_i64(kbd_req_query(r, "limit"), "limit", 1, AUDIT_PAGE_MAX, &c->limit, &r->msg) !=
            KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    r->work = audit_list_work;
    kbd_req_dispatch(r);
    return KBR_OK;
}
