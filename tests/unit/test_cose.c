/*
 * test_cose.c - COSE_Sign1 with a detached payload: exact bytes of the
 * protected header and the Sig_structure (against the COSE working group's
 * published examples), signatures made with OpenSSL keys for ES256, ES384
 * and EdDSA and checked the way a device would (parse, rebuild the
 * Sig_structure from the detached payload, verify with OpenSSL), tampering,
 * and the strict parser's refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "kbr_cose.h"

/* "This is the content." and the P-256 key "11" of the cose-wg Examples (sign1-tests). */
#define VEC_PAYLOAD "This is the content."
#define VEC_X       "usWxHK2PmfnHKwXPS54m0kTcGJ90UiglWiGahtagnv8"
#define VEC_Y       "IBOL-C3BttVivg-lSreASjpkttcsz-1rb7btKLv8EX4"

/* sign-pass-02: protected {1: -7}, external_aad h'11aa22bb33cc44dd55006699'. */
#define VEC2_AAD "11aa22bb33cc44dd55006699"
#define VEC2_TBS                                                                                   \
    "846a5369676e61747572653143a101264c11aa22bb33cc44dd5500669954546869732069732074686520636f"     \
    "6e74656e742e"
#define VEC2_SIG                                                                                   \
    "eae868ecc176883766c5dc5ba5b8dca25dab3c2e56a551ce5705b793914348e155388b10c4f1b59a6733eab41687" \
    "0a945111a4b2fbdbef33a77234b1deff2f9b"
#define VEC2_CBOR "d28443a10126a10442313154546869732069732074686520636f6e74656e742e5840" VEC2_SIG

/* sign-pass-01: empty protected header, no external_aad. */
#define VEC1_TBS "846a5369676e617475726531404054546869732069732074686520636f6e74656e742e"

/* eddsa-sig-02: protected {1: -8}. */
#define VEC3_TBS "846a5369676e61747572653143a101274054546869732069732074686520636f6e74656e742e"

/* RFC 8032 section 7.1, test 1: Ed25519 signatures are deterministic. */
#define ED_SK "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"

/* ["Signature1", ... as CBOR: array(4), text(10) "Signature1". */
static const unsigned char sig1_prefix[] = {0x84, 0x6a, 'S', 'i', 'g', 'n',
                                            'a',  't',  'u', 'r', 'e', '1'};

typedef struct {
    unsigned char *p;
    size_t n;
} bytes;

static bytes hex(const char *h)
{
    bytes b = {NULL, 0};

    assert_int_equal(kbr_hex_decode(h, &b.p, &b.n), KBR_OK);
    return b;
}

static void bytes_free(bytes *b)
{
    free(b->p);
    b->p = NULL;
    b->n = 0;
}

static EVP_PKEY *keygen(const char *type, const char *curve)
{
    EVP_PKEY *pk = curve != NULL ? EVP_PKEY_Q_keygen(NULL, NULL, type, curve)
                                 : EVP_PKEY_Q_keygen(NULL, NULL, type);

    assert_non_null(pk);
    return pk;
}

/* The public key of the cose-wg examples' key "11", from its JWK x and y. */
static EVP_PKEY *vector_pub(void)
{
    unsigned char point[65], *x = NULL, *y = NULL;
    size_t xn = 0, yn = 0;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pk = NULL;
    char group[] = "prime256v1";
    OSSL_PARAM params[3];

    assert_int_equal(kbr_b64url_decode(VEC_X, strlen(VEC_X), &x, &xn), KBR_OK);
    assert_int_equal(kbr_b64url_decode(VEC_Y, strlen(VEC_Y), &y, &yn), KBR_OK);
    assert_int_equal(xn, 32);
    assert_int_equal(yn, 32);
    point[0] = 0x04;
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point));
    params[2] = OSSL_PARAM_construct_end();
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(ctx);
    free(x);
    free(y);
    return pk;
}

/* r||s (each half of len) to the DER OpenSSL verifies. */
static bytes raw_to_der(const unsigned char *raw, size_t len)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)(len / 2), NULL);
    BIGNUM *s = BN_bin2bn(raw + len / 2, (int)(len / 2), NULL);
    unsigned char *der = NULL;
    int n;
    bytes b;

    assert_int_equal(ECDSA_SIG_set0(es, r, s), 1);
    n = i2d_ECDSA_SIG(es, &der);
    assert_true(n > 0);
    b.p = malloc((size_t)n);
    assert_non_null(b.p);
    memcpy(b.p, der, (size_t)n);
    b.n = (size_t)n;
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    return b;
}

/* OpenSSL's verdict on sig over tbs: md NULL for Ed25519, raw r||s for ECDSA. */
static bool ossl_verify(EVP_PKEY *pk, const EVP_MD *md, const unsigned char *sig, size_t siglen,
                        const unsigned char *tbs, size_t tbslen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bytes der = {NULL, 0};
    int rc;

    if (md != NULL) {
        der = raw_to_der(sig, siglen);
        sig = der.p;
        siglen = der.n;
    }
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, md, NULL, pk), 1);
    rc = EVP_DigestVerify(ctx, sig, siglen, tbs, tbslen);
    EVP_MD_CTX_free(ctx);
    bytes_free(&der);
    return rc == 1;
}

