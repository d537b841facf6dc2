/*
 * h_crl.c - GET /v1/cas/{key}/crl: the CRL of a device CA key, DER, signed in the HSM.
 *
 * A CRL is public in PKI (RFC 5280 5): relying parties and the devices' peers fetch it
 * from the distribution point their certificates name, with no credential, so the route
 * takes no token, as /v1/jwks does.  What it can make the broker do is bounded: a key that
 * is no device CA gets 404 from the event thread's registry, and the HSM signs only when
 * the CRL served last is stale, at most once at a time per CA key, however many ask.
 *
 * Each CA key's last CRL is kept here and served until a revocation or a new CA certificate
 * commits (kbd_crls_changed), or half the time from its thisUpdate to its nextUpdate
 * (crl_validity) has passed; so none is ever served past its nextUpdate, and a CRL fetched
 * after a revocation's answer lists it.  Otherwise the requests wait while a worker signs a
 * new one: the next CRL number (one more than the issuer's last in the ledger), every
 * certificate the key issued that is revoked, thisUpdate now.  Like every use of a key, the
 * signature is recorded before the CRL leaves: a "crl.issue" entry of the broker's own, whose
 * effect keeps its number, times and SHA-256.  The CRL itself is not kept: a restarted broker
 * signs the next one when it is first asked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "kbd.h"
#include "routes.h"
#include "kbr_ca.h"

#define CRL_SUB "service:keybrokerd"

typedef struct {
    char *key;
    unsigned char *der; /* the last CRL signed, or NULL */
    size_t len;
    time_t this_update, next_update;
    unsigned long generation; /* of the changes it covers (kbd_crls.generation) */
    bool busy;                /* a worker is signing the next one */
    kbd_req *head, *tail;     /* requests waiting for it, linked by next */
    UT_hash_handle hh;
} ca_crl;

struct kbd_crls {
    ca_crl *by_key;
    unsigned long generation; /* revocations and CA certificates committed */
};

/* What a job takes to the worker and brings back. */
typedef struct {
    ca_crl *ca; /* event thread only */
    char *key, *label;
    kbr_alg alg;
    unsigned long generation;
    unsigned char *der;
    size_t len;
    time_t this_update, next_update;
} crl_job;

static void crl_job_free(void *p)
{
    crl_job *j = p;

    if (j == NULL)
        return;
    free(j->key);
    free(j->label);
    free(j->der);
    free(j);
}

void kbd_crls_changed(kbd *d)
{
    if (d->crls != NULL)
        d->crls->generation++;
}

void kbd_crls_free(kbd *d)
{
    ca_crl *c, *tmp;

    if (d->crls == NULL)
        return;
    HASH_ITER(hh, d->crls->by_key, c, tmp)
    {
        HASH_DEL(d->crls->by_key, c);
        free(c->key);
        free(c->der);
        free(c);
    }
    free(d->crls);
    d->crls = NULL;
}

static ca_crl *ca_of(kbd *d, const char *key)
{
    ca_crl *c = NULL;

    if (d->crls == NULL && (d->crls = calloc(1, sizeof(*d->crls))) == NULL)
        return NULL;
    HASH_FIND_STR(d->crls->by_key, key, c);
    if (c != NULL)
        return c;
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->key = strdup(key)) == NULL) {
        free(c);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, d->crls->by_key, c->key, strlen(c->key), c);
    return c;
}

/* Served as it is: it covers every change committed so far and is not half way to its
 * nextUpdate (so never past it). */
static bool fresh(const kbd *d, const ca_crl *c, time_t now)
{
    return c->der != NULL && c->generation == d->crls->generation &&
           now < c->this_update + (c->next_update - c->this_update) / 2 && now < c->next_update;
}

/* ---- the worker: the next CRL, signed and recorded ---- */

static kbr_err crl_entries(const json_t *revoked, kbr_ca_crl_entry **out, size_t *n)
{
    kbr_ca_crl_entry *e = calloc(json_array_size(revoked) + 1, sizeof(*e));
    const json_t *row;
    size_t i;

    *out = NULL;
    *n = 0;
    if (e == NULL)
        return KBR_ERR_NOMEM;
    json_array_foreach(revoked, i, row)
    {
        e[i].serial_hex = json_string_value(json_object_get(row, "serial_number"));
        e[i].reason_code = (int)json_integer_value(json_object_get(row, "reason_code"));
        if (kbr_time_parse(json_string_value(json_object_get(row, "revoked_at")),
                           &e[i].revoked_at) != KBR_OK) {
            free(e);
            return KBR_ERR_STORE;
        }
    }
    *out = e;
    *n = json_array_size(revoked);
    return KBR_OK;
}

