/*
 * server.c - the event thread: accept, route, authenticate, hand on, reply.
 *
 * Every request ends in exactly one reply, sent from here: a route's stages
 * (run_stages) return an error or hand the request on, and never answer
 * themselves, but for a respond stage, which sends a response of its own
 * once the record is durable.  Authenticated routes reply only
 * after their audit record is durable, denials included, so the response
 * can carry X-Audit-Seq.  Nothing here blocks: HSM and store work happens on
 * workers, commits on the audit writer.
 */
#include <stdarg.h>
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <openssl/rand.h>

#include "kbd.h"
#include "routes.h"

void kbd_req_response_begins(kbd_req *r, int status)
{
    if (r->request_id[0] != '\0')
        evhttp_add_header(evhttp_request_get_output_headers(r->http), "X-Request-Id",
                          r->request_id);
    kbd_metrics_response(r->d, r->route, status, kbr_monotonic_seconds() - r->t0);
    kbd_connlimit_request_ends(r->d, evhttp_request_get_connection(r->http));
}

/* Every response leaves through here or a respond hook. */
static void send_reply(kbd_req *r, int status, const char *reason, struct evbuffer *buf)
{
    /* stopping: the connection's next request would find no broker, so it is closed */
    if (r->d->shutting_down)
        evhttp_add_header(evhttp_request_get_output_headers(r->http), "Connection", "close");
    kbd_req_response_begins(r, status);
    evhttp_send_reply(r->http, status, reason, buf);
}

/*
 * The client's X-Request-Id when it is 1 to 64 letters, digits, '.', '_' or '-' (so it can
 * go in a log line and a header as it is), or 16 random hex digits.
 */
/*
 * Random request ids come from a pool filled by one RAND_bytes call per 64 requests: the
 * DRBG's per-call cost is several times that of the bytes.  Ids are names, not secrets, and
 * only the event loop's thread makes them.
 */
static bool request_id_random(unsigned char *out, size_t n)
{
    static unsigned char pool[512];
    static size_t used = sizeof(pool);

    if (used + n > sizeof(pool)) {
        if (RAND_bytes(pool, sizeof(pool)) != 1)
            return false;
        used = 0;
    }
    memcpy(out, pool + used, n);
    used += n;
    return true;
}

static void set_request_id(kbd_req *r)
{
    const char *given =
        evhttp_find_header(evhttp_request_get_input_headers(r->http), "X-Request-Id");
    size_t n = given != NULL ? strlen(given) : 0;
    unsigned char rnd[8];

    if (n > 0 && n < sizeof(r->request_id) &&
        strspn(given, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n) {
        memcpy(r->request_id, given, n + 1);
        return;
    }
    if (request_id_random(rnd, sizeof(rnd)))
        kbr_hex_encode_buf(rnd, sizeof(rnd), r->request_id);
}

/* A body of type; JSON bodies end in a newline added here, text bodies are sent as they are. */
static void send_typed(kbd_req *r, int status, const char *type, const char *text, int64_t seq)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->http);
    struct evbuffer *buf = evbuffer_new();
    bool json = strcmp(type, "application/json") == 0;
    char seqbuf[32];

    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (seq > 0) {
        snprintf(seqbuf, sizeof(seqbuf), "%lld", (long long)seq);
        evhttp_add_header(h, "X-Audit-Seq", seqbuf);
    }
    if (buf != NULL && text != NULL) {
        evbuffer_add(buf, text, strlen(text));
        if (json)
            evbuffer_add(buf, "\n", 1);
    }
    send_reply(r, status, status < 400 ? "OK" : "Error", buf);
    if (buf != NULL)
        evbuffer_free(buf);
}

/* Bytes as they are, of type (NULL: JSON): a kept document, no newline added, so its bytes
 * hash to the name the log gives; or a document that is not text (a CRL, DER). */
static void send_bytes(kbd_req *r, int status, const char *type, const unsigned char *body,
                       size_t len, int64_t seq)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->http);
    struct evbuffer *buf = evbuffer_new();
    char seqbuf[32];

    evhttp_add_header(h, "Content-Type", type != NULL ? type : "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (seq > 0) {
        snprintf(seqbuf, sizeof(seqbuf), "%lld", (long long)seq);
        evhttp_add_header(h, "X-Audit-Seq", seqbuf);
    }
    if (buf != NULL)
        evbuffer_add(buf, body, len);
    send_reply(r, status, "OK", buf);
    if (buf != NULL)
        evbuffer_free(buf);
}

