/*
 * h_audit.c - the signed audit tree: periodic checkpoints (signed tree heads), audit key
 * rotation, and the endpoints that serve checkpoints, inclusion and consistency proofs.
 *
 * A checkpoint is made by a worker: it signs the head of the log with the audit key in the
 * HSM (as canonical JSON and as a C2SP signed note), has the HSM record it (arecord.c: the
 * record is what a restored store is checked against), and only then submits an
 * "audit.checkpoint" entry whose "checkpoint" effect stores it.  The effect refuses a root the
 * store does not have and a key the chain of checkpoints does not hand on.  A head whose entry
 * was lost (a crash, a full disk) after the HSM recorded it is recorded in the log by the next
 * round before anything else is signed, so the log holds every head the HSM recorded, in
 * order.  The event thread only decides when: every checkpoint_entries entries or
 * checkpoint_seconds seconds, whichever comes first, and only when entries other than the last
 * checkpoint's own arrived since it.  One head is in the making at a time, from its signature
 * to its entry's commit ("busy"): heads are recorded in the order they are signed, and the
 * entries commit in that order.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kbd.h"
#include "hsmproc.h"
#include "routes.h"

/* How often the event thread looks at the log's length; bounds how late a checkpoint due by
 * count can be. */
#define CHECKPOINT_POLL_SECONDS 1
/* How long a rotation waits for a checkpoint in the making to be committed. */
#define BUSY_WAIT_MS 10000
/* Labels tried for a new audit key past the highest one the HSM holds. */
#define AUDIT_LABELS_MAX 100000

struct kbd_checkpointer {
    kbd *d;
    struct event *timer;
    time_t last;          /* event thread: when the last checkpoint was asked for */
    atomic_llong covered; /* the log needs no checkpoint while its last seq is this */
    atomic_bool busy;     /* one head signed, recorded and committed at a time */
};

/* What a call that also reads the store says about the HSM: only its own failures, or success. */
static void note_hsm(kbd *d, kbr_err err)
{
    if (err == KBR_OK || err == KBR_ERR_HSM || err == KBR_ERR_HSM_SESSION ||
        err == KBR_ERR_HSM_PIN || err == KBR_ERR_HSM_TOKEN)
        kbd_note_hsm(d, err);
}

static bool try_acquire(struct kbd_checkpointer *cp)
{
    bool idle = false;

    return atomic_compare_exchange_strong(&cp->busy, &idle, true);
}

static void release(struct kbd_checkpointer *cp, int64_t covered)
{
    if (covered > 0)
        atomic_store(&cp->covered, (long long)covered);
    atomic_store(&cp->busy, false);
}

/* The metrics' latest checkpoint: the one entry seq recorded. */
static void note_checkpoint(kbd *d, const json_t *cp, int64_t seq)
{
    time_t at = 0;

    if (kbr_time_parse(json_string_value(json_object_get(cp, "time")), &at) != KBR_OK)
        at = 0;
    atomic_store(&d->stats.checkpoint_time, (long long)at);
    atomic_store(&d->stats.checkpoint_size,
                 (long long)json_integer_value(json_object_get(cp, "size")));
    atomic_store(&d->stats.checkpoint_seq, (long long)seq);
}

/* ---- making one (worker, then audit writer) ---- */

/* Writer thread: the checkpoint entry is durable (or not); the next head may be made. */
static void checkpoint_done(kbr_audit_rec *rec, void *arg)
{
    struct kbd_checkpointer *cp = arg;

    if (rec->result == KBR_OK) {
        note_checkpoint(cp->d, rec->detail, rec->seq);
    } else {
        cp->d->stats.checkpoint_failures++;
        kbd_log(KBD_LOG_ERROR, "audit.checkpoint_failed", NULL, "audit checkpoint not recorded: %s",
                kbr_err_str(rec->result));
    }
    release(cp, rec->result == KBR_OK ? rec->seq : 0);
    kbr_audit_rec_free(rec);
}

