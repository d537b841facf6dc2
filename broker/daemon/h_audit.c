/*
 * h_audit.c - the signed audit tree: periodic checkpoints (signed tree
 * heads) and the endpoints that serve them and inclusion proofs.
 *
 * A checkpoint is made by a worker (it reads the store and signs with the
 * HSM) and recorded through the audit writer as an "audit.checkpoint" entry
 * whose "checkpoint" effect stores it, so every checkpoint is itself in the
 * log and the checkpoints table never holds one the log does not.  The
 * effect refuses a root the store does not have.  The event thread only
 * decides when: every checkpoint_entries entries or checkpoint_seconds
 * seconds, whichever comes first, and only when entries other than the last
 * checkpoint's own arrived since it.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbd.h"

/* How often the event thread looks at the log's length; bounds how late a checkpoint due by
 * count can be. */
#define CHECKPOINT_POLL_SECONDS 1
#define CHECKPOINT_SUB          "service:keybrokerd"

struct kbd_checkpointer {
    kbd *d;
    struct event *timer;
    time_t last;          /* event thread: when the last checkpoint was asked for */
    atomic_llong covered; /* the log needs no checkpoint while its last seq is this */
    atomic_bool busy;     /* one checkpoint at a time */
};

/* ---- making one (worker, then audit writer) ---- */

/* Writer thread: the checkpoint entry is durable (or not); the event thread may ask again. */
static void checkpoint_done(kbr_audit_rec *rec, void *arg)
{
    struct kbd_checkpointer *cp = arg;

    if (rec->result == KBR_OK) {
        time_t at = 0;
        atomic_store(&cp->covered, (long long)rec->seq);
        if (kbr_time_parse(json_string_value(json_object_get(rec->detail, "time")), &at) != KBR_OK)
            at = 0;
        atomic_store(&cp->d->stats.checkpoint_time, (long long)at);
        atomic_store(&cp->d->stats.checkpoint_size,
                     (long long)json_integer_value(json_object_get(rec->detail, "size")));
        atomic_store(&cp->d->stats.checkpoint_seq, (long long)rec->seq);
    } else {
        cp->d->stats.checkpoint_failures++;
        kbd_log(KBD_LOG_ERROR, "audit.checkpoint_failed", NULL, "audit checkpoint not recorded: %s",
                kbr_err_str(rec->result));
    }
    atomic_store(&cp->busy, false);
    kbr_audit_rec_free(rec);
}

static kbr_err head_new(kbr_store *st, int64_t size, json_t **head)
{
    kbr_err err = KBR_OK;
    unsigned char root[KBR_MERKLE_HASH_LEN];
    char hex[2 * KBR_MERKLE_HASH_LEN + 1], now[KBR_TIME_LEN];

    *head = NULL;
    KBR_GUARD(kbr_store_merkle_root(st, size, root));
    kbr_hex_encode_buf(root, sizeof(root), hex);
    kbr_time_fmt(time(NULL), now);
    *head = json_pack("{s:I,s:s,s:s}", "size", (json_int_t)size, "root_hash", hex, "time", now);
    KBR_ENSURE(*head != NULL, KBR_ERR_NOMEM);
out:
    return err;
}

static kbr_err head_sign(kbd_worker *w, json_t *head)
{
    kbr_err err = KBR_OK;
    unsigned char digest[32], *sig = NULL;
    size_t siglen = 0;
    char *b64 = NULL;
    kbr_msg msg = {{0}};

    KBR_GUARD(kbr_audit_checkpoint_digest(head, digest, &msg));
    err = kbr_hsm_sign(w->hsm, KBD_AUDIT_LABEL, KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, digest,
                       sizeof(digest), &sig, &siglen);
    kbd_note_hsm(w->d, err);
    KBR_GUARD(err);
    KBR_GUARD(kbr_b64_encode(sig, siglen, &b64));
    KBR_ENSURE(json_object_set_new(head, "signature_b64", json_string(b64)) == 0, KBR_ERR_NOMEM);
out:
    free(b64);
    free(sig);
    return err;
}

static kbr_err record_new(const json_t *head, struct kbd_checkpointer *cp, kbr_audit_rec **out)
{
    kbr_err err = KBR_OK;
    kbr_audit_rec *rec = NULL;
    kbr_effect fx = {.type = KBR_EFFECT_CHECKPOINT,
                     .u.checkpoint = {
                         .size = json_integer_value(json_object_get(head, "size")),
                         .root_hash = json_string_value(json_object_get(head, "root_hash")),
                         .time = json_string_value(json_object_get(head, "time")),
                         .signature_b64 = json_string_value(json_object_get(head, "signature_b64")),
                     }};

    *out = NULL;
    KBR_GUARD(kbr_audit_rec_new(CHECKPOINT_SUB, NULL, "audit.checkpoint", NULL, &rec));
    KBR_ENSURE(json_object_update(rec->detail, (json_t *)head) == 0, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_effects_new(&rec->effects));
    KBR_GUARD(kbr_effects_add(rec->effects, &fx));
    rec->done = checkpoint_done;
    rec->arg = cp;
    *out = rec;
    rec = NULL;
out:
    kbr_audit_rec_free(rec);
    return err;
}

