/*
 * h_misc.c - health, discovery, metrics and the audit log reader.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "kbd.h"

#define AUDIT_PAGE_DEFAULT 100
#define AUDIT_PAGE_MAX     1000

kbr_err kbd_h_health(kbd_req *r)
{
    bool hsm = atomic_load(&r->d->stats.hsm_ok) != 0;
    bool audit = kbr_audit_healthy(r->d->audit);
    json_t *body = json_pack("{s:s,s:s,s:s}", "status", hsm && audit ? "ok" : "down", "hsm",
                             hsm ? "ok" : "down", "audit", audit ? "ok" : "down");

    kbd_req_reply_now(r, hsm && audit ? 200 : 503, body);
    return KBR_OK;
}

/* The issuer keys a token may be verified with now: the current one first. */
kbr_err kbd_h_jwks(kbd_req *r)
{
    json_t *jwks = kbr_policy_jwks(r->d->policy, time(NULL));

    if (jwks == NULL)
        return KBR_ERR_NOMEM;
    kbd_req_reply_now(r, 200, jwks);
    return KBR_OK;
}

kbr_err kbd_h_metrics(kbd_req *r)
{
    kbd_stats *s = &r->d->stats;
    struct evbuffer *buf = evbuffer_new();
    long conns_open, conns_refused, conns_timed_out;

    if (buf == NULL)
        return KBR_ERR_NOMEM;
    kbd_connlimit_stats(r->d, &conns_open, &conns_refused, &conns_timed_out);
    evbuffer_add_printf(buf,
                        "# TYPE keybroker_requests_total counter\n"
                        "keybroker_requests_total %ld\n"
                        "# TYPE keybroker_denied_total counter\n"
                        "keybroker_denied_total %ld\n"
                        "# TYPE keybroker_signatures_total counter\n"
                        "keybroker_signatures_total %ld\n"
                        "# TYPE keybroker_audit_failures_total counter\n"
                        "keybroker_audit_failures_total %ld\n"
                        "# TYPE keybroker_hsm_failures_total counter\n"
                        "keybroker_hsm_failures_total %ld\n"
                        "# TYPE keybroker_audit_last_seq gauge\n"
                        "keybroker_audit_last_seq %lld\n"
                        "# TYPE keybroker_hsm_up gauge\n"
                        "keybroker_hsm_up %d\n"
                        "# TYPE keybroker_audit_up gauge\n"
                        "keybroker_audit_up %d\n"
                        "# TYPE keybroker_inflight_requests gauge\n"
                        "keybroker_inflight_requests %ld\n"
                        "# TYPE keybroker_connections_open gauge\n"
                        "keybroker_connections_open %ld\n"
                        "# TYPE keybroker_connections_refused_total counter\n"
                        "keybroker_connections_refused_total %ld\n"
                        "# TYPE keybroker_connections_timed_out_total counter\n"
                        "keybroker_connections_timed_out_total %ld\n",
                        atomic_load(&s->requests), atomic_load(&s->denied),
                        atomic_load(&s->signatures), atomic_load(&s->audit_failures),
                        atomic_load(&s->hsm_failures), (long long)kbr_audit_last_seq(r->d->audit),
                        atomic_load(&s->hsm_ok), kbr_audit_healthy(r->d->audit) ? 1 : 0,
                        r->d->inflight, conns_open, conns_refused, conns_timed_out);
    kbd_req_reply_buffer(r, 200, "text/plain; version=0.0.4", buf);
    evbuffer_free(buf);
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
