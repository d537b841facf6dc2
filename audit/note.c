/*
 * note.c - C2SP signed notes (c2sp.org/signed-note) with Ed25519 signatures, and the
 * tlog-checkpoint text they carry (c2sp.org/tlog-checkpoint).
 *
 * A note is text ending in a newline, a blank line, then signature lines
 * "<em dash> <key name> <base64(key ID || signature)>".  The Ed25519 key ID is the first four
 * bytes of SHA-256(key name || 0x0A || 0x01 || 32-byte public key).  Notes come from outside
 * (a served checkpoint, a file), so the parser is strict and says what it refused: one
 * spelling per note, nothing skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "kbr_audit.h"

#define ED25519_LEN      32
#define SIG_TYPE_ED25519 0x01
/* U+2014 EM DASH, then a space: how every signature line begins */
static const char line_prefix[] = "\xe2\x80\x94 ";
#define LINE_PREFIX_LEN (sizeof(line_prefix) - 1)

/* ---- UTF-8 ---- */

/* The code point at p (n bytes left), its length in *len; -1 when not well-formed UTF-8. */
static long utf8_next(const unsigned char *p, size_t n, size_t *len)
{
    long cp;
    size_t need;

    if (p[0] < 0x80) {
        *len = 1;
        return p[0];
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        need = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        need = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        need = 4;
        cp = p[0] & 0x07;
    } else {
        return -1;
    }
    if (n < need)
        return -1;
    for (size_t i = 1; i < need; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return -1;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    /* overlong forms, surrogates and code points past U+10FFFF */
    if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *len = need;
    return cp;
}

/* Unicode White_Space, as Go's unicode.IsSpace sees it. */
static bool is_space(long cp)
{
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0d) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
           cp == 0x205f || cp == 0x3000;
}

bool kbr_note_name_valid(const char *name, size_t len)
{
    const unsigned char *p = (const unsigned char *)name;
    size_t off = 0, n = 0;

    if (name == NULL || len == 0 || len > KBR_NOTE_NAME_MAX)
        return false;
    while (off < len) {
        long cp = utf8_next(p + off, len - off, &n);
        if (cp < 0x20 || cp == 0x7f || cp == '+' || is_space(cp))
            return false;
        off += n;
    }
    return true;
}

/* A checkpoint's origin line: not empty, UTF-8, no control characters (so no newline). */
static bool origin_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t off = 0, n = 0;

    if (s == NULL || len == 0 || len > KBR_NOTE_NAME_MAX)
        return false;
    while (off < len) {
        long cp = utf8_next(p + off, len - off, &n);
        if (cp < 0x20 || cp == 0x7f)
            return false;
        off += n;
    }
    return true;
}

/* ---- keys ---- */

static kbr_err ed25519_raw(EVP_PKEY *pub, unsigned char raw[ED25519_LEN])
{
    size_t len = ED25519_LEN;

    if (pub == NULL || !EVP_PKEY_is_a(pub, "ED25519"))
        return KBR_ERR_CRYPTO;
    if (EVP_PKEY_get_raw_public_key(pub, raw, &len) != 1 || len != ED25519_LEN)
        return KBR_ERR_CRYPTO;
    return KBR_OK;
}

kbr_err kbr_note_key_id(const char *name, EVP_PKEY *pub, uint32_t *id)
{
    kbr_err err = KBR_OK;
    unsigned char raw[ED25519_LEN], digest[32];
    EVP_MD_CTX *ctx = NULL;
    const unsigned char sep[2] = {0x0a, SIG_TYPE_ED25519};

    *id = 0;
    KBR_ENSURE(name != NULL && kbr_note_name_valid(name, strlen(name)), KBR_ERR_BAD_REQUEST);
    KBR_GUARD(ed25519_raw(pub, raw));
    ctx = EVP_MD_CTX_new();
    KBR_ENSURE(ctx != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
                   EVP_DigestUpdate(ctx, name, strlen(name)) == 1 &&
                   EVP_DigestUpdate(ctx, sep, sizeof(sep)) == 1 &&
                   EVP_DigestUpdate(ctx, raw, sizeof(raw)) == 1 &&
                   EVP_DigestFinal_ex(ctx, digest, NULL) == 1,
               KBR_ERR_CRYPTO);
    *id = (uint32_t)digest[0] << 24 | (uint32_t)digest[1] << 16 | (uint32_t)digest[2] << 8 |
          (uint32_t)digest[3];
out:
    EVP_MD_CTX_free(ctx);
    return err;
}