static void submit(struct kbd_checkpointer *cp, kbr_audit_rec *rec)
{
    rec->done = checkpoint_done;
    rec->arg = cp;
    kbr_audit_submit(cp->d->audit, rec);
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

/*
 * The HSM's latest record, and whether the log still has to record it: *pending is an entry
 * that does (its head was recorded, its entry lost), to be committed before anything else is
 * signed.  A store that no longer holds the recorded head was rolled back under the running
 * broker: nothing is signed over it.
 */
static kbr_err record_current(kbd_worker *w, json_t **rec, kbr_audit_rec **pending, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    bool in = false;

    *rec = NULL;
    *pending = NULL;
    err = kbd_record_read(w->hsm, rec, msg);
    note_hsm(w->d, err);
    KBR_GUARD(err);
    if (*rec == NULL)
        goto out;
    KBR_GUARD(kbd_record_in_store(w->store, *rec, &in));
    if (in)
        goto out;
    KBR_GUARD(kbd_record_vs_store(w->store, *rec, msg));
    KBR_GUARD(kbd_record_entry(*rec, "audit.checkpoint", pending));
    json_object_set_new((*pending)->detail, "recorded_in_hsm_before", json_true());
out:
    return err;
}

static kbr_err checkpoint_make(kbd_worker *w, struct kbd_checkpointer *cp, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    int64_t size = 0;
    char tail[65];
    bool skip = false;
    json_t *rec = NULL, *effect = NULL;
    kbr_audit_rec *entry = NULL;

    KBR_GUARD(record_current(w, &rec, &entry, msg));
    if (entry != NULL) {
        submit(cp, entry);
        entry = NULL;
        goto out;
    }
    KBR_GUARD(kbr_store_audit_tail(w->store, &size, tail));
    KBR_GUARD(covered_by_latest(w->store, size, &skip));
    if (skip) {
        release(cp, size);
        goto out;
    }
    err = kbd_head_sign_and_record(
        w->hsm, w->store, &(kbd_head_spec){w->d->cfg.audit_origin, rec, NULL, false}, &effect, msg);
    note_hsm(w->d, err);
    KBR_GUARD(err);
    KBR_GUARD(kbd_record_entry(effect, "audit.checkpoint", &entry));
    submit(cp, entry);
    entry = NULL;
out:
    kbr_audit_rec_free(entry);
    json_decref(effect);
    json_decref(rec);
    return err;
}

static void checkpoint_work(kbd_req *r, kbd_worker *w)
{
    struct kbd_checkpointer *cp = r->ctx;
    kbr_msg msg = {{0}};
    kbr_err err = checkpoint_make(w, cp, &msg);

    if (err != KBR_OK) {
        /* retried when checkpoint_seconds have passed again */
        w->d->stats.checkpoint_failures++;
        kbd_log(KBD_LOG_ERROR, "audit.checkpoint_failed", NULL, "audit checkpoint failed: %s",
                msg.text[0] != '\0' ? msg.text : kbr_err_str(err));
        release(cp, 0);
    }
}

/* A worker waits its turn behind a checkpoint in the making; false when it took too long. */
static bool acquire_waiting(struct kbd_checkpointer *cp)
{
    for (int waited = 0; waited < BUSY_WAIT_MS; waited += 10) {
        if (try_acquire(cp))
            return true;
        usleep(10 * 1000);
    }
    return false;
}

/* *cp: the latest checkpoint when it covers entry seq, else NULL. */
static kbr_err latest_covering(kbr_store *st, int64_t seq, json_t **cp)
{
    kbr_err err = kbr_store_checkpoint_latest(st, cp);

    if (err == KBR_ERR_NOT_FOUND)
        return KBR_OK;
    if (err == KBR_OK && json_integer_value(json_object_get(*cp, "size")) < seq) {
        json_decref(*cp);
        *cp = NULL;
    }
    return err;
}

/* This broker holds the checkpointer: the head the HSM recorded is in the log first, then a
 * head over the whole log is signed, recorded and committed, unless the log then covers seq. */
static kbr_err head_now(kbd_worker *w, int64_t seq, json_t **cp, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *rec = NULL, *effect = NULL;
    kbr_audit_rec *entry = NULL;

    KBR_GUARD(record_current(w, &rec, &entry, msg));
    if (entry != NULL) {
        entry->done = NULL;
        entry->arg = NULL;
        err = kbr_audit_append_sync(w->d->audit, entry);
        KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "the HSM's checkpoint was not recorded: %s",
                                           kbr_err_str(err)));
        kbr_audit_rec_free(entry);
        entry = NULL;
        json_decref(rec);
        rec = NULL;
        KBR_GUARD(latest_covering(w->store, seq, cp));
        if (*cp != NULL)
            goto out;
        KBR_GUARD(record_current(w, &rec, &entry, msg));
        KBR_ENSURE(entry == NULL, kbr_fail(msg, KBR_ERR_AUDIT, "the HSM's record moved"));
    }
    err = kbd_head_sign_and_record(
        w->hsm, w->store, &(kbd_head_spec){w->d->cfg.audit_origin, rec, NULL, false}, &effect, msg);
    note_hsm(w->d, err);
    KBR_GUARD(err);
    KBR_GUARD(kbd_record_entry(effect, "audit.checkpoint", &entry));
    err = kbr_audit_append_sync(w->d->audit, entry);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err, "the checkpoint was not recorded: %s", kbr_err_str(err)));
    note_checkpoint(w->d, effect, entry->seq);
    KBR_GUARD(latest_covering(w->store, seq, cp));
    KBR_ENSURE(*cp != NULL, kbr_fail(msg, KBR_ERR_AUDIT, "the new checkpoint is not the latest"));
