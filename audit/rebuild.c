/*
 * rebuild.c - keybrokerd --verify-store: the store checked against its own log.
 *
 * The log is the source of truth: every ledger fact a view shows was put there by the
 * effects of one entry, and the entry carries them ("effects", and the documents it names
 * by SHA-256).  So the ledger can be made again from the entries alone, with the same code
 * the audit writer runs (kbr_store_apply), into a scratch store; the two must then be equal,
 * table by table and row by row.  Anything in the store that no entry accounts for (a row
 * added, a column rewritten, a revocation removed, a document swapped, a trigger planted)
 * shows as the first difference, named.
 *
 * The store is read in one snapshot, so a running broker may keep writing: what is checked
 * is the store as of the moment the check began.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>

#include "audit_chain.h"

#define PAGE       10000 /* entries read per walk */
#define TX_ENTRIES 20000 /* entries the scratch store commits at once */
#define QUEUE      4096  /* entries read ahead of the one being applied */

/*
 * Two threads: the reader walks the store's entries (its connection alone), checks each
 * against the chain and makes its effects and documents ready; the applier writes them into
 * the scratch store (its connection alone).  They meet in a bounded queue, so reading,
 * hashing and parsing cost no time on the path that writes.
 */
typedef struct {
    int64_t seq;
    char *entry_json;
    char hash[65];
    kbr_effects *fx; /* NULL: the entry made no change to the ledger */
} ready;

typedef struct {
    kbr_store *st, *scratch;
    kbr_chain_cursor at;
    kbr_audit_verify_stats *stats;

    pthread_mutex_t lock;
    pthread_cond_t changed;
    ready items[QUEUE];
    size_t head, count;
    bool done;        /* the reader has put its last entry */
    bool stop;        /* the applier failed: the reader stops */
    kbr_err read_err; /* why the reader stopped early (not for stop) */
    int64_t read_seq; /* at which entry */
    kbr_msg read_msg; /* its message */
} rebuild;

/* The documents an entry names, each read from the store and checked against its name. */
static kbr_err add_documents(rebuild *rb, int64_t seq, const json_t *names, kbr_effects *fx,
                             kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    unsigned char *body = NULL;
    size_t i, len = 0;
    const json_t *name;
    char sha[65];

    KBR_ENSURE(json_is_array(names),
               kbr_fail(msg, KBR_ERR_CONFLICT, "audit entry %lld: \"documents\" is not a list",
                        (long long)seq));
    json_array_foreach(names, i, name)
    {
        const char *want = json_string_value(name);
        kbr_err got;

        KBR_ENSURE(want != NULL && strlen(want) == 64,
                   kbr_fail(msg, KBR_ERR_CONFLICT,
                            "audit entry %lld: document %zu is not named by a SHA-256",
                            (long long)seq, i));
        got = kbr_store_document_get(rb->st, want, &body, &len, NULL);
        KBR_ENSURE(got != KBR_ERR_NOT_FOUND,
                   kbr_fail(msg, KBR_ERR_CONFLICT,
                            "audit entry %lld names document %s, which the store does not have",
                            (long long)seq, want));
        KBR_GUARD(got);
        KBR_GUARD(kbr_effects_add_document(fx, body, len, sha));
        KBR_ENSURE(strcmp(sha, want) == 0,
                   kbr_fail(msg, KBR_ERR_CONFLICT,
                            "document %s, named by audit entry %lld, has been changed (its "
                            "content no longer hashes to its name)",
                            want, (long long)seq));
        free(body);
        body = NULL;
        rb->stats->documents++;
    }
out:
    free(body);
    return err;
}

/* ---- the reader ---- */

