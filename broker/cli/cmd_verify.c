/*
 * cmd_verify.c - keybroker verify: a signature the broker made (raw r||s or DER ECDSA,
 * RSASSA-PSS or PKCS#1 v1.5, Ed25519), a COSE_Sign1 with detached payload, or a certificate,
 * checked against a key's public key: from a PEM file, offline, or fetched from the broker
 * with --key.  And the openssl command that checks the same signature, which `keybroker
 * sign --out` prints.
 *
 * The COSE_Sign1 is read by a small CBOR reader of its own: the CLI links no CBOR library,
 * and a COSE_Sign1 with detached payload is four items whose shape is fixed (RFC 9052 4.2).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "cli.h"

#define N_ELEMS(a)     (sizeof(a) / sizeof((a)[0]))
#define VERIFY_MAX_SIG (64 * 1024)
#define COSE_ES256     (-7)
#define COSE_ES384     (-35)
#define COSE_EDDSA     (-8)

/* ---- a CBOR reader for what a COSE_Sign1 holds ---- */

typedef struct {
    const unsigned char *p, *end;
} cbor_in;

/* One item's head: major type and argument; false when malformed or indefinite. */
static bool cbor_head(cbor_in *in, int *major, uint64_t *arg)
{
    unsigned info;
    size_t n;

    if (in->p >= in->end)
        return false;
    *major = in->p[0] >> 5;
    info = in->p[0] & 0x1f;
    in->p++;
    if (info < 24) {
        *arg = info;
        return true;
    }
    if (info > 27)
        return false;
    n = (size_t)1 << (info - 24);
    if ((size_t)(in->end - in->p) < n)
        return false;
    *arg = 0;
    for (size_t i = 0; i < n; i++)
        *arg = (*arg << 8) | in->p[i];
    in->p += n;
    return true;
}

static bool cbor_bstr(cbor_in *in, const unsigned char **b, size_t *len)
{
    int major;
    uint64_t n;

    if (!cbor_head(in, &major, &n) || major != 2 || n > (uint64_t)(in->end - in->p))
        return false;
    *b = in->p;
    *len = (size_t)n;
    in->p += n;
    return true;
}

/* An integer (major 0 or 1) into *v. */
static bool cbor_int(cbor_in *in, int64_t *v)
{
    int major;
    uint64_t n;

    if (!cbor_head(in, &major, &n) || (major != 0 && major != 1) || n > INT64_MAX)
        return false;
    *v = major == 0 ? (int64_t)n : -1 - (int64_t)n;
    return true;
}

/* Skips one item whose value is an int, a string or a simple value (no nesting needed). */
static bool cbor_skip_simple(cbor_in *in)
{
    int major;
    uint64_t n;

    if (!cbor_head(in, &major, &n))
        return false;
    if (major == 2 || major == 3) {
        if (n > (uint64_t)(in->end - in->p))
            return false;
        in->p += n;
        return true;
    }
    return major == 0 || major == 1 || major == 7;
}

/* The protected header's alg (label 1); other labels must be simple values. */
static bool cose_alg(const unsigned char *b, size_t len, int64_t *alg)
{
    cbor_in in = {b, b + len};
    int major;
    uint64_t n;
    bool found = false;

    if (!cbor_head(&in, &major, &n) || major != 5 || n > 32)
        return false;
    for (uint64_t i = 0; i < n; i++) {
        int64_t label;
        if (!cbor_int(&in, &label))
            return false;
        if (label == 1) {
            if (!cbor_int(&in, alg))
                return false;
            found = true;
        } else if (!cbor_skip_simple(&in)) {
            return false;
        }
    }
    return found && in.p == in.end;
}

/* The parts of a tagged COSE_Sign1 with detached payload. */
typedef struct {
    const unsigned char *protected_hdr, *sig;
    size_t protected_len, siglen;
    int64_t alg;
} cose_parts;