out:
    kbr_audit_rec_free(entry);
    json_decref(effect);
    json_decref(rec);
    return err;
}

/*
 * Worker: a signed checkpoint that covers entry seq.  The latest when it does; otherwise one
 * is made now over the whole log, signed, recorded in the HSM and committed, in turn with the
 * periodic ones (the checkpointer).  Of brokers sharing a store only the lease holder makes
 * heads, so that one history is recorded in the HSM in the order the log commits it: another
 * broker waits a while for the holder's next one.  New ref.
 */
kbr_err kbd_checkpoint_covering(kbd_worker *w, int64_t seq, json_t **out)
{
    kbr_err err = KBR_OK;
    struct kbd_checkpointer *cp = w->d->checkpointer;
    json_t *latest = NULL;
    bool held = false;
    kbr_msg msg = {{0}};

    *out = NULL;
    KBR_GUARD(latest_covering(w->store, seq, &latest));
    if (latest != NULL)
        goto done;
    if (!kbr_audit_checkpoint_lease(w->d->audit)) {
        for (int waited = 0; waited < BUSY_WAIT_MS && latest == NULL; waited += 100) {
            usleep(100 * 1000);
            KBR_GUARD(latest_covering(w->store, seq, &latest));
        }
        KBR_ENSURE(latest != NULL, KBR_ERR_AUDIT);
        goto done;
    }
    KBR_ENSURE(cp != NULL && acquire_waiting(cp), KBR_ERR_AUDIT);
    held = true;
    err = head_now(w, seq, &latest, &msg);
    if (err != KBR_OK) {
        w->d->stats.checkpoint_failures++;
        kbd_log(KBD_LOG_ERROR, "audit.checkpoint_failed", NULL, "audit checkpoint failed: %s",
                msg.text[0] != '\0' ? msg.text : kbr_err_str(err));
        goto out;
    }
done:
    *out = latest;
    latest = NULL;
out:
    if (held)
        release(cp, err == KBR_OK && *out != NULL
                        ? json_integer_value(json_object_get(*out, "audit_seq"))
                        : 0);
    json_decref(latest);
    return err;
}

/* ---- when (event thread) ---- */

static bool checkpoint_due(struct kbd_checkpointer *cp, time_t now)
{
    /* on a shared store the log also grows by what the other brokers commit, which this
     * broker's writer learns only at its own next commit: the follower reads them */
    long long last_seq = (long long)kbr_audit_last_seq(cp->d->audit),
              followed = (long long)kbd_follow_seen(cp->d);
    long long covered = atomic_load(&cp->covered);

    if (followed > last_seq)
        last_seq = followed;

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
    if (!checkpoint_due(cp, now) || !try_acquire(cp))
        return;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        release(cp, 0);
        return;
    }
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

