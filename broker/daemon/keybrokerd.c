/*
 * keybrokerd.c - keybrokerd: start-up checks, the event loop, graceful shutdown.
 *
 * Start-up fails with exit 1 and a message naming the cause for a bad
 * configuration line, an unreachable HSM, a missing issuer key (run --init),
 * an issuer key the ledger trusts that the HSM no longer holds as recorded,
 * or an unwritable store, so a service manager never shows a broker that
 * looks up but cannot serve.
 *
 * Serving, keybrokerd is three processes (hsmproc.c): this one, the network
 * process, which never maps the PKCS#11 module nor reads the PIN, and the
 * HSM keeper and HSM process it forks before it starts a thread.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <malloc.h>

#include <openssl/crypto.h>

#include <event2/thread.h>

#include "kbd.h"
#include "routes.h"
#include "modes.h"
#include "hsmproc.h"
#include "kbr_version.h"

#define HEALTH_PROBE_SECONDS     5
#define SUPPRESSED_FLUSH_SECONDS 10
#define AUDIT_VERIFY_TAIL        10000

/*
 * Memory that held a request (its Authorization header), a token being
 * issued or a response carrying one is wiped before it goes back to the
 * allocator: jansson and libevent allocate through these.  Every free of
 * either library comes here, so the wipe is explicit_bzero (glibc's memset,
 * which the compiler may not drop), not OPENSSL_cleanse's slower loop.
 */
static void *wiping_malloc(size_t n)
{
    return malloc(n);
}

static void *wiping_realloc(void *p, size_t n)
{
    size_t old = p != NULL ? malloc_usable_size(p) : 0;
    void *q;

    if (p == NULL)
        return malloc(n);
    if (n == 0) {
        explicit_bzero(p, old);
        free(p);
        return NULL;
    }
    q = malloc(n);
    if (q == NULL)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    explicit_bzero(p, old);
    free(p);
    return q;
}

static void wiping_free(void *p)
{
    if (p == NULL)
        return;
    explicit_bzero(p, malloc_usable_size(p));
    free(p);
}

static void harden_process(void)
{
    struct rlimit no_core = {0, 0};

    json_set_alloc_funcs(wiping_malloc, wiping_free);
    event_set_mem_functions(wiping_malloc, wiping_realloc, wiping_free);
    /* A core dump of the broker would hold the PIN and live tokens. */
    setrlimit(RLIMIT_CORE, &no_core);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);
    /* until the event loop takes it: a SIGHUP while starting must not end the broker */
    signal(SIGHUP, SIG_IGN);
}

static kbr_err load_tokens(kbd *d, kbr_store *st, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *rows = NULL, *row;
    size_t i;

    KBR_GUARD(kbr_store_token_list(st, NULL, NULL, false, time(NULL), &rows));
    json_array_foreach(rows, i, row)
    {
        err = kbr_policy_add_token(d->policy, row);
        KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "stored token %s is unreadable",
                                           json_string_value(json_object_get(row, "jti"))));
    }
out:
    json_decref(rows);
    return err;
}

/* The key registry and the batches, indexed in memory for the handlers. */
static kbr_err load_keys_and_batches(kbd *d, kbr_store *st)
{
    kbr_err err = KBR_OK;
    json_t *keys = NULL, *batches = NULL, *row;
    size_t i;

    KBR_GUARD(kbd_keys_new(&d->keys));
    KBR_GUARD(kbd_batches_new(&d->batches));
    KBR_GUARD(kbr_store_key_list(st, &keys));
    KBR_GUARD(kbr_store_batch_list(st, &batches));
    json_array_foreach(keys, i, row) KBR_GUARD(kbd_keys_put(d->keys, row));
    json_array_foreach(batches, i, row) KBR_GUARD(kbd_batches_put(d->batches, row));
out:
    json_decref(batches);
    json_decref(keys);
    return err;
}

/* The audit key's public_key_sha256 (the one the log hands on now), so it is never
 * registered as a key. */
static kbr_err load_audit_key(kbd *d, kbr_hsm_session *s, const char *label, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    EVP_PKEY *pub = NULL;

    err = kbr_hsm_public_key(s, label, &pub);
    KBR_ENSURE(
        err == KBR_OK,
        kbr_fail(msg, err, "audit key %s not found in the HSM: run keybrokerd --init", label));
    KBR_GUARD(kbr_store_public_key_sha256(pub, d->audit_key_sha256));
out:
    EVP_PKEY_free(pub);
    return err;
}