static kbr_err cose_parse(const unsigned char *b, size_t len, cose_parts *out, kbr_msg *msg)
{
    cbor_in in = {b, b + len};
    int major;
    uint64_t n;

    if (!cbor_head(&in, &major, &n) || major != 6 || n != 18)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "not a tagged COSE_Sign1 (tag 18)");
    if (!cbor_head(&in, &major, &n) || major != 4 || n != 4)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "COSE_Sign1 is not an array of four");
    if (!cbor_bstr(&in, &out->protected_hdr, &out->protected_len) ||
        !cose_alg(out->protected_hdr, out->protected_len, &out->alg))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "COSE_Sign1 protected header has no alg");
    /* the unprotected header: a map of simple values (kid) */
    if (!cbor_head(&in, &major, &n) || major != 5 || n > 32)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "COSE_Sign1 unprotected header is not a map");
    for (uint64_t i = 0; i < 2 * n; i++)
        if (!cbor_skip_simple(&in))
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "COSE_Sign1 unprotected header malformed");
    if (in.p >= in.end || in.p[0] != 0xf6)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "COSE_Sign1 payload is not detached (nil); give the payload as --file");
    in.p++;
    if (!cbor_bstr(&in, &out->sig, &out->siglen) || in.p != in.end)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "COSE_Sign1 signature malformed");
    return KBR_OK;
}

static void cbor_put_head(unsigned char **p, int major, uint64_t n)
{
    unsigned char *q = *p;

    if (n < 24) {
        *q++ = (unsigned char)(major << 5 | (int)n);
    } else if (n <= 0xff) {
        *q++ = (unsigned char)(major << 5 | 24);
        *q++ = (unsigned char)n;
    } else if (n <= 0xffff) {
        *q++ = (unsigned char)(major << 5 | 25);
        *q++ = (unsigned char)(n >> 8);
        *q++ = (unsigned char)n;
    } else if (n <= 0xffffffffu) {
        *q++ = (unsigned char)(major << 5 | 26);
        for (int i = 3; i >= 0; i--)
            *q++ = (unsigned char)(n >> (8 * i));
    } else {
        *q++ = (unsigned char)(major << 5 | 27);
        for (int i = 7; i >= 0; i--)
            *q++ = (unsigned char)(n >> (8 * i));
    }
    *p = q;
}

/* Sig_structure = ["Signature1", protected, external_aad = h'', payload] (RFC 9052 4.4), each
 * length in its shortest form, as the broker encodes it. */
static kbr_err sig_structure(const cose_parts *c, const unsigned char *payload, size_t plen,
                             unsigned char **out, size_t *outlen)
{
    size_t cap = 32 + c->protected_len + plen;
    unsigned char *b = malloc(cap), *p = b;

    if (b == NULL)
        return KBR_ERR_NOMEM;
    cbor_put_head(&p, 4, 4);
    cbor_put_head(&p, 3, 10);
    memcpy(p, "Signature1", 10);
    p += 10;
    cbor_put_head(&p, 2, c->protected_len);
    memcpy(p, c->protected_hdr, c->protected_len);
    p += c->protected_len;
    cbor_put_head(&p, 2, 0);
    cbor_put_head(&p, 2, plen);
    memcpy(p, payload, plen);
    p += plen;
    *out = b;
    *outlen = (size_t)(p - b);
    return KBR_OK;
}

/* ---- checking ---- */

static const EVP_MD *md_named(const char *hash)
{
    return hash != NULL && strcmp(hash, "sha384") == 0 ? EVP_sha384() : EVP_sha256();
}

