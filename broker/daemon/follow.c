/*
 * follow.c - brokers sharing a store (PostgreSQL) follow the log.
 *
 * Each broker keeps its registries in memory (tokens, revocations and use counts, keys,
 * batches and their provisioned counts, issuer keys, CRLs), so authorization never waits on
 * the store.  What another broker commits reaches them here: a thread with a store
 * connection of its own reads every entry after the last one it saw, every FOLLOW_POLL_MS,
 * skips this broker's own (kbr_audit_written_here: its settle already applied them), reads
 * the rows the entry's effects changed, and hands them to the event thread, which applies
 * them as it applies its own commits.  A revocation committed by one broker is refused by
 * the others once they read it: within FOLLOW_POLL_MS and a round trip of the event loop.
 *
 * Counts are applied as the deltas the entries carry (a key use, a provisioned device), each
 * entry once, so the in-memory counts are this broker's commits plus the others'; the
 * ledger's own rules at commit (batches.provisioned, kbr_store_token_uses_left) stay what
 * makes the quotas exact when brokers race for the last unit.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "kbd.h"
#include "routes.h"

#define FOLLOW_POLL_MS 100
#define FOLLOW_PAGE    500

typedef enum {
    FI_KEY,         /* data: the key row (kbr_store_key_get) */
    FI_TOKEN,       /* data: the token row (kbr_store_token_list) */
    FI_REVOKE,      /* data: array of jti */
    FI_USE,         /* data: jti string */
    FI_BATCH,       /* data: the batch row */
    FI_PROVISIONED, /* data: batch name string */
    FI_CRLS,        /* data: NULL */
    FI_ISSUER,      /* data: the issuer key row */
} item_kind;

typedef struct item {
    struct item *next;
    item_kind kind;
    json_t *data;
} item;

struct kbd_follow {
    kbd *d;
    kbr_store *st;
    pthread_t thread;
    bool running;
    pthread_mutex_t mu; /* guards the queue and stop */
    pthread_cond_t cv;
    bool stop;
    item *head, *tail;
    struct event *ev;
    int64_t cursor;           /* the follower thread's: the last entry read */
    atomic_int_fast64_t seen; /* the same, for other threads (kbd_follow_seen) */
};

/* ---- the follower thread ---- */

typedef struct {
    struct kbd_follow *f;
    item *head, *tail;
    int64_t seen;
} batch_of_items;

static kbr_err add_item(batch_of_items *b, item_kind kind, json_t *data)
{
    item *it = calloc(1, sizeof(*it));

    if (it == NULL) {
        json_decref(data);
        return KBR_ERR_NOMEM;
    }
    it->kind = kind;
    it->data = data;
    if (b->tail != NULL)
        b->tail->next = it;
    else
        b->head = it;
    b->tail = it;
    return KBR_OK;
}

static void free_items(item *it)
{
    while (it != NULL) {
        item *next = it->next;
        json_decref(it->data);
        free(it);
        it = next;
    }
}

static kbr_err token_row(kbr_store *st, const char *sub, const char *jti, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *rows = NULL, *row;
    size_t i;

    *out = NULL;
    KBR_GUARD(kbr_store_token_list(st, sub, NULL, false, time(NULL), &rows));
    json_array_foreach(rows, i, row)
    {
        const char *j = json_string_value(json_object_get(row, "jti"));
        if (j != NULL && strcmp(j, jti) == 0) {
            *out = json_incref(row);
            break;
        }
    }
    KBR_ENSURE(*out != NULL, KBR_ERR_NOT_FOUND);
out:
    json_decref(rows);
    return err;
}

static kbr_err issuer_row(kbr_store *st, const char *kid, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *rows = NULL, *row;
    size_t i;

    *out = NULL;
    KBR_GUARD(kbr_store_issuer_keys(st, &rows));
    json_array_foreach(rows, i, row)
    {
        const char *k = json_string_value(json_object_get(row, "kid"));
        if (k != NULL && strcmp(k, kid) == 0)
            *out = json_incref(row);
    }
    KBR_ENSURE(*out != NULL, KBR_ERR_NOT_FOUND);
out:
    json_decref(rows);
    return err;
}

static const char *str(const json_t *o, const char *field)
{
    return json_string_value(json_object_get(o, field));
}