static void send_text(kbd_req *r, int status, const char *text, int64_t seq)
{
    send_typed(r, status, "application/json", text, seq);
}

/*
 * The body as json_dumps(JSON_COMPACT) writes it, written by kbr_json_compact in one pass;
 * json_dumps itself for what that refuses, so the answer is the same either way.  The text
 * is wiped once it has been copied out: an answer can carry a token.
 */
static void send_json(kbd_req *r, int status, const json_t *body, int64_t seq)
{
    char *text = NULL;
    size_t len = 0;

    if (body != NULL && kbr_json_compact(body, &text, &len) != KBR_OK) {
        text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
        len = text != NULL ? strlen(text) : 0;
    }
    send_text(r, status, text, seq);
    if (text != NULL)
        explicit_bzero(text, len);
    free(text);
}

/* Text from a request can be any bytes; JSON strings must be UTF-8. */
static json_t *clean_string(const char *s)
{
    char *clean = s != NULL ? kbd_utf8_clean(s) : NULL;
    json_t *j = clean != NULL ? json_string(clean) : NULL;

    free(clean);
    return j;
}

static json_t *error_body(kbr_err err, const char *message)
{
    json_t *text = clean_string(message);

    return text != NULL
               ? json_pack("{s:{s:s,s:o}}", "error", "code", kbr_err_api_code(err), "message", text)
               : NULL;
}

static void req_free(kbd_req *r)
{
    if (r == NULL)
        return;
    free(r->arg);
    if (r->query_parsed)
        evhttp_clear_headers(&r->query);
    json_decref(r->body);
    json_decref(r->resp);
    free(r->raw);
    free(r->resp_text);
    free(r->sub);
    free(r->jti);
    if (r->ctx_free != NULL)
        r->ctx_free(r->ctx);
    kbr_audit_rec_free(r->rec);
    free(r);
}

static void req_end(kbd_req *r)
{
    kbd *d = r->d;

    d->inflight--;
    req_free(r);
    if (d->shutting_down && d->inflight == 0)
        event_base_loopexit(d->base, NULL);
}

void kbd_req_done(kbd_req *r)
{
    req_end(r);
}

/* Every error answer is a JSON error object, even when the message could not be built. */
static void reply_error(kbd_req *r, kbr_err err, const char *message, int64_t seq)
{
    kbr_err shown = kbr_err_public(err);
    json_t *body = error_body(shown, message);
    char fallback[128];

    if (kbr_err_http_status(shown) < 500)
        r->d->stats.denied++;
    if (body != NULL) {
        send_json(r, kbr_err_http_status(shown), body, seq);
        json_decref(body);
        return;
    }
    snprintf(fallback, sizeof(fallback), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
             kbr_err_api_code(shown), kbr_err_str(shown));
    send_text(r, kbr_err_http_status(shown), fallback, seq);
}

/*
 * Marks the request failed and its audit record denied (4xx) or error (5xx);
 * any effects are dropped.  Safe on the worker that holds the request.
 */
void kbd_req_error(kbd_req *r, kbr_err err, const char *fmt, ...)
{
    kbr_err shown = kbr_err_public(err);
    int status = kbr_err_http_status(shown);
    va_list ap;

    if (fmt != NULL) {
        va_start(ap, fmt);
        vsnprintf(r->msg.text, sizeof(r->msg.text), fmt, ap);
        va_end(ap);
    }
    if (r->msg.text[0] == '\0')
        snprintf(r->msg.text, sizeof(r->msg.text), "%s", kbr_err_str(err));
    r->err = err;
    if (r->rec == NULL)
        return;
    if (kbr_audit_rec_set_outcome(r->rec, status < 500 ? "denied" : "error",
                                  kbr_err_api_code(shown)) != KBR_OK)
        return;
    json_object_set_new(r->rec->detail, "message", clean_string(r->msg.text));
    kbr_effects_free(r->rec->effects);
    r->rec->effects = NULL;
    r->rec->key_use = false;
}