/*
 * A store an older broker wrote has one issuer key, kbr/issuer, and no record of it: it is
 * recorded now, in an entry of the broker's own, and becomes the kid of the tokens it signed.
 */
static kbr_err record_existing_issuer(kbd *d, kbr_hsm_session *s, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_hsm_key_info info = {0};
    kbr_audit_rec *rec = NULL;
    kbd_issuer key;
    EVP_PKEY *pub = NULL;

    err = kbr_hsm_find_key(s, KBD_ISSUER_LABEL, &info);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err, "issuer key %s not found in the HSM: run keybrokerd --init",
                        KBD_ISSUER_LABEL));
    KBR_GUARD(kbr_audit_rec_new("service:keybrokerd", NULL, "issuer.rotate", NULL, &rec));
    KBR_GUARD(
        kbd_issuer_effect(s, KBD_ISSUER_LABEL, NULL, time(NULL), &key, &pub, &rec->effects, msg));
    json_object_set_new(rec->detail, "kid", json_string(key.kid));
    json_object_set_new(rec->detail, "hsm_label", json_string(key.label));
    json_object_set_new(rec->detail, "replaces", json_null());
    json_object_set_new(rec->detail, "existing_key", json_true());
    err = kbr_audit_append_sync(d->audit, rec);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "cannot record the issuer key %s: %s",
                                       KBD_ISSUER_LABEL, kbr_err_str(err)));
    kbd_log(KBD_LOG_INFO, "issuer.recorded", NULL,
            "recorded the issuer key %s (kid %s) in the audit log", key.label, key.kid);
out:
    EVP_PKEY_free(pub);
    kbr_audit_rec_free(rec);
    return err;
}

/* A store an older broker wrote records no issuer key: the key in the HSM is recorded as the
 * first, before the registries are read. */
static kbr_err record_issuer_if_none(kbd *d, kbr_store *st, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_hsm_session *s = NULL;
    json_t *rows = NULL;

    KBR_GUARD(kbr_store_issuer_keys(st, &rows));
    if (json_array_size(rows) > 0)
        goto out;
    err = kbr_hsm_session_open(d->hsm, &s);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "cannot open an HSM session"));
    KBR_GUARD(record_existing_issuer(d, s, msg));
out:
    json_decref(rows);
    kbr_hsm_session_close(s);
    return err;
}

/*
 * The issuer keys as the ledger records them (the existing one recorded first, when the
 * ledger has none), then the tokens they signed, then the check that every key still trusted
 * is in the HSM as recorded.
 */
static kbr_err load_issuers_and_tokens(kbd *d, kbr_store *st, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_hsm_session *s = NULL;
    json_t *rows = NULL;

    err = kbr_hsm_session_open(d->hsm, &s);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "cannot open an HSM session"));
    KBR_GUARD(kbr_store_issuer_keys(st, &rows));
    if (json_array_size(rows) == 0) {
        KBR_GUARD(record_existing_issuer(d, s, msg));
        json_decref(rows);
        rows = NULL;
        KBR_GUARD(kbr_store_issuer_keys(st, &rows));
    }
    KBR_GUARD(kbr_policy_new(d->cfg.instance_id, &d->policy));
    KBR_GUARD(kbd_issuers_to_policy(d->policy, rows, &d->issuer, msg));
    KBR_GUARD(load_tokens(d, st, msg));
    KBR_GUARD(kbd_issuers_check_hsm(s, d->policy, rows, time(NULL), msg));
out:
    json_decref(rows);
    kbr_hsm_session_close(s);
    return err;
}

kbr_err kbd_audit_key_usable(kbr_hsm_session *s, const char *label, kbr_msg *msg)
{
    kbr_hsm_key_info info = {0};
    kbr_err err = kbr_hsm_find_key(s, label, &info);

    if (err == KBR_ERR_NOT_FOUND)
        return kbr_fail(msg, err, "audit key %s not found in the HSM: run keybrokerd --init",
                        label);
    if (err != KBR_OK)
        return kbr_fail(msg, err, "HSM lookup of audit key %s failed: %s", label, kbr_err_str(err));
    if (info.alg_known && info.alg == KBR_ALG_ED25519)
        return KBR_OK;
    if (info.alg_known && info.alg == KBR_ALG_ECDSA_P256 && strcmp(label, KBD_AUDIT_LABEL) == 0)
        return kbr_fail(msg, KBR_ERR_HSM_KEY,
                        "audit key %s is an ECDSA P-256 key, as an older keybroker made it; "
                        "audit keys are now Ed25519 (checkpoints are C2SP signed notes) and "
                        "this broker does not sign with it (docs/operations.md, \"An audit key "
                        "of an older keybroker\")",
                        label);
    return kbr_fail(msg, KBR_ERR_HSM_KEY, "audit key %s is not an Ed25519 key", label);
}

