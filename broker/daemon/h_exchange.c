/*
 * h_exchange.c - POST /v1/tokens/exchange: an ID token of a configured OpenID Connect issuer
 * (a CI system's job identity) for a broker token whose scope a configured rule gives.
 *
 * On the event thread: the per-source exchange rate, the body, the issuer the token names
 * (its iss, unverified, picks the configuration; everything is then checked against that
 * configuration), the issuer's key set, the ID token (policy/oidc.c), the first rule whose
 * claim conditions all hold, the principal the rule makes of the claims and the TTL: the
 * rule's, cut to what the ID token has left and to max_token_ttl.  On a worker: the token
 * is minted like any other (tokens.c) and recorded by its token.issue effect, an orphan
 * whose issued_by names the issuer and the rule.  Every exchange is an audit entry
 * (token.exchange) with the claims that decided it, never the ID token.
 *
 * Key sets: a thread of its own fetches them (libcurl for jwks_url, a read for jwks_file),
 * at start, every jwks_refresh seconds, and when a token names a kid the set lacks, at most
 * every jwks_min_interval seconds.  A request whose kid is missing waits for that fetch
 * ("parked"), so an issuer's key rotation costs its pipelines nothing.  A fetch that fails
 * or brings a malformed set keeps the set the broker had.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "kbd.h"
#include "routes.h"

#define JWKS_MAX_BYTES  (1024 * 1024)
#define FETCH_TIMEOUT   10 /* seconds, a whole fetch */
#define CONNECT_TIMEOUT 5
#define CLAIM_TEXT_MAX  256

typedef struct ex_ctx ex_ctx;
struct ex_ctx {
    char *id_token; /* wiped on free */
    char *kid;
    size_t issuer;
    const kbd_oidc_rule *rule;
    kbr_scope scope;
    char *principal, *issued_by;
    long ttl;
    time_t not_after;
    kbd_issuer signer; /* the current issuer key as the request was decided */
    char *token;
    json_t *effect, *row;
    kbd_req *r;
    ex_ctx *next_parked;
};

typedef struct {
    kbr_jwks *keys;
    double last_fetch; /* monotonic start of the last fetch; 0: never */
    bool fetching;
    bool queued;
    char error[256]; /* the last fetch's failure, "" after a good one */
    struct event *timer;
    ex_ctx *parked;
    struct kbd_oidc *o;
    size_t idx;
} issuer_state;

typedef struct result result;
struct result {
    size_t idx;
    kbr_jwks *keys;
    char error[256];
    result *next;
};

struct kbd_oidc {
    kbd *d;
    issuer_state *st;
    size_t n;
    kbd_ratelimit *rl;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping;
    result *results;
    struct event *done_ev;
};

bool kbd_oidc_enabled(const kbd *d)
{
    return d->oidc != NULL;
}

/* ---- fetching (the fetch thread) ---- */

typedef struct {
    char *buf;
    size_t len;
    bool too_big;
} sink;

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    sink *s = arg;
    size_t add = size * n;
    char *more;

    if (s->len + add > JWKS_MAX_BYTES) {
        s->too_big = true;
        return 0;
    }
    more = realloc(s->buf, s->len + add + 1);
    if (more == NULL)
        return 0;
    s->buf = more;
    memcpy(s->buf + s->len, p, add);
    s->len += add;
    s->buf[s->len] = '\0';
    return add;
}

static kbr_err fetch_url(const kbd_oidc_issuer *iss, sink *s, char *error, size_t errlen)
{
    CURL *c = curl_easy_init();
    char curl_err[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode rc;

    if (c == NULL) {
        snprintf(error, errlen, "out of memory");
        return KBR_ERR_NOMEM;
    }
    curl_easy_setopt(c, CURLOPT_URL, iss->jwks_url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)FETCH_TIMEOUT);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_TIMEOUT);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "keybrokerd");
    if (iss->jwks_ca_file != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, iss->jwks_ca_file);
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (s->too_big) {
        snprintf(error, errlen, "%s: larger than %d bytes", iss->jwks_url, JWKS_MAX_BYTES);
        return KBR_ERR_IO;
    }
    if (rc != CURLE_OK) {
        snprintf(error, errlen, "%s: %s", iss->jwks_url,
                 curl_err[0] != '\0' ? curl_err : curl_easy_strerror(rc));
        return KBR_ERR_IO;
    }
    if (status != 200) {
        snprintf(error, errlen, "%s: HTTP status %ld", iss->jwks_url, status);
        return KBR_ERR_IO;
    }
    return KBR_OK;
}

