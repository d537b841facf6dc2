/*
 * test_hsm.c - pkcs11/ against a real SoftHSM2 token made for this run in a
 * private directory: login failures, key generation for every algorithm
 * with each signature checked by OpenSSL against the exported public key,
 * the object inventory, getting a closed session back, and concurrent
 * signing from several threads; keys made for delivery to devices, which the
 * token refuses to sign with or show, and a delivery opened step by step
 * with OpenSSL and the device's key.
 */
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dlfcn.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "softhsm_token.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "kbr_hsm.h"

#include <p11-kit/pkcs11.h>

static kbr_err hsm_open_with(const char *module, const char *label, const char *pin, kbr_hsm **out,
                             kbr_msg *msg)
{
    kbr_secret *sec = NULL;
    kbr_err err = kbr_secret_new(pin, strlen(pin), &sec);

    if (err == KBR_OK)
        err = kbr_hsm_open(module, label, sec, out, msg);
    kbr_secret_free(sec);
    return err;
}

/* ---- direct PKCS#11 access, as another user of the same module ---- */

typedef struct {
    void *dl;
    CK_FUNCTION_LIST *f;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE h;
} direct;

static void direct_slot(direct *d)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16, i;
    CK_TOKEN_INFO ti;
    char padded[32];

    memset(padded, ' ', sizeof(padded));
    memcpy(padded, KBT_TOKEN_LABEL, strlen(KBT_TOKEN_LABEL));
    assert_int_equal(d->f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    for (i = 0; i < n; i++) {
        assert_int_equal(d->f->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        if (memcmp(ti.label, padded, 32) == 0)
            break;
    }
    assert_true(i < n);
    d->slot = slots[i];
}

static void direct_open(direct *d)
{
    CK_C_GetFunctionList get_list = NULL;
    CK_RV rv;

    d->dl = dlopen(kbt_module_path, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(d->dl);
    *(void **)(&get_list) = dlsym(d->dl, "C_GetFunctionList");
    assert_non_null(get_list);
    assert_int_equal(get_list(&d->f), CKR_OK);
    rv = d->f->C_Initialize(NULL);
    assert_true(rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED);
    direct_slot(d);
    assert_int_equal(
        d->f->C_OpenSession(d->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &d->h),
        CKR_OK);
    rv = d->f->C_Login(d->h, CKU_USER, (CK_UTF8CHAR *)KBT_USER_PIN, strlen(KBT_USER_PIN));
    assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
}

static void direct_close(direct *d)
{
    (void)d->f->C_CloseSession(d->h);
    dlclose(d->dl);
}

/* ---- verification with OpenSSL ---- */

static EVP_PKEY *pem_to_pkey(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);

    BIO_free(bio);
    return pk;
}

static unsigned char *raw_to_der(const unsigned char *raw, size_t len, size_t *outlen)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    unsigned char *der = NULL;
    int n;

    ECDSA_SIG_set0(es, BN_bin2bn(raw, (int)len / 2, NULL),
                   BN_bin2bn(raw + len / 2, (int)len / 2, NULL));
    n = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    *outlen = n > 0 ? (size_t)n : 0;
    return der;
}

static const EVP_MD *md_of(kbr_hash hash)
{
    return hash == KBR_HASH_SHA384 ? EVP_sha384() : EVP_sha256();
}

static int rsa_pad(EVP_PKEY_CTX *ctx, kbr_sig_format fmt, kbr_hash hash)
{
    if (EVP_PKEY_CTX_set_signature_md(ctx, md_of(hash)) != 1)
        return 0;
    if (fmt == KBR_SIG_RSA_PKCS1)
        return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING);
    return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md_of(hash)) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1;
}

