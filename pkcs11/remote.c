/*
 * remote.c - kbr_hsm_* in keybrokerd's network process, which never loads
 * the module or sees the PIN: each call is one request and one reply over
 * the session's own connection to the HSM process (serve.c answers it with
 * a PKCS#11 session of its own).
 *
 * A session's connection is one end of a socketpair whose other end
 * travels to the HSM process over the control socket.  A connection that
 * fails (the HSM process died, or answered something that does not decode)
 * fails the call in progress with KBR_ERR_HSM and is dropped; the session's
 * next call connects again, so a restarted HSM process is used without the
 * caller reopening anything.  A call that reached the HSM process is never
 * sent twice: whether the HSM acted on it before the connection broke is
 * unknown.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "hsm_int.h"

/* A buffer grown by a large message is given back rather than kept for the session's life. */
#define BUF_KEEP_MAX (1u << 20)

kbr_err kbr_hsm_remote_open(int ctl, kbr_hsm **out)
{
    kbr_hsm *hsm;

    *out = NULL;
    if (ctl < 0)
        return KBR_ERR_INTERNAL;
    hsm = calloc(1, sizeof(*hsm));
    if (hsm == NULL)
        return KBR_ERR_NOMEM;
    hsm->ops = &kbr_p11_remote_ops;
    hsm->ctl = ctl;
    *out = hsm;
    return KBR_OK;
}

static void remote_close(kbr_hsm *hsm)
{
    /* the HSM process sees the end of its control socket and finishes */
    if (hsm->ctl >= 0)
        close(hsm->ctl);
    free(hsm);
}

static void drop(kbr_hsm_session *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/*
 * One request, its reply decoded into *resp (pointing into s->buf); the
 * reply's own error.  *sent tells whether the request may have reached the
 * HSM process: a request the socket refused never did.
 */
static kbr_err roundtrip(kbr_hsm_session *s, const kbr_hsmw_req *req, kbr_hsmw_resp *resp,
                         bool *sent)
{
    kbr_err err = KBR_OK;

    memset(resp, 0, sizeof(*resp));
    *sent = false;
    if (s->buf.cap > BUF_KEEP_MAX)
        kbr_hsmw_buf_free(&s->buf);
    KBR_ENSURE(s->fd >= 0, KBR_ERR_HSM);
    KBR_GUARD(kbr_hsmw_req_encode(req, &s->buf));
    err = kbr_hsmw_send(s->fd, &s->buf);
    *sent = err == KBR_OK;
    if (err == KBR_OK)
        err = kbr_hsmw_recv(s->fd, KBR_HSMW_RESP_MAX, &s->buf);
    if (err == KBR_OK)
        err = kbr_hsmw_resp_decode(s->buf.p + 4, s->buf.len - 4, req->type, resp);
    if (err != KBR_OK) {
        kbr_hsmw_resp_clear(resp);
        drop(s);
        err = err == KBR_ERR_NOMEM ? err : KBR_ERR_HSM;
        goto out;
    }
    err = resp->err;
out:
    return err;
}

/* A new connection, with a PKCS#11 session behind it in the HSM process. */
static kbr_err connect_session(kbr_hsm_session *s)
{
    kbr_err err = KBR_OK;
    kbr_hsmw_req req = {.type = KBR_HSMW_OPEN};
    kbr_hsmw_resp resp;
    bool sent;
    int sv[2];

    drop(s);
    KBR_ENSURE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, KBR_ERR_HSM);
    /* a SOCK_SEQPACKET record goes whole, so threads may send on the control socket at once */
    err = kbr_hsm_ctl_send_fd(s->hsm->ctl, sv[1]);
    close(sv[1]);
    if (err != KBR_OK) {
        close(sv[0]);
        goto out;
    }
    s->fd = sv[0];
    err = roundtrip(s, &req, &resp, &sent);
    if (err != KBR_OK)
        drop(s);
out:
    return err;
}

/* The session's connection, made again if the last one was lost. */
static kbr_err ready(kbr_hsm_session *s)
{
    return s->fd >= 0 ? KBR_OK : connect_session(s);
}

