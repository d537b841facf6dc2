/*
 * writer.c - audit records and the writer thread that commits them in
 * groups: one transaction and one fsync for everything queued, the hash
 * chain advanced in queue order.  A record whose ledger effects fail for a
 * reason of its own fails alone; only a failure of the store fails a group.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit_chain.h"

/* Bounds one transaction, so a burst cannot hold the write lock or the callers for long. */
#define GROUP_MAX 512
#define OWN_RING  4096

struct kbr_audit {
    kbr_store *st;
    pthread_t thread;
    bool sync_ready;

    pthread_mutex_t mu; /* guards the queue and the flags below it */
    pthread_cond_t cv;
    kbr_audit_rec *head, *tail;
    bool stopping; /* kbr_audit_stop was called: drain, then exit */
    bool exited;   /* the writer takes no more records */

    /* The writer thread's own view of the durable chain. */
    int64_t last_seq;
    char last_hash[65];

    /* The seq ranges of this writer's groups, oldest first, until kbr_audit_written_here has
     * passed them: brokers sharing a store tell their own entries from the others'. */
    pthread_mutex_t own_mu;
    struct {
        int64_t first, last;
    } own[OWN_RING];
    size_t own_head, own_n;
    atomic_bool lease;  /* kbr_audit_checkpoint_lease */
    atomic_bool copied; /* the checkpointer has copied since the writer last looked */

    /* WAL housekeeping on its own connection, so commits never wait for it. */
    kbr_store *maint_st;
    pthread_t maint_thread;
    bool maint_running;
    pthread_mutex_t maint_mu;
    pthread_cond_t maint_cv;
    bool maint_stop;

    atomic_bool healthy;
    atomic_int_fast64_t durable_seq;
    atomic_uint_fast64_t records, commits, failed_commits, refused_records;
    kbr_hist commit_seconds;  /* each group's transaction, commit and fsync included */
    kbr_hist group_size;      /* records per committed group */
    kbr_hist restart_seconds; /* the writer's copies for the WAL to start over (SQLite) */
};

static const double group_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};

/* ---- records ---- */

static kbr_err dup_utf8(const char *s, char **out)
{
    kbr_err err = KBR_OK;
    json_t *check = NULL;

    *out = NULL;
    if (s == NULL)
        goto out;
    /* The entry is JSON: a string jansson refuses would fail the whole group later. */
    check = json_string(s);
    KBR_ENSURE(check != NULL, KBR_ERR_BAD_REQUEST);
    *out = strdup(s);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    json_decref(check);
    return err;
}

kbr_err kbr_audit_rec_new(const char *sub, const char *jti, const char *op, const char *key,
                          kbr_audit_rec **out)
{
    kbr_err err = KBR_OK;
    kbr_audit_rec *r = NULL;

    *out = NULL;
    r = calloc(1, sizeof(*r));
    KBR_ENSURE(r != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(dup_utf8(sub, &r->sub));
    KBR_GUARD(dup_utf8(jti, &r->jti));
    KBR_GUARD(dup_utf8(op, &r->op));
    KBR_GUARD(dup_utf8(key, &r->key));
    KBR_GUARD(dup_utf8("ok", &r->outcome));
    r->detail = json_object();
    KBR_ENSURE(r->detail != NULL, KBR_ERR_NOMEM);
    *out = r;
    r = NULL;
out:
    kbr_audit_rec_free(r);
    return err;
}

static bool outcome_known(const char *outcome)
{
    return outcome != NULL && (strcmp(outcome, "ok") == 0 || strcmp(outcome, "denied") == 0 ||
                               strcmp(outcome, "error") == 0);
}

kbr_err kbr_audit_rec_set_outcome(kbr_audit_rec *rec, const char *outcome, const char *error_code)
{
    kbr_err err = KBR_OK;
    char *o = NULL, *code = NULL;

    KBR_ENSURE(outcome_known(outcome), KBR_ERR_INTERNAL);
    KBR_GUARD(dup_utf8(outcome, &o));
    KBR_GUARD(dup_utf8(error_code, &code));
    free(rec->outcome);
    free(rec->error_code);
    rec->outcome = o;
    rec->error_code = code;
    o = NULL;
    code = NULL;
out:
    free(o);
    free(code);
    return err;
}

void kbr_audit_rec_free(kbr_audit_rec *rec)
{
    if (rec == NULL)
        return;
    free(rec->sub);
    free(rec->jti);
    free(rec->op);
    free(rec->key);
    free(rec->outcome);
    free(rec->error_code);
    json_decref(rec->detail);
    kbr_effects_free(rec->effects);
    json_decref(rec->products);
    free(rec);
}

kbr_err kbr_audit_rec_add_product(kbr_audit_rec *rec, const char *product)
{
    kbr_err err = KBR_OK;
    size_t i;
    json_t *p;

    if (product == NULL)
        goto out;
    if (rec->products == NULL)
        rec->products = json_array();
    KBR_ENSURE(rec->products != NULL, KBR_ERR_NOMEM);
    json_array_foreach(rec->products, i, p)
    {
        if (strcmp(json_string_value(p), product) == 0)
            goto out;
    }
    /* json_string refuses what is not UTF-8, as the entry would */
    p = json_string(product);
    KBR_ENSURE(p != NULL, KBR_ERR_BAD_REQUEST);
    KBR_ENSURE(json_array_append_new(rec->products, p) == 0, KBR_ERR_NOMEM);
out:
    return err;
}

/* ---- one group ---- */

/* An effect hit a uniqueness rule: the record stays in the log as the denial it became. */
static kbr_err mark_conflict(kbr_audit_rec *r)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(kbr_audit_rec_set_outcome(r, "denied", "conflict"));
    if (r->detail == NULL)
        r->detail = json_object();
    KBR_ENSURE(r->detail != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set_new(r->detail, "conflict", json_true()) == 0, KBR_ERR_NOMEM);
    r->key_use = false;
    r->result = KBR_ERR_CONFLICT;
out:
    return err;
}