/* What a signer was asked, so tests can check the HSM contract. */
typedef struct {
    EVP_PKEY *pk;
    int calls;
    kbr_sig_format fmt;
    kbr_hash hash;
    size_t inlen;
    kbr_err fail;    /* returned instead of signing when not KBR_OK */
    size_t truncate; /* bytes cut off the signature, to play a broken HSM */
} signer;

static void ecdsa_sign_raw(EVP_PKEY *pk, const unsigned char *md, size_t mdlen, unsigned char **sig,
                           size_t *siglen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
    size_t half = (size_t)(EVP_PKEY_get_bits(pk) + 7) / 8, dlen = 0;
    unsigned char *der = NULL;
    const unsigned char *p = NULL;
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG *es = NULL;

    assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
    assert_int_equal(EVP_PKEY_sign(ctx, NULL, &dlen, md, mdlen), 1);
    der = malloc(dlen);
    assert_non_null(der);
    assert_int_equal(EVP_PKEY_sign(ctx, der, &dlen, md, mdlen), 1);
    p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
    assert_non_null(es);
    ECDSA_SIG_get0(es, &r, &s);
    *sig = malloc(2 * half);
    assert_non_null(*sig);
    assert_int_equal(BN_bn2binpad(r, *sig, (int)half), (int)half);
    assert_int_equal(BN_bn2binpad(s, *sig + half, (int)half), (int)half);
    *siglen = 2 * half;
    ECDSA_SIG_free(es);
    free(der);
    EVP_PKEY_CTX_free(ctx);
}

static void eddsa_sign(EVP_PKEY *pk, const unsigned char *msg, size_t len, unsigned char **sig,
                       size_t *siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    *siglen = 64;
    *sig = malloc(64);
    assert_non_null(*sig);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, pk), 1);
    assert_int_equal(EVP_DigestSign(ctx, *sig, siglen, msg, len), 1);
    assert_int_equal(*siglen, 64);
    EVP_MD_CTX_free(ctx);
}

static kbr_err ossl_sign(void *arg, kbr_sig_format fmt, kbr_hash hash, const unsigned char *in,
                         size_t inlen, unsigned char **sig, size_t *siglen)
{
    signer *sg = arg;

    sg->calls++;
    sg->fmt = fmt;
    sg->hash = hash;
    sg->inlen = inlen;
    if (sg->fail != KBR_OK)
        return sg->fail;
    if (fmt == KBR_SIG_EDDSA)
        eddsa_sign(sg->pk, in, inlen, sig, siglen);
    else
        ecdsa_sign_raw(sg->pk, in, inlen, sig, siglen);
    *siglen -= sg->truncate;
    return KBR_OK;
}

static void test_alg_for(void **state)
{
    kbr_cose_alg a = KBR_COSE_EDDSA;
    kbr_msg msg = {{0}};

    (void)state;
    assert_int_equal(kbr_cose_alg_for(KBR_ALG_ECDSA_P256, &a, &msg), KBR_OK);
    assert_int_equal(a, -7);
    assert_int_equal(kbr_cose_alg_for(KBR_ALG_ECDSA_P384, &a, &msg), KBR_OK);
    assert_int_equal(a, -35);
    assert_int_equal(kbr_cose_alg_for(KBR_ALG_ED25519, &a, &msg), KBR_OK);
    assert_int_equal(a, -8);
    assert_int_equal(kbr_cose_alg_for(KBR_ALG_RSA_3072, &a, &msg), KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text,
                        "format: cose_sign1 takes ecdsa-p256, ecdsa-p384 or ed25519 keys");
    assert_int_equal(kbr_cose_alg_for(KBR_ALG_RSA_4096, &a, NULL), KBR_ERR_BAD_REQUEST);

    assert_int_equal(kbr_cose_hash(KBR_COSE_ES256), KBR_HASH_SHA256);
    assert_int_equal(kbr_cose_hash(KBR_COSE_ES384), KBR_HASH_SHA384);
    assert_int_equal(kbr_cose_hash(KBR_COSE_EDDSA), KBR_HASH_NONE);
    assert_int_equal(kbr_cose_sig_len(KBR_COSE_ES256), 64);
    assert_int_equal(kbr_cose_sig_len(KBR_COSE_ES384), 96);
    assert_int_equal(kbr_cose_sig_len(KBR_COSE_EDDSA), 64);
    assert_int_equal(kbr_cose_sig_len((kbr_cose_alg)-9), 0);
}

static void check_protected(kbr_cose_alg alg, const char *kid, const char *want_hex)
{
    unsigned char *out = NULL;
    size_t n = 0;
    bytes want = hex(want_hex);

    assert_int_equal(
        kbr_cose_protected(alg, (const unsigned char *)kid, kid ? strlen(kid) : 0, &out, &n),
        KBR_OK);
    assert_int_equal(n, want.n);
    assert_memory_equal(out, want.p, n);
    free(out);
    bytes_free(&want);
}