void kbd_req_fail(kbd_req *r, kbr_err err, const char *fmt, ...)
{
    va_list ap;

    if (fmt != NULL) {
        va_start(ap, fmt);
        vsnprintf(r->msg.text, sizeof(r->msg.text), fmt, ap);
        va_end(ap);
    }
    kbd_req_error(r, err, NULL);
    if (r->rec == NULL) {
        reply_error(r, err, r->msg.text, 0);
        req_end(r);
        return;
    }
    kbd_req_audit_and_reply(r);
}

static void on_audit_done(kbr_audit_rec *rec, void *arg)
{
    kbd_req *r = arg;

    (void)rec;
    kbd_complete(r->d, r);
}

void kbd_req_audit_and_reply(kbd_req *r)
{
    r->rec->done = on_audit_done;
    r->rec->arg = r;
    kbr_audit_submit(r->d->audit, r->rec);
}

/* Event thread: the answer of a route without a record (discovery, health, metrics, CRLs),
 * made by finish: JSON, or text or bytes of their own type. */
static void reply_unrecorded(kbd_req *r)
{
    if (r->finish != NULL)
        r->finish(r);
    if (r->err != KBR_OK)
        reply_error(r, r->err, r->msg.text, 0);
    else if (r->raw != NULL)
        send_bytes(r, r->status != 0 ? r->status : 200, r->resp_type, r->raw, r->raw_len, 0);
    else if (r->resp_text != NULL)
        send_typed(r, r->status != 0 ? r->status : 200, r->resp_type, r->resp_text, 0);
    else
        send_json(r, r->status != 0 ? r->status : 200, r->resp, 0);
    req_end(r);
}

/* Event thread: the audit record of r is settled; send the answer. */
static void finish_request(kbd_req *r)
{
    kbr_audit_rec *rec = r->rec;
    bool ok = rec != NULL && rec->result == KBR_OK && r->err == KBR_OK;

    if (r->http == NULL) {
        /* internal jobs (health probes, CRLs) have no client: settling is all there is */
        if (r->settle != NULL)
            r->settle(r, ok);
        req_free(r);
        return;
    }
    if (r->settle != NULL)
        r->settle(r, ok);

    if (r->use_reserved)
        kbr_policy_finish_use(r->tok, ok && rec->key_use);
    if (rec->result == KBR_ERR_AUDIT) {
        if (r->d->stats.audit_failures++ == 0 || kbr_audit_healthy(r->d->audit))
            kbd_log(KBD_LOG_ERROR, "audit.unavailable", r->request_id,
                    "audit record not durable; answering 503 audit_unavailable until the store "
                    "accepts writes again");
        reply_error(r, KBR_ERR_AUDIT,
                    "the audit record could not be made durable; nothing was released", 0);
    } else if (rec->result == KBR_ERR_INTERNAL) {
        /* The ledger refused this request's changes alone (audit/writer.c); the others of its
         * group went through.  A broken invariant of the broker's, so it goes to the log too. */
        kbd_log(KBD_LOG_ERROR, "audit.ledger_refused", r->request_id,
                "audit entry %lld: the ledger refused the request's changes; recorded as an "
                "error",
                (long long)rec->seq);
        reply_error(r, KBR_ERR_AUDIT,
                    "the ledger could not record this request's changes; the request is recorded "
                    "as an error and nothing was released",
                    rec->seq);
    } else if (rec->result == KBR_ERR_QUOTA) {
        /* another broker sharing the store used the token's last use first */
        if (r->tok != NULL && rec->jti != NULL)
            kbr_policy_uses_spent(r->d->policy, rec->jti);
        reply_error(r, KBR_ERR_QUOTA,
                    "the token has used all of its max_uses; nothing was released", rec->seq);
    } else if (rec->result == KBR_ERR_CONFLICT) {
        reply_error(r, KBR_ERR_CONFLICT,
                    r->msg.text[0] != '\0' ? r->msg.text : "conflicts with the current state",
                    rec->seq);
    } else if (r->err != KBR_OK) {
        reply_error(r, r->err, r->msg.text, rec->seq);
    } else if (r->respond != NULL) {
        r->respond(r, rec->seq);
        return;
    } else {
        if (r->finish != NULL)
            r->finish(r);
        if (r->err != KBR_OK) {
            /* the answer could not be made (out of memory): the record stands, nothing goes out */
            reply_error(r, r->err, r->msg.text, rec->seq);
            req_end(r);
            return;
        }
        if (r->add_audit_seq_to_resp)
            json_object_set_new(r->resp, "audit_seq", json_integer(rec->seq));
        if (r->raw != NULL)
            send_bytes(r, r->status != 0 ? r->status : 200, r->resp_type, r->raw, r->raw_len,
                       rec->seq);
        else if (r->resp_text != NULL)
            send_typed(r, r->status != 0 ? r->status : 200, r->resp_type, r->resp_text, rec->seq);
        else
            send_json(r, r->status != 0 ? r->status : 200, r->resp, rec->seq);
    }
    req_end(r);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    kbd *d = arg;
    kbd_req *list;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&d->done_lock);
    list = d->done_head;
    d->done_head = d->done_tail = NULL;
    pthread_mutex_unlock(&d->done_lock);
    while (list != NULL) {
        kbd_req *next = list->next;
        list->next = NULL;
        finish_request(list);
        list = next;
    }
}