typedef kbd_checkpoint_req checkpoint_ctx;

/* text/plain among the media types Accept lists, and application/json not. */
static bool wants_note(const kbd_req *r)
{
    const char *accept = evhttp_find_header(evhttp_request_get_input_headers(r->http), "Accept");
    bool text = false, json = false;
    char *copy, *save = NULL;

    if (accept == NULL || (copy = strdup(accept)) == NULL)
        return false;
    for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        size_t n;
        while (*t == ' ' || *t == '\t')
            t++;
        n = strcspn(t, "; \t");
        text = text || (n == 10 && strncasecmp(t, "text/plain", 10) == 0);
        json = json || (n == 16 && strncasecmp(t, "application/json", 16) == 0);
    }
    free(copy);
    return text && !json;
}

/* The checkpoint as served: null members dropped, the note's verifier key added. */
static kbr_err checkpoint_view(json_t *cp, const char *legacy_pem)
{
    kbr_err err = KBR_OK;
    const char *k;
    json_t *v, *tmp;
    EVP_PKEY *key = NULL;
    char *vkey = NULL;

    json_object_foreach_safe(cp, tmp, k, v)
    {
        if (json_is_null(v) || strcmp(k, "key_label") == 0 || strcmp(k, "next_key_label") == 0)
            json_object_del(cp, k);
    }
    if (json_object_get(cp, "public_key_pem") == NULL && legacy_pem != NULL)
        KBR_ENSURE(json_object_set_new(cp, "public_key_pem", json_string(legacy_pem)) == 0,
                   KBR_ERR_NOMEM);
    if (json_is_string(json_object_get(cp, "origin")) &&
        kbr_audit_pem_key(json_string_value(json_object_get(cp, "public_key_pem")), &key) ==
            KBR_OK &&
        kbr_note_vkey(json_string_value(json_object_get(cp, "origin")), key, &vkey) == KBR_OK)
        KBR_ENSURE(json_object_set_new(cp, "vkey", json_string(vkey)) == 0, KBR_ERR_NOMEM);
out:
    free(vkey);
    EVP_PKEY_free(key);
    return err;
}

kbr_err kbd_checkpoint_evidence(kbd_worker *w, json_t *cp, json_t **keys, json_t **chain)
{
    kbr_err err = KBR_OK;
    json_t *rot = NULL, *r;
    char *pem = NULL;
    size_t i;

    *keys = NULL;
    *chain = NULL;
    if (!json_is_string(json_object_get(cp, "public_key_pem"))) {
        /* an older broker's checkpoint names no key: it was the first audit key */
        err = kbr_hsm_public_key_pem(w->hsm, KBD_AUDIT_LABEL, &pem);
        note_hsm(w->d, err);
        KBR_GUARD(err);
    }
    KBR_GUARD(kbr_store_checkpoint_rotations(
        w->store, json_integer_value(json_object_get(cp, "audit_seq")) - 1, &rot));
    KBR_GUARD(checkpoint_view(cp, pem));
    *keys = json_array();
    KBR_ENSURE(*keys != NULL, KBR_ERR_NOMEM);
    json_array_foreach(rot, i, r)
    {
        if (i == 0)
            KBR_ENSURE(json_array_append(*keys, json_object_get(r, "public_key_pem")) == 0,
                       KBR_ERR_NOMEM);
        KBR_ENSURE(json_array_append(*keys, json_object_get(r, "next_key_pem")) == 0,
                   KBR_ERR_NOMEM);
        KBR_GUARD(checkpoint_view(r, NULL));
    }
    if (json_array_size(rot) == 0)
        KBR_ENSURE(json_array_append(*keys, json_object_get(cp, "public_key_pem")) == 0,
                   KBR_ERR_NOMEM);
    *chain = rot;
    rot = NULL;
out:
    if (err != KBR_OK) {
        json_decref(*keys);
        *keys = NULL;
    }
    json_decref(rot);
    free(pem);
    return err;
}

