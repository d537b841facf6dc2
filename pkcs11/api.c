/*
 * api.c - the public kbr_hsm_* calls on a session: arguments checked and
 * outputs cleared here, then the call goes to the module in this process
 * or to the HSM process, whichever the kbr_hsm was opened with.
 */
#include <string.h>

#include "hsm_int.h"

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
    return s->hsm->ops->ping(s);
}

kbr_err kbr_hsm_generate(kbr_hsm_session *s, const char *label, kbr_alg alg, kbr_hsm_key_info *out)
{
    if (s == NULL || out == NULL)
        return KBR_ERR_INTERNAL;
    memset(out, 0, sizeof(*out));
    if (kbr_p11_label_check(label) != KBR_OK || (unsigned)alg >= KBR_ALG__COUNT)
        return KBR_ERR_BAD_REQUEST;
    return s->hsm->ops->generate(s, label, alg, out);
}

kbr_err kbr_hsm_find_key(kbr_hsm_session *s, const char *label, kbr_hsm_key_info *out)
{
    if (s == NULL || out == NULL)
        return KBR_ERR_INTERNAL;
    memset(out, 0, sizeof(*out));
    if (kbr_p11_label_check(label) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    return s->hsm->ops->find_key(s, label, out);
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
    return s->hsm->ops->public_key(s, label, out);
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
    return s->hsm->ops->sign(s, label, fmt, hash, in, inlen, sig, siglen);
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
    return s->hsm->ops->list_objects(s, out, n);
}