/* The label of the audit key the log hands on: the HSM record's, else the store's. */
static kbr_err audit_label_now(kbr_store *st, const json_t *rec, char **label, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *latest = NULL;
    const char *l = rec != NULL ? kbd_cp_signer_label(rec) : NULL;

    *label = NULL;
    if (l == NULL) {
        err = kbr_store_checkpoint_latest(st, &latest);
        if (err == KBR_ERR_NOT_FOUND)
            err = KBR_OK;
        KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "audit log: checkpoints cannot be read"));
        l = latest != NULL ? kbd_cp_signer_label(latest) : NULL;
    }
    *label = strdup(l != NULL ? l : KBD_AUDIT_LABEL);
    KBR_ENSURE(*label != NULL, KBR_ERR_NOMEM);
out:
    json_decref(latest);
    return err;
}

/* The store's latest checkpoint holds: its root is the stored tree's, its signatures verify. */
static kbr_err latest_checkpoint_holds(kbd *d, kbr_hsm_session *s, kbr_store *st, int64_t *size,
                                       kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *cp = NULL;
    unsigned char root[32];
    char hex[65];
    const char *signed_root;
    EVP_PKEY *pub = NULL;
    kbr_msg why = {{0}};

    *size = -1;
    err = kbr_store_checkpoint_latest(st, &cp);
    if (err == KBR_ERR_NOT_FOUND) {
        err = KBR_OK;
        goto out;
    }
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "audit log: checkpoints cannot be read"));
    *size = json_integer_value(json_object_get(cp, "size"));
    signed_root = json_string_value(json_object_get(cp, "root_hash"));
    {
        time_t at = 0;
        if (kbr_time_parse(json_string_value(json_object_get(cp, "time")), &at) != KBR_OK)
            at = 0;
        atomic_store(&d->stats.checkpoint_time, (long long)at);
        atomic_store(&d->stats.checkpoint_size, (long long)*size);
        atomic_store(&d->stats.checkpoint_seq,
                     (long long)json_integer_value(json_object_get(cp, "audit_seq")));
    }
    KBR_GUARD(kbr_store_merkle_root(st, *size, root));
    kbr_hex_encode_buf(root, sizeof(root), hex);
    KBR_ENSURE(signed_root != NULL && strcmp(hex, signed_root) == 0,
               kbr_fail(msg, KBR_ERR_STORE,
                        "audit log: the first %lld entries no longer match the checkpoint "
                        "signed at %s; the store was rewritten",
                        (long long)*size, json_string_value(json_object_get(cp, "time"))));
    if (json_is_string(json_object_get(cp, "public_key_pem"))) {
        err = kbd_record_holds(s, cp, &why);
    } else {
        /* an older broker's checkpoint, signed with the first audit key */
        err = kbr_hsm_public_key(s, KBD_AUDIT_LABEL, &pub);
        if (err == KBR_OK)
            err = kbr_audit_checkpoint_signature_holds(cp, pub, &why);
    }
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, KBR_ERR_STORE,
                                       "audit log: checkpoint of %lld entries does not verify "
                                       "with the audit key: %s",
                                       (long long)*size, why.text));
out:
    EVP_PKEY_free(pub);
    json_decref(cp);
    return err;
}

/*
 * Before serving: the store holds the head the HSM recorded last (a store that is shorter or
 * says otherwise is a rollback, refused), that record verifies with the HSM's keys, the audit
 * key the log hands on is an Ed25519 key in the HSM, and the store's latest checkpoint matches
 * the stored tree and verifies; every entry after it will be re-checked against its chain (the
 * writer's start), or the last AUDIT_VERIFY_TAIL entries without a checkpoint.  *pending is the
 * record's entry when the log does not hold it yet (its commit was lost) and this broker is the
 * store's only one.
 */
