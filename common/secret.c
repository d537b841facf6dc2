/* secret.c - PINs and token strings: locked, wiped, compared in constant time. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "kbr_common.h"

#define KBR_SECRET_FILE_MAX 4096 /* bytes of a PIN file, its line ends included */

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

/*
 * Read with read(2) into a buffer on this stack, wiped before it returns: stdio would pass the
 * bytes through a buffer of its own (of the file system's block size) and free it unwiped.
 */
kbr_err kbr_secret_from_file(const char *path, kbr_secret **out)
{
    kbr_err err = KBR_OK;
    char raw[KBR_SECRET_FILE_MAX + 1];
    size_t len = 0;
    ssize_t n;
    int fd;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    KBR_ENSURE(fd >= 0, KBR_ERR_IO);
    while (len < sizeof(raw) && (n = read(fd, raw + len, sizeof(raw) - len)) != 0) {
        KBR_ENSURE(n > 0 || errno == EINTR, KBR_ERR_IO);
        len += n > 0 ? (size_t)n : 0;
    }
    KBR_ENSURE(len <= KBR_SECRET_FILE_MAX, KBR_ERR_TOO_LARGE);
    while (len > 0 && (raw[len - 1] == '\n' || raw[len - 1] == '\r'))
        len--;
    KBR_ENSURE(len > 0, KBR_ERR_CONFIG);
    KBR_GUARD(kbr_secret_new(raw, len, out));
out:
    explicit_bzero(raw, sizeof(raw));
    if (fd >= 0)
        close(fd);
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
