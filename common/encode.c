/* encode.c - hex, base64, base64url, hashes, random ids, times. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "kbr_common.h"

void kbr_hex_encode_buf(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * len] = '\0';
}

kbr_err kbr_hex_encode(const unsigned char *in, size_t len, char **out)
{
    *out = malloc(2 * len + 1);
    if (*out == NULL)
        return KBR_ERR_NOMEM;
    kbr_hex_encode_buf(in, len, *out);
    return KBR_OK;
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

kbr_err kbr_hex_decode(const char *in, unsigned char **out, size_t *outlen)
{
    size_t n = strlen(in);
    unsigned char *buf = NULL;

    *out = NULL;
    *outlen = 0;
    if (n == 0 || n % 2 != 0)
        return KBR_ERR_BAD_REQUEST;
    buf = malloc(n / 2);
    if (buf == NULL)
        return KBR_ERR_NOMEM;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_nibble(in[2 * i]), lo = hex_nibble(in[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(buf);
            return KBR_ERR_BAD_REQUEST;
        }
        buf[i] = (unsigned char)(hi << 4 | lo);
    }
    *out = buf;
    *outlen = n / 2;
    return KBR_OK;
}

kbr_err kbr_b64_encode(const unsigned char *in, size_t len, char **out)
{
    size_t cap = 4 * ((len + 2) / 3) + 1;

    *out = malloc(cap);
    if (*out == NULL)
        return KBR_ERR_NOMEM;
    EVP_EncodeBlock((unsigned char *)*out, in, (int)len);
    return KBR_OK;
}

static bool b64_char_ok(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

kbr_err kbr_b64_decode(const char *in, unsigned char **out, size_t *outlen)
{
    size_t n = strlen(in), pad = 0;
    unsigned char *buf = NULL;
    int got;

    *out = NULL;
    *outlen = 0;
    /* EVP_DecodeBlock tolerates whitespace and garbage; the contract does not. */
    if (n == 0 || n % 4 != 0)
        return KBR_ERR_BAD_REQUEST;
    if (in[n - 1] == '=')
        pad++;
    if (in[n - 2] == '=')
        pad++;
    for (size_t i = 0; i < n - pad; i++)
        if (!b64_char_ok(in[i]))
            return KBR_ERR_BAD_REQUEST;
    buf = malloc(n / 4 * 3 + 1);
    if (buf == NULL)
        return KBR_ERR_NOMEM;
    got = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)n);
    if (got < 0 || (size_t)got < pad) {
        free(buf);
        return KBR_ERR_BAD_REQUEST;
    }
    *out = buf;
    *outlen = (size_t)got - pad;
    return KBR_OK;
}

kbr_err kbr_b64url_encode(const unsigned char *in, size_t len, char **out)
{
    char *s = NULL;
    size_t n;

    if (kbr_b64_encode(in, len, &s) != KBR_OK)
        return KBR_ERR_NOMEM;
    n = strlen(s);
    while (n > 0 && s[n - 1] == '=')
        s[--n] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+')
            s[i] = '-';
        else if (s[i] == '/')
            s[i] = '_';
    }
    *out = s;
    return KBR_OK;
}

/* The 6-bit value of a base64url character, or -1. */
static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/*
 * The bits of a short last group that carry no data must be zero (RFC 4648 3.5), so that
 * one byte string has one spelling: a bearer token is looked up by its exact text.
 */
static bool b64url_tail_canonical(const char *in, size_t inlen)
{
    int last = inlen > 0 ? b64url_value(in[inlen - 1]) : 0;

    if (inlen % 4 == 2)
        return last >= 0 && (last & 0x0f) == 0;
    if (inlen % 4 == 3)
        return last >= 0 && (last & 0x03) == 0;
    return true;
}