void kbd_done_drain(kbd *d)
{
    kbd_req *list;

    pthread_mutex_lock(&d->done_lock);
    list = d->done_head;
    d->done_head = d->done_tail = NULL;
    pthread_mutex_unlock(&d->done_lock);
    while (list != NULL) {
        kbd_req *next = list->next;
        /* a client's request is finished before the loop ends (d->inflight); an internal
         * job (a checkpoint, a CRL, a probe) may come back after it: nothing waits for it */
        if (list->http == NULL)
            req_free(list);
        list = next;
    }
}

/*
 * Only the request that finds the list empty wakes the loop: on_done takes the
 * whole list, and a list that is not empty has a wake-up on its way (its first
 * request's, which comes after that request was appended).  One event_active
 * per group, not per request: each takes libevent's base lock, which the loop
 * holds while it dispatches.
 */
void kbd_complete(kbd *d, kbd_req *r)
{
    bool first;

    pthread_mutex_lock(&d->done_lock);
    first = d->done_head == NULL;
    if (d->done_tail != NULL)
        d->done_tail->next = r;
    else
        d->done_head = r;
    d->done_tail = r;
    pthread_mutex_unlock(&d->done_lock);
    if (first)
        event_active(d->done_ev, EV_READ, 0);
}

const char *kbd_req_query(const kbd_req *r, const char *name)
{
    if (!r->query_parsed)
        return NULL;
    return evhttp_find_header(&r->query, name);
}

/* The raw path (still percent-encoded: routes match on it) and the parsed query. */
static kbr_err parse_uri(kbd_req *r, const char **path)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r->http);
    const char *q = uri != NULL ? evhttp_uri_get_query(uri) : NULL;

    *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    if (*path == NULL)
        return KBR_ERR_BAD_REQUEST;
    TAILQ_INIT(&r->query);
    r->query_parsed = true;
    if (q != NULL && evhttp_parse_query_str(q, &r->query) != 0)
        return KBR_ERR_BAD_REQUEST;
    return KBR_OK;
}

/* Each query parameter at most once (as kbd_req_query finds them: by name, in any case): one
 * reader taking the first and another the last would see two requests. */
static kbr_err query_once(kbd_req *r)
{
    const struct evkeyval *a, *b;

    TAILQ_FOREACH(a, &r->query, next)
    {
        for (b = TAILQ_NEXT(a, next); b != NULL; b = TAILQ_NEXT(b, next))
            if (strcasecmp(a->key, b->key) == 0) {
                char *clean = kbd_utf8_clean(a->key);
                kbr_err err = kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                                       "query parameter \"%.64s\" is given more than once",
                                       clean != NULL ? clean : "?");
                free(clean);
                return err;
            }
    }
    return KBR_OK;
}

/* The token of an Authorization field value, or NULL. */
static const char *bearer_in(const char *h)
{
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return h;
}