/* 1 if sig is a valid signature of the digest dg under pk. */
static int verify_digest(EVP_PKEY *pk, kbr_sig_format fmt, kbr_hash hash, const unsigned char *dg,
                         size_t dglen, const unsigned char *sig, size_t siglen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
    unsigned char *der = NULL;
    int ok = 0;

    if (fmt == KBR_SIG_ECDSA_RAW) {
        der = raw_to_der(sig, siglen, &siglen);
        sig = der;
    }
    if (ctx != NULL && EVP_PKEY_verify_init(ctx) == 1) {
        if (fmt == KBR_SIG_ECDSA_RAW || fmt == KBR_SIG_ECDSA_DER || rsa_pad(ctx, fmt, hash) == 1)
            ok = EVP_PKEY_verify(ctx, sig, siglen, dg, dglen) == 1;
    }
    OPENSSL_free(der);
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

static int verify_message(EVP_PKEY *pk, const unsigned char *msg, size_t len,
                          const unsigned char *sig, size_t siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(ctx, sig, siglen, msg, len) == 1;

    EVP_MD_CTX_free(ctx);
    return ok;
}

static size_t digest_of(kbr_hash hash, const char *text, unsigned char *out)
{
    if (hash == KBR_HASH_SHA384) {
        SHA384((const unsigned char *)text, strlen(text), out);
        return 48;
    }
    SHA256((const unsigned char *)text, strlen(text), out);
    return 32;
}

/* ---- group 1: opening ---- */

static void test_open_ok(void **state)
{
    kbr_hsm *hsm = NULL;
    kbr_hsm_session *s = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    assert_int_equal(hsm_open_with(kbt_module_path, KBT_TOKEN_LABEL, KBT_USER_PIN, &hsm, &msg),
                     KBR_OK);
    assert_non_null(hsm);
    assert_int_equal(kbr_hsm_session_open(hsm, &s), KBR_OK);
    assert_int_equal(kbr_hsm_session_ping(s), KBR_OK);
    kbr_hsm_session_close(s);
    kbr_hsm_close(hsm);
}

static void test_open_wrong_pin(void **state)
{
    kbr_hsm *hsm = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    assert_int_equal(hsm_open_with(kbt_module_path, KBT_TOKEN_LABEL, "9999", &hsm, &msg),
                     KBR_ERR_HSM_PIN);
    assert_null(hsm);
    assert_non_null(strstr(msg.text, "PIN"));
}

static void test_open_unknown_token(void **state)
{
    kbr_hsm *hsm = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    assert_int_equal(hsm_open_with(kbt_module_path, "no-such-token", KBT_USER_PIN, &hsm, &msg),
                     KBR_ERR_HSM_TOKEN);
    assert_null(hsm);
    assert_non_null(strstr(msg.text, "no-such-token"));
}

static void test_open_missing_module(void **state)
{
    kbr_hsm *hsm = NULL;
    kbr_msg msg = {{0}};
    char path[PATH_MAX + 32];

    (void)state;
    snprintf(path, sizeof(path), "%s/missing-pkcs11.so", kbt_token_dir);
    assert_int_equal(hsm_open_with(path, KBT_TOKEN_LABEL, KBT_USER_PIN, &hsm, &msg), KBR_ERR_IO);
    assert_null(hsm);
    assert_non_null(strstr(msg.text, "missing-pkcs11.so"));
}

static void test_alg_names(void **state)
{
    kbr_alg alg = KBR_ALG__COUNT;
    int i;

    (void)state;
    for (i = 0; i < KBR_ALG__COUNT; i++) {
        assert_int_equal(kbr_alg_from_name(kbr_alg_name((kbr_alg)i), &alg), KBR_OK);
        assert_int_equal(alg, i);
    }
    assert_string_equal(kbr_alg_name(KBR_ALG_ED25519), "ed25519");
    assert_int_equal(kbr_alg_from_name("ecdsa-p521", &alg), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_alg_from_name(NULL, &alg), KBR_ERR_BAD_REQUEST);
}

/* ---- group 2: keys, with one kbr_hsm and session ---- */

static kbr_hsm *g_hsm;
static kbr_hsm_session *g_s;

static int keys_setup(void **state)
{
    kbr_hsm_key_info info = {.label = ""};
    kbr_msg msg = {{0}};

    (void)state;
    if (hsm_open_with(kbt_module_path, KBT_TOKEN_LABEL, KBT_USER_PIN, &g_hsm, &msg) != KBR_OK)
        return -1;
    if (kbr_hsm_session_open(g_hsm, &g_s) != KBR_OK)
        return -1;
    if (kbr_hsm_generate(g_s, "grp-p256", KBR_ALG_ECDSA_P256, &info) != KBR_OK)
        return -1;
    return kbr_hsm_generate(g_s, "grp-ed25519", KBR_ALG_ED25519, &info) == KBR_OK ? 0 : -1;
}

static int keys_teardown(void **state)
{
    (void)state;
    kbr_hsm_session_close(g_s);
    kbr_hsm_close(g_hsm);
    return 0;
}

static EVP_PKEY *exported_key(kbr_hsm_session *s, const char *label)
{
    char *pem = NULL;
    EVP_PKEY *pk = NULL;

    assert_int_equal(kbr_hsm_public_key_pem(s, label, &pem), KBR_OK);
    assert_non_null(strstr(pem, "-----BEGIN PUBLIC KEY-----"));
    pk = pem_to_pkey(pem);
    free(pem);
    assert_non_null(pk);
    return pk;
}

static void check_info(const kbr_hsm_key_info *info, const char *label, kbr_alg alg,
                       const char *key_type)
{
    assert_string_equal(info->label, label);
    assert_string_equal(info->class_name, "private");
    assert_string_equal(info->key_type, key_type);
    assert_int_equal(strlen(info->id_hex), 32);
    assert_true(info->alg_known);
    assert_int_equal(info->alg, alg);
    assert_true(info->sensitive);
    assert_false(info->extractable);
    assert_true(info->always_sensitive);
    assert_true(info->never_extractable);
    assert_true(info->local);
    assert_true(info->token);
    assert_true(info->private_obj);
    assert_true(info->can_sign);
}

/* Signs a digest of text, checks the length and that OpenSSL accepts it, and not for another. */
static void sign_and_verify(const char *label, EVP_PKEY *pk, kbr_sig_format fmt, kbr_hash hash,
                            size_t expect_len)
{
    unsigned char dg[48], *sig = NULL;
    size_t dglen = digest_of(hash, label, dg), siglen = 0;

    assert_int_equal(kbr_hsm_sign(g_s, label, fmt, hash, dg, dglen, &sig, &siglen), KBR_OK);
    if (expect_len > 0)
        assert_int_equal(siglen, expect_len);
    assert_true(verify_digest(pk, fmt, hash, dg, dglen, sig, siglen));
    dg[0] ^= 1;
    assert_false(verify_digest(pk, fmt, hash, dg, dglen, sig, siglen));
    free(sig);
}

static void generate_checked(const char *label, kbr_alg alg, const char *key_type)
{
    kbr_hsm_key_info gen, found;

    memset(&gen, 0, sizeof(gen));
    memset(&found, 0, sizeof(found));
    assert_int_equal(kbr_hsm_generate(g_s, label, alg, &gen), KBR_OK);
    check_info(&gen, label, alg, key_type);
    assert_int_equal(kbr_hsm_find_key(g_s, label, &found), KBR_OK);
    check_info(&found, label, alg, key_type);
    assert_string_equal(found.id_hex, gen.id_hex);
}

static void test_ecdsa_p256(void **state)
{
    EVP_PKEY *pk = NULL;

    (void)state;
    generate_checked("alg-p256", KBR_ALG_ECDSA_P256, "ec");
    pk = exported_key(g_s, "alg-p256");
    assert_true(EVP_PKEY_is_a(pk, "EC"));
    assert_int_equal(EVP_PKEY_get_bits(pk), 256);
    sign_and_verify("alg-p256", pk, KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, 64);
    sign_and_verify("alg-p256", pk, KBR_SIG_ECDSA_DER, KBR_HASH_SHA256, 0);
    EVP_PKEY_free(pk);
}

static void test_ecdsa_p384(void **state)
{
    EVP_PKEY *pk = NULL;

    (void)state;
    generate_checked("alg-p384", KBR_ALG_ECDSA_P384, "ec");
    pk = exported_key(g_s, "alg-p384");
    assert_true(EVP_PKEY_is_a(pk, "EC"));
    assert_int_equal(EVP_PKEY_get_bits(pk), 384);
    sign_and_verify("alg-p384", pk, KBR_SIG_ECDSA_RAW, KBR_HASH_SHA384, 96);
    sign_and_verify("alg-p384", pk, KBR_SIG_ECDSA_DER, KBR_HASH_SHA384, 0);
    sign_and_verify("alg-p384", pk, KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, 96);
    EVP_PKEY_free(pk);
}

static void test_ed25519(void **state)
{
    static const unsigned char msg[] = "debug unlock challenge 0001";
    EVP_PKEY *pk = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;

    (void)state;
    generate_checked("alg-ed25519", KBR_ALG_ED25519, "ec-edwards");
    pk = exported_key(g_s, "alg-ed25519");
    assert_true(EVP_PKEY_is_a(pk, "ED25519"));
    assert_int_equal(kbr_hsm_sign(g_s, "alg-ed25519", KBR_SIG_EDDSA, KBR_HASH_NONE, msg,
                                  sizeof(msg) - 1, &sig, &siglen),
                     KBR_OK);
    assert_int_equal(siglen, 64);
    assert_true(verify_message(pk, msg, sizeof(msg) - 1, sig, siglen));
    assert_false(verify_message(pk, msg, sizeof(msg) - 2, sig, siglen));
    free(sig);
    EVP_PKEY_free(pk);
}

static void rsa_case(const char *label, kbr_alg alg, int bits)
{
    EVP_PKEY *pk = NULL;

    generate_checked(label, alg, "rsa");
    pk = exported_key(g_s, label);
    assert_true(EVP_PKEY_is_a(pk, "RSA"));
    assert_int_equal(EVP_PKEY_get_bits(pk), bits);
    sign_and_verify(label, pk, KBR_SIG_RSA_PSS, KBR_HASH_SHA256, (size_t)bits / 8);
    sign_and_verify(label, pk, KBR_SIG_RSA_PSS, KBR_HASH_SHA384, (size_t)bits / 8);
    sign_and_verify(label, pk, KBR_SIG_RSA_PKCS1, KBR_HASH_SHA256, (size_t)bits / 8);
    sign_and_verify(label, pk, KBR_SIG_RSA_PKCS1, KBR_HASH_SHA384, (size_t)bits / 8);
    EVP_PKEY_free(pk);
}

static void test_rsa_3072(void **state)
{
    (void)state;
    rsa_case("alg-rsa3072", KBR_ALG_RSA_3072, 3072);
}

static void test_rsa_4096(void **state)
{
    (void)state;
    rsa_case("alg-rsa4096", KBR_ALG_RSA_4096, 4096);
}

static void test_duplicate_label(void **state)
{
    kbr_hsm_key_info info = {.label = ""};

    (void)state;
    assert_int_equal(kbr_hsm_generate(g_s, "grp-p256", KBR_ALG_ECDSA_P256, &info),
                     KBR_ERR_CONFLICT);
    assert_int_equal(kbr_hsm_generate(g_s, "grp-p256", KBR_ALG_ED25519, &info), KBR_ERR_CONFLICT);
    assert_int_equal(kbr_hsm_generate(g_s, "", KBR_ALG_ED25519, &info), KBR_ERR_BAD_REQUEST);
}

static void test_missing_label(void **state)
{
    unsigned char dg[32] = {1}, *sig = NULL;
    size_t siglen = 7;
    kbr_hsm_key_info info = {.label = ""};
    EVP_PKEY *pk = NULL;

    (void)state;
    assert_int_equal(kbr_hsm_sign(g_s, "no-such-key", KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, dg,
                                  sizeof(dg), &sig, &siglen),
                     KBR_ERR_NOT_FOUND);
    assert_null(sig);
    assert_int_equal(siglen, 0);
    assert_int_equal(kbr_hsm_find_key(g_s, "no-such-key", &info), KBR_ERR_NOT_FOUND);
    assert_int_equal(kbr_hsm_public_key(g_s, "no-such-key", &pk), KBR_ERR_NOT_FOUND);
    assert_null(pk);
}

static kbr_err sign_quick(const char *label, kbr_sig_format fmt, kbr_hash hash, size_t len)
{
    unsigned char in[64] = {0}, *sig = NULL;
    size_t siglen = 0;
    kbr_err err = kbr_hsm_sign(g_s, label, fmt, hash, in, len, &sig, &siglen);

    free(sig);
    return err;
}

static void test_bad_digest_length(void **state)
{
    (void)state;
    assert_int_equal(sign_quick("grp-p256", KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, 31),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(sign_quick("grp-p256", KBR_SIG_ECDSA_RAW, KBR_HASH_SHA384, 32),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(sign_quick("grp-p256", KBR_SIG_ECDSA_DER, KBR_HASH_NONE, 32),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(sign_quick("grp-p256", KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, 32), KBR_OK);
}

static void test_format_mismatch(void **state)
{
    (void)state;
    assert_int_equal(sign_quick("grp-p256", KBR_SIG_EDDSA, KBR_HASH_NONE, 32), KBR_ERR_BAD_REQUEST);
    assert_int_equal(sign_quick("grp-p256", KBR_SIG_RSA_PSS, KBR_HASH_SHA256, 32),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(sign_quick("grp-ed25519", KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, 32),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(sign_quick("grp-ed25519", KBR_SIG_EDDSA, KBR_HASH_SHA256, 32),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(sign_quick("grp-ed25519", KBR_SIG_EDDSA, KBR_HASH_NONE, 32), KBR_OK);
}

/* A P-256 key pair and an AES key made behind the broker's back. */
static void direct_make_keys(direct *d)
{
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_BBOOL yes = CK_TRUE;
    CK_ULONG aes_len = 32;
    CK_MECHANISM ec = {CKM_EC_KEY_PAIR_GEN, NULL, 0}, aes = {CKM_AES_KEY_GEN, NULL, 0};
    CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, 1},
                          {CKA_EC_PARAMS, (void *)p256, sizeof(p256)},
                          {CKA_LABEL, "unregistered-ec", 15}};
    CK_ATTRIBUTE priv[] = {{CKA_TOKEN, &yes, 1},
                           {CKA_SENSITIVE, &yes, 1},
                           {CKA_SIGN, &yes, 1},
                           {CKA_LABEL, "unregistered-ec", 15}};
    CK_ATTRIBUTE sec[] = {{CKA_TOKEN, &yes, 1},
                          {CKA_VALUE_LEN, &aes_len, sizeof(aes_len)},
                          {CKA_LABEL, "unregistered-aes", 16}};
    CK_OBJECT_HANDLE hpub, hpriv, hsec;

    assert_int_equal(d->f->C_GenerateKeyPair(d->h, &ec, pub, 3, priv, 4, &hpub, &hpriv), CKR_OK);
    assert_int_equal(d->f->C_GenerateKey(d->h, &aes, sec, 3, &hsec), CKR_OK);
}

static const kbr_hsm_key_info *listed(const kbr_hsm_key_info *items, size_t n, const char *label,
                                      const char *cls)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(items[i].label, label) == 0 && strcmp(items[i].class_name, cls) == 0)
            return &items[i];
    return NULL;
}

static void test_list_objects(void **state)
{
    direct d;
    kbr_hsm_key_info *items = NULL;
    const kbr_hsm_key_info *it = NULL;
    size_t n = 0;

    (void)state;
    direct_open(&d);
    direct_make_keys(&d);
    direct_close(&d);
    assert_int_equal(kbr_hsm_list_objects(g_s, &items, &n), KBR_OK);
    it = listed(items, n, "unregistered-ec", "private");
    assert_non_null(it);
    assert_string_equal(it->key_type, "ec");
    assert_true(it->alg_known);
    assert_int_equal(it->alg, KBR_ALG_ECDSA_P256);
    assert_true(it->sensitive);
    assert_true(it->can_sign);
    it = listed(items, n, "unregistered-ec", "public");
    assert_non_null(it);
    assert_false(it->sensitive);
    assert_false(it->can_sign);
    it = listed(items, n, "unregistered-aes", "secret");
    assert_non_null(it);
    assert_string_equal(it->key_type, "aes");
    assert_false(it->alg_known);
    it = listed(items, n, "grp-p256", "private");
    assert_non_null(it);
    assert_false(it->extractable);
    assert_non_null(listed(items, n, "grp-p256", "public"));
    assert_non_null(listed(items, n, "grp-ed25519", "private"));
    free(items);
}

static void sign_verify_p256(kbr_hsm_session *s, const char *label, EVP_PKEY *pk, int expect_ok)
{
    unsigned char dg[32], *sig = NULL;
    size_t siglen = 0;

    SHA256((const unsigned char *)"after", 5, dg);
    assert_int_equal(
        kbr_hsm_sign(s, label, KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, dg, 32, &sig, &siglen), KBR_OK);
    assert_int_equal(verify_digest(pk, KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, dg, 32, sig, siglen),
                     expect_ok);
    free(sig);
}

static void test_session_recovery(void **state)
{
    direct d;
    EVP_PKEY *pk = exported_key(g_s, "grp-p256");

    (void)state;
    sign_verify_p256(g_s, "grp-p256", pk, 1);
    direct_open(&d);
    /* Closes every session of the application on the token, which also logs out. */
    assert_int_equal(d.f->C_CloseAllSessions(d.slot), CKR_OK);
    dlclose(d.dl);
    sign_verify_p256(g_s, "grp-p256", pk, 1);
    assert_int_equal(kbr_hsm_session_ping(g_s), KBR_OK);
    EVP_PKEY_free(pk);
}

/* Destroys the objects labelled label (of class cls, or all when all_classes); expects n of them.
 */
static void direct_destroy(const char *label, bool all_classes, CK_OBJECT_CLASS cls,
                           CK_ULONG expect)
{
    direct d;
    CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)label, strlen(label)}, {CKA_CLASS, &cls, sizeof(cls)}};
    CK_OBJECT_HANDLE objs[8];
    CK_ULONG n = 0, i;

    direct_open(&d);
    assert_int_equal(d.f->C_FindObjectsInit(d.h, t, all_classes ? 1 : 2), CKR_OK);
    assert_int_equal(d.f->C_FindObjects(d.h, objs, 8, &n), CKR_OK);
    assert_int_equal(d.f->C_FindObjectsFinal(d.h), CKR_OK);
    assert_int_equal(n, expect);
    for (i = 0; i < n; i++)
        assert_int_equal(d.f->C_DestroyObject(d.h, objs[i]), CKR_OK);
    direct_close(&d);
}

