/*
 * objects.c - finding key objects and reading what the HSM says about them:
 * look-ups by label, attribute reads, the per-session handle cache used by
 * signing, kbr_hsm_find_key and kbr_hsm_list_objects.
 *
 * Nothing here asks for private key material; the attributes read are the
 * ones every module exposes for a sensitive key.
 */
#include <stdlib.h>
#include <string.h>

#include "hsm_int.h"

/* DER of the named-curve OIDs: 1.2.840.10045.3.1.7, 1.3.132.0.34, 1.3.101.112. */
static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
/* PKCS#11 3.0 also allows the curve name as a PrintableString. */
static const unsigned char name_ed25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r',
                                             'd',  's',  '2', '5', '5', '1', '9'};

#define FIND_BATCH 32

const unsigned char *kbr_p11_curve_der(kbr_alg alg, size_t *len)
{
    switch (alg) {
    case KBR_ALG_ECDSA_P256:
        *len = sizeof(oid_p256);
        return oid_p256;
    case KBR_ALG_ECDSA_P384:
        *len = sizeof(oid_p384);
        return oid_p384;
    case KBR_ALG_ED25519:
        *len = sizeof(oid_ed25519);
        return oid_ed25519;
    default:
        *len = 0;
        return NULL;
    }
}

kbr_err kbr_p11_label_check(const char *label)
{
    if (label == NULL)
        return KBR_ERR_BAD_REQUEST;
    size_t n = strnlen(label, KBR_HSM_LABEL_MAX);
    return n == 0 || n >= KBR_HSM_LABEL_MAX ? KBR_ERR_BAD_REQUEST : KBR_OK;
}

static kbr_err handles_grow(CK_OBJECT_HANDLE **all, size_t *cap)
{
    CK_OBJECT_HANDLE *grown = reallocarray(*all, *cap + FIND_BATCH, sizeof(**all));

    if (grown == NULL)
        return KBR_ERR_NOMEM;
    *all = grown;
    *cap += FIND_BATCH;
    return KBR_OK;
}

kbr_err kbr_p11_find_all(kbr_hsm_session *s, CK_ATTRIBUTE *templ, CK_ULONG tn,
                         CK_OBJECT_HANDLE **out, size_t *n)
{
    kbr_err err = KBR_OK;
    CK_FUNCTION_LIST *f = s->hsm->f;
    CK_OBJECT_HANDLE *all = NULL;
    size_t cap = 0, used = 0;
    CK_ULONG got = 0;
    bool active = false;

    *out = NULL;
    *n = 0;
    KBR_GUARD(kbr_hsm_err_from_rv(f->C_FindObjectsInit(s->h, templ, tn)));
    active = true;
    do {
        if (used == cap)
            KBR_GUARD(handles_grow(&all, &cap));
        KBR_GUARD(kbr_hsm_err_from_rv(f->C_FindObjects(s->h, all + used, cap - used, &got)));
        used += got;
    } while (got > 0);
    if (used == 0) {
        free(all);
        all = NULL;
    }
    *out = all;
    *n = used;
    all = NULL;
out:
    if (active)
        (void)f->C_FindObjectsFinal(s->h);
    free(all);
    return err;
}