/*
 * The token's max_uses are spent, as the ledger counts them under the write lock: another
 * broker sharing the store used the last of them after this one reserved its use.  The
 * record stays in the log as that denial, without its effects, and what its request made is
 * not released (429 quota_exhausted).
 */
static kbr_err mark_exhausted(kbr_audit_rec *r)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(kbr_audit_rec_set_outcome(r, "denied", "quota_exhausted"));
    if (r->detail == NULL)
        r->detail = json_object();
    KBR_ENSURE(r->detail != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set_new(r->detail, "max_uses_spent", json_true()) == 0, KBR_ERR_NOMEM);
    r->key_use = false;
    r->result = KBR_ERR_QUOTA;
out:
    return err;
}

/* The type of each effect: what the refused record was to change. */
static json_t *effect_types(const kbr_effects *effects)
{
    json_t *types = json_array();

    for (size_t i = 0; types != NULL && i < kbr_effects_count(effects); i++) {
        const char *name = kbr_effect_type_name(kbr_effects_get(effects, i)->type);
        if (json_array_append_new(types, name != NULL ? json_string(name) : json_null()) != 0) {
            json_decref(types);
            return NULL;
        }
    }
    return types;
}

/*
 * The ledger refused the record's effects for a reason of the record's own (an effect the
 * handler built wrong, a value the ledger cannot hold), and kbr_store_apply took all
 * of them back: the rest of the group goes on, so one request never fails another.
 *
 * The record is still written, as an error without its effects, rather than dropped: by the
 * time it reaches the writer the HSM may have worked for it (a firmware signature, a
 * certificate signed by a CA key), and the log accounts for every use of a key, whether or
 * not its result was released.  An error and not a denial: the caller asked for nothing it
 * may not have, the fault is the broker's, and the caller is told the change could not be
 * recorded (audit_unavailable), with this entry's seq.  The entry keeps its place in the
 * group, so seq, prev_hash and the tree run through it as through any other: nothing is
 * renumbered and no gap is left.
 */
static kbr_err mark_refused(kbr_audit_rec *r, kbr_err why)
{
    kbr_err err = KBR_OK;
    json_t *refused = NULL;

    KBR_GUARD(kbr_audit_rec_set_outcome(r, "error", "audit_unavailable"));
    if (r->detail == NULL)
        r->detail = json_object();
    KBR_ENSURE(r->detail != NULL, KBR_ERR_NOMEM);
    refused = json_pack("{s:s,s:o}", "reason", kbr_err_str(why), "types", effect_types(r->effects));
    KBR_ENSURE(refused != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set_new(r->detail, "effects_refused", refused) == 0, KBR_ERR_NOMEM);
    r->key_use = false;
    r->result = KBR_ERR_INTERNAL;
out:
    return err;
}