/* A cached key handle that stops working is looked up again by label. */
static void test_replaced_key(void **state)
{
    kbr_hsm_key_info info = {.label = ""};
    EVP_PKEY *old_pk = NULL, *new_pk = NULL;

    (void)state;
    assert_int_equal(kbr_hsm_generate(g_s, "replaced", KBR_ALG_ECDSA_P256, &info), KBR_OK);
    old_pk = exported_key(g_s, "replaced");
    sign_verify_p256(g_s, "replaced", old_pk, 1);
    direct_destroy("replaced", true, 0, 2);
    assert_int_equal(kbr_hsm_generate(g_s, "replaced", KBR_ALG_ECDSA_P256, &info), KBR_OK);
    new_pk = exported_key(g_s, "replaced");
    sign_verify_p256(g_s, "replaced", new_pk, 1);
    sign_verify_p256(g_s, "replaced", old_pk, 0);
    EVP_PKEY_free(old_pk);
    EVP_PKEY_free(new_pk);
}

static char *pem_of(const char *label)
{
    char *pem = NULL;

    assert_int_equal(kbr_hsm_public_key_pem(g_s, label, &pem), KBR_OK);
    return pem;
}

/* Without its public object, the public key comes from the private object. */
static void test_public_from_private(void **state)
{
    kbr_hsm_key_info info = {.label = ""};
    char *before = NULL, *after = NULL;
    EVP_PKEY *pk = NULL;

    (void)state;
    before = pem_of("alg-rsa3072");
    direct_destroy("alg-rsa3072", false, CKO_PUBLIC_KEY, 1);
    after = pem_of("alg-rsa3072");
    assert_string_equal(after, before);
    free(before);
    free(after);
    assert_int_equal(kbr_hsm_generate(g_s, "publess-p256", KBR_ALG_ECDSA_P256, &info), KBR_OK);
    direct_destroy("publess-p256", false, CKO_PUBLIC_KEY, 1);
    /* SoftHSM2 keeps no CKA_PUBLIC_KEY_INFO or point on an EC private key. */
    assert_int_equal(kbr_hsm_public_key(g_s, "publess-p256", &pk), KBR_ERR_HSM_KEY);
    assert_null(pk);
}