/* Over the message: Ed25519 over it, every other key over its hash (md). */
static bool verify_message(EVP_PKEY *pub, const EVP_MD *md, const char *padding,
                           const unsigned char *msg, size_t len, const unsigned char *sig,
                           size_t siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    bool ed = EVP_PKEY_get_base_id(pub) == EVP_PKEY_ED25519;
    bool ok = ctx != NULL && EVP_DigestVerifyInit(ctx, &pctx, ed ? NULL : md, NULL, pub) == 1;

    if (ok && EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA) {
        bool pss = padding == NULL || strcmp(padding, "pss") == 0;
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) ==
                 1 &&
             (!pss || EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1);
    }
    ok = ok && EVP_DigestVerify(ctx, sig, siglen, msg, len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

/* Over a digest the caller made (ECDSA, RSA). */
static bool verify_digest(EVP_PKEY *pub, const EVP_MD *md, const char *padding,
                          const unsigned char *dig, size_t dlen, const unsigned char *sig,
                          size_t siglen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
    bool ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
              EVP_PKEY_CTX_set_signature_md(ctx, md) == 1;

    if (ok && EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA) {
        bool pss = padding == NULL || strcmp(padding, "pss") == 0;
        ok = EVP_PKEY_CTX_set_rsa_padding(ctx, pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) ==
                 1 &&
             (!pss || EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1);
    }
    ok = ok && EVP_PKEY_verify(ctx, sig, siglen, dig, dlen) == 1;
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

kbr_err cli_verify_signature(EVP_PKEY *pub, const cli_verify_req *r, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const char *format = r->format != NULL ? r->format : "raw";
    int type = EVP_PKEY_get_base_id(pub);
    unsigned char *der = NULL, *tbs = NULL;
    size_t derlen = 0, tbslen = 0;
    const unsigned char *sig = r->sig;
    size_t siglen = r->siglen;
    cose_parts c;
    bool ok;

    if (strcmp(format, "cose_sign1") == 0) {
        const EVP_MD *md = NULL;
        KBR_ENSURE(r->message != NULL,
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "a COSE_Sign1 is checked against its payload: give --file"));
        KBR_GUARD(cose_parse(r->sig, r->siglen, &c, msg));
        if (c.alg == COSE_ES256 || c.alg == COSE_ES384) {
            KBR_ENSURE(type == EVP_PKEY_EC,
                       kbr_fail(msg, KBR_ERR_BAD_REQUEST, "COSE alg is ECDSA, the key is not"));
            md = c.alg == COSE_ES256 ? EVP_sha256() : EVP_sha384();
            KBR_GUARD(kbr_ecdsa_raw_to_der(c.sig, c.siglen, &der, &derlen));
            sig = der;
            siglen = derlen;
        } else {
            KBR_ENSURE(c.alg == COSE_EDDSA && type == EVP_PKEY_ED25519,
                       kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                "COSE alg %lld does not fit the key (ES256, ES384 or EdDSA)",
                                (long long)c.alg));
            sig = c.sig;
            siglen = c.siglen;
        }
        KBR_GUARD(sig_structure(&c, r->message, r->message_len, &tbs, &tbslen));
        ok = verify_message(pub, md, NULL, tbs, tbslen, sig, siglen);
    } else {
        KBR_ENSURE(strcmp(format, "raw") == 0 || strcmp(format, "der") == 0,
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--format must be raw, der or cose_sign1"));
        if (type == EVP_PKEY_EC && strcmp(format, "raw") == 0)
            KBR_ENSURE(kbr_ecdsa_raw_to_der(r->sig, r->siglen, &der, &derlen) == KBR_OK,
                       kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                "the signature is not raw r||s for this key (--format der?)"));
        if (der != NULL) {
            sig = der;
            siglen = derlen;
        }
        if (type == EVP_PKEY_ED25519)
            KBR_ENSURE(r->message != NULL,
                       kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                "an Ed25519 signature is over the message itself: give --file"));
        if (r->message != NULL)
            ok = verify_message(pub, md_named(r->hash), r->padding, r->message, r->message_len, sig,
                                siglen);
        else
            ok = verify_digest(pub, md_named(r->hash), r->padding, r->digest, r->digest_len, sig,
                               siglen);
    }
    KBR_ENSURE(ok, kbr_fail(msg, KBR_ERR_UNAUTHENTICATED, "the signature does not verify"));
out:
    free(der);
    free(tbs);
    return err;
}