/*
 * Is a failure of the effects the record's, or the store's?  The store's when the store failed
 * (I/O, a full disk, a busy or damaged database) or memory ran out, and whenever the
 * transaction is gone (SQLite ends it by itself after some of those): then nothing of the group
 * can be made durable and the group fails as a whole, as before.  Anything else is the
 * record's, and its savepoint has undone it.
 */
static bool record_at_fault(kbr_audit *a, kbr_err why)
{
    return why != KBR_ERR_STORE && why != KBR_ERR_NOMEM && kbr_store_in_transaction(a->st);
}

/*
 * The entry's canonical text, written member by member in RFC 8785 order from the record
 * itself: the detail and products as jansson holds them, the effects from their typed form.
 * "effects", "documents" and "key_use" go in only when there is something to say.
 */
kbr_err kbr_audit_entry_text(const kbr_audit_rec *r, int64_t seq, const char *time,
                             const char *prev, char **out, size_t *len)
{
    kbr_jcs w = {0};
    const json_t *detail = r->detail;

    kbr_jcs_object(&w);
    kbr_jcs_key(&w, "detail");
    if (detail == NULL) {
        kbr_jcs_object(&w);
        kbr_jcs_end(&w);
    } else if (json_is_object(detail)) {
        kbr_jcs_json(&w, detail);
    } else {
        kbr_jcs_fail(&w, KBR_ERR_INTERNAL);
    }
    if (kbr_effects_document_count(r->effects) > 0) {
        kbr_jcs_key(&w, "documents");
        kbr_jcs_array(&w);
        for (size_t i = 0; i < kbr_effects_document_count(r->effects); i++)
            kbr_jcs_str(&w, kbr_effects_document(r->effects, i)->sha256);
        kbr_jcs_end(&w);
    }
    if (kbr_effects_count(r->effects) > 0) {
        kbr_jcs_key(&w, "effects");
        kbr_effects_write(r->effects, &w);
    }
    kbr_jcs_member_nullable(&w, "error_code", r->error_code);
    kbr_jcs_member_nullable(&w, "jti", r->jti);
    kbr_jcs_member_nullable(&w, "key", r->key);
    if (r->key_use)
        kbr_jcs_member_bool(&w, "key_use", true);
    kbr_jcs_member_nullable(&w, "op", r->op);
    kbr_jcs_member_str(&w, "outcome", r->outcome);
    kbr_jcs_member_str(&w, "prev_hash", prev);
    if (json_array_size(r->products) > 0) {
        kbr_jcs_key(&w, "products");
        kbr_jcs_json(&w, r->products);
    }
    kbr_jcs_member_int(&w, "seq", seq);
    kbr_jcs_member_nullable(&w, "sub", r->sub);
    kbr_jcs_member_str(&w, "time", time);
    kbr_jcs_end(&w);
    return kbr_jcs_finish(&w, out, len);
}

kbr_err kbr_audit_entry_new(const kbr_audit_rec *r, int64_t seq, const char *time, const char *prev,
                            json_t **out)
{
    kbr_err err = KBR_OK;
    char *text = NULL;
    size_t len;

    *out = NULL;
    KBR_GUARD(kbr_audit_entry_text(r, seq, time, prev, &text, &len));
    *out = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    free(text);
    return err;
}

static kbr_err insert_entry(kbr_audit *a, kbr_audit_rec *r, int64_t seq, const char *time,
                            const char *prev)
{
    kbr_err err = KBR_OK;
    char *canonical = NULL;
    size_t len;

    KBR_GUARD(kbr_audit_entry_text(r, seq, time, prev, &canonical, &len));
    KBR_GUARD(kbr_audit_leaf_hash(canonical, len, r->hash));
    KBR_GUARD(kbr_store_audit_insert(
        a->st, &(kbr_store_audit_row){.seq = seq, .entry_json = canonical, .hash = r->hash}));
    KBR_GUARD(kbr_store_merkle_append(a->st, seq, r->hash));
    r->seq = seq;
    memcpy(r->time, time, KBR_TIME_LEN);
out:
    free(canonical);
    return err;
}