/* The entry's effects and documents as the writer had them. */
static kbr_err effects_of(rebuild *rb, int64_t seq, const json_t *entry, kbr_effects **out,
                          kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const json_t *effects = json_object_get(entry, "effects");
    const json_t *documents = json_object_get(entry, "documents");
    kbr_effects *fx = NULL;

    *out = NULL;
    if (effects != NULL) {
        KBR_ENSURE(kbr_effects_from_json(effects, &fx) == KBR_OK,
                   kbr_fail(msg, KBR_ERR_CONFLICT,
                            "audit entry %lld: its effects are not effects this broker knows",
                            (long long)seq));
        rb->stats->effects += (int64_t)kbr_effects_count(fx);
    }
    if (documents != NULL) {
        if (fx == NULL)
            KBR_GUARD(kbr_effects_new(&fx));
        KBR_GUARD(add_documents(rb, seq, documents, fx, msg));
    }
    *out = fx;
    fx = NULL;
out:
    kbr_effects_free(fx);
    return err;
}

/*
 * What the scratch store keeps of an entry: the members its own rows are made from (the
 * generated columns, the products, key_use), not the detail or the effects.  The entry itself
 * was checked against its hash and chain above, so the store's audit table is not compared
 * again (kbr_store_compare leaves it to this check); the scratch's triggers only need these.
 */
static kbr_err slim_entry(const json_t *entry, char **out)
{
    static const char *const keep[] = {"seq",       "time",     "sub",     "jti",
                                       "op",        "key",      "outcome", "error_code",
                                       "prev_hash", "products", "key_use", NULL};
    kbr_err err = KBR_OK;
    json_t *slim = json_object();

    *out = NULL;
    KBR_ENSURE(slim != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; keep[i] != NULL; i++) {
        json_t *v = json_object_get(entry, keep[i]);
        if (v != NULL)
            KBR_ENSURE(json_object_set(slim, keep[i], v) == 0, KBR_ERR_NOMEM);
    }
    *out = json_dumps(slim, JSON_COMPACT);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    json_decref(slim);
    return err;
}

static kbr_err put(rebuild *rb, ready *item)
{
    kbr_err err = KBR_OK;

    pthread_mutex_lock(&rb->lock);
    while (rb->count == QUEUE && !rb->stop)
        pthread_cond_wait(&rb->changed, &rb->lock);
    if (rb->stop) {
        err = KBR_ERR_INTERNAL; /* stopped: the applier's error is the one reported */
    } else {
        rb->items[(rb->head + rb->count) % QUEUE] = *item;
        rb->count++;
        *item = (ready){0};
        pthread_cond_broadcast(&rb->changed);
    }
    pthread_mutex_unlock(&rb->lock);
    return err;
}

static kbr_err read_one(int64_t seq, const char *entry_json, const char *hash, void *arg)
{
    kbr_err err = KBR_OK;
    rebuild *rb = arg;
    json_t *entry = NULL;
    ready item = {.seq = seq};

    err = kbr_chain_step(&rb->at, seq, entry_json, hash, &entry, &rb->read_msg);
    KBR_ENSURE(err != KBR_ERR_STORE, KBR_ERR_CONFLICT); /* the message names the entry */
    KBR_GUARD(err);
    KBR_GUARD(effects_of(rb, seq, entry, &item.fx, &rb->read_msg));
    KBR_GUARD(slim_entry(entry, &item.entry_json));
    memcpy(item.hash, hash, sizeof(item.hash));
    KBR_GUARD(put(rb, &item));
    rb->stats->entries++;
out:
    if (err != KBR_OK && rb->read_seq == 0)
        rb->read_seq = seq;
    free(item.entry_json);
    kbr_effects_free(item.fx);
    json_decref(entry);
    return err;
}