kbr_err kbr_note_vkey(const char *name, EVP_PKEY *pub, char **out)
{
    kbr_err err = KBR_OK;
    unsigned char typed[1 + ED25519_LEN];
    uint32_t id = 0;
    char *b64 = NULL;

    *out = NULL;
    KBR_GUARD(kbr_note_key_id(name, pub, &id));
    typed[0] = SIG_TYPE_ED25519;
    KBR_GUARD(ed25519_raw(pub, typed + 1));
    KBR_GUARD(kbr_b64_encode(typed, sizeof(typed), &b64));
    KBR_ENSURE(asprintf(out, "%s+%08x+%s", name, id, b64) > 0, KBR_ERR_NOMEM);
out:
    free(b64);
    return err;
}

kbr_err kbr_note_vkey_parse(const char *vkey, char **name, EVP_PKEY **pub, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const char *plus1 = vkey != NULL ? strchr(vkey, '+') : NULL;
    const char *plus2 = plus1 != NULL ? strchr(plus1 + 1, '+') : NULL;
    unsigned char *raw = NULL;
    size_t len = 0;
    char idhex[9], *n = NULL, *again = NULL;
    uint32_t want = 0, got = 0;
    EVP_PKEY *k = NULL;

    *name = NULL;
    *pub = NULL;
    KBR_ENSURE(plus1 != NULL && plus2 != NULL && plus2 - plus1 == 9,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "vkey: not name+keyid+key"));
    n = strndup(vkey, (size_t)(plus1 - vkey));
    KBR_ENSURE(n != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(kbr_note_name_valid(n, strlen(n)),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "vkey: not a valid key name"));
    memcpy(idhex, plus1 + 1, 8);
    idhex[8] = '\0';
    KBR_ENSURE(
        strspn(idhex, "0123456789abcdef") == 8,
        kbr_fail(msg, KBR_ERR_BAD_REQUEST, "vkey: the key ID is not 8 lowercase hex digits"));
    want = (uint32_t)strtoul(idhex, NULL, 16);
    KBR_ENSURE(kbr_b64_decode(plus2 + 1, &raw, &len) == KBR_OK && len == 1 + ED25519_LEN &&
                   raw[0] == SIG_TYPE_ED25519,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "vkey: not an Ed25519 key"));
    KBR_GUARD(kbr_b64_encode(raw, len, &again));
    KBR_ENSURE(strcmp(again, plus2 + 1) == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "vkey: the key is not in canonical base64"));
    k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw + 1, ED25519_LEN);
    KBR_ENSURE(k != NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "vkey: not an Ed25519 key"));
    KBR_GUARD(kbr_note_key_id(n, k, &got));
    KBR_ENSURE(got == want, kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                     "vkey: key ID %08x does not match the key", want));
    *name = n;
    *pub = k;
    n = NULL;
    k = NULL;
out:
    EVP_PKEY_free(k);
    free(again);
    free(n);
    free(raw);
    return err;
}

/* ---- writing ---- */

kbr_err kbr_note_checkpoint_text(const char *origin, uint64_t size,
                                 const unsigned char root[KBR_MERKLE_HASH_LEN], char **out)
{
    kbr_err err = KBR_OK;
    char *b64 = NULL;

    *out = NULL;
    KBR_ENSURE(origin != NULL && origin_valid(origin, strlen(origin)), KBR_ERR_BAD_REQUEST);
    KBR_GUARD(kbr_b64_encode(root, KBR_MERKLE_HASH_LEN, &b64));
    KBR_ENSURE(asprintf(out, "%s\n%llu\n%s\n", origin, (unsigned long long)size, b64) > 0,
               KBR_ERR_NOMEM);
out:
    free(b64);
    return err;
}