static void remote_session_close(kbr_hsm_session *s)
{
    drop(s);
    kbr_hsmw_buf_free(&s->buf);
    free(s);
}

static kbr_err remote_session_open(kbr_hsm *hsm, kbr_hsm_session **out)
{
    kbr_err err = KBR_OK;
    kbr_hsm_session *s = calloc(1, sizeof(*s));

    KBR_ENSURE(s != NULL, KBR_ERR_NOMEM);
    s->hsm = hsm;
    s->fd = -1;
    KBR_GUARD(connect_session(s));
    *out = s;
    s = NULL;
out:
    if (s != NULL)
        remote_session_close(s);
    return err;
}

/*
 * A connection found closed when the request is written (the HSM process
 * that served it died between two calls) is replaced once: the HSM process
 * never saw the request, so sending it again cannot do anything twice.
 */
static kbr_err call(kbr_hsm_session *s, const kbr_hsmw_req *req, kbr_hsmw_resp *resp)
{
    kbr_err err = ready(s);
    bool sent = false;

    if (err == KBR_OK) {
        err = roundtrip(s, req, resp, &sent);
        if (err == KBR_ERR_HSM && !sent && connect_session(s) == KBR_OK)
            err = roundtrip(s, req, resp, &sent);
        return err;
    }
    memset(resp, 0, sizeof(*resp));
    return err;
}

static kbr_err remote_ping(kbr_hsm_session *s)
{
    kbr_hsmw_req req = {.type = KBR_HSMW_PING};
    kbr_hsmw_resp resp;

    return call(s, &req, &resp);
}

static void labelled(kbr_hsmw_type type, const char *label, kbr_hsmw_req *req)
{
    memset(req, 0, sizeof(*req));
    req->type = type;
    /* api.c checked the length */
    snprintf(req->label, sizeof(req->label), "%s", label);
}

static kbr_err remote_generate(kbr_hsm_session *s, const char *label, kbr_alg alg,
                               kbr_hsm_key_info *out)
{
    kbr_err err = KBR_OK;
    kbr_hsmw_req req;
    kbr_hsmw_resp resp;

    labelled(KBR_HSMW_GENERATE, label, &req);
    req.alg = alg;
    KBR_GUARD(call(s, &req, &resp));
    *out = resp.info;
out:
    return err;
}

static kbr_err remote_find_key(kbr_hsm_session *s, const char *label, kbr_hsm_key_info *out)
{
    kbr_err err = KBR_OK;
    kbr_hsmw_req req;
    kbr_hsmw_resp resp;

    labelled(KBR_HSMW_FIND_KEY, label, &req);
    KBR_GUARD(call(s, &req, &resp));
    *out = resp.info;
out:
    return err;
}

static kbr_err remote_public_key(kbr_hsm_session *s, const char *label, EVP_PKEY **out)
{
    kbr_err err = KBR_OK;
    kbr_hsmw_req req;
    kbr_hsmw_resp resp;
    const unsigned char *p;

    labelled(KBR_HSMW_PUBLIC_KEY, label, &req);
    KBR_GUARD(call(s, &req, &resp));
    p = resp.data;
    *out = d2i_PUBKEY(NULL, &p, (long)resp.len);
    /* the whole field is the key, or the HSM process is not saying what it should */
    if (*out != NULL && p != resp.data + resp.len) {
        EVP_PKEY_free(*out);
        *out = NULL;
    }
    KBR_ENSURE(*out != NULL, KBR_ERR_HSM);
out:
    return err;
}

static kbr_err remote_sign(kbr_hsm_session *s, const char *label, kbr_sig_format fmt, kbr_hash hash,
                           const unsigned char *in, size_t inlen, unsigned char **sig,
                           size_t *siglen)
{
    kbr_err err = KBR_OK;
    kbr_hsmw_req req;
    kbr_hsmw_resp resp;

    labelled(KBR_HSMW_SIGN, label, &req);
    req.fmt = fmt;
    req.hash = hash;
    req.in = in;
    req.inlen = inlen;
    KBR_GUARD(call(s, &req, &resp));
    *sig = malloc(resp.len);
    KBR_ENSURE(*sig != NULL, KBR_ERR_NOMEM);
    memcpy(*sig, resp.data, resp.len);
    *siglen = resp.len;
out:
    return err;
}

