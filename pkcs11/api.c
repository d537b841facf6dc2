/*
 * api.c - the public kbr_hsm_* calls on a session: arguments checked and
 * outputs cleared here, then the call goes to the module in this process
 * or to the HSM process, whichever the kbr_hsm was opened with.
 */
#include <pthread.h>
#include <string.h>

#include "hsm_int.h"

static kbr_hist latency[KBR_HSM_CALL__COUNT];
static pthread_once_t latency_once = PTHREAD_ONCE_INIT;

static void latency_init(void)
{
    for (size_t i = 0; i < KBR_HSM_CALL__COUNT; i++)
        kbr_hist_init(&latency[i], kbr_hist_seconds, kbr_hist_seconds_n);
}

static double call_start(void)
{
    pthread_once(&latency_once, latency_init);
    return kbr_monotonic_seconds();
}

static kbr_err call_end(kbr_hsm_call c, double t0, kbr_err err)
{
    kbr_hist_observe(&latency[c], kbr_monotonic_seconds() - t0);
    return err;
}

const char *kbr_hsm_call_name(kbr_hsm_call c)
{
    static const char *const names[KBR_HSM_CALL__COUNT] = {
        "ping", "generate", "find_key", "public_key", "sign", "list_objects"};

    return (unsigned)c < KBR_HSM_CALL__COUNT ? names[c] : NULL;
}

const kbr_hist *kbr_hsm_call_latency(kbr_hsm_call c)
{
    pthread_once(&latency_once, latency_init);
    return (unsigned)c < KBR_HSM_CALL__COUNT ? &latency[c] : NULL;
}

void kbr_hsm_close(kbr_hsm *hsm)
{
    if (hsm != NULL)
        hsm->ops->close(hsm);
}

kbr_err kbr_hsm_session_open(kbr_hsm *hsm, kbr_hsm_session **out)
{
    if (out == NULL)
        return KBR_ERR_INTERNAL;
    *out = NULL;
    if (hsm == NULL)
        return KBR_ERR_INTERNAL;
    return hsm->ops->session_open(hsm, out);
}

void kbr_hsm_session_close(kbr_hsm_session *s)
{
    if (s != NULL)
        s->hsm->ops->session_close(s);
}

kbr_err kbr_hsm_session_ping(kbr_hsm_session *s)
{
    if (s == NULL)
        return KBR_ERR_INTERNAL;
    double t0 = call_start();

    return call_end(KBR_HSM_CALL_PING, t0, s->hsm->ops->ping(s));
}

kbr_err kbr_hsm_generate(kbr_hsm_session *s, const char *label, kbr_alg alg, kbr_hsm_key_info *out)
{
    if (s == NULL || out == NULL)
        return KBR_ERR_INTERNAL;
    memset(out, 0, sizeof(*out));
    if (kbr_p11_label_check(label) != KBR_OK || (unsigned)alg >= KBR_ALG__COUNT)
        return KBR_ERR_BAD_REQUEST;
    double t0 = call_start();

    return call_end(KBR_HSM_CALL_GENERATE, t0, s->hsm->ops->generate(s, label, alg, out));
}

kbr_err kbr_hsm_find_key(kbr_hsm_session *s, const char *label, kbr_hsm_key_info *out)
{
    if (s == NULL || out == NULL)
        return KBR_ERR_INTERNAL;
    memset(out, 0, sizeof(*out));
    if (kbr_p11_label_check(label) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    double t0 = call_start();

    return call_end(KBR_HSM_CALL_FIND_KEY, t0, s->hsm->ops->find_key(s, label, out));
}

kbr_err kbr_hsm_public_key(kbr_hsm_session *s, const char *label, EVP_PKEY **out)
{
    if (out == NULL)
        return KBR_ERR_INTERNAL;
    *out = NULL;
    if (s == NULL)
        return KBR_ERR_INTERNAL;
    if (kbr_p11_label_check(label) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    double t0 = call_start();

    return call_end(KBR_HSM_CALL_PUBLIC_KEY, t0, s->hsm->ops->public_key(s, label, out));
}

kbr_err kbr_hsm_sign(kbr_hsm_session *s, const char *label, kbr_sig_format fmt, kbr_hash hash,
                     const unsigned char *in, size_t inlen, unsigned char **sig, size_t *siglen)
{
    if (sig == NULL || siglen == NULL)
        return KBR_ERR_INTERNAL;
    *sig = NULL;
    *siglen = 0;
    if (s == NULL)
        return KBR_ERR_INTERNAL;
    if (kbr_p11_label_check(label) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    double t0 = call_start();

    return call_end(KBR_HSM_CALL_SIGN, t0,
                    s->hsm->ops->sign(s, label, fmt, hash, in, inlen, sig, siglen));
}

kbr_err kbr_hsm_data_get(kbr_hsm_session *s, const char *label, kbr_hsm_data **out, size_t *n)
{
    if (out == NULL || n == NULL)
        return KBR_ERR_INTERNAL;
    *out = NULL;
    *n = 0;
    if (s == NULL)
        return KBR_ERR_INTERNAL;
    if (kbr_p11_label_check(label) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    return s->hsm->ops->data_get(s, label, out, n);
}

kbr_err kbr_hsm_data_put(kbr_hsm_session *s, const char *label, const unsigned char *value,
                         size_t len, const unsigned char *evidence, size_t evlen)
{
    if (s == NULL)
        return KBR_ERR_INTERNAL;
    if (kbr_p11_label_check(label) != KBR_OK || value == NULL || len < 1 ||
        len > KBR_HSM_DATA_MAX || evlen > KBR_HSM_EVIDENCE_MAX || (evidence == NULL && evlen > 0))
        return KBR_ERR_BAD_REQUEST;
    return s->hsm->ops->data_put(s, label, value, len, evidence, evlen);
}

kbr_err kbr_hsm_list_objects(kbr_hsm_session *s, kbr_hsm_key_info **out, size_t *n)
{
    if (out == NULL || n == NULL)
        return KBR_ERR_INTERNAL;
    *out = NULL;
    *n = 0;
    if (s == NULL)
        return KBR_ERR_INTERNAL;
    double t0 = call_start();

    return call_end(KBR_HSM_CALL_LIST, t0, s->hsm->ops->list_objects(s, out, n));
}

kbr_err kbr_hsm_generate_deliverable(kbr_hsm_session *s, const char *label, kbr_hsm_key_info *out)
{
    if (s == NULL || out == NULL)
        return KBR_ERR_INTERNAL;
    memset(out, 0, sizeof(*out));
    if (kbr_p11_label_check(label) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    return s->hsm->ops->generate_deliverable(s, label, out);
}

kbr_err kbr_hsm_deliver(kbr_hsm_session *s, const char *label, const kbr_hsm_delivery_req *req,
                        kbr_hsm_delivery *out)
{
    if (s == NULL || req == NULL || out == NULL)
        return KBR_ERR_INTERNAL;
    memset(out, 0, sizeof(*out));
    if (kbr_p11_label_check(label) != KBR_OK || req->recipient[0] != 0x04 ||
        req->kdf_context == NULL || req->kdf_context_len == 0 ||
        req->kdf_context_len > KBR_HSM_DELIVERY_CONTEXT_MAX || req->enc_structure == NULL ||
        req->enc_structure_len == 0 || req->enc_structure_len > KBR_HSM_DELIVERY_CONTEXT_MAX)
        return KBR_ERR_BAD_REQUEST;
    return s->hsm->ops->deliver(s, label, req, out);
}