static kbr_err check_log(kbd *d, kbr_hsm_session *s, kbr_store *st, int64_t *verify_tail,
                         kbr_audit_rec **pending, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *rec = NULL;
    char last_hash[65], *label = NULL;
    int64_t size = 0, last = 0;
    bool in = true;
    kbr_msg why = {{0}};

    *verify_tail = AUDIT_VERIFY_TAIL;
    *pending = NULL;
    err = kbd_record_read(s, &rec, msg);
    KBR_ENSURE(err == KBR_OK || err == KBR_ERR_HSM,
               kbd_msg_wrap(msg, err, "", "; run keybrokerd --recover to write a new one"));
    KBR_GUARD(err);
    if (rec != NULL) {
        err = kbd_record_vs_store(st, rec, msg);
        KBR_ENSURE(err != KBR_ERR_CONFLICT,
                   kbd_msg_wrap(msg, err, "",
                                ". After a restore from a backup: keybrokerd -c FILE --recover"));
        KBR_GUARD(err);
        err = kbd_record_holds(s, rec, &why);
        KBR_ENSURE(err == KBR_OK,
                   kbr_fail(msg, err, "the audit record in the HSM does not verify: %s", why.text));
        KBR_GUARD(kbd_record_in_store(st, rec, &in));
    }
    KBR_GUARD(audit_label_now(st, rec, &label, msg));
    KBR_GUARD(kbd_audit_key_usable(s, label, msg));
    KBR_GUARD(load_audit_key(d, s, label, msg));
    KBR_GUARD(latest_checkpoint_holds(d, s, st, &size, msg));
    if (size >= 0) {
        KBR_GUARD(kbr_store_audit_tail(st, &last, last_hash));
        if (last - size + 1 > *verify_tail)
            *verify_tail = last - size + 1;
    }
    /* brokers sharing a store: the lease holder's next round records it (h_audit.c), so
     * that no two brokers commit one head, nor one while the other is making the next */
    if (!in && !kbr_store_shared(d->cfg.store))
        KBR_GUARD(kbd_record_entry(rec, "audit.checkpoint", pending));
out:
    free(label);
    json_decref(rec);
    return err;
}

/* A store made before its files were 0600 from the start: said at every start, not changed. */
static void warn_store_mode(const char *url)
{
    kbr_msg msg = {{0}};
    char *file = NULL, warning[2048];

    if (kbr_store_file(url, &file, &msg) == KBR_OK && file != NULL &&
        kbd_store_mode_warning(file, warning, sizeof(warning)))
        kbd_log(KBD_LOG_WARN, "store.mode", NULL, "%s", warning);
    free(file);
}

/* The head the HSM recorded whose entry was lost goes into the log before anything else. */
static kbr_err complete_log(kbd *d, kbr_audit_rec *pending, kbr_msg *msg)
{
    kbr_err err = KBR_OK;

    if (pending == NULL)
        goto out;
    json_object_set_new(pending->detail, "recorded_in_hsm_before", json_true());
    err = kbr_audit_append_sync(d->audit, pending);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err == KBR_ERR_AUDIT ? KBR_ERR_STORE : err,
                                       "audit log: cannot record the checkpoint the HSM holds: %s",
                                       kbr_err_str(err)));
    kbd_log(KBD_LOG_INFO, "audit.checkpoint_recovered", NULL,
            "recorded the checkpoint of %lld entries the HSM held as entry %lld (its entry had "
            "not been committed)",
            (long long)json_integer_value(json_object_get(pending->detail, "size")),
            (long long)pending->seq);
out:
    return err;
}

static kbr_err check_hsm_and_log(kbd *d, kbr_store *st, int64_t *tail, kbr_audit_rec **pending,
                                 kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_hsm_session *s = NULL;

    err = kbr_hsm_session_open(d->hsm, &s);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "cannot open an HSM session"));
    KBR_GUARD(check_log(d, s, st, tail, pending, msg));
out:
    kbr_hsm_session_close(s);
    return err;
}

