/*
 * h_misc.c - discovery and the audit log reader (health and metrics: metrics.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "kbd.h"
#include "routes.h"

#define AUDIT_PAGE_DEFAULT 100
#define AUDIT_PAGE_MAX     1000

/* The issuer keys a token may be verified with now: the current one first. */
void kbd_jwks_finish(kbd_req *r)
{
    r->resp = kbr_policy_jwks(r->d->policy, time(NULL));
    if (r->resp == NULL)
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
}

void kbd_audit_page_free(void *p)
{
    kbd_audit_page_req *c = p;

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

void kbd_audit_list_work(kbd_req *r, kbd_worker *w)
{
    const kbd_audit_page_req *c = r->ctx;
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

kbr_err kbd_audit_page_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    kbd_audit_page_req *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    c->after = 0;
    c->limit = AUDIT_PAGE_DEFAULT;
    KBR_GUARD(parse_i64(kbd_req_query(r, "after"), "after", 0, INT64_MAX, &c->after, msg));
    KBR_GUARD(parse_i64(kbd_req_query(r, "limit"), "limit", 1, AUDIT_PAGE_MAX, &c->limit, msg));
out:
    return err;
}

kbr_err kbd_audit_page_authorize(kbd_req *r, void *req)
{
    kbd_audit_page_req *c = req;

    /* the worker reads what this scope covers: a copy, the token is the event thread's */
    return kbd_scope_copy(&r->tok->scope, &c->scope);
}