static kbr_err crl_record(kbd_req *r, crl_job *j, const char *fingerprint, int64_t number,
                          size_t entries)
{
    kbr_err err = KBR_OK;
    char this_update[KBR_TIME_LEN], next_update[KBR_TIME_LEN], sha256[65];
    kbr_effect fx = {.type = KBR_EFFECT_CRL_ISSUE};

    kbr_time_fmt(j->this_update, this_update);
    kbr_time_fmt(j->next_update, next_update);
    kbr_sha256_hex(j->der, j->len, sha256);
    fx.u.crl_issue = (kbr_fx_crl_issue){.issuer_key = j->key,
                                        .issuer_fingerprint = fingerprint,
                                        .number = number,
                                        .this_update = this_update,
                                        .next_update = next_update,
                                        .entries = (int64_t)entries,
                                        .sha256 = sha256};
    KBR_GUARD(kbd_req_effect(r, &fx));
    KBR_ENSURE(
        json_object_update_new(r->rec->detail,
                               json_pack("{s:I,s:s,s:s,s:I,s:s,s:s}", "number", (json_int_t)number,
                                         "this_update", this_update, "next_update", next_update,
                                         "entries", (json_int_t)entries, "sha256", sha256,
                                         "issuer_fingerprint", fingerprint)) == 0,
        KBR_ERR_NOMEM);
out:
    return err;
}

static kbr_err crl_make(kbd_req *r, kbd_worker *w, crl_job *j)
{
    kbr_err err = KBR_OK;
    const kbr_ca_issuer *issuer = NULL;
    const char *chain = NULL, *fingerprint = NULL;
    json_t *contents = NULL;
    kbr_ca_crl_entry *entries = NULL;
    size_t n = 0;
    int64_t number;

    KBR_GUARD(
        kbd_worker_issuer(w, j->key, j->label, j->alg, &issuer, &chain, &fingerprint, &r->msg));
    err = kbr_store_crl_contents(w->store, j->key, &contents);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(&r->msg, KBR_ERR_AUDIT, "the revocations could not be read"));
    KBR_GUARD(crl_entries(json_object_get(contents, "revoked"), &entries, &n));
    number = (int64_t)json_integer_value(json_object_get(contents, "last_number")) + 1;
    j->this_update = time(NULL);
    j->next_update = j->this_update + r->d->cfg.crl_validity;
    err = kbr_ca_crl_make(issuer, entries, n, number, j->this_update, j->next_update, &j->der,
                          &j->len, &r->msg);
    kbd_note_hsm(r->d, err);
    KBR_GUARD(err);
    KBR_GUARD(crl_record(r, j, fingerprint, number, n));
out:
    free(entries);
    json_decref(contents);
    return err;
}

/* A CRL that could not be made leaves no entry: nothing was released, and a request without
 * a token must not fill the log with failures. */
static void crl_work(kbd_req *r, kbd_worker *w)
{
    kbr_err err = crl_make(r, w, r->ctx);

    if (err == KBR_OK)
        return;
    if (err != KBR_ERR_CONFLICT && err != KBR_ERR_HSM && err != KBR_ERR_HSM_SESSION)
        kbd_log(KBD_LOG_ERROR, "crl.failed", r->request_id, "the CRL of %s could not be made: %s",
                ((crl_job *)r->ctx)->key, r->msg.text[0] != '\0' ? r->msg.text : kbr_err_str(err));
    if (r->msg.text[0] == '\0')
        snprintf(r->msg.text, sizeof(r->msg.text), "the CRL could not be made: %s",
                 kbr_err_str(err));
    r->err = err;
    kbr_audit_rec_free(r->rec);
    r->rec = NULL;
}

/* ---- the event thread: one job per CA key at a time, and its waiters ---- */

static void crl_settle(kbd_req *r, bool committed);