static kbr_err load_state(kbd *d, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_store *st = NULL;
    int64_t tail = AUDIT_VERIFY_TAIL;
    kbr_audit_rec *pending = NULL;
    bool reading = false;
    char hash[65];

    /* only --init creates a store: a mistyped path must not start an empty deployment */
    KBR_GUARD(kbr_store_exists(d->cfg.store, msg));
    /* before the store is opened: a second daemon must not even migrate the schema */
    KBR_GUARD(kbr_store_lock(d->cfg.store, &d->store_lock, msg));
    warn_store_mode(d->cfg.store);
    /*
     * Before any thread and any request: the HSM, its module and the PIN go to
     * processes of their own, then this one gives up what it has no use for.
     */
    KBR_GUARD(kbd_hsmproc_start(d, msg));
    KBR_GUARD(kbd_sandbox_network(msg));
    KBR_GUARD(kbr_store_open_existing(d->cfg.store, &st, msg));
    KBR_GUARD(check_hsm_and_log(d, st, &tail, &pending, msg));
    KBR_GUARD(kbr_audit_start(d->cfg.store, tail, &d->audit, msg));
    KBR_GUARD(complete_log(d, pending, msg));
    KBR_GUARD(record_issuer_if_none(d, st, msg));
    /* The registries and the log's tail from one snapshot: what brokers sharing the store
     * commit after that tail is followed (follow.c), each entry once. */
    KBR_GUARD(kbr_store_read_begin(st, msg));
    reading = true;
    KBR_GUARD(kbr_store_audit_tail(st, &d->follow_from, hash));
    KBR_GUARD(load_issuers_and_tokens(d, st, msg));
    KBR_GUARD(load_keys_and_batches(d, st));
    kbr_store_read_end(st);
    reading = false;
    KBR_GUARD(kbd_ratelimit_new(d->cfg.rate_limit, &d->ratelimit));
    KBR_GUARD(kbd_ratelimit_new(d->cfg.unauth_audit_rate, &d->unauth_rl));
out:
    if (reading)
        kbr_store_read_end(st);
    kbr_audit_rec_free(pending);
    kbr_store_close(st);
    return err;
}

static void stop_serving(kbd *d, const char *why)
{
    if (d->shutting_down) {
        d->stop_now = true;
        event_base_loopexit(d->base, NULL);
        return;
    }
    kbd_log(KBD_LOG_INFO, "stopping", NULL, "%s: finishing %ld in-flight requests", why,
            d->inflight);
    kbd_notify("STOPPING=1");
    d->shutting_down = true;
    kbd_http_stop_listening(d);
    kbd_ops_stop_listening(d);
    if (d->inflight == 0)
        event_base_loopexit(d->base, NULL);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    kbd_reload(arg);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    char why[32];

    (void)what;
    snprintf(why, sizeof(why), "signal %d", (int)sig);
    stop_serving(arg, why);
}

/* The HSM keeper is this process's only child: without it no HSM session can be made. */
static void on_child(evutil_socket_t sig, short what, void *arg)
{
    kbd *d = arg;

    (void)sig;
    (void)what;
    if (!kbd_hsmproc_reap(d))
        return;
    d->hsm_lost = true;
    stop_serving(d, "no HSM keeper");
}

static void probe_work(kbd_req *r, kbd_worker *w)
{
    kbd_note_hsm(r->d, kbr_hsm_session_ping(w->hsm));
}

static void on_health_timer(evutil_socket_t fd, short what, void *arg)
{
    kbd *d = arg;
    kbd_req *r = calloc(1, sizeof(*r));

    (void)fd;
    (void)what;
    if (r == NULL)
        return;
    r->d = d;
    r->work = probe_work;
    kbd_workers_submit(d, r);
}

static void on_suppressed_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kbd_flush_suppressed(arg);
    kbd_connlimit_flush(arg);
}

static kbr_err start_loop(kbd *d, kbr_msg *msg)
{
    struct timeval every = {HEALTH_PROBE_SECONDS, 0};
    struct timeval flush = {SUPPRESSED_FLUSH_SECONDS, 0};
    struct event_config *cfg;

    evthread_use_pthreads();
    /*
     * With the change list, epoll learns of the loop's changes once per pass, net: a
     * connection's request turns reading off, its answer turns writing on, and once written
     * reading back on and writing off, which without it were four epoll_ctl calls.  libevent
     * warns against it for descriptors shared by dup(); the broker has none.
     */
    cfg = event_config_new();
    if (cfg == NULL)
        return kbr_fail(msg, KBR_ERR_NOMEM, "cannot create the event loop");
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    d->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (d->base == NULL)
        return kbr_fail(msg, KBR_ERR_NOMEM, "cannot create the event loop");
    pthread_mutex_init(&d->done_lock, NULL);
    d->sig_term = evsignal_new(d->base, SIGTERM, on_signal, d);
    d->sig_int = evsignal_new(d->base, SIGINT, on_signal, d);
    d->sig_chld = evsignal_new(d->base, SIGCHLD, on_child, d);
    d->sig_hup = evsignal_new(d->base, SIGHUP, on_hup, d);
    d->health_timer = event_new(d->base, -1, EV_PERSIST, on_health_timer, d);
    d->suppressed_timer = event_new(d->base, -1, EV_PERSIST, on_suppressed_timer, d);
    if (d->sig_term == NULL || d->sig_int == NULL || d->sig_chld == NULL || d->sig_hup == NULL ||
        d->health_timer == NULL || d->suppressed_timer == NULL)
        return kbr_fail(msg, KBR_ERR_NOMEM, "cannot create events");
    evsignal_add(d->sig_hup, NULL);
    evsignal_add(d->sig_term, NULL);
    evsignal_add(d->sig_int, NULL);
    evsignal_add(d->sig_chld, NULL);
    evtimer_add(d->health_timer, &every);
    evtimer_add(d->suppressed_timer, &flush);
    return KBR_OK;
}