kbr_err kbr_b64url_decode(const char *in, size_t inlen, unsigned char **out, size_t *outlen)
{
    kbr_err err = KBR_OK;
    char *tmp = NULL;
    size_t padded = (inlen + 3) / 4 * 4;

    *out = NULL;
    *outlen = 0;
    KBR_ENSURE(inlen % 4 != 1 && b64url_tail_canonical(in, inlen), KBR_ERR_BAD_REQUEST);
    tmp = malloc(padded + 1);
    KBR_ENSURE(tmp != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < inlen; i++) {
        char c = in[i];
        KBR_ENSURE(c != '+' && c != '/' && c != '=', KBR_ERR_BAD_REQUEST);
        tmp[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    for (size_t i = inlen; i < padded; i++)
        tmp[i] = '=';
    tmp[padded] = '\0';
    KBR_GUARD(kbr_b64_decode(tmp, out, outlen));
out:
    /* The input may be a bearer token's signature: leave no copy behind. */
    if (tmp != NULL)
        OPENSSL_cleanse(tmp, padded + 1);
    free(tmp);
    return err;
}

/*
 * SHA-256 fetched from the provider once per process.  SHA256() and EVP_sha256() look the
 * algorithm up again on every digest, which costs more than hashing a token or a tree node.
 */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const EVP_MD *kbr_md_sha256(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md != NULL ? sha256_md : EVP_sha256();
}

void kbr_sha256(const void *data, size_t len, unsigned char out[32])
{
    if (EVP_Digest(data, len, out, NULL, kbr_md_sha256(), NULL) != 1)
        SHA256(data, len, out);
}

kbr_err kbr_ecdsa_raw_to_der(const unsigned char *raw, size_t len, unsigned char **der,
                             size_t *derlen)
{
    kbr_err err = KBR_OK;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *s = NULL;
    unsigned char *buf = NULL, *p;
    int n;

    *der = NULL;
    *derlen = 0;
    KBR_ENSURE(len > 0 && len % 2 == 0 && len <= 2 * 66, KBR_ERR_BAD_REQUEST);
    es = ECDSA_SIG_new();
    r = BN_bin2bn(raw, (int)(len / 2), NULL);
    s = BN_bin2bn(raw + len / 2, (int)(len / 2), NULL);
    KBR_ENSURE(es != NULL && r != NULL && s != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(ECDSA_SIG_set0(es, r, s) == 1, KBR_ERR_CRYPTO);
    r = s = NULL;
    n = i2d_ECDSA_SIG(es, NULL);
    KBR_ENSURE(n > 0, KBR_ERR_CRYPTO);
    buf = malloc((size_t)n);
    KBR_ENSURE(buf != NULL, KBR_ERR_NOMEM);
    p = buf;
    KBR_ENSURE(i2d_ECDSA_SIG(es, &p) == n, KBR_ERR_CRYPTO);
    *der = buf;
    *derlen = (size_t)n;
    buf = NULL;
out:
    free(buf);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return err;
}

void kbr_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];

    kbr_sha256(data, len, md);
    kbr_hex_encode_buf(md, sizeof(md), out);
}

kbr_err kbr_random_hex(size_t nbytes, char *out)
{
    unsigned char buf[64];

    if (nbytes > sizeof(buf))
        return KBR_ERR_INTERNAL;
    if (RAND_bytes(buf, (int)nbytes) != 1)
        return KBR_ERR_CRYPTO;
    kbr_hex_encode_buf(buf, nbytes, out);
    return KBR_OK;
}

void kbr_time_fmt(time_t t, char buf[KBR_TIME_LEN])
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, KBR_TIME_LEN, "%04Y-%m-%dT%H:%M:%SZ", &tm);
}

kbr_err kbr_time_parse(const char *s, time_t *out)
{
    struct tm tm;
    const char *end;

    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL)
        return KBR_ERR_BAD_REQUEST;
    if (*end == '.') {
        end++;
        while (*end >= '0' && *end <= '9')
            end++;
    }
    if (strcmp(end, "Z") != 0 && strcmp(end, "+00:00") != 0)
        return KBR_ERR_BAD_REQUEST;
    *out = timegm(&tm);
    return KBR_OK;
}

double kbr_monotonic_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