static const char *bearer_of(struct evhttp_request *http)
{
    return bearer_in(evhttp_find_header(evhttp_request_get_input_headers(http), "Authorization"));
}

/* Does the token hold the route's op?  Routes with op 0 check in their authorizer. */
static bool route_allows(const kbd_route *route, const kbr_token *tok)
{
    return route->op == 0 || kbr_policy_allows_op(tok, (kbr_op)route->op);
}

/*
 * The checks on_request() makes before it reads a body (authenticate(), or a route's admit
 * stage for the token exchange), without their side effects (audit record, rate limit): the
 * ingress filter asks, for each request that announces a body, whether it would be read.  Any
 * change to the checks before the body is read belongs here too.
 */
bool kbd_http_body_allowed(kbd *d, const char *method, const char *target,
                           const char *authorization, const char *x5t, uint64_t length,
                           bool chunked)
{
    struct evhttp_uri *uri = evhttp_uri_parse_with_flags(target, EVHTTP_URI_NONCONFORMANT);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    const char *bearer = bearer_in(authorization);
    const kbd_route *route = NULL;
    kbr_token *tok = NULL;
    kbr_msg msg = {{0}};
    bool known = false, ok;

    if (path != NULL && kbd_path_check(path, &msg) == KBR_OK)
        route = kbd_route_match(method, path, NULL, NULL, &known);
    /* a route without a token (the token exchange) reads small bodies, framed by length */
    if (route != NULL && !route->authenticated) {
        evhttp_uri_free(uri);
        return route->open_body_max > 0 && !chunked && length <= route->open_body_max &&
               kbd_oidc_enabled(d);
    }
    ok = route != NULL && route->authenticated && bearer != NULL &&
         kbr_policy_authenticate(d->policy, bearer, time(NULL), x5t, &tok, &msg) == KBR_OK &&
         route_allows(route, tok);
    evhttp_uri_free(uri);
    return ok;
}

/*
 * A flood of requests without a valid token must not fill the disk with
 * denial entries: past a per-source rate they are answered without an entry
 * of their own, and a periodic entry records how many there were.
 */
void kbd_req_unrecorded_over_rate(kbd_req *r)
{
    const char *peer = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *conn =
        r->http != NULL ? evhttp_request_get_connection(r->http) : NULL;

    if (conn != NULL)
        evhttp_connection_get_peer(conn, (char **)&peer, &port);
    if (!kbd_ratelimit_allow(r->d->unauth_rl, peer != NULL ? peer : "?")) {
        if (r->d->unauth_suppressed++ == 0)
            r->d->unauth_since = time(NULL);
        kbr_audit_rec_free(r->rec);
        r->rec = NULL;
    }
}

void kbd_req_fail_unrecorded_over_rate(kbd_req *r, kbr_err err, const char *why)
{
    char message[KBR_MSG_LEN];

    kbd_req_unrecorded_over_rate(r);
    snprintf(message, sizeof(message), "%s", why);
    kbd_req_fail(r, err, "%s", message);
}

static void fail_unauthenticated(kbd_req *r, const char *why)
{
    kbd_req_fail_unrecorded_over_rate(r, KBR_ERR_UNAUTHENTICATED, why);
}

void kbd_flush_suppressed(kbd *d)
{
    kbr_audit_rec *rec = NULL;
    char since[KBR_TIME_LEN], until[KBR_TIME_LEN];

    if (d->unauth_suppressed == 0 ||
        kbr_audit_rec_new("service:keybrokerd", NULL, "audit.suppressed", NULL, &rec) != KBR_OK)
        return;
    kbr_time_fmt(d->unauth_since, since);
    kbr_time_fmt(time(NULL), until);
    json_object_set_new(rec->detail, "unauthenticated_denials",
                        json_integer((json_int_t)d->unauth_suppressed));
    json_object_set_new(rec->detail, "since", json_string(since));
    json_object_set_new(rec->detail, "until", json_string(until));
    d->unauth_suppressed = 0;
    /* no done(): the writer frees the record once it is committed */
    kbr_audit_submit(d->audit, rec);
}