static void teardown(kbd *d)
{
    kbd_oidc_stop(d);
    /* a copy still being made is interrupted: its record must reach the writer before it stops */
    kbd_backup_stop(d);
    if (d->audit != NULL) {
        kbd_flush_suppressed(d);
        kbd_connlimit_flush(d);
    }
    kbd_follow_stop(d);
    kbd_workers_stop(d);
    kbr_audit_stop(d->audit);
    kbd_done_drain(d);
    kbd_checkpoint_stop(d);
    kbd_ingress_stop(d);
    if (d->http != NULL)
        evhttp_free(d->http);
    kbd_ops_free(d);
    kbd_connlimit_free(d);
    kbd_tls_cleanup(d);
    if (d->sig_term != NULL)
        event_free(d->sig_term);
    if (d->sig_int != NULL)
        event_free(d->sig_int);
    if (d->sig_chld != NULL)
        event_free(d->sig_chld);
    if (d->sig_hup != NULL)
        event_free(d->sig_hup);
    if (d->health_timer != NULL)
        event_free(d->health_timer);
    if (d->suppressed_timer != NULL)
        event_free(d->suppressed_timer);
    if (d->done_ev != NULL)
        event_free(d->done_ev);
    if (d->base != NULL)
        event_base_free(d->base);
    kbd_ingress_free(d);
    kbr_policy_free(d->policy);
    kbd_keys_free(d->keys);
    kbd_batches_free(d->batches);
    kbd_flights_free(d);
    kbd_crls_free(d);
    kbd_ratelimit_free(d->ratelimit);
    kbd_ratelimit_free(d->unauth_rl);
    kbd_metrics_free(d->metrics);
    d->metrics = NULL;
    kbd_hsmproc_stop(d);
    kbr_store_unlock(d->store_lock);
    d->store_lock = -1;
    kbd_config_cleanup(&d->cfg);
}

static kbr_err serve(kbd *d, kbr_msg *msg)
{
    kbr_err err = KBR_OK;

    atomic_store(&d->stats.hsm_ok, 1);
    d->started_at = time(NULL);
    KBR_GUARD(kbd_metrics_new(&d->metrics));
    KBR_GUARD(load_state(d, msg));
    KBR_GUARD(start_loop(d, msg));
    KBR_GUARD(kbd_workers_start(d, msg));
    KBR_GUARD(kbd_follow_start(d, d->follow_from, msg));
    KBR_GUARD(kbd_checkpoint_start(d, msg));
    KBR_GUARD(kbd_ingress_start(d, msg));
    KBR_GUARD(kbd_oidc_start(d, msg));
    KBR_GUARD(kbd_http_start(d, msg));
    KBR_GUARD(kbd_ops_start(d, msg));
    kbd_notify("READY=1");
    event_base_dispatch(d->base);
    /*
     * The loop ends after the round in which the last request in flight was answered.  That
     * round may have read another request from a kept-alive connection: it is in flight now,
     * and is served to its answer (whose connection then closes) unless told to stop now.
     */
    while (d->inflight > 0 && !d->stop_now && event_base_dispatch(d->base) == 0)
        continue;
    kbd_log(KBD_LOG_INFO, "stopped", NULL, "stopped");
    /* exit status 1, so that the service manager starts the broker, and the HSM, again */
    if (d->hsm_lost)
        err = kbr_fail(msg, KBR_ERR_HSM, "the HSM keeper is gone; start keybrokerd again");
out:
    teardown(d);
    return err;
}

