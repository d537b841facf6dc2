/*
 * issue.c - the issuer (a CA certificate and the signer of its key),
 * device certificates, and self-signed CA certificates.
 *
 * A device certificate takes only the public key from the request: its
 * subject, validity and extensions are the broker's, so a factory station
 * cannot ask for a CA certificate or another device's name.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "ca_int.h"

#define SERIAL_CN_MAX   64 /* ub-common-name */
#define SECONDS_PER_DAY 86400

void kbr_ca_issuer_free(kbr_ca_issuer *issuer)
{
    if (issuer == NULL)
        return;
    kbr_ca_cert_free(issuer->cert);
    free(issuer);
}

static bool days_ok(long days)
{
    return days >= 1 && days <= KBR_CA_DAYS_MAX;
}

static bool signer_ok(const kbr_ca_signer *signer)
{
    return signer != NULL && signer->sign != NULL && (unsigned)signer->alg < KBR_ALG__COUNT;
}

/* ---- the issuer ---- */

static kbr_err check_ca(X509 *x, kbr_msg *msg)
{
    uint32_t flags = X509_get_extension_flags(x);

    if ((flags & EXFLAG_INVALID) != 0)
        return kbr_fail(msg, KBR_ERR_CONFLICT, "issuer: certificate has malformed extensions");
    if ((flags & EXFLAG_CA) == 0)
        return kbr_fail(msg, KBR_ERR_CONFLICT,
                        "issuer: not a CA certificate (no basicConstraints CA:TRUE)");
    if ((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(x) & KU_KEY_CERT_SIGN) == 0)
        return kbr_fail(msg, KBR_ERR_CONFLICT, "issuer: keyUsage does not allow keyCertSign");
    return KBR_OK;
}

static kbr_err check_key(X509 *x, const kbr_ca_signer *signer, EVP_PKEY *signer_pub, kbr_msg *msg)
{
    EVP_PKEY *pub = X509_get0_pubkey(x);

    if (pub == NULL || signer_pub == NULL || EVP_PKEY_eq(pub, signer_pub) != 1)
        return kbr_fail(msg, KBR_ERR_CONFLICT,
                        "issuer: certificate is not for the signing key's public key");
    if (!ca_alg_fits(signer->alg, pub))
        return kbr_fail(msg, KBR_ERR_CONFLICT, "issuer: certificate key is not %s",
                        kbr_alg_name(signer->alg));
    return KBR_OK;
}

kbr_err kbr_ca_issuer_new(const char *cert_pem, const kbr_ca_signer *signer, EVP_PKEY *signer_pub,
                          kbr_ca_issuer **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_ca_issuer *iss = calloc(1, sizeof(*iss));
    X509 *x;

    *out = NULL;
    KBR_ENSURE(iss != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(signer_ok(signer), KBR_ERR_INTERNAL);
    KBR_ENSURE(kbr_ca_cert_parse(cert_pem, &iss->cert, NULL) == KBR_OK,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "issuer: not a PEM certificate"));
    x = kbr_ca_cert_x509_peek(iss->cert);
    KBR_GUARD(check_key(x, signer, signer_pub, msg));
    KBR_GUARD(check_ca(x, msg));
    iss->signer = *signer;
    *out = iss;
    iss = NULL;
out:
    kbr_ca_issuer_free(iss);
    ERR_clear_error();
    return err;
}

/* ---- device certificates ---- */

static bool serial_cn_ok(const char *s)
{
    size_t len = s != NULL ? strnlen(s, SERIAL_CN_MAX + 1) : 0, i;

    if (len == 0 || len > SERIAL_CN_MAX)
        return false;
    for (i = 0; i < len; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr("._:-", s[i]) != NULL))
            return false;
    return true;
}

static kbr_err cn_name(const char *cn, X509_NAME **out)
{
    X509_NAME *name = X509_NAME_new();

    *out = NULL;
    if (name == NULL)
        return KBR_ERR_NOMEM;
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                   0) != 1) {
        X509_NAME_free(name);
        return KBR_ERR_CRYPTO;
    }
    *out = name;
    return KBR_OK;
}

static kbr_err device_exts(X509 *x)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(ca_add_ext(x, NID_basic_constraints, "critical,CA:FALSE"));
    KBR_GUARD(ca_add_ext(x, NID_key_usage, "critical,digitalSignature"));
    KBR_GUARD(ca_add_ext(x, NID_ext_key_usage, "clientAuth"));
out:
    return err;
}