/* *skip when nothing but the last checkpoint's own entry came after it. */
static kbr_err covered_by_latest(kbr_store *st, int64_t size, bool *skip)
{
    kbr_err err = KBR_OK;
    json_t *latest = NULL;
    kbr_err found = kbr_store_checkpoint_latest(st, &latest);

    *skip = false;
    if (found == KBR_ERR_NOT_FOUND)
        goto out;
    KBR_GUARD(found);
    *skip = json_integer_value(json_object_get(latest, "audit_seq")) >= size;
out:
    json_decref(latest);
    return err;
}

static kbr_err checkpoint_make(kbd_worker *w, struct kbd_checkpointer *cp)
{
    kbr_err err = KBR_OK;
    int64_t size = 0;
    char tail[65];
    bool skip = false;
    json_t *head = NULL;
    kbr_audit_rec *rec = NULL;

    KBR_GUARD(kbr_store_audit_tail(w->store, &size, tail));
    KBR_GUARD(covered_by_latest(w->store, size, &skip));
    if (skip) {
        atomic_store(&cp->covered, (long long)size);
        atomic_store(&cp->busy, false);
        goto out;
    }
    KBR_GUARD(head_new(w->store, size, &head));
    KBR_GUARD(head_sign(w, head));
    KBR_GUARD(record_new(head, cp, &rec));
    kbr_audit_submit(w->d->audit, rec);
out:
    json_decref(head);
    return err;
}

static void checkpoint_work(kbd_req *r, kbd_worker *w)
{
    struct kbd_checkpointer *cp = r->ctx;
    kbr_err err = checkpoint_make(w, cp);

    if (err != KBR_OK) {
        /* retried when checkpoint_seconds have passed again */
        w->d->stats.checkpoint_failures++;
        kbd_log(KBD_LOG_ERROR, "audit.checkpoint_failed", NULL, "audit checkpoint failed: %s",
                kbr_err_str(err));
        atomic_store(&cp->busy, false);
    }
}

/*
 * Worker: a signed checkpoint that covers entry seq, as GET /v1/audit/checkpoint shows it.
 * The latest when it does; otherwise one is made now over the whole log, signed and
 * recorded, and returned once its entry is durable (a periodic one of the same size recorded
 * first is as good).  New ref.
 */
kbr_err kbd_checkpoint_covering(kbd_worker *w, int64_t seq, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *cp = NULL;
    kbr_audit_rec *rec = NULL;
    int64_t size = 0;
    char tail[65], *pem = NULL;
    kbr_err found;

    *out = NULL;
    found = kbr_store_checkpoint_latest(w->store, &cp);
    KBR_ENSURE(found == KBR_OK || found == KBR_ERR_NOT_FOUND, found);
    if (found == KBR_OK && json_integer_value(json_object_get(cp, "size")) >= seq)
        goto sign;
    json_decref(cp);
    cp = NULL;
    KBR_GUARD(kbr_store_audit_tail(w->store, &size, tail));
    KBR_GUARD(head_new(w->store, size, &cp));
    KBR_GUARD(head_sign(w, cp));
    KBR_GUARD(record_new(cp, w->d->checkpointer, &rec));
    rec->done = NULL;
    rec->arg = NULL;
    err = kbr_audit_append_sync(w->d->audit, rec);
    if (err == KBR_ERR_CONFLICT) { /* the periodic one of this size came first */
        json_decref(cp);
        cp = NULL;
        KBR_GUARD(kbr_store_checkpoint_latest(w->store, &cp));
        err = KBR_OK;
    }
    KBR_GUARD(err);
    if (json_object_get(cp, "audit_seq") == NULL)
        KBR_ENSURE(json_object_set_new(cp, "audit_seq", json_integer(rec->seq)) == 0,
                   KBR_ERR_NOMEM);
sign:
    err = kbr_hsm_public_key_pem(w->hsm, KBD_AUDIT_LABEL, &pem);
    kbd_note_hsm(w->d, err);
    KBR_GUARD(err);
    KBR_ENSURE(json_object_set_new(cp, "public_key_pem", json_string(pem)) == 0, KBR_ERR_NOMEM);
    *out = cp;
    cp = NULL;
out:
    free(pem);
    kbr_audit_rec_free(rec);
    json_decref(cp);
    return err;
}