/* Authenticates and opens the audit record; on failure the request is answered. */
static bool authenticate(kbd_req *r)
{
    const char *bearer = bearer_of(r->http);
    kbr_err err;

    if (kbr_audit_rec_new(NULL, NULL, r->route->audit_op, NULL, &r->rec) != KBR_OK) {
        kbd_req_fail(r, KBR_ERR_NOMEM, "out of memory");
        return false;
    }
    json_object_set_new(r->rec->detail, "path", clean_string(evhttp_request_get_uri(r->http)));
    if (bearer == NULL) {
        fail_unauthenticated(r, "missing Authorization: Bearer token");
        return false;
    }
    char x5t[64];
    bool has_cert = r->d->tls != NULL && kbd_tls_client_x5t(r->http, x5t);

    err = kbr_policy_authenticate(r->d->policy, bearer, time(NULL), has_cert ? x5t : NULL, &r->tok,
                                  &r->msg);
    if (err != KBR_OK) {
        fail_unauthenticated(r, r->msg.text);
        return false;
    }
    r->sub = strdup(r->tok->sub);
    r->jti = strdup(r->tok->jti);
    r->rec->sub = strdup(r->tok->sub);
    r->rec->jti = strdup(r->tok->jti);
    if (r->sub == NULL || r->jti == NULL || r->rec->sub == NULL || r->rec->jti == NULL ||
        kbd_req_attribute_token(r) != KBR_OK) {
        kbd_req_fail(r, KBR_ERR_NOMEM, "out of memory");
        return false;
    }
    if (!kbd_ratelimit_allow(r->d->ratelimit, r->sub)) {
        kbd_req_fail(r, KBR_ERR_RATE_LIMITED,
                     "principal %s is over its rate limit of %ld requests per second", r->sub,
                     r->d->cfg.rate_limit);
        return false;
    }
    if (!route_allows(r->route, r->tok)) {
        kbd_req_fail(r, KBR_ERR_FORBIDDEN, "token scope does not include op \"%s\"",
                     kbr_op_name((kbr_op)r->route->op));
        return false;
    }
    return true;
}

bool kbd_req_read_body(kbd_req *r, size_t limit)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->http);
    size_t len = evbuffer_get_length(in);
    json_error_t jerr;
    unsigned char *data;

    if (strcmp(r->route->method, "POST") != 0)
        return true;
    if (len > limit) {
        kbd_req_fail(r, KBR_ERR_TOO_LARGE, "request body of %zu bytes is over the limit of %zu",
                     len, limit);
        return false;
    }
    if (len == 0) {
        kbd_req_fail(r, KBR_ERR_BAD_REQUEST, "request body is empty: it must be a JSON object");
        return false;
    }
    data = evbuffer_pullup(in, -1);
    r->body = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (r->body == NULL) {
        kbd_req_fail(r, KBR_ERR_BAD_REQUEST, "malformed JSON at line %d column %d: %s", jerr.line,
                     jerr.column, jerr.text);
        return false;
    }
    if (!json_is_object(r->body)) {
        kbd_req_fail(r, KBR_ERR_BAD_REQUEST, "request body must be a JSON object");
        return false;
    }
    return true;
}

static bool read_body(kbd_req *r)
{
    return kbd_req_read_body(r, r->d->cfg.body_limit);
}

/* A route without a token: its admit stage, then its body (open_body_max); on failure r is
 * answered. */
static bool admit(kbd_req *r)
{
    kbr_err err;

    if (r->route->admit == NULL)
        return true;
    err = r->route->admit(r);
    if (err != KBR_OK) {
        kbd_req_fail(r, err, NULL);
        return false;
    }
    return r->route->open_body_max == 0 || kbd_req_read_body(r, r->route->open_body_max);
}

/*
 * r's route and its {} segment, decoded; on failure r->msg says why.  A path a route matches
 * but whose segments are malformed (an encoded "/" or NUL, "." or "..", bad escapes), or whose
 * query gives a parameter twice, leaves
 * r->route set with KBR_ERR_BAD_REQUEST, so that the refusal is recorded under that route's
 * action once the token is checked; only a path no route matches goes unrecorded (404).
 */
