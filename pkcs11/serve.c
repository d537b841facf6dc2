/*
 * serve.c - the HSM process's side of remote.c: every connection the
 * network process opens arrives over the control socket and gets a thread
 * and a PKCS#11 session of its own, so the workers' HSM calls still run in
 * parallel.  Each request runs through the same kbr_hsm_* calls a broker
 * with the module in its own process makes, so session recovery, logging in
 * again and the login backoff (hsm.c) work here unchanged.
 *
 * Whatever the network process sends is untrusted: a frame that does not
 * decode, or a request out of turn (anything but OPEN first, OPEN again),
 * closes that connection and nothing else.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "hsm_int.h"

#define BUF_KEEP_MAX (1u << 20)

typedef struct conn conn;

typedef struct {
    kbr_hsm *hsm;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    long active;                     /* connection threads still running */
    conn *ended;                     /* connection threads done serving, not yet joined */
    const kbr_hsm_data_policy *data; /* NULL: no data object */
    /* one data write at a time: what the check saw is what the write replaces */
    pthread_mutex_t data_lock;
} server;

struct conn {
    server *sv;
    int fd;
    kbr_hsm_session *s;
    kbr_hsmw_buf buf;
    pthread_t th;
    conn *next; /* on sv->ended */
};

/* What a reply points to until it is sent. */
typedef struct {
    unsigned char *der;
    unsigned char *sig;
    kbr_hsm_key_info *items;
    kbr_hsm_data *values;
    size_t nvalues;
} owned;

static void owned_free(owned *o)
{
    OPENSSL_free(o->der);
    free(o->sig);
    free(o->items);
    kbr_hsm_data_free(o->values, o->nvalues);
    memset(o, 0, sizeof(*o));
}

/* The network process reaches the one data object it is given, and no other object. */
static kbr_err data_allowed(const server *sv, const char *label)
{
    if (sv->data == NULL || sv->data->check == NULL || strcmp(label, sv->data->label) != 0) {
        fprintf(stderr, "keybrokerd: HSM process: refused access to data object \"%s\"\n", label);
        return KBR_ERR_FORBIDDEN;
    }
    return KBR_OK;
}

/*
 * A data object is written only when the server's check accepts the new value after the one
 * the object holds: the network process proposes, the HSM process decides.  The current value
 * is read and the new one written under one lock, so two connections cannot both pass the
 * check against the same old value.
 */
static kbr_err answer_data_put(conn *c, const kbr_hsmw_req *q)
{
    kbr_err err = KBR_OK;
    server *sv = c->sv;
    kbr_hsm_data *old = NULL;
    size_t nold = 0;

    pthread_mutex_lock(&sv->data_lock);
    KBR_GUARD(kbr_hsm_data_get(c->s, q->label, &old, &nold));
    KBR_GUARD(
        sv->data->check(sv->data->arg, c->s, old, nold, q->in, q->inlen, q->evidence, q->evlen));
    KBR_GUARD(kbr_hsm_data_put(c->s, q->label, q->in, q->inlen, NULL, 0));
out:
    pthread_mutex_unlock(&sv->data_lock);
    kbr_hsm_data_free(old, nold);
    return err;
}

static kbr_err answer_public_key(conn *c, const kbr_hsmw_req *q, kbr_hsmw_resp *r, owned *o)
{
    kbr_err err = KBR_OK;
    EVP_PKEY *pkey = NULL;
    int len;

    KBR_GUARD(kbr_hsm_public_key(c->s, q->label, &pkey));
    len = i2d_PUBKEY(pkey, &o->der);
    KBR_ENSURE(len > 0, KBR_ERR_CRYPTO);
    r->data = o->der;
    r->len = (size_t)len;
out:
    EVP_PKEY_free(pkey);
    return err;
}

/*
 * A delivery seals a private key to whatever P-256 key the network process names, so each
 * one is also said here, on the HSM process's own standard error: a record that code taking
 * over the network process cannot keep from being written.
 */