/*
 * Another user of the module finalizes it: every call fails until it is
 * initialized again, and then the same session works without a restart.
 */
static void test_module_gone_and_back(void **state)
{
    direct d;
    CK_C_INITIALIZE_ARGS args;
    EVP_PKEY *pk = exported_key(g_s, "grp-p256");
    unsigned char dg[32] = {0}, *sig = NULL;
    size_t siglen = 0;

    (void)state;
    direct_open(&d);
    (void)d.f->C_CloseSession(d.h);
    assert_int_equal(d.f->C_Finalize(NULL), CKR_OK);
    assert_int_equal(
        kbr_hsm_sign(g_s, "grp-p256", KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, dg, 32, &sig, &siglen),
        KBR_ERR_HSM);
    assert_null(sig);
    assert_int_equal(kbr_hsm_session_ping(g_s), KBR_ERR_HSM);
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    assert_int_equal(d.f->C_Initialize(&args), CKR_OK);
    dlclose(d.dl);
    /* two failed logins so far: the next attempt waits out a 100 + 200 ms backoff */
    usleep(400 * 1000);
    sign_verify_p256(g_s, "grp-p256", pk, 1);
    assert_int_equal(kbr_hsm_session_ping(g_s), KBR_OK);
    EVP_PKEY_free(pk);
}