static void test_protected_bytes(void **state)
{
    unsigned char kid[300], *out = NULL;
    size_t n = 7;

    (void)state;
    /* {1: -7, 4: h'3131'} */
    check_protected(KBR_COSE_ES256, "11",
                    "a201260442"
                    "3131");
    check_protected(KBR_COSE_ES256, NULL, "a10126");
    check_protected(KBR_COSE_ES384, NULL, "a1013822");
    check_protected(KBR_COSE_EDDSA, "fw-2026", "a20127044766772d32303236");
    /* a kid of 300 bytes needs a two-byte length */
    memset(kid, 'k', sizeof(kid));
    assert_int_equal(kbr_cose_protected(KBR_COSE_ES384, kid, sizeof(kid), &out, &n), KBR_OK);
    assert_int_equal(n, 4 + 4 + sizeof(kid));
    assert_memory_equal(out, "\xa2\x01\x38\x22\x04\x59\x01\x2c", 8);
    free(out);
    assert_int_equal(kbr_cose_protected((kbr_cose_alg)-9, NULL, 0, &out, &n), KBR_ERR_BAD_REQUEST);
    assert_null(out);
    assert_int_equal(n, 0);
}

static void check_tbs(const char *prot_hex, const char *aad_hex, const char *want_hex)
{
    bytes prot = prot_hex[0] ? hex(prot_hex) : (bytes){NULL, 0};
    bytes aad = aad_hex[0] ? hex(aad_hex) : (bytes){NULL, 0};
    bytes want = hex(want_hex);
    unsigned char *out = NULL;
    size_t n = 0;

    assert_int_equal(kbr_cose_sig_structure(prot.p, prot.n, aad.p, aad.n,
                                            (const unsigned char *)VEC_PAYLOAD, strlen(VEC_PAYLOAD),
                                            &out, &n),
                     KBR_OK);
    assert_int_equal(n, want.n);
    assert_memory_equal(out, want.p, n);
    assert_memory_equal(out, sig1_prefix, sizeof(sig1_prefix));
    free(out);
    bytes_free(&prot);
    bytes_free(&aad);
    bytes_free(&want);
}

/* The ToBeSign bytes of the cose-wg Examples, made from the same inputs. */
static void test_sig_structure_vectors(void **state)
{
    (void)state;
    check_tbs("", "", VEC1_TBS);
    check_tbs("a10126", VEC2_AAD, VEC2_TBS);
    check_tbs("a10127", "", VEC3_TBS);
}

/* The payload's length head takes the shortest form at each boundary. */
static void test_sig_structure_lengths(void **state)
{
    static const struct {
        size_t n;
        const char *head;
        size_t headlen;
    } cases[] = {
        {0, "\x40", 1},
        {23, "\x57", 1},
        {24, "\x58\x18", 2},
        {255, "\x58\xff", 2},
        {256, "\x59\x01\x00", 3},
        {65535, "\x59\xff\xff", 3},
        {65536, "\x5a\x00\x01\x00\x00", 5},
    };
    const unsigned char prot[] = {0xa1, 0x01, 0x26};
    unsigned char *payload = malloc(65536), *out = NULL;
    size_t n = 0, at = sizeof(sig1_prefix) + 1 + sizeof(prot) + 1;

    (void)state;
    assert_non_null(payload);
    memset(payload, 0x5a, 65536);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(
            kbr_cose_sig_structure(prot, sizeof(prot), NULL, 0, payload, cases[i].n, &out, &n),
            KBR_OK);
        assert_int_equal(n, at + cases[i].headlen + cases[i].n);
        assert_memory_equal(out + sizeof(sig1_prefix), "\x43\xa1\x01\x26\x40", 5);
        assert_memory_equal(out + at, cases[i].head, cases[i].headlen);
        assert_memory_equal(out + at + cases[i].headlen, payload, cases[i].n);
        free(out);
    }
    free(payload);
}