static kbr_err remote_list_objects(kbr_hsm_session *s, kbr_hsm_key_info **out, size_t *n)
{
    kbr_err err = KBR_OK;
    kbr_hsmw_req req = {.type = KBR_HSMW_LIST_OBJECTS};
    kbr_hsmw_resp resp;

    err = call(s, &req, &resp);
    if (err != KBR_OK) {
        kbr_hsmw_resp_clear(&resp);
        goto out;
    }
    *out = resp.items;
    *n = resp.n;
out:
    return err;
}

/* ---- keys delivered to devices ---- */

static kbr_err remote_generate_deliverable(kbr_hsm_session *s, const char *label,
                                           kbr_hsm_key_info *out)
{
    kbr_err err = KBR_OK;
    kbr_hsmw_req req;
    kbr_hsmw_resp resp;

    labelled(KBR_HSMW_GENERATE_DELIVERABLE, label, &req);
    KBR_GUARD(call(s, &req, &resp));
    *out = resp.info;
out:
    return err;
}

static kbr_err remote_deliver(kbr_hsm_session *s, const char *label, const kbr_hsm_delivery_req *in,
                              kbr_hsm_delivery *out)
{
    kbr_err err = KBR_OK;
    kbr_hsmw_req req;
    kbr_hsmw_resp resp;

    labelled(KBR_HSMW_DELIVER, label, &req);
    req.recipient = in->recipient;
    req.kdf_context = in->kdf_context;
    req.kdf_context_len = in->kdf_context_len;
    req.enc_structure = in->enc_structure;
    req.enc_structure_len = in->enc_structure_len;
    KBR_GUARD(call(s, &req, &resp));
    *out = resp.delivery;
out:
    return err;
}

static kbr_err remote_data_get(kbr_hsm_session *s, const char *label, kbr_hsm_data **out, size_t *n)
{
    kbr_err err = KBR_OK;
    kbr_hsmw_req req;
    kbr_hsmw_resp resp;
    kbr_hsm_data *items = NULL;
    size_t i = 0;

    labelled(KBR_HSMW_DATA_GET, label, &req);
    KBR_GUARD(call(s, &req, &resp));
    items = calloc(resp.nvalues > 0 ? resp.nvalues : 1, sizeof(*items));
    KBR_ENSURE(items != NULL, KBR_ERR_NOMEM);
    for (i = 0; i < resp.nvalues; i++) {
        items[i].value = malloc(resp.values[i].len);
        KBR_ENSURE(items[i].value != NULL, KBR_ERR_NOMEM);
        memcpy(items[i].value, resp.values[i].value, resp.values[i].len);
        items[i].len = resp.values[i].len;
    }
    *out = items;
    *n = resp.nvalues;
    items = NULL;
out:
    kbr_hsm_data_free(items, i);
    return err;
}

static kbr_err remote_data_put(kbr_hsm_session *s, const char *label, const unsigned char *value,
                               size_t len, const unsigned char *evidence, size_t evlen)
{
    kbr_hsmw_req req;
    kbr_hsmw_resp resp;

    labelled(KBR_HSMW_DATA_PUT, label, &req);
    req.in = value;
    req.inlen = len;
    req.evidence = evidence;
    req.evlen = evlen;
    return call(s, &req, &resp);
}

const kbr_hsm_ops kbr_p11_remote_ops = {
    .close = remote_close,
    .session_open = remote_session_open,
    .session_close = remote_session_close,
    .ping = remote_ping,
    .generate = remote_generate,
    .find_key = remote_find_key,
    .public_key = remote_public_key,
    .sign = remote_sign,
    .list_objects = remote_list_objects,
    .generate_deliverable = remote_generate_deliverable,
    .deliver = remote_deliver,
    .data_get = remote_data_get,
    .data_put = remote_data_put,
};