static kbr_err answer_deliver(conn *c, const kbr_hsmw_req *q, kbr_hsmw_resp *r)
{
    kbr_hsm_delivery_req req = {.kdf_context = q->kdf_context,
                                .kdf_context_len = q->kdf_context_len,
                                .enc_structure = q->enc_structure,
                                .enc_structure_len = q->enc_structure_len};
    char recipient[65];
    kbr_err err;

    memcpy(req.recipient, q->recipient, sizeof(req.recipient));
    err = kbr_hsm_deliver(c->s, q->label, &req, &r->delivery);
    if (err == KBR_OK) {
        kbr_sha256_hex(req.recipient, sizeof(req.recipient), recipient);
        fprintf(stderr,
                "keybrokerd: HSM process: delivered %s, sealed to the P-256 point with SHA-256 "
                "%s\n",
                q->label, recipient);
    }
    return err;
}

/* Runs one request on the connection's session; the reply's error is the call's. */
static kbr_err answer(conn *c, const kbr_hsmw_req *q, kbr_hsmw_resp *r, owned *o)
{
    switch (q->type) {
    case KBR_HSMW_PING:
        return kbr_hsm_session_ping(c->s);
    case KBR_HSMW_GENERATE:
        return kbr_hsm_generate(c->s, q->label, q->alg, &r->info);
    case KBR_HSMW_FIND_KEY:
        return kbr_hsm_find_key(c->s, q->label, &r->info);
    case KBR_HSMW_PUBLIC_KEY:
        return answer_public_key(c, q, r, o);
    case KBR_HSMW_SIGN: {
        kbr_err err =
            kbr_hsm_sign(c->s, q->label, q->fmt, q->hash, q->in, q->inlen, &o->sig, &r->len);
        r->data = o->sig;
        return err;
    }
    case KBR_HSMW_LIST_OBJECTS: {
        kbr_err err = kbr_hsm_list_objects(c->s, &o->items, &r->n);
        r->items = o->items;
        return err;
    }
    case KBR_HSMW_GENERATE_DELIVERABLE:
        return kbr_hsm_generate_deliverable(c->s, q->label, &r->info);
    case KBR_HSMW_DELIVER:
        return answer_deliver(c, q, r);
    case KBR_HSMW_DATA_GET: {
        kbr_err err = data_allowed(c->sv, q->label);
        if (err == KBR_OK)
            err = kbr_hsm_data_get(c->s, q->label, &o->values, &o->nvalues);
        for (size_t i = 0; err == KBR_OK && i < o->nvalues; i++)
            r->values[i] = o->values[i];
        r->nvalues = o->nvalues;
        return err;
    }
    case KBR_HSMW_DATA_PUT: {
        kbr_err err = data_allowed(c->sv, q->label);
        return err == KBR_OK ? answer_data_put(c, q) : err;
    }
    default:
        return KBR_ERR_INTERNAL;
    }
}

/* The reply, or KBR_ERR_HSM in its place when the answer does not fit the frame's bounds. */
static kbr_err reply(conn *c, kbr_hsmw_resp *r)
{
    kbr_hsmw_resp failed = {.type = r->type, .err = KBR_ERR_HSM};

    if (kbr_hsmw_resp_encode(r, &c->buf) != KBR_OK) {
        fprintf(stderr, "keybrokerd: HSM process: an answer did not fit its frame\n");
        if (kbr_hsmw_resp_encode(&failed, &c->buf) != KBR_OK)
            return KBR_ERR_NOMEM;
    }
    return kbr_hsmw_send(c->fd, &c->buf);
}

/*
 * One request read, run and answered.  false ends the connection: the peer
 * closed it, sent what does not decode or talked out of turn, or the
 * session could not be opened.
 */