static kbr_err write_rec(kbr_audit *a, kbr_audit_rec *r, int64_t seq, const char *time,
                         const char *prev)
{
    kbr_err err = KBR_OK;
    kbr_err applied;

    r->result = KBR_OK;
    if (r->key_use && r->jti != NULL) {
        int64_t left = -1;

        KBR_GUARD(kbr_store_token_uses_left(a->st, r->jti, &left));
        if (left == 0) {
            KBR_GUARD(mark_exhausted(r));
            kbr_effects_free(r->effects);
            r->effects = NULL;
            KBR_GUARD(insert_entry(a, r, seq, time, prev));
            goto out;
        }
    }
    applied = kbr_store_apply(a->st, r->effects, seq);
    if (applied == KBR_ERR_STORE_CONSTRAINT)
        KBR_GUARD(mark_conflict(r));
    else if (applied != KBR_OK && record_at_fault(a, applied))
        KBR_GUARD(mark_refused(r, applied));
    else
        KBR_GUARD(applied);
    if (applied != KBR_OK) {
        /* the entry carries only what the ledger kept */
        kbr_effects_free(r->effects);
        r->effects = NULL;
    }
    KBR_GUARD(insert_entry(a, r, seq, time, prev));
out:
    return err;
}

static kbr_err reload_tail(kbr_audit *a)
{
    kbr_err err = KBR_OK;
    int64_t seq = 0;
    char hash[65];

    KBR_GUARD(kbr_store_audit_tail(a->st, &seq, hash));
    a->last_seq = seq;
    memcpy(a->last_hash, hash, sizeof(hash));
out:
    return err;
}

/* Before the commit, so no reader of the store can see the group's entries before their range
 * is here. */
static void own_push(kbr_audit *a, int64_t first, int64_t last)
{
    pthread_mutex_lock(&a->own_mu);
    if (a->own_n == OWN_RING) { /* nobody follows: the oldest goes */
        a->own_head = (a->own_head + 1) % OWN_RING;
        a->own_n--;
    }
    a->own[(a->own_head + a->own_n) % OWN_RING].first = first;
    a->own[(a->own_head + a->own_n) % OWN_RING].last = last;
    a->own_n++;
    pthread_mutex_unlock(&a->own_mu);
}

static void own_drop_last(kbr_audit *a)
{
    pthread_mutex_lock(&a->own_mu);
    if (a->own_n > 0)
        a->own_n--;
    pthread_mutex_unlock(&a->own_mu);
}

bool kbr_audit_written_here(kbr_audit *a, int64_t seq)
{
    bool here;

    pthread_mutex_lock(&a->own_mu);
    while (a->own_n > 0 && a->own[a->own_head].last < seq) {
        a->own_head = (a->own_head + 1) % OWN_RING;
        a->own_n--;
    }
    here = a->own_n > 0 && a->own[a->own_head].first <= seq;
    pthread_mutex_unlock(&a->own_mu);
    return here;
}

bool kbr_audit_checkpoint_lease(kbr_audit *a)
{
    return atomic_load(&a->lease);
}

/* *n records written, *refused of them without their effects (counted once committed). */
static kbr_err write_group(kbr_audit *a, kbr_audit_rec *group, size_t *n, size_t *refused)
{
    kbr_err err = KBR_OK;
    bool in_tx = false;
    char time_text[KBR_TIME_LEN], prev[65];
    int64_t seq;

    *n = 0;
    *refused = 0;
    KBR_GUARD(kbr_store_begin(a->st));
    in_tx = true;
    /*
     * The chain continues from the tail the store holds, read inside the transaction, which
     * holds the store's write lock (SQLite's BEGIN IMMEDIATE, PostgreSQL's writer_lock row):
     * brokers sharing a PostgreSQL store append one group after another to one log, in one
     * order, and none can fork it.
     */
    KBR_GUARD(reload_tail(a));
    seq = a->last_seq;
    memcpy(prev, a->last_hash, sizeof(prev));
    /* One clock reading, under the lock: the whole group becomes durable at the same instant,
     * and no group of another broker that commits later reads the clock earlier. */
    kbr_time_fmt(time(NULL), time_text);
    for (kbr_audit_rec *r = group; r != NULL; r = r->next) {
        KBR_GUARD(write_rec(a, r, ++seq, time_text, prev));
        memcpy(prev, r->hash, sizeof(prev));
        (*n)++;
        if (r->result == KBR_ERR_INTERNAL)
            (*refused)++;
    }
    own_push(a, a->last_seq + 1, seq);
    err = kbr_store_commit(a->st);
    if (err != KBR_OK)
        own_drop_last(a); /* those seqs are the next group's, maybe another broker's */
    KBR_GUARD(err);
    in_tx = false;
    a->last_seq = seq;
    memcpy(a->last_hash, prev, sizeof(prev));
out:
    if (in_tx)
        kbr_store_rollback(a->st);
    return err;
}