static void usage(void)
{
    fprintf(stderr, "usage: keybrokerd -c FILE [--init | --recover | --check]\n"
                    "       keybrokerd -c FILE --verify-store [--scratch-dir DIR]\n"
                    "       keybrokerd --version\n"
                    "  -c FILE         configuration file (key = value lines)\n"
                    "  --init          create the store, the issuer and audit keys in the HSM,\n"
                    "                  and write a new bootstrap token; then exit\n"
                    "  --recover       accept a store restored from a backup that the HSM's\n"
                    "                  audit record shows was rolled back: record the lost\n"
                    "                  range, revoke every token, write a new bootstrap token;\n"
                    "                  then exit\n"
                    "  --check         check the configuration, the TLS files, the module, the\n"
                    "                  PIN, the issuer and audit keys and the store, changing\n"
                    "                  nothing: one line per problem, exit 0 if there is none\n"
                    "  --verify-store  rebuild every ledger fact from the audit log and compare\n"
                    "                  with the store: exit 0 if they match, 1 naming the first\n"
                    "                  difference; it never writes the store\n"
                    "  --scratch-dir DIR\n"
                    "                  where --verify-store rebuilds the store (it needs about\n"
                    "                  the store's size; default: the store's directory)\n"
                    "Without an option it serves until SIGTERM; SIGHUP reloads the TLS files\n"
                    "and reopens log_file (see keybrokerd(8)).\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"init", no_argument, NULL, 'i'},
        {"recover", no_argument, NULL, 'r'},
        {"check", no_argument, NULL, 'k'},
        {"verify-store", no_argument, NULL, 'v'},
        {"version", no_argument, NULL, 'V'},
        {"scratch-dir", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *scratch_dir = NULL;
    bool init = false, recover = false, verify = false, check = false, logging = false;
    kbd d;
    kbr_msg msg = {{0}};
    kbr_err err;
    int c;

    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (c == 'c')
            path = optarg;
        else if (c == 'i')
            init = true;
        else if (c == 'r')
            recover = true;
        else if (c == 'v')
            verify = true;
        else if (c == 'k')
            check = true;
        else if (c == 's')
            scratch_dir = optarg;
        else if (c == 'V') {
            printf("keybrokerd %s\n", KBR_VERSION);
            return 0;
        } else {
            usage();
            return c == 'h' ? 0 : 2;
        }
    }
    if (path == NULL || optind != argc || (int)init + (int)recover + (int)verify + (int)check > 1 ||
        (scratch_dir != NULL && !verify)) {
        usage();
        return 2;
    }
    harden_process();
    if (check)
        return kbd_check(path);
    memset(&d, 0, sizeof(d));
    d.store_lock = -1;
    d.config_path = path;
    err = kbd_config_load(path, &d.cfg, &msg);
    if (err == KBR_OK && d.cfg.tls_cert == NULL && !kbd_is_loopback(d.cfg.listen_host))
        err = kbr_fail(&msg, KBR_ERR_CONFIG,
                       "%s: plain HTTP is only allowed on a loopback address; set tls_cert and "
                       "tls_key to listen on %s",
                       path, d.cfg.listen_host);
    if (err == KBR_OK && verify) {
        err = kbd_verify_store(&d.cfg, scratch_dir, &msg);
    } else if (err == KBR_OK && init) {
        err = kbd_init_deployment(&d.cfg, &msg);
    } else if (err == KBR_OK && recover) {
        err = kbd_recover_deployment(&d.cfg, &msg);
    } else if (err == KBR_OK) {
        /* serving: from here on every line goes to the log, in its format */
        err = kbd_log_setup(&d.cfg, &msg);
        logging = err == KBR_OK;
        if (logging)
            err = serve(&d, &msg);
    }
    if (err != KBR_OK) {
        if (logging)
            kbd_log(KBD_LOG_ERROR, "exit", NULL, "%s",
                    msg.text[0] != '\0' ? msg.text : kbr_err_str(err));
        else
            fprintf(stderr, "keybrokerd: %s\n", msg.text[0] != '\0' ? msg.text : kbr_err_str(err));
        kbd_config_cleanup(&d.cfg);
        kbd_log_cleanup();
        return 1;
    }
    kbd_config_cleanup(&d.cfg);
    kbd_log_cleanup();
    return 0;
}