void kbd_audit_checkpoint_work(kbd_req *r, kbd_worker *w)
{
    checkpoint_ctx *c = r->ctx;
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
    json_object_set_new(r->rec->detail, "size", json_incref(json_object_get(cp, "size")));
    if (c->note) {
        json_object_set_new(r->rec->detail, "format", json_string("note"));
        if (!json_is_string(json_object_get(cp, "note"))) {
            json_decref(cp);
            kbd_req_error(r, KBR_ERR_NOT_FOUND,
                          "the latest checkpoint was made before checkpoints were signed notes");
            return;
        }
        r->resp_text = strdup(json_string_value(json_object_get(cp, "note")));
        r->resp_type = "text/plain; charset=utf-8";
        json_decref(cp);
        if (r->resp_text == NULL)
            kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
        return;
    }
    if (json_object_get(cp, "public_key_pem") == NULL ||
        json_is_null(json_object_get(cp, "public_key_pem"))) {
        /* an older broker's checkpoint names no key: it was the first audit key */
        err = kbr_hsm_public_key_pem(w->hsm, KBD_AUDIT_LABEL, &pem);
        note_hsm(w->d, err);
        if (err != KBR_OK) {
            json_decref(cp);
            kbd_req_error(r, err, "the audit key could not be read");
            return;
        }
    }
    if (checkpoint_view(cp, pem) != KBR_OK) {
        json_decref(cp);
        free(pem);
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
        return;
    }
    free(pem);
    r->resp = cp;
}

/* The Accept field: the checkpoint, or its signed note alone. */
kbr_err kbd_audit_checkpoint_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    checkpoint_ctx *c = calloc(1, sizeof(*c));

    (void)msg;
    *out = c;
    if (c == NULL)
        return KBR_ERR_NOMEM;
    c->note = r->http != NULL && wants_note(r);
    return KBR_OK;
}

/* ---- GET /v1/audit/proof?seq=N&size=M ---- */

typedef kbd_audit_proof_req proof_ctx;

void kbd_audit_proof_free(void *p)
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

static kbr_err query_i64(const kbd_req *r, const char *name, bool required, int64_t min,
                         int64_t *out, kbr_msg *msg)
{
    const char *s = kbd_req_query(r, name);
    char *end = NULL;
    long long v;

    if (s == NULL)
        return required ? kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: required", name) : KBR_OK;
    v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v == LLONG_MAX)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: must be an integer of at least %lld", name,
                        (long long)min);
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
    /* "proof" and "leaf_index" as transparency-log clients name them; "audit_path" as before */
    r->resp = json_pack("{s:I,s:I,s:I,s:O,s:O,s:o,s:s}", "seq", (json_int_t)c->seq, "leaf_index",
                        (json_int_t)c->seq - 1, "size", (json_int_t)c->size, "leaf_hash",
                        json_object_get(json_array_get(entry, 0), "hash"), "proof", audit_path,
                        "audit_path", audit_path, "root_hash", root_hex);
    audit_path = NULL;
    KBR_ENSURE(r->resp != NULL, KBR_ERR_NOMEM);
out:
    json_decref(audit_path);
    json_decref(entry);
    free(path);
    return err;
}

void kbd_audit_proof_work(kbd_req *r, kbd_worker *w)
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

kbr_err kbd_audit_proof_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    proof_ctx *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(query_i64(r, "seq", true, 1, &c->seq, msg));
    KBR_GUARD(query_i64(r, "size", false, 1, &c->size, msg));
out:
    return err;
}

/* Whether the reader may read the entry is the ledger's to say: the worker asks it, with a
 * copy of the token's scope. */
kbr_err kbd_audit_proof_authorize(kbd_req *r, void *req)
{
    proof_ctx *c = req;

    return kbd_scope_copy(&r->tok->scope, &c->scope);
}

/* ---- GET /v1/audit/consistency?first=M&second=N ---- */