/*
 * Nothing of the group is durable.  The next group continues the chain from what the store
 * holds (write_group reads it each time), so a full disk or a lost database costs these
 * records and not the service.
 */
static void fail_group(kbr_audit *a, kbr_audit_rec *group)
{
    for (kbr_audit_rec *r = group; r != NULL; r = r->next) {
        r->result = KBR_ERR_AUDIT;
        r->seq = 0;
        r->time[0] = '\0';
        r->hash[0] = '\0';
    }
    (void)reload_tail(a);
    atomic_store(&a->healthy, false);
    atomic_fetch_add(&a->failed_commits, 1);
}

static void finish(kbr_audit_rec *r)
{
    if (r->done != NULL)
        r->done(r, r->arg);
    else
        kbr_audit_rec_free(r);
}

static void deliver(kbr_audit_rec *group)
{
    kbr_audit_rec *next;

    /* done() may free or requeue the record, so the link is read first. */
    for (kbr_audit_rec *r = group; r != NULL; r = next) {
        next = r->next;
        r->next = NULL;
        finish(r);
    }
}

/* ---- the thread ---- */

/* Blocks for work; NULL once stopping with an empty queue. */
static kbr_audit_rec *take_group(kbr_audit *a)
{
    kbr_audit_rec *group, *last;
    size_t n = 1;

    pthread_mutex_lock(&a->mu);
    while (a->head == NULL && !a->stopping)
        pthread_cond_wait(&a->cv, &a->mu);
    group = a->head;
    if (group == NULL) {
        a->exited = true;
    } else {
        for (last = group; last->next != NULL && n < GROUP_MAX; last = last->next)
            n++;
        a->head = last->next;
        if (a->head == NULL)
            a->tail = NULL;
        last->next = NULL;
    }
    pthread_mutex_unlock(&a->mu);
    return group;
}

static void *writer_main(void *arg)
{
    kbr_audit *a = arg;
    kbr_audit_rec *group;
    size_t n, refused;

    while ((group = take_group(a)) != NULL) {
        double t0 = kbr_monotonic_seconds();
        kbr_err err = write_group(a, group, &n, &refused);

        kbr_hist_observe(&a->commit_seconds, kbr_monotonic_seconds() - t0);
        if (err == KBR_OK) {
            kbr_hist_observe(&a->group_size, (double)n);
            atomic_store(&a->durable_seq, a->last_seq);
            atomic_fetch_add(&a->records, n);
            atomic_fetch_add(&a->refused_records, refused);
            atomic_fetch_add(&a->commits, 1);
            atomic_store(&a->healthy, true);
        } else {
            fail_group(a, group);
        }
        deliver(group);
        /*
         * After the answers, and just after a checkpointer's copy, so that the writer's own
         * (kbr_store_writer_between) has only the frames committed since to copy, not up to
         * 100 ms of them.  A failure costs only a longer WAL, and the next copy tries again;
         * one that is the store's own shows at the next commit.
         */
        if (err == KBR_OK && atomic_exchange(&a->copied, false)) {
            bool copied = false;
            double t1 = kbr_monotonic_seconds();
            /* no group commits meanwhile: bench/README.md, "Where the slow signatures fall" */
            kbr_err tidy = kbr_store_writer_between(a->st, &copied);

            if (tidy == KBR_OK && copied)
                kbr_hist_observe(&a->restart_seconds, kbr_monotonic_seconds() - t1);
        }
    }
    return NULL;
}