/* ---- when (event thread) ---- */

static bool checkpoint_due(struct kbd_checkpointer *cp, time_t now)
{
    long long last_seq = (long long)kbr_audit_last_seq(cp->d->audit);
    long long covered = atomic_load(&cp->covered);

    /* of brokers sharing a store, the one holding the lease makes the periodic ones */
    if (atomic_load(&cp->busy) || last_seq <= covered || !kbr_audit_checkpoint_lease(cp->d->audit))
        return false;
    return last_seq - covered >= cp->d->cfg.checkpoint_entries ||
           now - cp->last >= cp->d->cfg.checkpoint_seconds;
}

static void on_checkpoint_timer(evutil_socket_t fd, short what, void *arg)
{
    struct kbd_checkpointer *cp = arg;
    time_t now = time(NULL);
    kbd_req *r;

    (void)fd;
    (void)what;
    if (!checkpoint_due(cp, now))
        return;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return;
    atomic_store(&cp->busy, true);
    cp->last = now;
    r->d = cp->d;
    r->work = checkpoint_work;
    r->ctx = cp; /* no ctx_free: the checkpointer outlives every job */
    kbd_workers_submit(cp->d, r);
}

kbr_err kbd_checkpoint_start(kbd *d, kbr_msg *msg)
{
    struct timeval every = {CHECKPOINT_POLL_SECONDS, 0};
    struct kbd_checkpointer *cp = calloc(1, sizeof(*cp));

    if (cp == NULL)
        return kbr_fail(msg, KBR_ERR_NOMEM, "out of memory");
    cp->d = d;
    cp->last = time(NULL);
    atomic_init(&cp->covered, 0);
    atomic_init(&cp->busy, false);
    d->checkpointer = cp;
    cp->timer = event_new(d->base, -1, EV_PERSIST, on_checkpoint_timer, cp);
    if (cp->timer == NULL)
        return kbr_fail(msg, KBR_ERR_NOMEM, "cannot create the checkpoint timer");
    evtimer_add(cp->timer, &every);
    return KBR_OK;
}

void kbd_checkpoint_stop(kbd *d)
{
    struct kbd_checkpointer *cp = d->checkpointer;

    if (cp == NULL)
        return;
    if (cp->timer != NULL)
        event_free(cp->timer);
    free(cp);
    d->checkpointer = NULL;
}

/* ---- GET /v1/audit/checkpoint ---- */

static void checkpoint_get_work(kbd_req *r, kbd_worker *w)
{
    json_t *cp = NULL;
    char *pem = NULL;
    kbr_err err = kbr_store_checkpoint_latest(w->store, &cp);

    if (err == KBR_ERR_NOT_FOUND) {
        kbd_req_error(r, err, "no checkpoint yet");
        return;
    }
    if (err != KBR_OK) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the audit log could not be read");
        return;
    }
    err = kbr_hsm_public_key_pem(w->hsm, KBD_AUDIT_LABEL, &pem);
    kbd_note_hsm(w->d, err);
    if (err != KBR_OK) {
        json_decref(cp);
        kbd_req_error(r, err, "the audit key could not be read");
        return;
    }
    json_object_set_new(cp, "public_key_pem", json_string(pem));
    json_object_set_new(r->rec->detail, "size", json_incref(json_object_get(cp, "size")));
    free(pem);
    r->resp = cp;
}

kbr_err kbd_h_audit_checkpoint(kbd_req *r)
{
    r->work = checkpoint_get_work;
    kbd_req_dispatch(r);
    return KBR_OK;
}

/* ---- GET /v1/audit/proof?seq=N&size=M ---- */

typedef struct {
    int64_t seq, size; /* size 0: the latest checkpoint's */
    kbr_scope scope;   /* the reader's, copied for the worker */
} proof_ctx;

static void proof_ctx_free(void *p)
{
    proof_ctx *c = p;

    if (c != NULL)
        kbr_scope_cleanup(&c->scope);
    free(c);
}

/* A proof names its entry: the reader must be one who may read it. */
static kbr_err proof_visible(kbd_req *r, kbd_worker *w, proof_ctx *c)
{
    kbr_err err = KBR_OK;
    kbr_audit_scope scope = kbd_audit_scope_of(&c->scope);
    bool visible = false;

    err = kbr_store_audit_visible(w->store, c->seq, &scope, &visible);
    KBR_ENSURE(
        err != KBR_ERR_NOT_FOUND,
        kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "seq: there is no entry %lld", (long long)c->seq));
    KBR_GUARD(err);
    KBR_ENSURE(visible, kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                                 "seq: entry %lld is about products or keys outside the token's",
                                 (long long)c->seq));
out:
    return err;
}