const char *cli_openssl_recipe(const char *algorithm, const char *format, const char *hash,
                               const char *key, const char *sig, const char *file, char *buf,
                               size_t len)
{
    const char *h = hash != NULL ? hash : "sha256";

    format = format != NULL ? format : "raw";
    if (algorithm == NULL || file == NULL || sig == NULL)
        return NULL;
    if (strcmp(format, "cose_sign1") == 0 ||
        (strncmp(algorithm, "ecdsa", 5) == 0 && strcmp(format, "raw") == 0)) {
        /* openssl reads neither raw r||s nor COSE */
        snprintf(buf, len, "keybroker verify --pubkey %s.pem --format %s --signature %s --file %s",
                 key, format, sig, file);
    } else if (strcmp(algorithm, "ed25519") == 0) {
        snprintf(buf, len, "openssl pkeyutl -verify -pubin -inkey %s.pem -rawin -in %s -sigfile %s",
                 key, file, sig);
    } else if (strncmp(algorithm, "rsa", 3) == 0) {
        snprintf(buf, len,
                 "openssl dgst -%s -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest "
                 "-verify %s.pem -signature %s %s",
                 h, key, sig, file);
    } else {
        snprintf(buf, len, "openssl dgst -%s -verify %s.pem -signature %s %s", h, key, sig, file);
    }
    return buf;
}

/* ---- the command ---- */

static kbr_err read_all(const char *path, size_t max, unsigned char **out, size_t *len,
                        cli_error *ce)
{
    char *buf = NULL;
    kbr_err err = kbr_file_read(path, max, &buf, len);

    *out = (unsigned char *)buf;
    if (err != KBR_OK)
        return cli_fail(ce, KBR_ERR_IO, "io_error",
                        "%s: cannot be read (or is larger than %zu "
                        "bytes)",
                        path, max);
    return KBR_OK;
}

static EVP_PKEY *pem_pubkey(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;

    BIO_free(bio);
    ERR_clear_error();
    return k;
}

static kbr_err load_pubkey(cli_ctx *ctx, EVP_PKEY **out, char **name, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *file = cli_args_str(ctx->args, "pubkey"), *key = cli_args_str(ctx->args, "key");
    unsigned char *pem = NULL;
    size_t len = 0;
    cli_response resp = {0};
    char *path = NULL;
    const char *p;

    *out = NULL;
    KBR_ENSURE((file != NULL) != (key != NULL),
               cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE, "give exactly one of --pubkey, --key"));
    if (file != NULL) {
        KBR_GUARD(read_all(file, 64 * 1024, &pem, &len, ce));
        *out = pem_pubkey((const char *)pem, len);
        KBR_ENSURE(*out != NULL, cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE,
                                          "--pubkey %s: not a PEM public key", file));
        *name = strdup(file);
    } else {
        KBR_GUARD(cli_path_join(ctx->client, "/v1/keys/", key, NULL, &path));
        KBR_GUARD(cli_call(ctx->client, "GET", path, NULL, &resp, ce));
        p = cli_json_str(resp.body, "public_key_pem");
        KBR_ENSURE(p != NULL && (*out = pem_pubkey(p, strlen(p))) != NULL,
                   cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response",
                            "key %s: the response has no public key", key));
        *name = strdup(key);
    }
    KBR_ENSURE(*name != NULL, KBR_ERR_NOMEM);
out:
    cli_response_cleanup(&resp);
    free(path);
    free(pem);
    return err;
}

static kbr_err verify_certificate(EVP_PKEY *pub, const char *name, const char *file, cli_error *ce)
{
    kbr_err err = KBR_OK;
    unsigned char *pem = NULL;
    size_t len = 0;
    BIO *bio = NULL;
    X509 *cert = NULL;
    char subject[256] = "";

    KBR_GUARD(read_all(file, 256 * 1024, &pem, &len, ce));
    bio = BIO_new_mem_buf(pem, (int)len);
    cert = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    KBR_ENSURE(cert != NULL, cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE,
                                      "--certificate %s: not a PEM certificate", file));
    X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
    KBR_ENSURE(X509_verify(cert, pub) == 1,
               cli_fail(ce, KBR_ERR_UNAUTHENTICATED, "verify_failed",
                        "certificate %s is not signed by %s", file, name));
    printf("certificate %s (", file);
    cli_term_put(stdout, subject, CLI_TERM_LINE);
    printf(") is signed by %s\n", name);
out:
    ERR_clear_error();
    X509_free(cert);
    BIO_free(bio);
    free(pem);
    return err;
}