static kbr_err find_route(kbd_req *r, const char *method)
{
    kbr_err err = KBR_OK;
    const char *path = NULL, *cap = NULL;
    size_t caplen = 0;
    bool known = false;
    const char *refused =
        evhttp_find_header(evhttp_request_get_input_headers(r->http), KBD_INGRESS_HEADER);
    int problem = refused != NULL ? atoi(refused) : KBD_HEAD_OK;

    /* stands in for a request the ingress filter refused (ingress.c) */
    KBR_ENSURE(refused == NULL,
               kbr_fail(&r->msg,
                        problem == KBD_HEAD_TOO_LARGE ? KBR_ERR_TOO_LARGE : KBR_ERR_BAD_REQUEST,
                        "%s", kbd_head_problem_text(problem)));
    KBR_ENSURE(parse_uri(r, &path) == KBR_OK,
               kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "malformed request URI"));
    err = kbd_path_check(path, &r->msg);
    if (err == KBR_OK)
        err = query_once(r);
    r->route = kbd_route_match(method, path, &cap, &caplen, &known);
    KBR_GUARD(err);
    KBR_ENSURE(
        r->route != NULL || !known,
        kbr_fail(&r->msg, KBR_ERR_NOT_FOUND, "method %s not allowed on %.128s", method, path));
    KBR_ENSURE(r->route != NULL,
               kbr_fail(&r->msg, KBR_ERR_NOT_FOUND, "no such endpoint: %.128s", path));
    KBR_ENSURE(cap == NULL || (r->arg = kbd_segment_decode(cap, caplen)) != NULL,
               kbr_fail(&r->msg, KBR_ERR_NOMEM, "out of memory"));
out:
    return err;
}

/* The stages after authorize (and wait): the work, on a worker or here, then the record, or at
 * once the answer of a route without a record. */
static void go_on(kbd_req *r)
{
    const kbd_route *route = r->route;

    r->finish = route->finish;
    r->respond = route->respond;
    r->settle = route->settle;
    if (route->work != NULL && route->work_inline)
        route->work(r, NULL);
    else
        r->work = route->work;
    if (r->work != NULL)
        kbd_workers_submit(r->d, r);
    else if (r->rec != NULL)
        kbd_req_audit_and_reply(r);
    else
        reply_unrecorded(r);
}

/*
 * The route's stages (kbd_route): parse, authorize, then the work on a worker and the record,
 * or at once for a route without a record; finish_request() answers.  An error is returned
 * for on_request() to answer, with r->msg.
 */
static kbr_err run_stages(kbd_req *r)
{
    const kbd_route *route = r->route;
    kbr_err err = KBR_OK;

    r->ctx_free = route->free_req;
    if (route->parse != NULL)
        err = route->parse(r, &r->ctx, &r->msg);
    /* a refusal of the request is recorded with what it named, as far as parse read it */
    if (route->describe != NULL && r->ctx != NULL && r->rec != NULL) {
        kbr_err described = route->describe(r, r->ctx);
        if (err == KBR_OK)
            err = described;
    }
    KBR_GUARD(err);
    if (route->authorize != NULL)
        KBR_GUARD(route->authorize(r, r->ctx));
    if (route->reserve_use)
        KBR_GUARD(kbd_req_reserve_use(r));
    if (route->wait != NULL) {
        bool waiting = false;
        /* what wait holds is released by settle, whatever the request's end */
        r->settle = route->settle;
        KBR_GUARD(route->wait(r, r->ctx, &waiting));
        if (waiting)
            goto out; /* kbd_req_resume() takes it on */
    }
    go_on(r);
out:
    return err;
}

void kbd_req_resume(kbd_req *r, kbr_err err, const char *why)
{
    if (err != KBR_OK)
        kbd_req_fail(r, err, "%s", why != NULL ? why : kbr_err_str(err));
    else
        go_on(r);
}