kbr_err kbr_note_sig_line(const char *name, uint32_t id, const unsigned char *sig, size_t siglen,
                          char **out)
{
    kbr_err err = KBR_OK;
    unsigned char *raw = NULL;
    char *b64 = NULL;

    *out = NULL;
    KBR_ENSURE(name != NULL && kbr_note_name_valid(name, strlen(name)), KBR_ERR_BAD_REQUEST);
    KBR_ENSURE(sig != NULL && siglen > 0 && siglen <= KBR_NOTE_SIG_MAX, KBR_ERR_BAD_REQUEST);
    raw = malloc(4 + siglen);
    KBR_ENSURE(raw != NULL, KBR_ERR_NOMEM);
    raw[0] = (unsigned char)(id >> 24);
    raw[1] = (unsigned char)(id >> 16);
    raw[2] = (unsigned char)(id >> 8);
    raw[3] = (unsigned char)id;
    memcpy(raw + 4, sig, siglen);
    KBR_GUARD(kbr_b64_encode(raw, 4 + siglen, &b64));
    KBR_ENSURE(asprintf(out, "%s%s %s\n", line_prefix, name, b64) > 0, KBR_ERR_NOMEM);
out:
    free(b64);
    free(raw);
    return err;
}

/* ---- reading ---- */

void kbr_note_clear(kbr_note *n)
{
    free(n->text);
    memset(n, 0, sizeof(*n));
}

/* The whole note: UTF-8, and no ASCII control character but the newline. */
static kbr_err note_chars(const unsigned char *p, size_t len, kbr_msg *msg)
{
    size_t off = 0, n = 0;

    while (off < len) {
        long cp = utf8_next(p + off, len - off, &n);
        if (cp < 0)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "note: byte %zu is not UTF-8", off);
        if (cp < 0x20 && cp != '\n')
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                            "note: byte %zu is a control character (only newlines may be)", off);
        off += n;
    }
    return KBR_OK;
}

/* One signature line without its newline. */
static kbr_err sig_parse(const char *line, size_t len, size_t lineno, kbr_note_sig *out,
                         kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const char *name, *sp;
    char *b64 = NULL, *again = NULL;
    unsigned char *raw = NULL;
    size_t name_len, raw_len = 0;

    KBR_ENSURE(len > LINE_PREFIX_LEN && memcmp(line, line_prefix, LINE_PREFIX_LEN) == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "note: signature line %zu does not start with an em dash and a space",
                        lineno));
    name = line + LINE_PREFIX_LEN;
    sp = memchr(name, ' ', len - LINE_PREFIX_LEN);
    KBR_ENSURE(sp != NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "note: signature line %zu has no signature after the key name", lineno));
    name_len = (size_t)(sp - name);
    KBR_ENSURE(kbr_note_name_valid(name, name_len),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "note: signature line %zu: the key name is empty or holds a space or '+'",
                        lineno));
    b64 = strndup(sp + 1, len - LINE_PREFIX_LEN - name_len - 1);
    KBR_ENSURE(b64 != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(kbr_b64_decode(b64, &raw, &raw_len) == KBR_OK && raw_len > 4 &&
                   raw_len <= 4 + KBR_NOTE_SIG_MAX,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "note: signature line %zu: the signature is not base64 of a key ID and a "
                        "signature",
                        lineno));
    /* one spelling: what decodes must encode back to the same text */
    KBR_GUARD(kbr_b64_encode(raw, raw_len, &again));
    KBR_ENSURE(strcmp(again, b64) == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "note: signature line %zu: the base64 is not in its canonical form",
                        lineno));
    memcpy(out->name, name, name_len);
    out->name[name_len] = '\0';
    out->id =
        (uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 | (uint32_t)raw[2] << 8 | (uint32_t)raw[3];
    memcpy(out->sig, raw + 4, raw_len - 4);
    out->siglen = raw_len - 4;
out:
    free(again);
    free(raw);
    free(b64);
    return err;
}

/* The last blank line: the text is everything before it, its newline included. */
static const char *last_blank_line(const char *p, size_t len)
{
    for (size_t i = len; i >= 2; i--)
        if (p[i - 2] == '\n' && p[i - 1] == '\n')
            return p + i - 2;
    return NULL;
}

kbr_err kbr_note_parse(const char *note, size_t len, kbr_note *out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const char *split, *line, *end;
    size_t lineno = 0;

    memset(out, 0, sizeof(*out));
    KBR_ENSURE(note != NULL && len > 0, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "note: empty"));
    KBR_ENSURE(len <= KBR_NOTE_MAX,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "note: longer than %d bytes", KBR_NOTE_MAX));
    KBR_GUARD(note_chars((const unsigned char *)note, len, msg));
    split = last_blank_line(note, len);
    KBR_ENSURE(split != NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "note: no blank line between the text and the signatures (truncated?)"));
    line = split + 2;
    end = note + len;
    KBR_ENSURE(line < end, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "note: no signature lines"));
    KBR_ENSURE(end[-1] == '\n', kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                         "note: the last signature line does not end in a "
                                         "newline (truncated?)"));
    while (line < end) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        lineno++;
        KBR_ENSURE(
            out->nsigs < KBR_NOTE_SIGS_MAX,
            kbr_fail(msg, KBR_ERR_BAD_REQUEST, "note: more than %d signatures", KBR_NOTE_SIGS_MAX));
        KBR_GUARD(sig_parse(line, (size_t)(nl - line), lineno, &out->sigs[out->nsigs], msg));
        out->nsigs++;
        line = nl + 1;
    }
    out->text_len = (size_t)(split + 1 - note);
    out->text = strndup(note, out->text_len);
    KBR_ENSURE(out->text != NULL, KBR_ERR_NOMEM);