typedef kbd_audit_consistency_req consistency_ctx;

static kbr_err consistency_build(kbd_req *r, kbd_worker *w, consistency_ctx *c)
{
    kbr_err err = KBR_OK;
    int64_t last = 0;
    char tail[65];
    unsigned char *path = NULL;
    size_t len = 0;
    json_t *proof = NULL;

    KBR_ENSURE(c->first <= c->second,
               kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "first: %lld is larger than second (%lld)",
                        (long long)c->first, (long long)c->second));
    KBR_GUARD(kbr_store_audit_tail(w->store, &last, tail));
    KBR_ENSURE(c->second <= last, kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                                           "second: %lld is beyond the log, which has %lld entries",
                                           (long long)c->second, (long long)last));
    KBR_GUARD(kbr_store_merkle_consistency(w->store, c->first, c->second, &path, &len));
    KBR_GUARD(hex_array(path, len, &proof));
    r->resp = json_pack("{s:I,s:I,s:o}", "first", (json_int_t)c->first, "second",
                        (json_int_t)c->second, "proof", proof);
    proof = NULL;
    KBR_ENSURE(r->resp != NULL, KBR_ERR_NOMEM);
out:
    json_decref(proof);
    free(path);
    return err;
}

void kbd_audit_consistency_work(kbd_req *r, kbd_worker *w)
{
    consistency_ctx *c = r->ctx;
    kbr_err err = consistency_build(r, w, c);

    if (err == KBR_ERR_BAD_REQUEST)
        kbd_req_error(r, err, NULL); /* r->msg names the parameter */
    else if (err != KBR_OK)
        kbd_req_error(r, KBR_ERR_AUDIT, "the audit log could not be read");
    else {
        json_object_set_new(r->rec->detail, "first", json_integer(c->first));
        json_object_set_new(r->rec->detail, "second", json_integer(c->second));
    }
}

kbr_err kbd_audit_consistency_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    consistency_ctx *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(query_i64(r, "first", true, 1, &c->first, msg));
    KBR_GUARD(query_i64(r, "second", true, 1, &c->second, msg));
out:
    return err;
}

/* ---- POST /v1/audit/key/rotate ---- */

typedef kbd_audit_key_rotate_req rotate_ctx;

void kbd_audit_key_rotate_free(void *p)
{
    rotate_ctx *c = p;

    if (c != NULL)
        free(c->reason);
    free(c);
}

/*
 * The next audit key's label: "kbr/audit/<n>" for the first n from 2 the HSM does not hold.
 * Labels of keys made for a history a recovery gave up stay taken, so a label names one key.
 */
static kbr_err new_audit_key(kbr_hsm_session *s, char label[KBR_HSM_LABEL_MAX], kbr_msg *msg)
{
    kbr_err err = KBR_ERR_CONFLICT;
    kbr_hsm_key_info info;

    for (int n = 2; n < AUDIT_LABELS_MAX && err == KBR_ERR_CONFLICT; n++) {
        snprintf(label, KBR_HSM_LABEL_MAX, "%s/%d", KBD_AUDIT_LABEL, n);
        err = kbr_hsm_find_key(s, label, &info);
        if (err == KBR_OK) {
            err = KBR_ERR_CONFLICT;
            continue;
        }
        if (err != KBR_ERR_NOT_FOUND)
            break;
        /* CONFLICT: another object has the label; the next number then */
        err = kbr_hsm_generate(s, label, KBR_ALG_ED25519, &info);
    }
    if (err != KBR_OK)
        return kbr_fail(msg, err, "cannot make a new audit key in the HSM: %s", kbr_err_str(err));
    return KBR_OK;
}