#define THREADS     4
#define THREAD_SIGS 50

typedef struct {
    EVP_PKEY *pk;
    int index;
    int verified;
    kbr_err err;
} worker;

static void *worker_run(void *arg)
{
    worker *w = arg;
    kbr_hsm_session *s = NULL;
    unsigned char dg[32], *sig = NULL;
    char text[64];
    size_t siglen = 0;
    int i;

    w->err = kbr_hsm_session_open(g_hsm, &s);
    for (i = 0; w->err == KBR_OK && i < THREAD_SIGS; i++) {
        snprintf(text, sizeof(text), "thread %d signature %d", w->index, i);
        SHA256((const unsigned char *)text, strlen(text), dg);
        w->err = kbr_hsm_sign(s, "grp-p256", KBR_SIG_ECDSA_DER, KBR_HASH_SHA256, dg, sizeof(dg),
                              &sig, &siglen);
        if (w->err == KBR_OK)
            w->verified +=
                verify_digest(w->pk, KBR_SIG_ECDSA_DER, KBR_HASH_SHA256, dg, 32, sig, siglen);
        free(sig);
        sig = NULL;
    }
    kbr_hsm_session_close(s);
    return NULL;
}

static void test_concurrent_sign(void **state)
{
    pthread_t th[THREADS];
    worker w[THREADS];
    EVP_PKEY *pk = exported_key(g_s, "grp-p256");
    int i;

    (void)state;
    for (i = 0; i < THREADS; i++) {
        w[i] = (worker){pk, i, 0, KBR_OK};
        assert_int_equal(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
    }
    for (i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < THREADS; i++) {
        assert_int_equal(w[i].err, KBR_OK);
        assert_int_equal(w[i].verified, THREAD_SIGS);
    }
    EVP_PKEY_free(pk);
}

/* ---- keys delivered to devices ---- */

/* The COSE_KDF_Context of ECDH-ES + A128KW with recipient protected header {1: -29}, and the
 * Enc_structure ["Encrypt", h'A20101031865', h''] (RFC 9052 5.3, RFC 9053 5.2). */
static const unsigned char kdf_ctx[] = {0x84, 0x22, 0x83, 0xf6, 0xf6, 0xf6, 0x83, 0xf6, 0xf6,
                                        0xf6, 0x82, 0x18, 0x80, 0x44, 0xa1, 0x01, 0x38, 0x1c};
static const unsigned char enc_struct[] = {0x83, 0x67, 'E',  'n',  'c',  'r',  'y',  'p', 't',
                                           0x46, 0xa2, 0x01, 0x01, 0x03, 0x18, 0x65, 0x40};

static EVP_PKEY *device_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");

    assert_non_null(k);
    return k;
}