out:
    if (err != KBR_OK)
        kbr_note_clear(out);
    return err;
}

kbr_err kbr_note_verify(const kbr_note *n, const char *name, EVP_PKEY *pub, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    uint32_t id = 0;
    const kbr_note_sig *sig = NULL;
    EVP_MD_CTX *ctx = NULL;

    KBR_ENSURE(kbr_note_key_id(name, pub, &id) == KBR_OK,
               kbr_fail(msg, KBR_ERR_CRYPTO, "note: the verifying key is not an Ed25519 key"));
    for (size_t i = 0; i < n->nsigs && sig == NULL; i++)
        if (n->sigs[i].id == id && strcmp(n->sigs[i].name, name) == 0)
            sig = &n->sigs[i];
    KBR_ENSURE(sig != NULL,
               kbr_fail(msg, KBR_ERR_NOT_FOUND, "note: no signature by key %s+%08x", name, id));
    ctx = EVP_MD_CTX_new();
    KBR_ENSURE(ctx != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) == 1, KBR_ERR_CRYPTO);
    KBR_ENSURE(sig->siglen == 64 &&
                   EVP_DigestVerify(ctx, sig->sig, sig->siglen, (const unsigned char *)n->text,
                                    n->text_len) == 1,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "note: bad signature by key %s+%08x", name, id));
out:
    EVP_MD_CTX_free(ctx);
    return err;
}

/* A decimal without a sign or leading zeros ("0" alone), at most INT64_MAX. */
static bool decimal(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 19 || (len > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        return false;
    *out = v;
    return true;
}

kbr_err kbr_note_checkpoint_parse(const kbr_note *n, kbr_note_checkpoint *out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const char *p = n->text, *end = n->text + n->text_len, *nl[3] = {NULL, NULL, NULL};
    unsigned char *root = NULL;
    char *b64 = NULL, *again = NULL;
    size_t root_len = 0;

    memset(out, 0, sizeof(*out));
    for (int i = 0; i < 3; i++) {
        nl[i] = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        KBR_ENSURE(nl[i] != NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                           "note: the checkpoint has fewer than three lines"));
        KBR_ENSURE(nl[i] > p,
                   kbr_fail(msg, KBR_ERR_BAD_REQUEST, "note: checkpoint line %d is empty", i + 1));
        p = nl[i] + 1;
    }
    /* extension lines are allowed by the format, but this broker writes none */
    KBR_ENSURE(p == end, kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                  "note: the checkpoint has lines after the root hash"));
    KBR_ENSURE(origin_valid(n->text, (size_t)(nl[0] - n->text)),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "note: the origin line is too long"));
    memcpy(out->origin, n->text, (size_t)(nl[0] - n->text));
    out->origin[nl[0] - n->text] = '\0';
    KBR_ENSURE(decimal(nl[0] + 1, (size_t)(nl[1] - nl[0] - 1), &out->size),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "note: the tree size line is not a decimal without leading zeros"));
    b64 = strndup(nl[1] + 1, (size_t)(nl[2] - nl[1] - 1));
    KBR_ENSURE(b64 != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(
        kbr_b64_decode(b64, &root, &root_len) == KBR_OK && root_len == KBR_MERKLE_HASH_LEN,
        kbr_fail(msg, KBR_ERR_BAD_REQUEST, "note: the root hash line is not base64 of 32 bytes"));
    KBR_GUARD(kbr_b64_encode(root, root_len, &again));
    KBR_ENSURE(strcmp(again, b64) == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "note: the root hash line is not in its canonical base64 form"));
    memcpy(out->root, root, KBR_MERKLE_HASH_LEN);
out:
    free(again);
    free(root);
    free(b64);
    return err;
}