static kbr_err rotate_make(kbd_req *r, kbd_worker *w, rotate_ctx *c)
{
    kbr_err err = KBR_OK;
    json_t *rec = NULL, *effect = NULL;
    kbr_audit_rec *pending = NULL;
    kbr_effects *fx = NULL;
    char label[KBR_HSM_LABEL_MAX];
    static const char *const shown[] = {"size",        "root_hash",   "time",   "signature_b64",
                                        "note",        "origin",      "key_id", "public_key_pem",
                                        "next_key_id", "next_key_pem"};

    err = record_current(w, &rec, &pending, &r->msg);
    KBR_ENSURE(err != KBR_ERR_CONFLICT, kbr_fail(&r->msg, KBR_ERR_AUDIT, "%s", r->msg.text));
    KBR_GUARD(err);
    /* the log first has to hold the head the HSM recorded last; the next round records it */
    KBR_ENSURE(pending == NULL,
               kbr_fail(&r->msg, KBR_ERR_AUDIT,
                        "the audit log does not hold the HSM's latest checkpoint yet; try again "
                        "in a few seconds"));
    err = new_audit_key(w->hsm, label, &r->msg);
    note_hsm(w->d, err);
    KBR_GUARD(err);
    /* the key the log hands on now signs a head naming the new one, and the new one cosigns */
    err = kbd_head_sign_and_record(w->hsm, w->store,
                                   &(kbd_head_spec){w->d->cfg.audit_origin, rec, label, false},
                                   &effect, &r->msg);
    note_hsm(w->d, err);
    KBR_GUARD(err);
    KBR_GUARD(kbd_record_effects(effect, &fx));
    KBR_GUARD(kbd_req_effect(r, kbr_effects_get(fx, 0)));
    json_object_set(r->rec->detail, "size", json_object_get(effect, "size"));
    json_object_set(r->rec->detail, "root_hash", json_object_get(effect, "root_hash"));
    json_object_set(r->rec->detail, "key_id", json_object_get(effect, "key_id"));
    json_object_set(r->rec->detail, "next_key_id", json_object_get(effect, "next_key_id"));
    json_object_set(r->rec->detail, "next_key_label", json_object_get(effect, "next_key_label"));
    json_object_set_new(r->rec->detail, "reason",
                        c->reason != NULL ? json_string(c->reason) : json_null());
    r->resp = json_object();
    KBR_ENSURE(r->resp != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
        json_object_set(r->resp, shown[i], json_object_get(effect, shown[i]));
    r->add_audit_seq_to_resp = true;
out:
    kbr_effects_free(fx);
    kbr_audit_rec_free(pending);
    json_decref(effect);
    json_decref(rec);
    return err;
}

void kbd_audit_key_rotate_work(kbd_req *r, kbd_worker *w)
{
    rotate_ctx *c = r->ctx;
    kbr_err err;

    /* of brokers sharing a store, the heads are the lease holder's (kbd_checkpoint_covering) */
    if (!kbr_audit_checkpoint_lease(w->d->audit)) {
        kbd_req_error(r, KBR_ERR_AUDIT,
                      "another broker of this store makes the checkpoints; rotate the audit key "
                      "there (the one whose metrics show checkpoints)");
        return;
    }
    if (!acquire_waiting(w->d->checkpointer)) {
        kbd_req_error(r, KBR_ERR_AUDIT, "a checkpoint is being recorded; try again");
        return;
    }
    c->held = true;
    r->status = 201;
    err = rotate_make(r, w, c);
    if (err != KBR_OK)
        kbd_req_error(r, err, NULL);
}

/* Event thread: the rotation's entry settled; the next head may be made. */
void kbd_audit_key_rotate_settle(kbd_req *r, bool committed)
{
    rotate_ctx *c = r->ctx;

    if (c->held)
        release(r->d->checkpointer, committed ? r->rec->seq : 0);
    c->held = false;
}

kbr_err kbd_audit_key_rotate_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    rotate_ctx *c = calloc(1, sizeof(*c));

    *out = c;
    return c != NULL ? kbd_json_reason_only(r->body, &c->reason, msg) : KBR_ERR_NOMEM;
}

/* The audit key is every product's: only an admin of everything rotates it. */
kbr_err kbd_audit_key_rotate_authorize(kbd_req *r, void *req)
{
    (void)req;
    if (!kbd_scope_unlimited(&r->tok->scope))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "rotating the audit key needs " KBD_UNLIMITED_ADMIN);
    return KBR_OK;
}