/* What one effect of another broker's entry changes here. */
static kbr_err effect_items(batch_of_items *b, kbr_store *st, const json_t *e)
{
    kbr_err err = KBR_OK;
    const char *type = str(e, "type");
    json_t *row = NULL;

    if (type == NULL)
        goto out;
    if (strcmp(type, "key.create") == 0 || strcmp(type, "key.retire") == 0 ||
        strcmp(type, "key.certificate") == 0) {
        KBR_GUARD(kbr_store_key_get(st, str(e, "name"), &row));
        KBR_GUARD(add_item(b, FI_KEY, row));
        row = NULL;
        if (strcmp(type, "key.certificate") == 0)
            KBR_GUARD(add_item(b, FI_CRLS, NULL));
    } else if (strcmp(type, "token.issue") == 0) {
        KBR_GUARD(token_row(st, str(e, "sub"), str(e, "jti"), &row));
        KBR_GUARD(add_item(b, FI_TOKEN, row));
        row = NULL;
    } else if (strcmp(type, "token.revoke") == 0) {
        KBR_GUARD(add_item(b, FI_REVOKE, json_incref(json_object_get(e, "jtis"))));
    } else if (strcmp(type, "batch.create") == 0) {
        KBR_GUARD(kbr_store_batch_get(st, str(e, "batch"), &row));
        KBR_GUARD(add_item(b, FI_BATCH, row));
        row = NULL;
    } else if (strcmp(type, "device.provision") == 0) {
        KBR_GUARD(add_item(b, FI_PROVISIONED, json_string(str(e, "batch"))));
    } else if (strcmp(type, "device.revoke") == 0) {
        KBR_GUARD(add_item(b, FI_CRLS, NULL));
    } else if (strcmp(type, "issuer.rotate") == 0) {
        KBR_GUARD(issuer_row(st, str(e, "kid"), &row));
        KBR_GUARD(add_item(b, FI_ISSUER, row));
        row = NULL;
    }
out:
    json_decref(row);
    return err;
}

static kbr_err on_entry(int64_t seq, const char *entry_json, const char *hash, void *arg)
{
    batch_of_items *b = arg;
    kbr_err err = KBR_OK;
    json_t *entry = NULL, *e;
    const char *jti;
    size_t i;

    (void)hash;
    b->seen = seq;
    if (kbr_audit_written_here(b->f->d->audit, seq))
        return KBR_OK;
    entry = json_loads(entry_json, 0, NULL);
    KBR_ENSURE(json_is_object(entry), KBR_ERR_STORE);
    jti = str(entry, "jti");
    if (json_is_true(json_object_get(entry, "key_use")) && jti != NULL &&
        strcmp(str(entry, "outcome") != NULL ? str(entry, "outcome") : "", "ok") == 0)
        KBR_GUARD(add_item(b, FI_USE, json_string(jti)));
    json_array_foreach(json_object_get(entry, "effects"), i, e)
    {
        KBR_GUARD(effect_items(b, b->f->st, e));
    }
out:
    json_decref(entry);
    return err;
}

static void deliver(struct kbd_follow *f, item *head, item *tail)
{
    if (head == NULL)
        return;
    pthread_mutex_lock(&f->mu);
    if (f->tail != NULL)
        f->tail->next = head;
    else
        f->head = head;
    f->tail = tail;
    pthread_mutex_unlock(&f->mu);
    event_active(f->ev, EV_READ, 0);
}

/* One page of entries; *more when it was full.  Items of a page that failed part way are
 * dropped and the page is read again from the same cursor. */
static kbr_err follow_page(struct kbd_follow *f, bool *more)
{
    batch_of_items b = {.f = f, .seen = f->cursor};
    kbr_err err;

    *more = false;
    err = kbr_store_audit_walk(f->st, f->cursor, FOLLOW_PAGE, on_entry, &b);
    if (err != KBR_OK) {
        free_items(b.head);
        return err;
    }
    *more = b.seen - f->cursor >= FOLLOW_PAGE;
    f->cursor = b.seen;
    atomic_store(&f->seen, b.seen);
    deliver(f, b.head, b.tail);
    return KBR_OK;
}

static void *follow_main(void *arg)
{
    struct kbd_follow *f = arg;
    struct timespec until;
    bool more = false, stop = false;

    while (!stop) {
        if (follow_page(f, &more) != KBR_OK)
            more = false; /* the store is away: read again next round */
        pthread_mutex_lock(&f->mu);
        if (!more && !f->stop) {
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += FOLLOW_POLL_MS * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&f->cv, &f->mu, &until);
        }
        stop = f->stop;
        pthread_mutex_unlock(&f->mu);
    }
    return NULL;
}

/* ---- the event thread ---- */