static void *reader(void *arg)
{
    kbr_err err = KBR_OK;
    rebuild *rb = arg;
    int64_t from = 0, last = 0;
    char tail[65];

    KBR_GUARD(kbr_store_effects_from(rb->st, &from));
    KBR_ENSURE(from <= 1, kbr_fail(&rb->read_msg, KBR_ERR_CONFLICT,
                                   "audit entries 1 to %lld were written by a broker that did not "
                                   "record their effects in them: the facts they recorded cannot "
                                   "be rebuilt from the log",
                                   (long long)from - 1));
    KBR_GUARD(kbr_store_audit_tail(rb->st, &last, tail));
    rb->at.next = 1;
    memset(rb->at.prev, '0', 64);
    rb->at.prev[64] = '\0';
    while (rb->at.next <= last) {
        int64_t before = rb->at.next;
        KBR_GUARD(kbr_store_audit_walk(rb->st, before - 1, PAGE, read_one, rb));
        if (rb->at.next == before)
            rb->read_seq = before;
        KBR_ENSURE(rb->at.next > before, kbr_fail(&rb->read_msg, KBR_ERR_CONFLICT,
                                                  "audit entry %lld: missing", (long long)before));
    }
out:
    pthread_mutex_lock(&rb->lock);
    rb->read_err = rb->stop ? KBR_OK : err;
    if (rb->read_err != KBR_OK && rb->read_seq == 0)
        rb->read_seq = 1;
    rb->done = true;
    pthread_cond_broadcast(&rb->changed);
    pthread_mutex_unlock(&rb->lock);
    return NULL;
}

/* ---- the applier ---- */

/* The next entry ready, or false when the reader has put its last. */
static bool take(rebuild *rb, ready *out)
{
    bool got = false;

    pthread_mutex_lock(&rb->lock);
    while (rb->count == 0 && !rb->done)
        pthread_cond_wait(&rb->changed, &rb->lock);
    if (rb->count > 0) {
        *out = rb->items[rb->head];
        rb->head = (rb->head + 1) % QUEUE;
        rb->count--;
        got = true;
        pthread_cond_broadcast(&rb->changed);
    }
    pthread_mutex_unlock(&rb->lock);
    return got;
}

/* The entry's effects and documents made again in the scratch store, with its row. */
static kbr_err apply_one(rebuild *rb, const ready *item, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_err applied = kbr_store_apply(rb->scratch, item->fx, item->seq);

    KBR_ENSURE(applied != KBR_ERR_STORE_CONSTRAINT && applied != KBR_ERR_INTERNAL,
               kbr_fail(msg, KBR_ERR_CONFLICT,
                        "audit entry %lld: its effects do not apply to the ledger the entries "
                        "before it make (%s)",
                        (long long)item->seq, kbr_err_str(applied)));
    KBR_GUARD(applied);
    KBR_GUARD(kbr_store_audit_insert(rb->scratch, &(kbr_store_audit_row){
                                                      .seq = item->seq,
                                                      .entry_json = item->entry_json,
                                                      .hash = item->hash,
                                                  }));
    KBR_GUARD(kbr_store_merkle_append(rb->scratch, item->seq, item->hash));
out:
    return err;
}

/* *seq: the entry being applied when it failed. */
static kbr_err apply_all(rebuild *rb, int64_t *seq, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    ready item = {0};
    int64_t in_tx = 0;

    while (take(rb, &item)) {
        *seq = item.seq;
        if (in_tx == 0)
            KBR_GUARD(kbr_store_begin(rb->scratch));
        in_tx++;
        KBR_GUARD(apply_one(rb, &item, msg));
        free(item.entry_json);
        kbr_effects_free(item.fx);
        item = (ready){0};
        if (in_tx >= TX_ENTRIES) {
            KBR_GUARD(kbr_store_commit(rb->scratch));
            in_tx = 0;
        }
    }
    if (in_tx > 0) {
        KBR_GUARD(kbr_store_commit(rb->scratch));
        in_tx = 0;
    }
out:
    free(item.entry_json);
    kbr_effects_free(item.fx);
    if (in_tx > 0)
        kbr_store_rollback(rb->scratch);
    return err;
}