void kbr_audit_submit(kbr_audit *a, kbr_audit_rec *rec)
{
    bool refused;

    rec->next = NULL;
    pthread_mutex_lock(&a->mu);
    refused = a->exited;
    if (!refused) {
        if (a->tail != NULL)
            a->tail->next = rec;
        else
            a->head = rec;
        a->tail = rec;
        pthread_cond_signal(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    if (refused) {
        /* Submitted after kbr_audit_stop drained the queue: nothing can be recorded. */
        rec->result = KBR_ERR_AUDIT;
        rec->seq = 0;
        finish(rec);
    }
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
} sync_wait;

static void sync_done(kbr_audit_rec *rec, void *arg)
{
    sync_wait *w = arg;

    (void)rec;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    /* After this unlock the waiter may return and w is gone. */
    pthread_mutex_unlock(&w->mu);
}

kbr_err kbr_audit_append_sync(kbr_audit *a, kbr_audit_rec *rec)
{
    kbr_err err = KBR_OK;
    sync_wait w = {.done = false};

    KBR_ENSURE(rec->done == NULL, KBR_ERR_INTERNAL);
    KBR_ENSURE(pthread_mutex_init(&w.mu, NULL) == 0, KBR_ERR_NOMEM);
    if (pthread_cond_init(&w.cv, NULL) != 0) {
        pthread_mutex_destroy(&w.mu);
        err = KBR_ERR_NOMEM;
        goto out;
    }
    rec->done = sync_done;
    rec->arg = &w;
    kbr_audit_submit(a, rec);
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    rec->done = NULL;
    rec->arg = NULL;
    err = rec->result;
out:
    return err;
}

bool kbr_audit_healthy(kbr_audit *a)
{
    return atomic_load(&a->healthy);
}

int64_t kbr_audit_last_seq(kbr_audit *a)
{
    return atomic_load(&a->durable_seq);
}

void kbr_audit_get_stats(kbr_audit *a, kbr_audit_stats *out)
{
    out->records = atomic_load(&a->records);
    out->commits = atomic_load(&a->commits);
    out->failed_commits = atomic_load(&a->failed_commits);
    out->refused_records = atomic_load(&a->refused_records);
}

const kbr_hist *kbr_audit_commit_latency(kbr_audit *a)
{
    return &a->commit_seconds;
}

const kbr_hist *kbr_audit_group_sizes(kbr_audit *a)
{
    return &a->group_size;
}

const kbr_hist *kbr_audit_wal_restart_latency(kbr_audit *a)
{
    return &a->restart_seconds;
}

/* ---- start and stop ---- */

/*
 * The checkpointer copies the WAL's pages into the database at most once per
 * MAINTAIN_EVERY_MS, never straight after the last copy: a checkpoint copies a page once
 * however many commits changed it since the previous one, and under load the same pages
 * change in every group (the log's last leaf, the tree's right edge, the indexes' last
 * leaves), so copying after every commit copied them once per group.
 */
#define MAINTAIN_EVERY_MS 100

static void *maintain_main(void *arg)
{
    kbr_audit *a = arg;
    uint_fast64_t seen = 0;
    struct timespec until;

    int rounds = 0;

    pthread_mutex_lock(&a->maint_mu);
    while (!a->maint_stop) {
        uint_fast64_t now_commits = atomic_load(&a->commits);
        bool held = false;

        /* about once a second; a store that cannot answer keeps the lease where it was */
        if (rounds++ % (1000 / MAINTAIN_EVERY_MS) == 0) {
            pthread_mutex_unlock(&a->maint_mu);
            if (kbr_store_checkpoint_lease(a->maint_st, &held) == KBR_OK)
                atomic_store(&a->lease, held);
            pthread_mutex_lock(&a->maint_mu);
        }
        if (now_commits != seen) {
            seen = now_commits;
            pthread_mutex_unlock(&a->maint_mu);
            /* a failed checkpoint is retried next round; the WAL only grows meanwhile */
            if (kbr_store_maintain(a->maint_st) != KBR_OK)
                seen = 0;
            else
                atomic_store(&a->copied, true);
            pthread_mutex_lock(&a->maint_mu);
        }
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += MAINTAIN_EVERY_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&a->maint_cv, &a->maint_mu, &until);
    }
    pthread_mutex_unlock(&a->maint_mu);
    return NULL;
}

static kbr_err maintain_start(kbr_audit *a, const char *store_url, kbr_msg *msg)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(kbr_store_writer_mode(a->st));
    KBR_GUARD(kbr_store_open(store_url, &a->maint_st, msg));
    KBR_ENSURE(pthread_mutex_init(&a->maint_mu, NULL) == 0, KBR_ERR_NOMEM);
    if (pthread_cond_init(&a->maint_cv, NULL) != 0) {
        pthread_mutex_destroy(&a->maint_mu);
        err = KBR_ERR_NOMEM;
        goto out;
    }
    if (pthread_create(&a->maint_thread, NULL, maintain_main, a) != 0) {
        pthread_cond_destroy(&a->maint_cv);
        pthread_mutex_destroy(&a->maint_mu);
        err = kbr_fail(msg, KBR_ERR_NOMEM, "audit log: cannot start the checkpoint thread");
        goto out;
    }
    a->maint_running = true;
out:
    return err;
}