/* The published ES256 signature, moved into the detached form, still verifies. */
static void test_vector_detached(void **state)
{
    EVP_PKEY *pub = vector_pub(), *other = keygen("EC", "P-256");
    bytes tbs = hex(VEC2_TBS), sig = hex(VEC2_SIG), aad = hex(VEC2_AAD), att = hex(VEC2_CBOR);
    bytes want = hex("d28443a10126a0f65840" VEC2_SIG);
    const unsigned char prot[] = {0xa1, 0x01, 0x26};
    const unsigned char *pl = (const unsigned char *)VEC_PAYLOAD;
    unsigned char *cose = NULL, *p = NULL, *s = NULL, *kid = NULL;
    size_t n = 0, pn = 0, sn = 0, kn = 0, pln = strlen(VEC_PAYLOAD);
    kbr_cose_alg alg = KBR_COSE_EDDSA;
    kbr_msg msg = {{0}};

    (void)state;
    assert_true(ossl_verify(pub, EVP_sha256(), sig.p, sig.n, tbs.p, tbs.n));
    assert_int_equal(kbr_cose_sign1(prot, sizeof(prot), sig.p, sig.n, true, &cose, &n), KBR_OK);
    assert_int_equal(n, want.n);
    assert_memory_equal(cose, want.p, n);

    assert_int_equal(kbr_cose_sign1_parse(cose, n, &p, &pn, &s, &sn, &alg, &kid, &kn, &msg),
                     KBR_OK);
    assert_int_equal(alg, KBR_COSE_ES256);
    assert_null(kid);
    assert_int_equal(kn, 0);
    assert_int_equal(pn, sizeof(prot));
    assert_memory_equal(p, prot, pn);
    assert_int_equal(sn, sig.n);
    assert_memory_equal(s, sig.p, sn);

    assert_int_equal(kbr_cose_sign1_verify(cose, n, aad.p, aad.n, pl, pln, pub, &msg), KBR_OK);
    assert_int_equal(kbr_cose_sign1_verify(cose, n, NULL, 0, pl, pln, pub, &msg), KBR_ERR_CRYPTO);
    assert_string_equal(msg.text, "signature: does not verify");
    assert_int_equal(kbr_cose_sign1_verify(cose, n, aad.p, aad.n, pl, pln - 1, pub, &msg),
                     KBR_ERR_CRYPTO);
    assert_int_equal(kbr_cose_sign1_verify(cose, n, aad.p, aad.n, pl, pln, other, &msg),
                     KBR_ERR_CRYPTO);

    /* the published form carries the payload and the kid unprotected: not ours */
    free(p);
    free(s);
    assert_int_equal(kbr_cose_sign1_parse(att.p, att.n, &p, &pn, &s, &sn, &alg, &kid, &kn, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "cose_sign1: the unprotected header must be an empty map");
    assert_null(p);
    assert_null(s);

    free(cose);
    bytes_free(&tbs);
    bytes_free(&sig);
    bytes_free(&aad);
    bytes_free(&att);
    bytes_free(&want);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(other);
}

/*
 * Checks cose as a device does with nothing but OpenSSL: parse, rebuild the
 * Sig_structure from the protected header and the detached payload, verify.
 */
static bool device_verifies(EVP_PKEY *pub, const EVP_MD *md, const unsigned char *cose, size_t n,
                            const unsigned char *payload, size_t paylen)
{
    unsigned char *p = NULL, *s = NULL, *kid = NULL, *tbs = NULL;
    size_t pn = 0, sn = 0, kn = 0, tn = 0;
    kbr_cose_alg alg = KBR_COSE_ES256;
    bool ok;

    assert_int_equal(kbr_cose_sign1_parse(cose, n, &p, &pn, &s, &sn, &alg, &kid, &kn, NULL),
                     KBR_OK);
    assert_int_equal(kbr_cose_sig_structure(p, pn, NULL, 0, payload, paylen, &tbs, &tn), KBR_OK);
    ok = ossl_verify(pub, md, s, sn, tbs, tn);
    free(p);
    free(s);
    free(kid);
    free(tbs);
    return ok;
}

/* One key: sign through kbr_cose_sign1_make, then check what a device checks. */
static void roundtrip(kbr_cose_alg alg, EVP_PKEY *pk, const EVP_MD *md, kbr_hash hash,
                      size_t siglen)
{
    static const char manifest[] = "\xa2\x01\x01\x02\x18\x2a suit-manifest bytes";
    const unsigned char *pl = (const unsigned char *)manifest, *kid = (const unsigned char *)"fw";
    size_t pln = sizeof(manifest) - 1, n = 0, un = 0, pn = 0, sn = 0, kn = 0, wn = 0;
    unsigned char *cose = NULL, *untagged = NULL, *p = NULL, *s = NULL, *k = NULL, *want = NULL;
    unsigned char *tampered = malloc(pln);
    signer sg = {.pk = pk};
    kbr_cose_alg got = (kbr_cose_alg)0;
    /* another curve, or another key type for EdDSA */
    EVP_PKEY *other = keygen("EC", alg == KBR_COSE_ES256 ? "P-384" : "P-256");

    assert_non_null(tampered);
    assert_int_equal(
        kbr_cose_sign1_make(alg, kid, 2, NULL, 0, pl, pln, true, ossl_sign, &sg, &cose, &n),
        KBR_OK);
    assert_int_equal(sg.calls, 1);
    assert_int_equal(sg.fmt, hash == KBR_HASH_NONE ? KBR_SIG_EDDSA : KBR_SIG_ECDSA_RAW);
    assert_int_equal(sg.hash, hash);
    assert_int_equal(cose[0], 0xd2); /* tag 18 */
    assert_int_equal(cose[1], 0x84);

    assert_int_equal(kbr_cose_sign1_parse(cose, n, &p, &pn, &s, &sn, &got, &k, &kn, NULL), KBR_OK);
    assert_int_equal(got, alg);
    assert_int_equal(kn, 2);
    assert_memory_equal(k, "fw", 2);
    assert_int_equal(sn, siglen);
    assert_int_equal(kbr_cose_protected(alg, kid, 2, &want, &wn), KBR_OK);
    assert_int_equal(pn, wn);
    assert_memory_equal(p, want, wn);

    assert_true(device_verifies(pk, md, cose, n, pl, pln));
    assert_int_equal(kbr_cose_sign1_verify(cose, n, NULL, 0, pl, pln, pk, NULL), KBR_OK);
    memcpy(tampered, pl, pln);
    tampered[pln - 1] ^= 1;
    assert_false(device_verifies(pk, md, cose, n, tampered, pln));
    assert_int_equal(kbr_cose_sign1_verify(cose, n, NULL, 0, tampered, pln, pk, NULL),
                     KBR_ERR_CRYPTO);
    /* a flipped signature bit still parses, and no longer verifies */
    cose[n - 1] ^= 0x01;
    assert_false(device_verifies(pk, md, cose, n, pl, pln));
    assert_int_equal(kbr_cose_sign1_verify(cose, n, NULL, 0, pl, pln, pk, NULL), KBR_ERR_CRYPTO);
    cose[n - 1] ^= 0x01;
    /* a key of another algorithm is refused before any verification */
    assert_int_equal(kbr_cose_sign1_verify(cose, n, NULL, 0, pl, pln, other, NULL),
                     KBR_ERR_BAD_REQUEST);

    /* the untagged form is the same array without the tag */
    assert_int_equal(kbr_cose_sign1(p, pn, s, sn, false, &untagged, &un), KBR_OK);
    assert_int_equal(un, n - 1);
    assert_memory_equal(untagged, cose + 1, un);
    assert_true(device_verifies(pk, md, untagged, un, pl, pln));

    free(cose);
    free(untagged);
    free(p);
    free(s);
    free(k);
    free(want);
    free(tampered);
    EVP_PKEY_free(other);
}

static void test_es256(void **state)
{
    EVP_PKEY *pk = keygen("EC", "P-256");

    (void)state;
    roundtrip(KBR_COSE_ES256, pk, EVP_sha256(), KBR_HASH_SHA256, 64);
    EVP_PKEY_free(pk);
}

static void test_es384(void **state)
{
    EVP_PKEY *pk = keygen("EC", "P-384");

    (void)state;
    roundtrip(KBR_COSE_ES384, pk, EVP_sha384(), KBR_HASH_SHA384, 96);
    EVP_PKEY_free(pk);
}

static void test_eddsa(void **state)
{
    EVP_PKEY *pk = keygen("ED25519", NULL);

    (void)state;
    roundtrip(KBR_COSE_EDDSA, pk, NULL, KBR_HASH_NONE, 64);
    EVP_PKEY_free(pk);
}

/*
 * The step by step path the broker takes with the HSM: protected header,
 * Sig_structure, SHA-256, raw r||s, COSE_Sign1.  The signer is told the
 * digest, not the Sig_structure.
 */
static void test_es256_by_parts(void **state)
{
    EVP_PKEY *pk = keygen("EC", "P-256");
    const unsigned char *pl = (const unsigned char *)VEC_PAYLOAD,
                        *kid = (const unsigned char *)"11";
    size_t pln = strlen(VEC_PAYLOAD), pn = 0, tn = 0, sn = 0, n = 0;
    unsigned char *prot = NULL, *tbs = NULL, *sig = NULL, *cose = NULL, md[32];
    signer sg = {.pk = pk};

    (void)state;
    assert_int_equal(kbr_cose_protected(KBR_COSE_ES256, kid, 2, &prot, &pn), KBR_OK);
    assert_int_equal(kbr_cose_sig_structure(prot, pn, NULL, 0, pl, pln, &tbs, &tn), KBR_OK);
    kbr_sha256(tbs, tn, md);
    assert_int_equal(ossl_sign(&sg, KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, md, 32, &sig, &sn), KBR_OK);
    assert_int_equal(kbr_cose_sign1(prot, pn, sig, sn, true, &cose, &n), KBR_OK);
    /* 18([h'A2012604423131', {}, nil, h'<64 bytes>']) */
    assert_int_equal(n, 1 + 1 + 8 + 1 + 1 + 2 + 64);
    assert_memory_equal(cose, "\xd2\x84\x47\xa2\x01\x26\x04\x42\x31\x31\xa0\xf6\x58\x40", 14);
    assert_memory_equal(cose + 14, sig, 64);
    assert_true(device_verifies(pk, EVP_sha256(), cose, n, pl, pln));
    free(prot);
    free(tbs);
    free(sig);
    free(cose);
    EVP_PKEY_free(pk);
}

/* Ed25519 is deterministic: the whole COSE_Sign1 is known from hand-built Sig_structure bytes. */
static void test_eddsa_exact(void **state)
{
    bytes sk = hex(ED_SK);
    EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, sk.p, sk.n);
    /* ["Signature1", h'A20127044231 31', h'', h'"This is the content."'] by hand */
    bytes tbs = hex("846a5369676e617475726531"
                    "47a2012704423131"
                    "40"
                    "54546869732069732074686520636f6e74656e742e");
    unsigned char *sig = NULL, *cose = NULL;
    size_t sn = 0, n = 0;
    signer sg = {.pk = pk};
    unsigned char want[14 + 64];

    (void)state;
    assert_non_null(pk);
    eddsa_sign(pk, tbs.p, tbs.n, &sig, &sn);
    memcpy(want, "\xd2\x84\x47\xa2\x01\x27\x04\x42\x31\x31\xa0\xf6\x58\x40", 14);
    memcpy(want + 14, sig, 64);
    assert_int_equal(kbr_cose_sign1_make(KBR_COSE_EDDSA, (const unsigned char *)"11", 2, NULL, 0,
                                         (const unsigned char *)VEC_PAYLOAD, strlen(VEC_PAYLOAD),
                                         true, ossl_sign, &sg, &cose, &n),
                     KBR_OK);
    assert_int_equal(sg.inlen, tbs.n);
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(cose, want, n);
    free(sig);
    free(cose);
    bytes_free(&sk);
    bytes_free(&tbs);
    EVP_PKEY_free(pk);
}