static void device_point(EVP_PKEY *k, unsigned char pt[65])
{
    size_t n = 0;

    assert_int_equal(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt, 65, &n), 1);
    assert_int_equal(n, 65);
}

static EVP_PKEY *point_key(const unsigned char pt[65])
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *k = NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, 65),
        OSSL_PARAM_construct_end(),
    };

    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(ctx);
    return k;
}

/*
 * RFC 9053 6.3.1 and 6.2.1, RFC 9052 5.3, with the device's key: Z from ECDH with the ephemeral
 * key, the KEK from HKDF-SHA-256, the CEK from the AES key unwrap, the COSE_Key from AES-GCM.
 * 0 when any step refuses (a wrong key, a changed byte).
 */
static int open_delivery(EVP_PKEY *dev, const kbr_hsm_delivery *d, unsigned char plain[145])
{
    EVP_PKEY *eph = point_key(d->ephemeral);
    EVP_PKEY_CTX *dctx = EVP_PKEY_CTX_new(dev, NULL), *hctx = NULL;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    unsigned char z[32], kek[16], cek[16];
    size_t zlen = sizeof(z), kek_len = sizeof(kek);
    int n = 0, m = 0, ok;

    ok = EVP_PKEY_derive_init(dctx) == 1 && EVP_PKEY_derive_set_peer(dctx, eph) == 1 &&
         EVP_PKEY_derive(dctx, z, &zlen) == 1 && zlen == 32;
    hctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    ok = ok && EVP_PKEY_derive_init(hctx) == 1 &&
         EVP_PKEY_CTX_set_hkdf_md(hctx, EVP_sha256()) == 1 &&
         EVP_PKEY_CTX_set1_hkdf_key(hctx, z, 32) == 1 &&
         EVP_PKEY_CTX_add1_hkdf_info(hctx, kdf_ctx, sizeof(kdf_ctx)) == 1 &&
         EVP_PKEY_derive(hctx, kek, &kek_len) == 1 && kek_len == 16;
    EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    ok = ok && EVP_DecryptInit_ex(c, EVP_aes_128_wrap(), NULL, kek, NULL) == 1 &&
         EVP_DecryptUpdate(c, cek, &n, d->wrapped_cek, 24) == 1 && n == 16 &&
         EVP_DecryptFinal_ex(c, cek + n, &m) == 1;
    EVP_CIPHER_CTX_reset(c);
    ok = ok && EVP_DecryptInit_ex(c, EVP_aes_128_gcm(), NULL, cek, d->iv) == 1 &&
         EVP_DecryptUpdate(c, NULL, &n, enc_struct, sizeof(enc_struct)) == 1 &&
         EVP_DecryptUpdate(c, plain, &n, d->ciphertext, 145) == 1 && n == 145 &&
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(d->ciphertext + 145)) == 1 &&
         EVP_DecryptFinal_ex(c, plain + n, &m) == 1;
    EVP_CIPHER_CTX_free(c);
    EVP_PKEY_CTX_free(hctx);
    EVP_PKEY_CTX_free(dctx);
    EVP_PKEY_free(eph);
    return ok;
}

/* The private key a delivered COSE_Key carries, checked against the HSM's public key. */
static void check_cose_key(const unsigned char p[145], EVP_PKEY *pub)
{
    static const unsigned char spki_prefix[] = {
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
    unsigned char pt[65], spki[91], kid[32], derived[65];
    EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    EC_POINT *q = EC_POINT_new(group);
    BIGNUM *d = BN_bin2bn(p + 113, 32, NULL);

    device_point(pub, pt);
    memcpy(spki, spki_prefix, sizeof(spki_prefix));
    memcpy(spki + sizeof(spki_prefix), pt, 65);
    SHA256(spki, sizeof(spki), kid);
    /* {1: 2, 2: kid, -1: 1, -2: x, -3: y, -4: d} */
    assert_memory_equal(p, "\xa6\x01\x02\x02\x58\x20", 6);
    assert_memory_equal(p + 6, kid, 32);
    assert_memory_equal(p + 38, "\x20\x01\x21\x58\x20", 5);
    assert_memory_equal(p + 43, pt + 1, 32);
    assert_memory_equal(p + 75, "\x22\x58\x20", 3);
    assert_memory_equal(p + 78, pt + 33, 32);
    assert_memory_equal(p + 110, "\x23\x58\x20", 3);
    /* d is the private key of the HSM's public key: d*G is it */
    assert_int_equal(EC_POINT_mul(group, q, d, NULL, NULL, NULL), 1);
    assert_int_equal(EC_POINT_point2oct(group, q, POINT_CONVERSION_UNCOMPRESSED, derived, 65, NULL),
                     65);
    assert_memory_equal(derived, pt, 65);
    BN_clear_free(d);
    EC_POINT_free(q);
    EC_GROUP_free(group);
}

/* Objects of class cls the sessions of this process hold (not on the token). */
static CK_ULONG session_objects(direct *dr, CK_OBJECT_CLASS cls)
{
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_TOKEN, &no, sizeof(no)}};
    CK_OBJECT_HANDLE h[16];
    CK_ULONG n = 0;

    assert_int_equal(dr->f->C_FindObjectsInit(dr->h, t, 2), CKR_OK);
    assert_int_equal(dr->f->C_FindObjects(dr->h, h, 16, &n), CKR_OK);
    assert_int_equal(dr->f->C_FindObjectsFinal(dr->h), CKR_OK);
    return n;
}