/* The issuer's key set, from its file or URL, parsed; error says why not. */
static kbr_jwks *fetch_jwks(const kbd_oidc_issuer *iss, char *error, size_t errlen)
{
    sink s = {NULL, 0, false};
    kbr_jwks *keys = NULL;
    kbr_msg why = {{0}};
    kbr_err err;

    if (iss->jwks_file != NULL) {
        err = kbr_file_read(iss->jwks_file, JWKS_MAX_BYTES, &s.buf, &s.len);
        if (err != KBR_OK)
            snprintf(error, errlen, "%s: cannot be read (or is larger than %d bytes)",
                     iss->jwks_file, JWKS_MAX_BYTES);
    } else {
        err = fetch_url(iss, &s, error, errlen);
    }
    if (err == KBR_OK && kbr_jwks_parse(s.buf != NULL ? s.buf : "", s.len, &keys, &why) != KBR_OK)
        snprintf(error, errlen, "%s: %s", iss->jwks_file != NULL ? iss->jwks_file : iss->jwks_url,
                 why.text);
    free(s.buf);
    return keys;
}

static void *fetch_thread(void *arg)
{
    struct kbd_oidc *o = arg;

    pthread_mutex_lock(&o->lock);
    while (!o->stopping) {
        size_t idx = o->n;
        for (size_t i = 0; i < o->n && idx == o->n; i++)
            if (o->st[i].queued)
                idx = i;
        if (idx == o->n) {
            pthread_cond_wait(&o->cond, &o->lock);
            continue;
        }
        o->st[idx].queued = false;
        pthread_mutex_unlock(&o->lock);
        result *res = calloc(1, sizeof(*res));
        if (res != NULL) {
            res->idx = idx;
            res->keys = fetch_jwks(&o->d->cfg.oidc.issuers[idx], res->error, sizeof(res->error));
        }
        pthread_mutex_lock(&o->lock);
        if (res != NULL) {
            res->next = o->results;
            o->results = res;
        }
        event_active(o->done_ev, EV_READ, 0);
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

/* Event thread: asks the fetch thread for issuer idx's key set. */
static void fetch_start(struct kbd_oidc *o, size_t idx)
{
    issuer_state *st = &o->st[idx];

    if (st->fetching)
        return;
    st->fetching = true;
    st->last_fetch = kbr_monotonic_seconds();
    pthread_mutex_lock(&o->lock);
    st->queued = true;
    pthread_cond_signal(&o->cond);
    pthread_mutex_unlock(&o->lock);
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    issuer_state *st = arg;

    (void)fd;
    (void)what;
    fetch_start(st->o, st->idx);
}

/* ---- the exchange ---- */

void kbd_exchange_free(void *p)
{
    ex_ctx *c = p;

    if (c == NULL)
        return;
    if (c->id_token != NULL)
        OPENSSL_clear_free(c->id_token, strlen(c->id_token));
    if (c->token != NULL)
        OPENSSL_clear_free(c->token, strlen(c->token));
    free(c->kid);
    kbr_scope_cleanup(&c->scope);
    free(c->principal);
    free(c->issued_by);
    json_decref(c->effect);
    json_decref(c->row);
    free(c);
}

/* A refusal: 401 (or err), recorded unless the source is over its recording rate; returns
 * err, for the stage to return. */
static kbr_err deny(kbd_req *r, kbr_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kbr_err deny(kbd_req *r, kbr_err err, const char *fmt, ...)
{
    char text[KBR_MSG_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    snprintf(r->msg.text, sizeof(r->msg.text), "%s", text);
    kbd_req_unrecorded_over_rate(r);
    return err;
}

/* A claim's value as the entry keeps it: text of at most CLAIM_TEXT_MAX bytes, or null. */
static json_t *claim_for_record(const json_t *claims, const char *name)
{
    char *text = NULL, *clean;
    json_t *v;

    if (kbr_claim_text(claims, name, &text) != KBR_OK)
        return json_object_get(claims, name) == NULL ? NULL : json_string("(not text)");
    if (strlen(text) > CLAIM_TEXT_MAX)
        text[CLAIM_TEXT_MAX] = '\0';
    clean = kbd_utf8_clean(text);
    v = clean != NULL ? json_string(clean) : NULL;
    free(clean);
    free(text);
    return v;
}

static void record_claim(json_t *out, const json_t *claims, const char *name)
{
    json_t *v;

    if (json_object_get(out, name) != NULL)
        return;
    v = claim_for_record(claims, name);
    json_object_set_new(out, name, v != NULL ? v : json_null());
}

/* The claims in {...} of a principal template. */
static void record_template_claims(json_t *out, const json_t *claims, const char *tmpl)
{
    for (const char *q = strchr(tmpl, '{'); q != NULL; q = strchr(q + 1, '{')) {
        const char *end = strchr(q, '}');
        char name[80];
        if (end == NULL || (size_t)(end - q - 1) >= sizeof(name))
            return;
        memcpy(name, q + 1, (size_t)(end - q - 1));
        name[end - q - 1] = '\0';
        record_claim(out, claims, name);
    }
}

/*
 * What the entry keeps of the claims: the identity of the job (sub, jti, iat, exp), the
 * issuer's audit_claims, and every claim the rule that granted (or, when none did, every rule
 * of the issuer) reads.
 */
static json_t *claims_record(const kbd_config *cfg, size_t issuer, const kbd_oidc_rule *granted,
                             const json_t *claims)
{
    static const char *const identity[] = {"sub", "jti", "iat", "exp", NULL};
    const kbd_oidc_issuer *iss = &cfg->oidc.issuers[issuer];
    json_t *out = json_object();

    if (out == NULL)
        return NULL;
    for (size_t i = 0; identity[i] != NULL; i++)
        record_claim(out, claims, identity[i]);
    for (size_t i = 0; i < iss->n_audit_claims; i++)
        record_claim(out, claims, iss->audit_claims[i]);
    for (size_t i = 0; i < cfg->oidc.nrules; i++) {
        const kbd_oidc_rule *u = &cfg->oidc.rules[i];
        if (u->issuer != issuer || (granted != NULL && u != granted))
            continue;
        for (size_t k = 0; k < u->nconds; k++)
            record_claim(out, claims, u->conds[k].claim);
        record_template_claims(out, claims, u->principal);
    }
    return out;
}

static bool rule_holds(const kbd_oidc_rule *u, const json_t *claims)
{
    for (size_t k = 0; k < u->nconds; k++) {
        char *text = NULL;
        bool ok = kbr_claim_text(claims, u->conds[k].claim, &text) == KBR_OK &&
                  kbr_glob_match(u->conds[k].pattern, text);
        free(text);
        if (!ok)
            return false;
    }
    return true;
}

void kbd_exchange_work(kbd_req *r, kbd_worker *w)
{
    ex_ctx *c = r->ctx;
    kbd_token_spec spec = {.sub = c->principal,
                           .issued_by = c->issued_by,
                           .parent_jti = NULL,
                           .orphan = true,
                           .scope = &c->scope,
                           .ttl = c->ttl,
                           .not_after = c->not_after,
                           .cnf_x5t = NULL};
    (void)kbd_token_mint_for(r, w, &c->signer, &spec, false, "exchange again", &c->token,
                             &c->effect, &c->row);
}

void kbd_exchange_finish(kbd_req *r)
{
    ex_ctx *c = r->ctx;

    if (kbr_policy_add_token(r->d->policy, c->row) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "the token could not be registered");
        return;
    }
    r->resp = json_pack(
        "{s:s,s:O,s:O,s:O,s:O,s:s,s:s}", "token", c->token, "jti",
        json_object_get(c->effect, "jti"), "expires_at", json_object_get(c->effect, "expires_at"),
        "sub", json_object_get(c->effect, "sub"), "scope", json_object_get(c->effect, "scope"),
        "issuer", r->d->cfg.oidc.issuers[c->issuer].name, "rule", c->rule->name);
}

/* The key set holds the kid (or never will): verify and pick the rule; the token is minted
 * on a worker next (kbd_exchange_work). */
static kbr_err decide(kbd_req *r)
{
    ex_ctx *c = r->ctx;
    kbd *d = r->d;
    const kbd_oidc_issuer *iss = &d->cfg.oidc.issuers[c->issuer];
    issuer_state *st = &d->oidc->st[c->issuer];
    kbr_idtoken_rules rules = {
        .issuer = iss->issuer, .audience = iss->audience, .algs = iss->algs, .leeway = iss->leeway};
    kbr_idtoken t = {.claims = NULL};
    json_t *record = NULL;
    kbr_msg why = {{0}};
    time_t now = time(NULL);
    kbr_err err;
    long left;

    err = kbr_idtoken_verify(c->id_token, &rules, st->keys, now, &t, &why);
    if (err == KBR_ERR_NOT_FOUND && st->error[0] != '\0')
        snprintf(why.text, sizeof(why.text),
                 "id_token kid is not in the key set of issuer %.32s, which could not be "
                 "fetched again: %.100s",
                 iss->name, st->error);
    if (err != KBR_OK) {
        json_object_set_new(r->rec->detail, "reason", json_string(why.text));
        err = deny(r, err == KBR_ERR_NOMEM ? err : KBR_ERR_UNAUTHENTICATED, "%s", why.text);
        goto out;
    }
    json_object_set_new(r->rec->detail, "alg", json_string(kbr_jwa_name(t.alg)));
    for (size_t i = 0; i < d->cfg.oidc.nrules && c->rule == NULL; i++)
        if (d->cfg.oidc.rules[i].issuer == c->issuer && rule_holds(&d->cfg.oidc.rules[i], t.claims))
            c->rule = &d->cfg.oidc.rules[i];
    record = claims_record(&d->cfg, c->issuer, c->rule, t.claims);
    if (record != NULL)
        json_object_set(r->rec->detail, "claims", record);
    if (c->rule == NULL) {
        err = deny(r, KBR_ERR_UNAUTHENTICATED,
                   "no exchange rule of issuer %s matches the id_token's claims", iss->name);
        goto out;
    }
    json_object_set_new(r->rec->detail, "rule", json_string(c->rule->name));
    err = kbr_principal_from_template(c->rule->principal, t.claims, &c->principal, &why);
    if (err == KBR_OK && !kbr_policy_sub_valid(c->principal))
        err = kbr_fail(&why, KBR_ERR_UNAUTHENTICATED,
                       "the id_token's claims make no valid principal for rule %s", c->rule->name);
    if (err != KBR_OK) {
        err = deny(r, err == KBR_ERR_NOMEM ? err : KBR_ERR_UNAUTHENTICATED, "%s", why.text);
        goto out;
    }
    /* what is issued lives at most as long as the ID token has left, and the rule allows */
    left = (long)(t.exp - now);
    c->ttl = c->rule->ttl < left ? c->rule->ttl : left;
    if (c->ttl > d->cfg.max_token_ttl)
        c->ttl = d->cfg.max_token_ttl;
    c->not_after = t.exp;
    c->signer = d->issuer;
    if (asprintf(&c->issued_by, "oidc:%s/%s", iss->name, c->rule->name) < 0) {
        c->issued_by = NULL;
        err = deny(r, KBR_ERR_NOMEM, "out of memory");
        goto out;
    }
    r->rec->sub = strdup(c->principal);
    json_object_set_new(r->rec->detail, "principal", json_string(c->principal));
    for (size_t i = 0; c->rule->scope.products.present && i < c->rule->scope.products.n; i++)
        if (kbr_audit_rec_add_product(r->rec, c->rule->scope.products.items[i]) != KBR_OK)
            err = KBR_ERR_NOMEM;
    if (err != KBR_OK || r->rec->sub == NULL ||
        kbd_scope_copy(&c->rule->scope, &c->scope) != KBR_OK ||
        kbr_policy_principal_claim(d->policy, c->principal, &c->scope) != KBR_OK) {
        err = deny(r, KBR_ERR_NOMEM, "out of memory");
        goto out;
    }
out:
    json_decref(record);
    kbr_idtoken_cleanup(&t);
    return err;
}

/* A fetch ended: keep the new set if it is good, then decide what waited for it. */
static void on_fetched(evutil_socket_t fd, short what, void *arg)
{
    struct kbd_oidc *o = arg;
    result *list;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&o->lock);
    list = o->results;
    o->results = NULL;
    pthread_mutex_unlock(&o->lock);
    while (list != NULL) {
        result *next = list->next;
        issuer_state *st = &o->st[list->idx];
        const kbd_oidc_issuer *iss = &o->d->cfg.oidc.issuers[list->idx];
        ex_ctx *parked = st->parked;

        st->fetching = false;
        if (list->keys != NULL) {
            kbr_jwks_free(st->keys);
            st->keys = list->keys;
            if (st->error[0] != '\0')
                kbd_log(KBD_LOG_INFO, "oidc.jwks_fetched", NULL,
                        "the key set of issuer %s is fetched again (%zu keys)", iss->name,
                        kbr_jwks_size(st->keys));
            st->error[0] = '\0';
        } else {
            if (strcmp(st->error, list->error) != 0)
                kbd_log(KBD_LOG_WARN, "oidc.jwks_failed", NULL,
                        "the key set of issuer %s could not be fetched: %s; keeping the %zu keys "
                        "it had",
                        iss->name, list->error, kbr_jwks_size(st->keys));
            snprintf(st->error, sizeof(st->error), "%s", list->error);
        }
        st->parked = NULL;
        while (parked != NULL) {
            ex_ctx *c = parked;
            kbr_err err;
            char why[KBR_MSG_LEN];
            parked = c->next_parked;
            c->next_parked = NULL;
            err = decide(c->r);
            snprintf(why, sizeof(why), "%s", c->r->msg.text);
            kbd_req_resume(c->r, err, why);
        }
        free(list);
        list = next;
    }
}

/* ---- the route's stages ---- */

/* Served when issuers are configured; each request is recorded (its source), within the
 * exchange rate of its source. */
kbr_err kbd_exchange_admit(kbd_req *r)
{
    kbd *d = r->d;
    const char *peer = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *conn =
        r->http != NULL ? evhttp_request_get_connection(r->http) : NULL;

    if (d->oidc == NULL)
        return kbr_fail(&r->msg, KBR_ERR_NOT_FOUND,
                        "token exchange is not configured on this broker (oidc_issuers)");
    if (kbr_audit_rec_new(NULL, NULL, r->route->audit_op, NULL, &r->rec) != KBR_OK)
        return KBR_ERR_NOMEM;
    if (conn != NULL)
        evhttp_connection_get_peer(conn, (char **)&peer, &port);
    json_object_set_new(r->rec->detail, "source", json_string(peer != NULL ? peer : "?"));
    if (!kbd_ratelimit_allow(d->oidc->rl, peer != NULL ? peer : "?"))
        return deny(r, KBR_ERR_RATE_LIMITED,
                    "source %s is over the exchange rate of %ld requests per second",
                    peer ? peer : "?", d->cfg.oidc_exchange_rate);
    return KBR_OK;
}

/* {"id_token"}: the ID token, kept apart from the body (and wiped when freed). */
kbr_err kbd_exchange_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"id_token", NULL};
    ex_ctx *c = calloc(1, sizeof(*c));
    const char *id_token = NULL;

    *out = c;
    if (c == NULL)
        return KBR_ERR_NOMEM;
    c->scope.max_uses = -1;
    if (kbd_json_only(r->body, allowed, msg) != KBR_OK ||
        kbd_json_str(r->body, "id_token", true, KBR_IDTOKEN_MAX_LEN, &id_token, msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    c->id_token = strdup(id_token);
    return c->id_token != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

/* The issuer the ID token names (its iss, unverified) is one configured: the entry names it
 * and the token's kid.  The ID token is verified once its key set holds the kid (wait). */
kbr_err kbd_exchange_authorize(kbd_req *r, void *req)
{
    ex_ctx *c = req;
    const kbd_oidc_config *oidc = &r->d->cfg.oidc;
    char *iss = NULL;
    kbr_msg why = {{0}};

    c->r = r;
    /* the body held the ID token: it goes now (jansson's memory is wiped as it is freed) */
    json_decref(r->body);
    r->body = NULL;
    if (kbr_idtoken_peek(c->id_token, &iss, &c->kid, &why) != KBR_OK)
        return deny(r, KBR_ERR_UNAUTHENTICATED, "%s", why.text);
    c->issuer = oidc->nissuers;
    for (size_t i = 0; i < oidc->nissuers; i++)
        if (strcmp(oidc->issuers[i].issuer, iss) == 0)
            c->issuer = i;
    if (c->issuer == oidc->nissuers) {
        char *clean = kbd_utf8_clean(iss);
        kbr_err err = deny(r, KBR_ERR_UNAUTHENTICATED,
                           "id_token issuer \"%.128s\" is not one this broker accepts",
                           clean != NULL ? clean : "?");
        free(clean);
        free(iss);
        return err;
    }
    free(iss);
    json_object_set_new(r->rec->detail, "issuer", json_string(oidc->issuers[c->issuer].name));
    json_object_set_new(r->rec->detail, "id_token_kid", json_string(c->kid));
    return KBR_OK;
}

/* The set lacks the kid: wait for a fetch when one runs or may start (on_fetched() decides
 * then), else decide now. */
kbr_err kbd_exchange_wait(kbd_req *r, void *req, bool *waiting)
{
    ex_ctx *c = req;
    struct kbd_oidc *o = r->d->oidc;
    issuer_state *st = &o->st[c->issuer];
    const kbd_oidc_issuer *iss = &r->d->cfg.oidc.issuers[c->issuer];

    *waiting = false;
    if (kbr_jwks_has(st->keys, c->kid) || o->stopping)
        return decide(r);
    if (!st->fetching && st->last_fetch != 0 &&
        kbr_monotonic_seconds() - st->last_fetch < (double)iss->jwks_min_interval)
        return decide(r);
    fetch_start(o, c->issuer);
    c->next_parked = st->parked;
    st->parked = c;
    *waiting = true;
    return KBR_OK;
}

/* ---- start and stop ---- */

kbr_err kbd_oidc_start(kbd *d, kbr_msg *msg)
{
    const kbd_oidc_config *cfg = &d->cfg.oidc;
    struct kbd_oidc *o;

    if (d->cfg.oidc_issuers == NULL)
        return KBR_OK;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return kbr_fail(msg, KBR_ERR_INTERNAL, "libcurl could not be initialised");
    o = calloc(1, sizeof(*o));
    if (o == NULL)
        return kbr_fail(msg, KBR_ERR_NOMEM, "out of memory");
    d->oidc = o;
    o->d = d;
    o->n = cfg->nissuers;
    o->st = calloc(o->n, sizeof(*o->st));
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->cond, NULL);
    o->done_ev = event_new(d->base, -1, 0, on_fetched, o);
    if (o->st == NULL || o->done_ev == NULL ||
        kbd_ratelimit_new(d->cfg.oidc_exchange_rate, &o->rl) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < o->n; i++) {
        const kbd_oidc_issuer *iss = &cfg->issuers[i];
        struct timeval every = {iss->jwks_refresh, 0};
        issuer_state *st = &o->st[i];
        st->o = o;
        st->idx = i;
        /* a key set on disk is the operator's: a bad one stops the start */
        if (iss->jwks_file != NULL) {
            st->keys = fetch_jwks(iss, st->error, sizeof(st->error));
            if (st->keys == NULL)
                return kbr_fail(msg, KBR_ERR_CONFIG, "issuer %s: jwks_file %s", iss->name,
                                st->error);
            st->last_fetch = kbr_monotonic_seconds();
        }
        st->timer = event_new(d->base, -1, EV_PERSIST, on_refresh, st);
        if (st->timer == NULL || evtimer_add(st->timer, &every) != 0)
            return kbr_fail(msg, KBR_ERR_NOMEM, "out of memory");
    }
    if (pthread_create(&o->thread, NULL, fetch_thread, o) != 0)
        return kbr_fail(msg, KBR_ERR_INTERNAL, "cannot start the key set fetcher");
    o->thread_started = true;
    for (size_t i = 0; i < o->n; i++)
        if (cfg->issuers[i].jwks_url != NULL)
            fetch_start(o, i);
    return KBR_OK;
}

void kbd_oidc_stop(kbd *d)
{
    struct kbd_oidc *o = d->oidc;

    if (o == NULL)
        return;
    pthread_mutex_lock(&o->lock);
    o->stopping = true;
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->lock);
    if (o->thread_started)
        pthread_join(o->thread, NULL);
    /* requests still waiting for a key set (a stop that did not wait for them) are answered */
    for (size_t i = 0; o->st != NULL && i < o->n; i++) {
        ex_ctx *parked = o->st[i].parked;
        o->st[i].parked = NULL;
        while (parked != NULL) {
            ex_ctx *c = parked;
            parked = c->next_parked;
            kbr_audit_rec_free(c->r->rec);
            c->r->rec = NULL;
            kbd_req_resume(c->r, KBR_ERR_UNAUTHENTICATED, "the broker is stopping");
        }
        if (o->st[i].timer != NULL)
            event_free(o->st[i].timer);
        kbr_jwks_free(o->st[i].keys);
    }
    while (o->results != NULL) {
        result *next = o->results->next;
        kbr_jwks_free(o->results->keys);
        free(o->results);
        o->results = next;
    }
    if (o->done_ev != NULL)
        event_free(o->done_ev);
    kbd_ratelimit_free(o->rl);
    pthread_cond_destroy(&o->cond);
    pthread_mutex_destroy(&o->lock);
    free(o->st);
    free(o);
    d->oidc = NULL;
    curl_global_cleanup();
}