/* Reads and applies the whole log; the first error of either side is the one reported. */
static kbr_err replay_log(rebuild *rb, kbr_msg *msg)
{
    kbr_err err;
    int64_t apply_seq = 0;
    pthread_t t;

    if (pthread_create(&t, NULL, reader, rb) != 0)
        return kbr_fail(msg, KBR_ERR_NOMEM, "cannot start a thread to read the log");
    err = apply_all(rb, &apply_seq, msg);
    pthread_mutex_lock(&rb->lock);
    rb->stop = err != KBR_OK;
    pthread_cond_broadcast(&rb->changed);
    pthread_mutex_unlock(&rb->lock);
    pthread_join(t, NULL);
    while (rb->count > 0) { /* what the reader put after the applier stopped */
        ready *left = &rb->items[rb->head];
        free(left->entry_json);
        kbr_effects_free(left->fx);
        rb->head = (rb->head + 1) % QUEUE;
        rb->count--;
    }
    /* The first entry found wrong is the one named, whichever side found it. */
    if (rb->read_err != KBR_OK && (err == KBR_OK || rb->read_seq <= apply_seq)) {
        memcpy(msg, &rb->read_msg, sizeof(*msg));
        return rb->read_err;
    }
    return err;
}

kbr_err kbr_audit_verify_store(const char *url, const char *scratch, kbr_audit_verify_stats *stats,
                               kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    rebuild rb = {
        .stats = stats, .lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};
    kbr_store_compare_stats cmp = {0};
    kbr_store_info info;
    char path[4096] = "", scratch_url[4200], *shown = NULL;
    bool reading = false;
    int fd;

    *stats = (kbr_audit_verify_stats){0};
    shown = kbr_store_shown(url);
    KBR_ENSURE(shown != NULL, KBR_ERR_NOMEM);
    /* read as it is: nothing is created, migrated or written in the store checked */
    KBR_GUARD(kbr_store_open_readonly(url, &rb.st, &info, msg));
    KBR_ENSURE(info.schema_version != 0, kbr_store_no_schema(shown, msg));
    KBR_ENSURE(info.schema_version == info.current_version,
               kbr_fail(msg, KBR_ERR_STORE,
                        "store %s has schema version %d; this broker rebuilds version %d%s", shown,
                        info.schema_version, info.current_version,
                        kbr_store_shared(url) ? " (a start of this broker migrates it)" : ""));
    KBR_GUARD(kbr_store_bulk_mode(rb.st)); /* it is only read */
    KBR_ENSURE(strlen(scratch) < sizeof(path),
               kbr_fail(msg, KBR_ERR_CONFIG, "scratch store name too long"));
    /* created here, never one that is there: O_EXCL */
    fd = open(scratch, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    KBR_ENSURE(fd >= 0, kbr_fail(msg, KBR_ERR_STORE, "cannot make the scratch store %s: %s",
                                 scratch, strerror(errno)));
    close(fd);
    snprintf(path, sizeof(path), "%s", scratch);
    snprintf(scratch_url, sizeof(scratch_url), "sqlite:%s", path);
    KBR_GUARD(kbr_store_open(scratch_url, &rb.scratch, msg));
    KBR_GUARD(kbr_store_bulk_mode(rb.scratch));
    KBR_GUARD(kbr_store_scratch_mode(rb.scratch));
    KBR_GUARD(kbr_store_read_begin(rb.st, msg));
    reading = true;
    KBR_GUARD(replay_log(&rb, msg));
    err = kbr_store_compare(rb.st, rb.scratch, &cmp, msg);
    stats->tables = cmp.tables;
    stats->rows = cmp.rows;
    KBR_GUARD(err);
    KBR_GUARD(kbr_store_integrity(rb.st, msg));
out:
    if (err != KBR_OK && err != KBR_ERR_CONFLICT && msg->text[0] == '\0')
        kbr_fail(msg, err, "store %s could not be checked: %s", shown != NULL ? shown : "",
                 kbr_err_str(err));
    if (reading)
        kbr_store_read_end(rb.st);
    kbr_store_close(rb.scratch);
    kbr_store_close(rb.st);
    if (path[0] != '\0')
        kbr_store_remove_files(path);
    free(shown);
    return err;
}