static CK_OBJECT_HANDLE direct_private(direct *dr, const char *label)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ULONG n = 0;

    assert_int_equal(dr->f->C_FindObjectsInit(dr->h, t, 2), CKR_OK);
    assert_int_equal(dr->f->C_FindObjects(dr->h, &h, 1, &n), CKR_OK);
    assert_int_equal(dr->f->C_FindObjectsFinal(dr->h), CKR_OK);
    assert_int_equal(n, 1);
    return h;
}

/*
 * A deliverable key is sensitive and extractable, and the token refuses every use of it: no
 * signature (through the broker's call or directly), no derivation, no value.
 */
static void test_deliverable_key(void **state)
{
    kbr_hsm_key_info info;
    unsigned char dg[32] = {1}, *sig = NULL, value[64];
    size_t siglen = 0;
    direct dr;
    CK_OBJECT_HANDLE priv;
    CK_ATTRIBUTE a = {CKA_VALUE, value, sizeof(value)};
    CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0};

    (void)state;
    assert_int_equal(kbr_hsm_generate_deliverable(g_s, "ota-enc", &info), KBR_OK);
    assert_string_equal(info.label, "ota-enc");
    assert_string_equal(info.key_type, "ec");
    assert_true(info.alg_known);
    assert_int_equal(info.alg, KBR_ALG_ECDSA_P256);
    assert_true(info.token && info.private_obj && info.sensitive && info.always_sensitive);
    assert_true(info.extractable);
    assert_false(info.never_extractable);
    assert_false(info.can_sign);
    assert_int_equal(kbr_hsm_generate_deliverable(g_s, "ota-enc", &info), KBR_ERR_CONFLICT);
    assert_int_not_equal(
        kbr_hsm_sign(g_s, "ota-enc", KBR_SIG_ECDSA_RAW, KBR_HASH_SHA256, dg, 32, &sig, &siglen),
        KBR_OK);
    assert_null(sig);
    direct_open(&dr);
    priv = direct_private(&dr, "ota-enc");
    assert_int_equal(dr.f->C_SignInit(dr.h, &ecdsa, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
    assert_int_equal(dr.f->C_GetAttributeValue(dr.h, priv, &a, 1), CKR_ATTRIBUTE_SENSITIVE);
    direct_close(&dr);
}

/* A delivery opens with the device's key to the private key of the HSM's public key; another
 * device's key opens nothing; the session objects it made are gone. */
static void test_delivery_opens_with_device_key(void **state)
{
    kbr_hsm_key_info info;
    kbr_hsm_delivery d, d2;
    kbr_hsm_delivery_req req = {.kdf_context = kdf_ctx,
                                .kdf_context_len = sizeof(kdf_ctx),
                                .enc_structure = enc_struct,
                                .enc_structure_len = sizeof(enc_struct)};
    EVP_PKEY *dev = device_key(), *other = device_key(), *pub = NULL;
    unsigned char plain[145];
    direct dr;

    (void)state;
    assert_int_equal(kbr_hsm_generate_deliverable(g_s, "ota-enc-2", &info), KBR_OK);
    pub = exported_key(g_s, "ota-enc-2");
    device_point(dev, req.recipient);
    assert_int_equal(kbr_hsm_deliver(g_s, "ota-enc-2", &req, &d), KBR_OK);
    assert_int_equal(d.ephemeral[0], 0x04);
    assert_true(open_delivery(dev, &d, plain));
    check_cose_key(plain, pub);
    assert_false(open_delivery(other, &d, plain));
    /* each delivery is new: another ephemeral key, CEK and IV */
    assert_int_equal(kbr_hsm_deliver(g_s, "ota-enc-2", &req, &d2), KBR_OK);
    assert_memory_not_equal(d.ephemeral, d2.ephemeral, 65);
    assert_memory_not_equal(d.iv, d2.iv, 12);
    assert_true(open_delivery(dev, &d2, plain));
    check_cose_key(plain, pub);
    /* one changed byte of the ciphertext: the tag refuses it */
    d2.ciphertext[7] ^= 1;
    assert_false(open_delivery(dev, &d2, plain));
    direct_open(&dr);
    assert_int_equal(session_objects(&dr, CKO_SECRET_KEY), 0);
    assert_int_equal(session_objects(&dr, CKO_PRIVATE_KEY), 0);
    assert_int_equal(session_objects(&dr, CKO_PUBLIC_KEY), 0);
    direct_close(&dr);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(other);
    EVP_PKEY_free(dev);
}

/* Only a deliverable key, only to a point of P-256, only a key that exists. */
static void test_delivery_refusals(void **state)
{
    kbr_hsm_delivery d;
    kbr_hsm_delivery_req req = {.kdf_context = kdf_ctx,
                                .kdf_context_len = sizeof(kdf_ctx),
                                .enc_structure = enc_struct,
                                .enc_structure_len = sizeof(enc_struct)};
    EVP_PKEY *dev = device_key();

    (void)state;
    device_point(dev, req.recipient);
    assert_int_equal(kbr_hsm_deliver(g_s, "grp-p256", &req, &d), KBR_ERR_FORBIDDEN);
    assert_int_equal(kbr_hsm_deliver(g_s, "grp-ed25519", &req, &d), KBR_ERR_FORBIDDEN);
    assert_int_equal(kbr_hsm_deliver(g_s, "no-such-key", &req, &d), KBR_ERR_NOT_FOUND);
    req.recipient[64] ^= 1; /* off the curve */
    assert_int_equal(kbr_hsm_deliver(g_s, "ota-enc", &req, &d), KBR_ERR_BAD_REQUEST);
    req.recipient[64] ^= 1;
    req.recipient[0] = 0x02;
    assert_int_equal(kbr_hsm_deliver(g_s, "ota-enc", &req, &d), KBR_ERR_BAD_REQUEST);
    req.recipient[0] = 0x04;
    req.kdf_context_len = 0;
    assert_int_equal(kbr_hsm_deliver(g_s, "ota-enc", &req, &d), KBR_ERR_BAD_REQUEST);
    req.kdf_context_len = sizeof(kdf_ctx);
    assert_int_equal(kbr_hsm_deliver(g_s, "ota-enc", &req, &d), KBR_OK);
    EVP_PKEY_free(dev);
}

static void test_err_from_rv(void **state)
{
    (void)state;
    assert_int_equal(kbr_hsm_err_from_rv(CKR_OK), KBR_OK);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_PIN_INCORRECT), KBR_ERR_HSM_PIN);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_PIN_LOCKED), KBR_ERR_HSM_PIN);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_PIN_EXPIRED), KBR_ERR_HSM_PIN);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_SESSION_HANDLE_INVALID), KBR_ERR_HSM_SESSION);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_SESSION_CLOSED), KBR_ERR_HSM_SESSION);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_USER_NOT_LOGGED_IN), KBR_ERR_HSM_SESSION);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_DEVICE_REMOVED), KBR_ERR_HSM_SESSION);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_TOKEN_NOT_PRESENT), KBR_ERR_HSM_SESSION);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_DEVICE_ERROR), KBR_ERR_HSM_SESSION);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_CRYPTOKI_NOT_INITIALIZED), KBR_ERR_HSM_SESSION);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_MECHANISM_INVALID), KBR_ERR_HSM_MECHANISM);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_KEY_TYPE_INCONSISTENT), KBR_ERR_HSM_MECHANISM);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_KEY_FUNCTION_NOT_PERMITTED), KBR_ERR_HSM_MECHANISM);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_DATA_LEN_RANGE), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_DATA_INVALID), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_HOST_MEMORY), KBR_ERR_NOMEM);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_KEY_HANDLE_INVALID), KBR_ERR_HSM_KEY);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_GENERAL_ERROR), KBR_ERR_HSM);
    assert_int_equal(kbr_hsm_err_from_rv(CKR_FUNCTION_FAILED), KBR_ERR_HSM);
}