kbr_err kbr_p11_find_one(kbr_hsm_session *s, CK_OBJECT_CLASS cls, const char *label,
                         CK_OBJECT_HANDLE *out)
{
    kbr_err err = KBR_OK;
    CK_FUNCTION_LIST *f = s->hsm->f;
    CK_ATTRIBUTE templ[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ULONG got = 0;
    bool active = false;

    KBR_GUARD(kbr_hsm_err_from_rv(f->C_FindObjectsInit(s->h, templ, 2)));
    active = true;
    KBR_GUARD(kbr_hsm_err_from_rv(f->C_FindObjects(s->h, &h, 1, &got)));
    if (got == 0) {
        /* Private objects are invisible, not an error, once the login is lost. */
        KBR_GUARD(kbr_p11_check_login(s));
        err = KBR_ERR_NOT_FOUND;
        goto out;
    }
    *out = h;
out:
    if (active)
        (void)f->C_FindObjectsFinal(s->h);
    return err;
}

/* The module answers "no such attribute here" with these; anything else is a failure. */
static bool rv_is_absent(CK_RV rv)
{
    return rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE;
}

kbr_err kbr_p11_get_attr(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
                         unsigned char **out, size_t *outlen)
{
    kbr_err err = KBR_OK;
    CK_FUNCTION_LIST *f = s->hsm->f;
    CK_ATTRIBUTE a = {type, NULL, 0};
    unsigned char *buf = NULL;
    CK_RV rv;

    *out = NULL;
    *outlen = 0;
    rv = f->C_GetAttributeValue(s->h, obj, &a, 1);
    KBR_ENSURE(!rv_is_absent(rv), KBR_ERR_HSM_KEY);
    KBR_GUARD(kbr_hsm_err_from_rv(rv));
    KBR_ENSURE(a.ulValueLen != CK_UNAVAILABLE_INFORMATION, KBR_ERR_HSM_KEY);
    /* One spare byte keeps a zero-length value a valid allocation and text NUL-ended. */
    buf = calloc(1, a.ulValueLen + 1);
    KBR_ENSURE(buf != NULL, KBR_ERR_NOMEM);
    a.pValue = buf;
    rv = f->C_GetAttributeValue(s->h, obj, &a, 1);
    KBR_ENSURE(!rv_is_absent(rv), KBR_ERR_HSM_KEY);
    KBR_GUARD(kbr_hsm_err_from_rv(rv));
    *out = buf;
    *outlen = a.ulValueLen;
    buf = NULL;
out:
    free(buf);
    return err;
}

kbr_err kbr_p11_get_fixed(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
                          void *buf, size_t len)
{
    kbr_err err = KBR_OK;
    CK_ATTRIBUTE a = {type, buf, len};
    CK_RV rv;

    rv = s->hsm->f->C_GetAttributeValue(s->h, obj, &a, 1);
    KBR_ENSURE(!rv_is_absent(rv), KBR_ERR_HSM_KEY);
    KBR_GUARD(kbr_hsm_err_from_rv(rv));
    KBR_ENSURE(a.ulValueLen == len, KBR_ERR_HSM_KEY);
out:
    return err;
}

static bool bytes_eq(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

static void curve_alg(const unsigned char *p, size_t n, CK_KEY_TYPE kt, bool *known, kbr_alg *alg)
{
    *known = true;
    if (kt == CKK_EC && bytes_eq(p, n, oid_p256, sizeof(oid_p256)))
        *alg = KBR_ALG_ECDSA_P256;
    else if (kt == CKK_EC && bytes_eq(p, n, oid_p384, sizeof(oid_p384)))
        *alg = KBR_ALG_ECDSA_P384;
    else if (kt == CKK_EC_EDWARDS && (bytes_eq(p, n, oid_ed25519, sizeof(oid_ed25519)) ||
                                      bytes_eq(p, n, name_ed25519, sizeof(name_ed25519))))
        *alg = KBR_ALG_ED25519;
    else
        *known = false;
}

/* Bits of a big-endian unsigned integer, leading zeros ignored. */
static size_t modulus_bits(const unsigned char *p, size_t n)
{
    size_t bits;
    unsigned char top;

    while (n > 0 && *p == 0) {
        p++;
        n--;
    }
    if (n == 0)
        return 0;
    bits = n * 8;
    for (top = p[0]; (top & 0x80) == 0; top <<= 1)
        bits--;
    return bits;
}

static kbr_err rsa_alg(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, bool *known, kbr_alg *alg)
{
    kbr_err err = KBR_OK;
    unsigned char *mod = NULL;
    size_t len = 0, bits = 0;

    err = kbr_p11_get_attr(s, obj, CKA_MODULUS, &mod, &len);
    if (err == KBR_ERR_HSM_KEY) {
        err = KBR_OK;
        goto out;
    }
    KBR_GUARD(err);
    bits = modulus_bits(mod, len);
    if (bits == 3072 || bits == 4096) {
        *alg = bits == 3072 ? KBR_ALG_RSA_3072 : KBR_ALG_RSA_4096;
        *known = true;
    }
out:
    free(mod);
    return err;
}

kbr_err kbr_p11_key_alg(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, CK_KEY_TYPE kt, bool *known,
                        kbr_alg *alg)
{
    kbr_err err = KBR_OK;
    unsigned char *params = NULL;
    size_t plen = 0;

    *known = false;
    if (kt == CKK_RSA) {
        err = rsa_alg(s, obj, known, alg);
        goto out;
    }
    if (kt != CKK_EC && kt != CKK_EC_EDWARDS)
        goto out;
    err = kbr_p11_get_attr(s, obj, CKA_EC_PARAMS, &params, &plen);
    if (err == KBR_ERR_HSM_KEY) {
        err = KBR_OK;
        goto out;
    }
    KBR_GUARD(err);
    curve_alg(params, plen, kt, known, alg);
out:
    free(params);
    return err;
}

static const char *class_name(CK_OBJECT_CLASS cls)
{
    switch (cls) {
    case CKO_PRIVATE_KEY:
        return "private";
    case CKO_PUBLIC_KEY:
        return "public";
    case CKO_SECRET_KEY:
        return "secret";
    default:
        return "other";
    }
}

static const char *key_type_name(CK_KEY_TYPE kt)
{
    switch (kt) {
    case CKK_EC:
        return "ec";
    case CKK_RSA:
        return "rsa";
    case CKK_EC_EDWARDS:
        return "ec-edwards";
    case CKK_AES:
        return "aes";
    default:
        return "other";
    }
}

/* Boolean attributes in the order read_flags stores them. */
static const CK_ATTRIBUTE_TYPE flag_types[] = {
    CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE,
    CKA_LOCAL,     CKA_TOKEN,       CKA_PRIVATE,          CKA_SIGN,
};
#define NFLAGS (sizeof(flag_types) / sizeof(flag_types[0]))

static void read_flag_alone(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE *a)
{
    a->ulValueLen = sizeof(CK_BBOOL);
    if (s->hsm->f->C_GetAttributeValue(s->h, obj, a, 1) != CKR_OK)
        a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
}

static kbr_err read_flags(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, kbr_hsm_key_info *info)
{
    bool *dst[NFLAGS] = {&info->sensitive,         &info->extractable, &info->always_sensitive,
                         &info->never_extractable, &info->local,       &info->token,
                         &info->private_obj,       &info->can_sign};
    CK_BBOOL vals[NFLAGS] = {0};
    CK_ATTRIBUTE t[NFLAGS];
    CK_RV rv;
    size_t i;

    for (i = 0; i < NFLAGS; i++) {
        t[i].type = flag_types[i];
        t[i].pValue = &vals[i];
        t[i].ulValueLen = sizeof(CK_BBOOL);
    }
    rv = s->hsm->f->C_GetAttributeValue(s->h, obj, t, NFLAGS);
    if (rv != CKR_OK && !rv_is_absent(rv))
        return kbr_hsm_err_from_rv(rv);
    for (i = 0; i < NFLAGS; i++) {
        /* Modules may stop at the first absent attribute; ask for each one alone. */
        if (rv != CKR_OK)
            read_flag_alone(s, obj, &t[i]);
        *dst[i] = t[i].ulValueLen == sizeof(CK_BBOOL) && vals[i] == CK_TRUE;
    }
    return KBR_OK;
}

/* Label and id; an object without them reads as empty strings. */
static kbr_err read_names(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, kbr_hsm_key_info *info)
{
    kbr_err err = KBR_OK;
    unsigned char *buf = NULL;
    size_t len = 0, max_id = (sizeof(info->id_hex) - 1) / 2;

    err = kbr_p11_get_attr(s, obj, CKA_LABEL, &buf, &len);
    if (err == KBR_OK)
        snprintf(info->label, sizeof(info->label), "%.*s", (int)len, (const char *)buf);
    free(buf);
    buf = NULL;
    KBR_ENSURE(err == KBR_OK || err == KBR_ERR_HSM_KEY, err);
    err = kbr_p11_get_attr(s, obj, CKA_ID, &buf, &len);
    /* Longer ids than the struct holds are shown by their first bytes. */
    if (err == KBR_OK)
        kbr_hex_encode_buf(buf, len < max_id ? len : max_id, info->id_hex);
    KBR_ENSURE(err == KBR_OK || err == KBR_ERR_HSM_KEY, err);
    err = KBR_OK;
out:
    free(buf);
    return err;
}

kbr_err kbr_p11_read_info(kbr_hsm_session *s, CK_OBJECT_HANDLE obj, kbr_hsm_key_info *out)
{
    kbr_err err = KBR_OK;
    kbr_hsm_key_info info;
    CK_OBJECT_CLASS cls = 0;
    CK_KEY_TYPE kt = CKK_VENDOR_DEFINED;

    memset(&info, 0, sizeof(info));
    KBR_GUARD(kbr_p11_get_fixed(s, obj, CKA_CLASS, &cls, sizeof(cls)));
    err = kbr_p11_get_fixed(s, obj, CKA_KEY_TYPE, &kt, sizeof(kt));
    KBR_ENSURE(err == KBR_OK || err == KBR_ERR_HSM_KEY, err);
    err = KBR_OK;
    snprintf(info.class_name, sizeof(info.class_name), "%s", class_name(cls));
    snprintf(info.key_type, sizeof(info.key_type), "%s", key_type_name(kt));
    KBR_GUARD(read_names(s, obj, &info));
    KBR_GUARD(read_flags(s, obj, &info));
    KBR_GUARD(kbr_p11_key_alg(s, obj, kt, &info.alg_known, &info.alg));
    *out = info;
out:
    return err;
}

void kbr_p11_cache_clear(kbr_hsm_session *s)
{
    memset(s->cache, 0, sizeof(s->cache));
    s->cache_next = 0;
}

static kbr_p11_cached_key *cache_find(kbr_hsm_session *s, const char *label)
{
    size_t i;

    for (i = 0; i < KBR_P11_CACHE_SLOTS; i++)
        if (s->cache[i].used && strcmp(s->cache[i].label, label) == 0)
            return &s->cache[i];
    return NULL;
}

void kbr_p11_cache_drop(kbr_hsm_session *s, const char *label)
{
    kbr_p11_cached_key *c = cache_find(s, label);

    if (c != NULL)
        c->used = false;
}

static void cache_put(kbr_hsm_session *s, const char *label, CK_OBJECT_HANDLE h, kbr_alg alg)
{
    kbr_p11_cached_key *c = &s->cache[s->cache_next];

    s->cache_next = (s->cache_next + 1) % KBR_P11_CACHE_SLOTS;
    snprintf(c->label, sizeof(c->label), "%s", label);
    c->handle = h;
    c->alg = alg;
    c->used = true;
}

kbr_err kbr_p11_signing_key(kbr_hsm_session *s, const char *label, CK_OBJECT_HANDLE *h,
                            kbr_alg *alg, bool *cached)
{
    kbr_err err = KBR_OK;
    const kbr_p11_cached_key *c = cache_find(s, label);
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    CK_KEY_TYPE kt = CKK_VENDOR_DEFINED;
    bool known = false;
    kbr_alg a = KBR_ALG_ECDSA_P256;

    if (c != NULL) {
        *h = c->handle;
        *alg = c->alg;
        *cached = true;
        goto out;
    }
    KBR_GUARD(kbr_p11_find_one(s, CKO_PRIVATE_KEY, label, &obj));
    KBR_GUARD(kbr_p11_get_fixed(s, obj, CKA_KEY_TYPE, &kt, sizeof(kt)));
    KBR_GUARD(kbr_p11_key_alg(s, obj, kt, &known, &a));
    KBR_ENSURE(known, KBR_ERR_HSM_KEY);
    cache_put(s, label, obj, a);
    *h = obj;
    *alg = a;
    *cached = false;
out:
    return err;
}

typedef struct {
    const char *label;
    kbr_hsm_key_info *out;
} find_ctx;

static kbr_err find_attempt(kbr_hsm_session *s, void *ctx)
{
    kbr_err err = KBR_OK;
    find_ctx *c = ctx;
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;

    KBR_GUARD(kbr_p11_find_one(s, CKO_PRIVATE_KEY, c->label, &obj));
    KBR_GUARD(kbr_p11_read_info(s, obj, c->out));
out:
    return err;
}

kbr_err kbr_p11_find_key(kbr_hsm_session *s, const char *label, kbr_hsm_key_info *out)
{
    kbr_err err = KBR_OK;
    find_ctx c = {label, out};

    KBR_ENSURE(s != NULL && out != NULL, KBR_ERR_INTERNAL);
    memset(out, 0, sizeof(*out));
    KBR_GUARD(kbr_p11_label_check(label));
    KBR_GUARD(kbr_p11_with_retry(s, find_attempt, &c));
out:
    return err;
}

typedef struct {
    kbr_hsm_key_info *items;
    size_t n;
} list_ctx;

static int handle_cmp(const void *a, const void *b)
{
    CK_OBJECT_HANDLE x = *(const CK_OBJECT_HANDLE *)a, y = *(const CK_OBJECT_HANDLE *)b;

    return (x > y) - (x < y);
}

/* Handles of every private, public and secret key, sorted. */
static kbr_err list_handles(kbr_hsm_session *s, CK_OBJECT_HANDLE **out, size_t *n)
{
    static const CK_OBJECT_CLASS classes[] = {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY};
    kbr_err err = KBR_OK;
    CK_OBJECT_HANDLE *all = NULL, *part = NULL, *grown = NULL;
    size_t used = 0, np = 0, i;

    for (i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
        CK_OBJECT_CLASS cls = classes[i];
        CK_ATTRIBUTE templ = {CKA_CLASS, &cls, sizeof(cls)};

        KBR_GUARD(kbr_p11_find_all(s, &templ, 1, &part, &np));
        if (np == 0)
            continue;
        grown = reallocarray(all, used + np, sizeof(*all));
        KBR_ENSURE(grown != NULL, KBR_ERR_NOMEM);
        all = grown;
        memcpy(all + used, part, np * sizeof(*part));
        used += np;
        free(part);
        part = NULL;
    }
    if (used > 0)
        qsort(all, used, sizeof(*all), handle_cmp);
    *out = all;
    *n = used;
    all = NULL;
out:
    free(part);
    free(all);
    return err;
}

static kbr_err list_attempt(kbr_hsm_session *s, void *ctx)
{
    kbr_err err = KBR_OK;
    list_ctx *c = ctx;
    CK_OBJECT_HANDLE *handles = NULL;
    kbr_hsm_key_info *items = NULL;
    size_t n = 0, used = 0, i;

    KBR_GUARD(kbr_p11_check_login(s));
    KBR_GUARD(list_handles(s, &handles, &n));
    items = calloc(n > 0 ? n : 1, sizeof(*items));
    KBR_ENSURE(items != NULL, KBR_ERR_NOMEM);
    for (i = 0; i < n; i++) {
        err = kbr_p11_read_info(s, handles[i], &items[used]);
        /* An object destroyed since the search is simply no longer there. */
        if (err == KBR_ERR_HSM_KEY)
            continue;
        KBR_GUARD(err);
        used++;
    }
    err = KBR_OK;
    c->items = items;
    c->n = used;
    items = NULL;
out:
    free(items);
    free(handles);
    return err;
}

kbr_err kbr_p11_list_objects(kbr_hsm_session *s, kbr_hsm_key_info **out, size_t *n)
{
    kbr_err err = KBR_OK;
    list_ctx c = {NULL, 0};

    KBR_ENSURE(out != NULL && n != NULL, KBR_ERR_INTERNAL);
    *out = NULL;
    *n = 0;
    KBR_ENSURE(s != NULL, KBR_ERR_INTERNAL);
    KBR_GUARD(kbr_p11_with_retry(s, list_attempt, &c));
    *out = c.items;
    *n = c.n;
out:
    return err;
}