static void apply_issuer(kbd *d, const json_t *row)
{
    const char *kid = str(row, "kid"), *label = str(row, "hsm_label"),
               *pem = str(row, "public_key_pem");
    bool current = json_is_null(json_object_get(row, "replaced_at"));
    BIO *bio = pem != NULL ? BIO_new_mem_buf(pem, -1) : NULL;
    EVP_PKEY *pub = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;

    ERR_clear_error();
    if (kid != NULL && pub != NULL &&
        kbr_policy_add_issuer(d->policy, kid, pub, current) == KBR_OK && current && label != NULL &&
        strlen(label) < sizeof(d->issuer.label)) {
        snprintf(d->issuer.kid, sizeof(d->issuer.kid), "%s", kid);
        snprintf(d->issuer.label, sizeof(d->issuer.label), "%s", label);
    }
    EVP_PKEY_free(pub);
    BIO_free(bio);
}

static void apply(kbd *d, const item *it)
{
    const json_t *v;
    size_t i, n;
    kbd_batch *b;

    switch (it->kind) {
    case FI_KEY:
        if (kbd_keys_put(d->keys, it->data) != KBR_OK)
            kbd_log(KBD_LOG_WARN, "follow.failed", NULL, "cannot follow key %s",
                    str(it->data, "name"));
        break;
    case FI_TOKEN:
        if (kbr_policy_find(d->policy, str(it->data, "jti")) == NULL &&
            kbr_policy_add_token(d->policy, it->data) != KBR_OK)
            kbd_log(KBD_LOG_WARN, "follow.failed", NULL, "cannot follow token %s",
                    str(it->data, "jti"));
        break;
    case FI_REVOKE:
        json_array_foreach(it->data, i, v)
        {
            /* NOT_FOUND: a token this broker never knew, so nothing to refuse here */
            if (json_is_string(v) && kbr_policy_revoke_jti(d->policy, json_string_value(v),
                                                           time(NULL), NULL, &n) != KBR_OK)
                n = 0;
        }
        break;
    case FI_USE:
        kbr_policy_add_uses(d->policy, json_string_value(it->data), 1);
        break;
    case FI_BATCH:
        if (kbd_batches_find(d->batches, str(it->data, "batch")) == NULL &&
            kbd_batches_put(d->batches, it->data) != KBR_OK)
            kbd_log(KBD_LOG_WARN, "follow.failed", NULL, "cannot follow batch %s",
                    str(it->data, "batch"));
        break;
    case FI_PROVISIONED:
        b = kbd_batches_find(d->batches, json_string_value(it->data));
        if (b != NULL)
            b->provisioned++;
        break;
    case FI_CRLS:
        kbd_crls_changed(d);
        break;
    case FI_ISSUER:
        apply_issuer(d, it->data);
        break;
    }
}

static void on_items(evutil_socket_t fd, short what, void *arg)
{
    struct kbd_follow *f = arg;
    item *list;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&f->mu);
    list = f->head;
    f->head = f->tail = NULL;
    pthread_mutex_unlock(&f->mu);
    for (item *it = list; it != NULL; it = it->next)
        apply(f->d, it);
    free_items(list);
}

/* ---- start and stop ---- */

kbr_err kbd_follow_start(kbd *d, int64_t from, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    struct kbd_follow *f = NULL;

    if (!kbr_store_shared(d->cfg.store))
        return KBR_OK;
    f = calloc(1, sizeof(*f));
    KBR_ENSURE(f != NULL, KBR_ERR_NOMEM);
    f->d = d;
    f->cursor = from;
    atomic_init(&f->seen, from);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    d->follow = f;
    f->ev = event_new(d->base, -1, 0, on_items, f);
    KBR_ENSURE(f->ev != NULL, kbr_fail(msg, KBR_ERR_NOMEM, "cannot create the follower's event"));
    KBR_GUARD(kbr_store_open_existing(d->cfg.store, &f->st, msg));
    KBR_ENSURE(pthread_create(&f->thread, NULL, follow_main, f) == 0,
               kbr_fail(msg, KBR_ERR_NOMEM, "cannot start the follower thread"));
    f->running = true;
out:
    return err;
}

int64_t kbd_follow_seen(const kbd *d)
{
    return d->follow != NULL ? (int64_t)atomic_load(&d->follow->seen) : 0;
}

void kbd_follow_stop(kbd *d)
{
    struct kbd_follow *f = d->follow;

    if (f == NULL)
        return;
    if (f->running) {
        pthread_mutex_lock(&f->mu);
        f->stop = true;
        pthread_cond_signal(&f->cv);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->thread, NULL);
    }
    if (f->ev != NULL)
        event_free(f->ev);
    free_items(f->head);
    kbr_store_close(f->st);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
    d->follow = NULL;
}