static void on_request(struct evhttp_request *http, void *arg)
{
    kbd *d = arg;
    kbd_req *r = calloc(1, sizeof(*r));
    const char *method;
    kbr_err err;

    /* Never counted at accept (out of memory there), or not TLS on the TLS port. */
    if (!kbd_connlimit_request_begins(d, evhttp_request_get_connection(http))) {
        free(r);
        evhttp_add_header(evhttp_request_get_output_headers(http), "Connection", "close");
        evhttp_send_error(http, 503, "connection not admitted");
        return;
    }
    if (r == NULL) {
        evhttp_send_error(http, 503, "out of memory");
        return;
    }
    r->d = d;
    r->http = http;
    r->t0 = kbr_monotonic_seconds();
    r->arrived = time(NULL);
    set_request_id(r);
    d->inflight++;
    d->stats.requests++;
    method = evhttp_request_get_command(http) == EVHTTP_REQ_GET    ? "GET"
             : evhttp_request_get_command(http) == EVHTTP_REQ_POST ? "POST"
                                                                   : "OTHER";
    err = find_route(r, method);
    /* a malformed path of a route that needs a token: refused once the token is checked, and
     * recorded (authenticate() answers its own failure) */
    if (err == KBR_ERR_BAD_REQUEST && r->route != NULL && r->route->authenticated) {
        kbr_msg why = r->msg;

        if (!authenticate(r))
            return;
        r->msg = why;
        kbd_req_fail(r, err, NULL);
        return;
    }
    /* authenticate(), read_body() and admit() answer their own failures */
    if (err == KBR_OK && r->route->authenticated && (!authenticate(r) || !read_body(r)))
        return;
    if (err == KBR_OK && !r->route->authenticated && !admit(r))
        return;
    if (err == KBR_OK)
        err = run_stages(r);
    if (err != KBR_OK)
        kbd_req_fail(r, err, NULL);
}

/*
 * Requests rejected before our callback sees them (headers over the limit,
 * a body over twice the limit) are answered by libevent itself.
 */
kbr_err kbd_http_start(kbd *d, kbr_msg *msg)
{
    char portbuf[16];
    kbr_msg why = {{0}};
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int port;

    d->done_ev = event_new(d->base, -1, 0, on_done, d);
    d->http = evhttp_new(d->base);
    if (d->http == NULL || d->done_ev == NULL)
        return kbr_fail(msg, KBR_ERR_NOMEM, "cannot create the HTTP server");
    evhttp_set_allowed_methods(d->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    /* Bodies a little over the limit reach the handler, which answers 413 in the API's form. */
    evhttp_set_max_body_size(d->http, (ev_ssize_t)(d->cfg.body_limit * 2));
    evhttp_set_max_headers_size(d->http, KBD_MAX_HEADERS);
    /* what sends nothing for this long is dropped by libevent, what trickles by connlimit.c */
    evhttp_set_timeout(d->http, (int)d->cfg.request_timeout);
    evhttp_set_gencb(d->http, on_request, d);
    if (kbd_tls_setup(d, msg) != KBR_OK || kbd_connlimit_start(d, msg) != KBR_OK)
        return KBR_ERR_CONFIG;
    d->bound = evhttp_bind_socket_with_handle(d->http, d->cfg.listen_host,
                                              (ev_uint16_t)d->cfg.listen_port);
    if (d->bound == NULL)
        return kbr_fail(msg, KBR_ERR_CONFIG, "cannot listen on %s:%d", d->cfg.listen_host,
                        d->cfg.listen_port);
    kbd_connlimit_listening(d);
    if (getsockname(evhttp_bound_socket_get_fd(d->bound), (struct sockaddr *)&ss, &sl) != 0)
        return kbr_fail(msg, KBR_ERR_IO, "getsockname failed");
    port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    kbd_log(KBD_LOG_INFO, "listening", NULL, "listening on %s:%d (%s)", d->cfg.listen_host, port,
            d->tls == NULL         ? "plain HTTP, loopback only"
            : d->cfg.tls_client_ca ? "HTTPS, client certificates required"
                                   : "HTTPS");
    if (d->cfg.port_file != NULL) {
        snprintf(portbuf, sizeof(portbuf), "%d\n", port);
        if (kbr_file_write(d->cfg.port_file, portbuf, strlen(portbuf), 0644, &why) != KBR_OK)
            return kbr_fail(msg, KBR_ERR_IO, "cannot write port_file: %s", why.text);
    }
    return KBR_OK;
}

void kbd_http_stop_listening(kbd *d)
{
    if (d->bound != NULL) {
        evhttp_del_accept_socket(d->http, d->bound);
        d->bound = NULL;
    }
}