int main(void)
{
    const struct CMUnitTest open_tests[] = {
        cmocka_unit_test(test_err_from_rv),
        cmocka_unit_test(test_alg_names),
        cmocka_unit_test(test_open_ok),
        cmocka_unit_test(test_open_wrong_pin),
        cmocka_unit_test(test_open_unknown_token),
        cmocka_unit_test(test_open_missing_module),
    };
    const struct CMUnitTest key_tests[] = {
        cmocka_unit_test(test_ecdsa_p256),
        cmocka_unit_test(test_ecdsa_p384),
        cmocka_unit_test(test_ed25519),
        cmocka_unit_test(test_rsa_3072),
        cmocka_unit_test(test_rsa_4096),
        cmocka_unit_test(test_duplicate_label),
        cmocka_unit_test(test_missing_label),
        cmocka_unit_test(test_bad_digest_length),
        cmocka_unit_test(test_format_mismatch),
        cmocka_unit_test(test_list_objects),
        cmocka_unit_test(test_replaced_key),
        cmocka_unit_test(test_session_recovery),
        cmocka_unit_test(test_concurrent_sign),
        cmocka_unit_test(test_public_from_private),
        cmocka_unit_test(test_module_gone_and_back),
        cmocka_unit_test(test_deliverable_key),
        cmocka_unit_test(test_delivery_opens_with_device_key),
        cmocka_unit_test(test_delivery_refusals),
    };
    int failed;

    /* Keeps the module mapped after every dlclose, so its frames stay named in reports. */
    if (dlopen(kbt_module_path, RTLD_NOW | RTLD_NODELETE) == NULL) {
        fprintf(stderr, "cannot load %s\n", kbt_module_path);
        return 1;
    }
    if (kbt_token_create("kbr-hsm") != 0) {
        fprintf(stderr, "cannot create a SoftHSM2 token in %s\n", kbt_token_dir);
        kbt_token_destroy();
        return 1;
    }
    failed = cmocka_run_group_tests_name("hsm_open", open_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("hsm_keys", key_tests, keys_setup, keys_teardown);
    kbt_token_destroy();
    return failed;
}