static kbr_err verify_run(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const cli_args *a = ctx->args;
    const char *file = cli_args_str(a, "file"), *digest = cli_args_str(a, "digest");
    const char *sigfile = cli_args_str(a, "signature"), *cert = cli_args_str(a, "certificate");
    const char *hash = cli_args_str(a, "hash"), *padding = cli_args_str(a, "padding");
    EVP_PKEY *pub = NULL;
    char *name = NULL, *hex = NULL;
    unsigned char *sig = NULL, *message = NULL, *dig = NULL;
    size_t siglen = 0, mlen = 0, dlen = 0;
    cli_verify_req req = {0};
    kbr_msg msg = {{0}};

    KBR_ENSURE(hash == NULL || strcmp(hash, "sha256") == 0 || strcmp(hash, "sha384") == 0,
               cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE, "--hash must be sha256 or sha384"));
    KBR_ENSURE(padding == NULL || strcmp(padding, "pss") == 0 || strcmp(padding, "pkcs1") == 0,
               cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE, "--padding must be pss or pkcs1"));
    KBR_ENSURE((cert != NULL) != (sigfile != NULL),
               cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE,
                        "give exactly one of --signature and --certificate"));
    KBR_ENSURE(cert != NULL || (file != NULL) + (digest != NULL) == 1,
               cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE,
                        "give exactly one of --file and --digest with --signature"));
    KBR_GUARD(load_pubkey(ctx, &pub, &name, ce));
    if (cert != NULL) {
        KBR_GUARD(verify_certificate(pub, name, cert, ce));
        goto out;
    }
    KBR_GUARD(read_all(sigfile, VERIFY_MAX_SIG, &sig, &siglen, ce));
    if (file != NULL) {
        KBR_GUARD(read_all(file, (size_t)1 << 30, &message, &mlen, ce));
    } else {
        err = cli_digest_normalize(digest, hash != NULL ? hash : "sha256", &hex, &msg);
        KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
        KBR_GUARD(kbr_hex_decode(hex, &dig, &dlen));
    }
    req = (cli_verify_req){.format = cli_args_str(a, "format"),
                           .hash = hash,
                           .padding = padding,
                           .message = message,
                           .message_len = mlen,
                           .digest = dig,
                           .digest_len = dlen,
                           .sig = sig,
                           .siglen = siglen};
    err = cli_verify_signature(pub, &req, &msg);
    KBR_ENSURE(err != KBR_ERR_UNAUTHENTICATED,
               cli_fail(ce, err, "verify_failed", "%s does not verify with %s", sigfile, name));
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    fprintf(ctx->out, "signature %s verifies with %s\n", sigfile, name);
out:
    EVP_PKEY_free(pub);
    free(name);
    free(hex);
    free(sig);
    free(message);
    free(dig);
    return err;
}

static const cli_opt verify_opts[] = {
    {"pubkey", CLI_OPT_STR, false, "PEM"},    {"key", CLI_OPT_STR, false, "K"},
    {"file", CLI_OPT_STR, false, "FILE"},     {"digest", CLI_OPT_STR, false, "HEX"},
    {"signature", CLI_OPT_STR, false, "SIG"}, {"certificate", CLI_OPT_STR, false, "CERT"},
    {"format", CLI_OPT_STR, false, "F"},      {"hash", CLI_OPT_STR, false, "H"},
    {"padding", CLI_OPT_STR, false, "P"},
};

const cli_command cli_cmd_verify = {
    {"verify", NULL, NULL},
    "(--pubkey KEY.pem | --key K)\n"
    "      (--signature SIG (--file FILE | --digest HEX) [--format raw|der|cose_sign1]\n"
    "       [--hash sha256|sha384] [--padding pss|pkcs1] | --certificate CERT.pem)",
    "check a signature (raw r||s, DER, RSA PSS or PKCS#1, Ed25519), a COSE_Sign1 with\n"
    "      detached payload, or a certificate, against a key's public key: offline with\n"
    "      --pubkey, or fetched from the broker with --key (needs a token)",
    {verify_opts, N_ELEMS(verify_opts), NULL, 0, 0},
    false,
    verify_run,
};
