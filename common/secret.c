/* secret.c - PINs and token strings: locked, wiped, compared in constant time. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/crypto.h>

#include "kbr_common.h"

kbr_err kbr_secret_new(const void *data, size_t len, kbr_secret **out)
{
    kbr_secret *s = NULL;

    *out = NULL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return KBR_ERR_NOMEM;
    s->buf = OPENSSL_zalloc(len + 1);
    if (s->buf == NULL) {
        free(s);
        return KBR_ERR_NOMEM;
    }
    /* Locking can fail under a small RLIMIT_MEMLOCK; the secret still works. */
    s->locked = mlock(s->buf, len + 1) == 0;
    if (len > 0)
        memcpy(s->buf, data, len);
    s->len = len;
    *out = s;
    return KBR_OK;
}

kbr_err kbr_secret_from_file(const char *path, kbr_secret **out)
{
    kbr_err err = KBR_OK;
    char *raw = NULL;
    size_t len = 0;

    *out = NULL;
    KBR_GUARD(kbr_file_read(path, 4096, &raw, &len));
    while (len > 0 && (raw[len - 1] == '\n' || raw[len - 1] == '\r'))
        len--;
    KBR_ENSURE(len > 0, KBR_ERR_CONFIG);
    KBR_GUARD(kbr_secret_new(raw, len, out));
out:
    if (raw != NULL)
        OPENSSL_cleanse(raw, strlen(raw));
    free(raw);
    return err;
}

void kbr_secret_free(kbr_secret *s)
{
    if (s == NULL)
        return;
    if (s->buf != NULL) {
        OPENSSL_cleanse(s->buf, s->len + 1);
        if (s->locked)
            munlock(s->buf, s->len + 1);
        OPENSSL_free(s->buf);
    }
    free(s);
}

bool kbr_secret_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen != blen)
        return false;
    return CRYPTO_memcmp(a, b, alen) == 0;
}