static kbr_err start_job(kbd *d, ca_crl *c, const kbd_key *k)
{
    kbr_err err = KBR_OK;
    kbd_req *job = calloc(1, sizeof(*job));
    crl_job *j = calloc(1, sizeof(*j));
    size_t i;
    json_t *p;

    KBR_ENSURE(job != NULL && j != NULL, KBR_ERR_NOMEM);
    job->d = d;
    job->ctx = j;
    job->ctx_free = crl_job_free;
    j->ca = c;
    j->key = strdup(k->name);
    j->label = strdup(k->hsm_label);
    j->alg = k->alg;
    j->generation = d->crls->generation;
    KBR_ENSURE(j->key != NULL && j->label != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_audit_rec_new(CRL_SUB, NULL, "crl.issue", k->name, &job->rec));
    json_array_foreach(k->products, i, p)
    {
        KBR_GUARD(kbr_audit_rec_add_product(job->rec, json_string_value(p)));
    }
    job->work = crl_work;
    job->settle = crl_settle;
    c->busy = true;
    kbd_workers_submit(d, job);
    job = NULL;
    j = NULL;
out:
    if (job != NULL) {
        kbr_audit_rec_free(job->rec);
        free(job);
    }
    crl_job_free(j);
    return err;
}

/* Every waiting request answered with err, or its stages on to the CRL when err is KBR_OK. */
static void answer_all(ca_crl *c, kbr_err err, const char *message)
{
    kbd_req *r;

    while ((r = c->head) != NULL) {
        c->head = r->next;
        r->next = NULL;
        kbd_req_resume(r, err, message);
    }
    c->tail = NULL;
}

static void crl_settle(kbd_req *r, bool committed)
{
    crl_job *j = r->ctx;
    ca_crl *c = j->ca;
    kbd *d = r->d;
    const kbd_key *k;
    kbr_err err;

    c->busy = false;
    if (!committed) {
        err = r->err != KBR_OK ? r->err : KBR_ERR_AUDIT;
        answer_all(c, err,
                   r->err != KBR_OK ? r->msg.text
                                    : "the CRL could not be recorded in the audit log; nothing was "
                                      "released");
        return;
    }
    free(c->der);
    c->der = j->der;
    c->len = j->len;
    j->der = NULL;
    c->this_update = j->this_update;
    c->next_update = j->next_update;
    c->generation = j->generation;
    /* a revocation committed while it was signed: the waiters get the next one */
    if (c->generation != d->crls->generation && c->head != NULL) {
        k = kbd_keys_find(d->keys, c->key);
        err = k != NULL ? start_job(d, c, k) : KBR_ERR_NOT_FOUND;
        if (err != KBR_OK)
            answer_all(c, err, "the CRL could not be made again");
        return;
    }
    answer_all(c, KBR_OK, NULL);
}

/* ---- the route's stages ---- */

kbr_err kbd_crl_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    *out = NULL;
    if (!kbr_name_valid(r->arg))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "CA key name in the path is not valid");
    return KBR_OK;
}

/* No token: the registry alone says which keys have a CRL. */
kbr_err kbd_crl_authorize(kbd_req *r, void *req)
{
    const kbd_key *k = kbd_keys_find(r->d->keys, r->arg);

    (void)req;
    if (k == NULL || strcmp(k->purpose, "device-identity-ca") != 0)
        return kbr_fail(&r->msg, KBR_ERR_NOT_FOUND, "no device-identity-ca key named \"%s\"",
                        r->arg);
    return KBR_OK;
}

/* A fresh CRL is served at once; otherwise r waits for the one a worker signs (one job per
 * CA key at a time), and answer_all() takes it on. */
kbr_err kbd_crl_wait(kbd_req *r, void *req, bool *waiting)
{
    const kbd_key *k = kbd_keys_find(r->d->keys, r->arg);
    ca_crl *c = ca_of(r->d, r->arg);
    kbr_err err;

    (void)req;
    *waiting = false;
    if (c == NULL || k == NULL)
        return c == NULL ? KBR_ERR_NOMEM : KBR_ERR_NOT_FOUND;
    if (fresh(r->d, c, time(NULL)))
        return KBR_OK;
    if (!c->busy) {
        err = start_job(r->d, c, k);
        if (err != KBR_OK)
            return err;
    }
    r->next = NULL;
    if (c->tail != NULL)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    *waiting = true;
    return KBR_OK;
}

/* The CRL wait found fresh or saw signed, DER as it is. */
void kbd_crl_finish(kbd_req *r)
{
    const ca_crl *c = ca_of(r->d, r->arg);

    if (c == NULL || c->der == NULL) {
        kbd_req_error(r, c == NULL ? KBR_ERR_NOMEM : KBR_ERR_INTERNAL, "the CRL is not there");
        return;
    }
    r->raw = malloc(c->len);
    if (r->raw == NULL) {
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
        return;
    }
    memcpy(r->raw, c->der, c->len);
    r->raw_len = c->len;
    r->resp_type = "application/pkix-crl";
}