static void test_make_errors(void **state)
{
    EVP_PKEY *pk = keygen("EC", "P-256");
    signer sg = {.pk = pk, .fail = KBR_ERR_HSM};
    const unsigned char pl[] = "m";
    unsigned char *cose = NULL;
    size_t n = 5;

    (void)state;
    assert_int_equal(kbr_cose_sign1_make(KBR_COSE_ES256, NULL, 0, NULL, 0, pl, 1, true, ossl_sign,
                                         &sg, &cose, &n),
                     KBR_ERR_HSM);
    assert_null(cose);
    assert_int_equal(n, 0);
    sg.fail = KBR_OK;
    sg.truncate = 1;
    assert_int_equal(kbr_cose_sign1_make(KBR_COSE_ES256, NULL, 0, NULL, 0, pl, 1, true, ossl_sign,
                                         &sg, &cose, &n),
                     KBR_ERR_INTERNAL);
    assert_null(cose);
    sg.calls = 0;
    assert_int_equal(kbr_cose_sign1_make((kbr_cose_alg)1, NULL, 0, NULL, 0, pl, 1, true, ossl_sign,
                                         &sg, &cose, &n),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(sg.calls, 0);
    EVP_PKEY_free(pk);
}

static void test_sign1_refuses(void **state)
{
    const unsigned char es256[] = {0xa1, 0x01, 0x26}, es384[] = {0xa1, 0x01, 0x38, 0x22};
    const unsigned char long_head[] = {0xa1, 0x01, 0x38, 0x06}; /* -7 in two bytes */
    unsigned char sig[96] = {0}, *out = NULL;
    size_t n = 3;

    (void)state;
    assert_int_equal(kbr_cose_sign1(es256, sizeof(es256), sig, 63, true, &out, &n),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_cose_sign1(es256, sizeof(es256), sig, 96, true, &out, &n),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_cose_sign1(es384, sizeof(es384), sig, 64, true, &out, &n),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_cose_sign1(long_head, sizeof(long_head), sig, 64, true, &out, &n),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_cose_sign1(NULL, 0, sig, 64, true, &out, &n), KBR_ERR_BAD_REQUEST);
    assert_null(out);
    assert_int_equal(n, 0);
    assert_int_equal(kbr_cose_sign1(es384, sizeof(es384), sig, 96, false, &out, &n), KBR_OK);
    assert_int_equal(n, 1 + 5 + 1 + 1 + 2 + 96);
    free(out);
}

/* Builds "<prefix> 58 40 <64 zero bytes> <suffix>" from hex. */
static bytes with_sig(const char *prefix, size_t sigbytes, const char *suffix)
{
    bytes pre = hex(prefix), b;
    bytes suf = suffix[0] ? hex(suffix) : (bytes){NULL, 0};

    b.n = pre.n + 2 + sigbytes + suf.n;
    b.p = calloc(1, b.n);
    assert_non_null(b.p);
    memcpy(b.p, pre.p, pre.n);
    b.p[pre.n] = 0x58;
    b.p[pre.n + 1] = (unsigned char)sigbytes;
    if (suf.n > 0)
        memcpy(b.p + pre.n + 2 + sigbytes, suf.p, suf.n);
    bytes_free(&pre);
    bytes_free(&suf);
    return b;
}

static kbr_err parse(const unsigned char *in, size_t len, kbr_msg *msg)
{
    unsigned char *p = (unsigned char *)1, *s = (unsigned char *)1, *k = (unsigned char *)1;
    size_t pn = 9, sn = 9, kn = 9;
    kbr_cose_alg alg = KBR_COSE_ES256;
    kbr_err err = kbr_cose_sign1_parse(in, len, &p, &pn, &s, &sn, &alg, &k, &kn, msg);

    if (err != KBR_OK) {
        assert_null(p);
        assert_null(s);
        assert_null(k);
        assert_int_equal(pn + sn + kn, 0);
    }
    free(p);
    free(s);
    free(k);
    return err;
}

static void refused(const char *prefix, size_t sigbytes, const char *suffix, const char *why)
{
    bytes b = with_sig(prefix, sigbytes, suffix);
    kbr_msg msg = {{0}};

    assert_int_equal(parse(b.p, b.n, &msg), KBR_ERR_BAD_REQUEST);
    if (why != NULL)
        assert_string_equal(msg.text, why);
    bytes_free(&b);
}

static void test_parse_refuses(void **state)
{
    static const unsigned char huge_array[] = {0x9b, 0, 0, 0, 1, 0, 0, 0, 0, 0x40};
    static const unsigned char huge_bstr[] = {0xd2, 0x84, 0x5b, 0, 0, 0, 1, 0, 0, 0, 0};
    bytes ok = with_sig("d28447a2012604423131a0f6", 64, "");
    kbr_msg msg = {{0}};

    (void)state;
    /* the base form is accepted, so each refusal below is down to its one change */
    assert_int_equal(parse(ok.p, ok.n, &msg), KBR_OK);
    assert_int_equal(parse(ok.p + 1, ok.n - 1, &msg), KBR_OK);

    refused("d18447a2012604423131a0f6", 64, "",
            "cose_sign1: the only tag allowed is 18 (COSE_Sign1), in one byte");
    refused("d8628447a2012604423131a0f6", 64, "", NULL); /* tag 98, COSE_Sign */
    refused("d28447a2012604423131a041aa", 64, "", "cose_sign1: payload must be nil (detached)");
    refused("d28447a2012604423131a104423131f6", 64, "",
            "cose_sign1: the unprotected header must be an empty map");
    refused("d28347a2012604423131a0f6", 64, "", "cose_sign1: not an array of 4 items");
    refused("d28547a2012604423131a0f6", 64, "f6", "cose_sign1: not an array of 4 items");
    refused("d29f47a2012604423131a0f6", 64, "ff", "cose_sign1: not an array of 4 items");
    refused("d28447a2012604423131bff6", 64, "ff", NULL); /* indefinite empty map */
    refused("d2849f47a2012604423131a0f6", 64, "", NULL); /* nested nonsense */
    refused("d28447a2012604423131a0f6", 63, "", NULL);
    refused("d28447a2012604423131a0f6", 64, "00",
            "cose_sign1: trailing bytes after the COSE_Sign1");
    /* longer heads than needed */
    refused("d2980447a2012604423131a0f6", 64, "",
            "cose_sign1: not in deterministic encoding (RFC 8949 4.2.1)");
    refused("d2845807a2012604423131a0f6", 64, "", NULL);
    refused("d8128447a2012604423131a0f6", 64, "", NULL); /* tag 18 in a two-byte head */
    /* protected headers other than {1: alg, ? 4: kid} */
    refused("d28447a2044231310126a0f6", 64, "", "protected: alg (label 1) must come first");
    refused("d2844aa3012604423131030000a0f6", 64, "", NULL);
    refused("d28445a201260300a0f6", 64, "", "protected: only alg (1) and kid (4) are allowed");
    refused("d28443a10128a0f6", 64, "",
            "protected: alg must be ES256 (-7), ES384 (-35) or EdDSA (-8)");
    refused("d28443a10107a0f6", 64, "", NULL); /* alg 7 */
    refused("d28440a0f6", 64, "", NULL);       /* empty header: no alg */
    refused("d28441a0a0f6", 64, "", NULL);     /* {} */
    refused("d28444a1013806a0f6", 64, "",
            "protected: not in deterministic encoding (RFC 8949 4.2.1)");
    refused("d28445a201260440a0f6", 64, "", NULL); /* empty kid */
    refused("d28444bf0126ffa0f6", 64, "", NULL);   /* indefinite map */
    refused("d28444a1012600a0f6", 64, "", "protected: trailing bytes after the header map");
    refused("d28446a20126046131a0f6", 64, "", "protected: kid must be a byte string");
    refused("d28448a201380304423131a0f6", 64, "",
            "protected: alg must be ES256 (-7), ES384 (-35) or EdDSA (-8)");
    refused("d28448a201382204423131a0f6", 64, "",
            "cose_sign1: signature of 64 bytes, but ES384 takes 96");

    /* lengths and counts that outrun the input cost nothing */
    assert_int_equal(parse(huge_array, sizeof(huge_array), &msg), KBR_ERR_BAD_REQUEST);
    assert_int_equal(parse(huge_bstr, sizeof(huge_bstr), &msg), KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "cose_sign1: protected header is not a byte string");
    for (size_t len = 0; len < ok.n; len++)
        assert_int_equal(parse(ok.p, len, &msg), KBR_ERR_BAD_REQUEST);
    assert_int_equal(parse(NULL, 0, &msg), KBR_ERR_BAD_REQUEST);
    assert_string_equal(msg.text, "cose_sign1: not CBOR");
    bytes_free(&ok);
}

/*
 * The COSE_Encrypt around a delivery, byte for byte: its headers, its layers in place, and the
 * two contexts the HSM binds: the COSE_KDF_Context is the one of the COSE working group's
 * example p256-wrap-128-01 (ECDH-ES + A128KW), and the Enc_structure covers the protected
 * header the message carries.
 */
static void test_encrypt_layout(void **state)
{
    static const unsigned char wg_context[] = {0x84, 0x22, 0x83, 0xf6, 0xf6, 0xf6,
                                               0x83, 0xf6, 0xf6, 0xf6, 0x82, 0x18,
                                               0x80, 0x44, 0xa1, 0x01, 0x38, 0x1c};
    const unsigned char *kdf = NULL, *enc = NULL;
    size_t kdf_len = 0, enc_len = 0, len = 0, off = 0;
    kbr_hsm_delivery d;
    unsigned char kid[32], *out = NULL;

    (void)state;
    kbr_cose_encrypt_contexts(&kdf, &kdf_len, &enc, &enc_len);
    assert_int_equal(kdf_len, sizeof(wg_context));
    assert_memory_equal(kdf, wg_context, kdf_len);
    assert_int_equal(enc_len, 17);
    assert_memory_equal(enc,
                        "\x83\x67"
                        "Encrypt"
                        "\x46\xa2\x01\x01\x03\x18\x65\x40",
                        17);

    memset(&d, 0, sizeof(d));
    d.ephemeral[0] = 0x04;
    memset(d.ephemeral + 1, 0x11, 32);
    memset(d.ephemeral + 33, 0x22, 32);
    memset(d.wrapped_cek, 0x33, sizeof(d.wrapped_cek));
    memset(d.iv, 0x44, sizeof(d.iv));
    memset(d.ciphertext, 0x55, sizeof(d.ciphertext));
    memset(kid, 0x66, sizeof(kid));
    assert_int_equal(kbr_cose_encrypt(&d, kid, sizeof(kid), &out, &len), KBR_OK);
#define EXPECT(bytes, n)                                                                           \
    do {                                                                                           \
        assert_true(off + (n) <= len);                                                             \
        assert_memory_equal(out + off, bytes, n);                                                  \
        off += (n);                                                                                \
    } while (0)
    EXPECT("\xd8\x60\x84", 3);                 /* 96([ */
    EXPECT("\x46\xa2\x01\x01\x03\x18\x65", 7); /* << {1: 1, 3: 101} >> */
    EXPECT("\xa1\x05\x4c", 3);                 /* {5: h'..12..'} */
    EXPECT(d.iv, 12);
    EXPECT("\x58\xa1", 2); /* 161 bytes */
    EXPECT(d.ciphertext, 161);
    EXPECT("\x81\x83\x44\xa1\x01\x38\x1c", 7); /* [[<< {1: -29} >>, */
    EXPECT("\xa2\x04\x58\x20", 4);             /* {4: kid, */
    EXPECT(kid, 32);
    EXPECT("\x20\xa4\x01\x02\x20\x01\x21\x58\x20", 9); /* -1: {1: 2, -1: 1, -2: x, */
    EXPECT(d.ephemeral + 1, 32);
    EXPECT("\x22\x58\x20", 3); /* -3: y}}, */
    EXPECT(d.ephemeral + 33, 32);
    EXPECT("\x58\x18", 2); /* the wrapped CEK]]]) */
    EXPECT(d.wrapped_cek, 24);
#undef EXPECT
    assert_int_equal(off, len);
    free(out);
    /* refusals: no kid, a kid too long, an ephemeral key that is no uncompressed point */
    assert_int_equal(kbr_cose_encrypt(&d, kid, 0, &out, &len), KBR_ERR_BAD_REQUEST);
    assert_null(out);
    assert_int_equal(kbr_cose_encrypt(&d, kid, 65, &out, &len), KBR_ERR_BAD_REQUEST);
    d.ephemeral[0] = 0x02;
    assert_int_equal(kbr_cose_encrypt(&d, kid, sizeof(kid), &out, &len), KBR_ERR_BAD_REQUEST);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alg_for),
        cmocka_unit_test(test_protected_bytes),
        cmocka_unit_test(test_sig_structure_vectors),
        cmocka_unit_test(test_sig_structure_lengths),
        cmocka_unit_test(test_vector_detached),
        cmocka_unit_test(test_es256),
        cmocka_unit_test(test_es384),
        cmocka_unit_test(test_eddsa),
        cmocka_unit_test(test_es256_by_parts),
        cmocka_unit_test(test_eddsa_exact),
        cmocka_unit_test(test_make_errors),
        cmocka_unit_test(test_sign1_refuses),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_encrypt_layout),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