static bool serve_one(conn *c)
{
    kbr_hsmw_req q;
    kbr_hsmw_resp r;
    owned o = {0};
    kbr_err err;
    bool go_on = true;

    if (c->buf.cap > BUF_KEEP_MAX)
        kbr_hsmw_buf_free(&c->buf);
    err = kbr_hsmw_recv(c->fd, KBR_HSMW_REQ_MAX, &c->buf);
    if (err == KBR_OK)
        err = kbr_hsmw_req_decode(c->buf.p + 4, c->buf.len - 4, &q);
    if (err == KBR_OK && (c->s == NULL) != (q.type == KBR_HSMW_OPEN))
        err = KBR_ERR_BAD_REQUEST;
    if (err != KBR_OK) {
        /* end of file is how a session normally ends; say nothing then */
        if (err == KBR_ERR_BAD_REQUEST)
            fprintf(stderr, "keybrokerd: HSM process: refused a malformed or out-of-turn "
                            "request; connection closed\n");
        return false;
    }
    memset(&r, 0, sizeof(r));
    r.type = q.type;
    if (q.type == KBR_HSMW_OPEN) {
        r.err = kbr_hsm_session_open(c->sv->hsm, &c->s);
        go_on = r.err == KBR_OK;
    } else {
        r.err = answer(c, &q, &r, &o);
    }
    if (reply(c, &r) != KBR_OK)
        go_on = false;
    owned_free(&o);
    OPENSSL_cleanse(&r.delivery, sizeof(r.delivery));
    return go_on;
}

/*
 * A thread that has said it is done still runs its thread-local destructors
 * (OpenSSL's) after it returns.  It is joined before its memory is freed, and
 * all of them before the module is finalized and the process exits: a
 * detached thread could still be in those destructors then.
 */
static void *conn_main(void *arg)
{
    conn *c = arg;
    server *sv = c->sv;

    while (serve_one(c))
        ;
    kbr_hsm_session_close(c->s);
    close(c->fd);
    kbr_hsmw_buf_free(&c->buf);
    pthread_mutex_lock(&sv->lock);
    c->next = sv->ended;
    sv->ended = c;
    if (--sv->active == 0)
        pthread_cond_broadcast(&sv->idle);
    pthread_mutex_unlock(&sv->lock);
    return NULL;
}

static void reap(server *sv)
{
    conn *c, *next;

    pthread_mutex_lock(&sv->lock);
    c = sv->ended;
    sv->ended = NULL;
    pthread_mutex_unlock(&sv->lock);
    for (; c != NULL; c = next) {
        next = c->next;
        pthread_join(c->th, NULL);
        free(c);
    }
}

static void conn_start(server *sv, int fd)
{
    conn *c = calloc(1, sizeof(*c));
    int rc = -1;

    reap(sv);
    if (c != NULL) {
        c->sv = sv;
        c->fd = fd;
        /* under the lock: c->th is written before the thread can put c on sv->ended */
        pthread_mutex_lock(&sv->lock);
        rc = pthread_create(&c->th, NULL, conn_main, c);
        sv->active += rc == 0;
        pthread_mutex_unlock(&sv->lock);
    }
    if (rc != 0) {
        /* the network process sees the connection close and answers 503 */
        fprintf(stderr, "keybrokerd: HSM process: cannot start a connection thread\n");
        free(c);
        close(fd);
    }
}

kbr_err kbr_hsm_serve(kbr_hsm *hsm, int ctl, const kbr_hsm_data_policy *data)
{
    server sv = {.hsm = hsm, .active = 0, .ended = NULL, .data = data};
    kbr_err err = KBR_OK;
    int fd = -1;

    if (hsm == NULL || hsm->ops != &kbr_p11_local_ops)
        return KBR_ERR_INTERNAL;
    pthread_mutex_init(&sv.lock, NULL);
    pthread_mutex_init(&sv.data_lock, NULL);
    pthread_cond_init(&sv.idle, NULL);
    for (;;) {
        err = kbr_hsm_ctl_recv_fd(ctl, &fd);
        if (err == KBR_ERR_BAD_REQUEST) {
            fprintf(stderr, "keybrokerd: HSM process: refused a control record\n");
            continue;
        }
        if (err != KBR_OK || fd < 0)
            break;
        conn_start(&sv, fd);
    }
    /* the control socket is gone: the network process closed its sessions first, or died */
    pthread_mutex_lock(&sv.lock);
    while (sv.active > 0)
        pthread_cond_wait(&sv.idle, &sv.lock);
    pthread_mutex_unlock(&sv.lock);
    reap(&sv);
    pthread_cond_destroy(&sv.idle);
    pthread_mutex_destroy(&sv.data_lock);
    pthread_mutex_destroy(&sv.lock);
    return err;
}