static void maintain_stop(kbr_audit *a)
{
    if (!a->maint_running)
        return;
    pthread_mutex_lock(&a->maint_mu);
    a->maint_stop = true;
    pthread_cond_signal(&a->maint_cv);
    pthread_mutex_unlock(&a->maint_mu);
    pthread_join(a->maint_thread, NULL);
    pthread_cond_destroy(&a->maint_cv);
    pthread_mutex_destroy(&a->maint_mu);
    a->maint_running = false;
}

static void audit_free(kbr_audit *a)
{
    if (a == NULL)
        return;
    maintain_stop(a);
    kbr_store_close(a->maint_st);
    kbr_store_close(a->st);
    if (a->sync_ready) {
        pthread_mutex_destroy(&a->own_mu);
        pthread_cond_destroy(&a->cv);
        pthread_mutex_destroy(&a->mu);
    }
    free(a);
}

static kbr_err sync_init(kbr_audit *a)
{
    kbr_err err = KBR_OK;

    KBR_ENSURE(pthread_mutex_init(&a->mu, NULL) == 0, KBR_ERR_NOMEM);
    if (pthread_cond_init(&a->cv, NULL) != 0) {
        pthread_mutex_destroy(&a->mu);
        err = KBR_ERR_NOMEM;
        goto out;
    }
    if (pthread_mutex_init(&a->own_mu, NULL) != 0) {
        pthread_cond_destroy(&a->cv);
        pthread_mutex_destroy(&a->mu);
        err = KBR_ERR_NOMEM;
        goto out;
    }
    a->sync_ready = true;
out:
    return err;
}

static kbr_err load_tail(kbr_audit *a, int64_t verify_tail, kbr_msg *msg)
{
    kbr_err err = KBR_OK;

    err = reload_tail(a);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err, "audit log: cannot read its last entry: %s", kbr_err_str(err)));
    KBR_GUARD(kbr_audit_check_stored(a->st, a->last_seq, verify_tail, msg));
    atomic_init(&a->durable_seq, a->last_seq);
out:
    return err;
}

kbr_err kbr_audit_start(const char *store_url, int64_t verify_tail, kbr_audit **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_audit *a = NULL;

    *out = NULL;
    a = calloc(1, sizeof(*a));
    KBR_ENSURE(a != NULL, KBR_ERR_NOMEM);
    atomic_init(&a->healthy, true);
    atomic_init(&a->lease, false);
    atomic_init(&a->copied, false);
    atomic_init(&a->records, 0);
    atomic_init(&a->commits, 0);
    atomic_init(&a->failed_commits, 0);
    atomic_init(&a->refused_records, 0);
    kbr_hist_init(&a->commit_seconds, kbr_hist_seconds, kbr_hist_seconds_n);
    kbr_hist_init(&a->group_size, group_bounds, sizeof(group_bounds) / sizeof(group_bounds[0]));
    kbr_hist_init(&a->restart_seconds, kbr_hist_seconds, kbr_hist_seconds_n);
    KBR_GUARD(sync_init(a));
    KBR_GUARD(kbr_store_open(store_url, &a->st, msg));
    KBR_GUARD(load_tail(a, verify_tail, msg));
    KBR_GUARD(maintain_start(a, store_url, msg));
    KBR_ENSURE(pthread_create(&a->thread, NULL, writer_main, a) == 0,
               kbr_fail(msg, KBR_ERR_NOMEM, "audit log: cannot start the writer thread"));
    *out = a;
    a = NULL;
out:
    audit_free(a);
    return err;
}

void kbr_audit_stop(kbr_audit *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->mu);
    a->stopping = true;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    audit_free(a);
}