/* now + days, but a certificate never outlives its issuer's. */
static kbr_err device_not_after(const kbr_ca_issuer *issuer, long days, time_t now, time_t *out,
                                kbr_msg *msg)
{
    time_t ca_end = kbr_ca_cert_not_after(issuer->cert);
    char when[KBR_TIME_LEN];

    if (ca_end <= now) {
        kbr_time_fmt(ca_end, when);
        return kbr_fail(msg, KBR_ERR_CONFLICT, "issuer: CA certificate expired at %s", when);
    }
    *out = now + (time_t)days * SECONDS_PER_DAY;
    if (*out > ca_end)
        *out = ca_end;
    return KBR_OK;
}

kbr_err kbr_ca_issue_device(const kbr_ca_issuer *issuer, const kbr_ca_csr *csr,
                            const char *serial_cn, long validity_days, time_t now,
                            const char *crl_url, kbr_ca_cert **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    X509_NAME *subject = NULL;
    X509 *x = NULL, *ca;
    unsigned char *der = NULL;
    int derlen = 0;
    time_t not_after = 0;

    *out = NULL;
    KBR_ENSURE(issuer != NULL && csr != NULL, KBR_ERR_INTERNAL);
    KBR_ENSURE(serial_cn_ok(serial_cn),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "device.serial: must be 1 to 64 characters of A-Z a-z 0-9 . _ : -"));
    KBR_ENSURE(days_ok(validity_days), kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                                "validity_days: must be 1 to %d", KBR_CA_DAYS_MAX));
    KBR_GUARD(device_not_after(issuer, validity_days, now, &not_after, msg));
    ca = kbr_ca_cert_x509_peek(issuer->cert);
    KBR_GUARD(cn_name(serial_cn, &subject));
    KBR_GUARD(ca_skeleton(subject, X509_get_subject_name(ca), ca, NULL, kbr_ca_csr_spki_peek(csr),
                          now, not_after, &x));
    KBR_GUARD(device_exts(x));
    if (crl_url != NULL)
        KBR_GUARD(ca_add_crl_dp(x, crl_url));
    KBR_GUARD(ca_sign(x, &issuer->signer, X509_get0_pubkey(ca), &der, &derlen, msg));
    KBR_GUARD(ca_cert_from_der(x, der, derlen, out));
out:
    OPENSSL_free(der);
    X509_NAME_free(subject);
    X509_free(x);
    ERR_clear_error();
    return err;
}

/* ---- self-signed CA certificates ---- */

static kbr_err ca_exts(X509 *x)
{
    kbr_err err = KBR_OK;

    /* pathlen 0: a device CA signs device certificates, never another CA. */
    KBR_GUARD(ca_add_ext(x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
    KBR_GUARD(ca_add_ext(x, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"));
out:
    return err;
}

kbr_err kbr_ca_self_signed(const kbr_ca_signer *signer, EVP_PKEY *pub, const char *subject,
                           long days, time_t now, const char *crl_url, kbr_ca_cert **out,
                           kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    X509_NAME *name = NULL;
    X509 *x = NULL;
    unsigned char *der = NULL;
    int derlen = 0;
    kbr_ca_cert *built = NULL;

    *out = NULL;
    KBR_ENSURE(signer_ok(signer), KBR_ERR_INTERNAL);
    KBR_GUARD(ca_subject_parse(subject, &name, msg));
    KBR_ENSURE(days_ok(days), kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                       "self_signed.days: must be 1 to %d", KBR_CA_DAYS_MAX));
    KBR_ENSURE(ca_alg_fits(signer->alg, pub),
               kbr_fail(msg, KBR_ERR_CONFLICT, "self_signed: the key is not %s",
                        kbr_alg_name(signer->alg)));
    KBR_GUARD(
        ca_skeleton(name, name, NULL, pub, NULL, now, now + (time_t)days * SECONDS_PER_DAY, &x));
    KBR_GUARD(ca_exts(x));
    if (crl_url != NULL)
        KBR_GUARD(ca_add_crl_dp(x, crl_url));
    KBR_GUARD(ca_sign(x, signer, pub, &der, &derlen, msg));
    /* Read back from its PEM, as an issuer's certificate always is: a CA certificate is made
     * rarely, and what issues from it then holds nothing of how it was built. */
    KBR_GUARD(ca_cert_from_der(x, der, derlen, &built));
    KBR_ENSURE(kbr_ca_cert_parse(kbr_ca_cert_pem(built), out, NULL) == KBR_OK, KBR_ERR_CRYPTO);
out:
    OPENSSL_free(der);
    kbr_ca_cert_free(built);
    X509_NAME_free(name);
    X509_free(x);
    ERR_clear_error();
    return err;
}