static kbr_err query_i64(kbd_req *r, const char *name, bool required, int64_t min, int64_t *out)
{
    const char *s = kbd_req_query(r, name);
    char *end = NULL;
    long long v;

    if (s == NULL)
        return required ? kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "%s: required", name) : KBR_OK;
    v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v == LLONG_MAX)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "%s: must be an integer of at least %lld",
                        name, (long long)min);
    *out = v;
    return KBR_OK;
}

static kbr_err proof_size(kbd_req *r, kbd_worker *w, proof_ctx *c)
{
    kbr_err err = KBR_OK;
    json_t *latest = NULL;

    if (c->size != 0)
        goto out;
    err = kbr_store_checkpoint_latest(w->store, &latest);
    KBR_ENSURE(err != KBR_ERR_NOT_FOUND,
               kbr_fail(&r->msg, KBR_ERR_NOT_FOUND, "size: no checkpoint yet; give one"));
    KBR_GUARD(err);
    c->size = json_integer_value(json_object_get(latest, "size"));
out:
    json_decref(latest);
    return err;
}

static kbr_err hex_array(const unsigned char *hashes, size_t n, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *arr = json_array();
    char hex[2 * KBR_MERKLE_HASH_LEN + 1];

    *out = NULL;
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < n; i++) {
        kbr_hex_encode_buf(hashes + i * KBR_MERKLE_HASH_LEN, KBR_MERKLE_HASH_LEN, hex);
        KBR_ENSURE(json_array_append_new(arr, json_string(hex)) == 0, KBR_ERR_NOMEM);
    }
    *out = arr;
    arr = NULL;
out:
    json_decref(arr);
    return err;
}

static kbr_err proof_build(kbd_req *r, kbd_worker *w, proof_ctx *c)
{
    kbr_err err = KBR_OK;
    unsigned char *path = NULL, root[KBR_MERKLE_HASH_LEN];
    size_t len = 0;
    char root_hex[2 * KBR_MERKLE_HASH_LEN + 1];
    json_t *entry = NULL, *audit_path = NULL;

    KBR_GUARD(proof_size(r, w, c));
    KBR_ENSURE(c->seq <= c->size,
               kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "seq: %lld is beyond the tree size %lld",
                        (long long)c->seq, (long long)c->size));
    err = kbr_store_merkle_proof(w->store, c->seq, c->size, &path, &len);
    KBR_ENSURE(err != KBR_ERR_BAD_REQUEST,
               kbr_fail(&r->msg, err, "size: %lld is beyond the log", (long long)c->size));
    KBR_GUARD(err);
    KBR_GUARD(proof_visible(r, w, c));
    KBR_GUARD(kbr_store_merkle_root(w->store, c->size, root));
    kbr_hex_encode_buf(root, sizeof(root), root_hex);
    KBR_GUARD(kbr_store_audit_page(w->store, c->seq - 1, 1, &entry));
    KBR_ENSURE(json_array_size(entry) == 1, KBR_ERR_STORE);
    KBR_GUARD(hex_array(path, len, &audit_path));
    r->resp =
        json_pack("{s:I,s:I,s:O,s:o,s:s}", "seq", (json_int_t)c->seq, "size", (json_int_t)c->size,
                  "leaf_hash", json_object_get(json_array_get(entry, 0), "hash"), "audit_path",
                  audit_path, "root_hash", root_hex);
    audit_path = NULL;
    KBR_ENSURE(r->resp != NULL, KBR_ERR_NOMEM);
out:
    json_decref(audit_path);
    json_decref(entry);
    free(path);
    return err;
}

static void proof_work(kbd_req *r, kbd_worker *w)
{
    proof_ctx *c = r->ctx;
    kbr_err err = proof_build(r, w, c);

    if (err == KBR_ERR_BAD_REQUEST || err == KBR_ERR_NOT_FOUND || err == KBR_ERR_FORBIDDEN)
        kbd_req_error(r, err, NULL); /* r->msg names the parameter */
    else if (err != KBR_OK)
        kbd_req_error(r, KBR_ERR_AUDIT, "the audit log could not be read");
    else {
        json_object_set_new(r->rec->detail, "seq", json_integer(c->seq));
        json_object_set_new(r->rec->detail, "size", json_integer(c->size));
    }
}

kbr_err kbd_h_audit_proof(kbd_req *r)
{
    proof_ctx *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return KBR_ERR_NOMEM;
    r->ctx = c;
    r->ctx_free = proof_ctx_free;
    if (kbd_scope_copy(&r->tok->scope, &c->scope) != KBR_OK)
        return KBR_ERR_NOMEM;
    if (query_i64(r, "seq", true, 1, &c->seq) != KBR_OK ||
        query_i64(r, "size", false, 1, &c->size) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    r->work = proof_work;
    kbd_req_dispatch(r);
    return KBR_OK;
}
