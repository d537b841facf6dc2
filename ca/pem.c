/*
 * pem.c - a strict PEM reader.  OpenSSL's PEM_read_bio_* skip any text
 * before an object and any object with another label, so a certificate
 * followed by a request would be read as the request.  Here each object
 * must start where the previous one ended (whitespace aside), carry the
 * expected label and no headers (an encrypted object has some).
 */
#include <ctype.h>
#include <string.h>

#include <openssl/pem.h>

#include "ca_int.h"

BIO *ca_pem_bio(const char *pem, size_t limit)
{
    size_t len;

    if (pem == NULL)
        return NULL;
    len = strnlen(pem, limit + 1);
    if (len == 0 || len > limit)
        return NULL;
    return BIO_new_mem_buf(pem, (int)len);
}

/* Skips whitespace in bio; true if an object's BEGIN line follows. */
static bool at_begin(BIO *bio, bool *at_end)
{
    static const char begin[] = "-----BEGIN ";
    char *data = NULL, skip[64];
    long n = BIO_get_mem_data(bio, &data), i = 0, done = 0;
    bool found;

    while (i < n && isspace((unsigned char)data[i]))
        i++;
    *at_end = i == n;
    found = n - i >= (long)sizeof(begin) - 1 && memcmp(data + i, begin, sizeof(begin) - 1) == 0;
    /* data is the BIO's own buffer: consume through a copy, never into it. */
    while (done < i) {
        int step = (int)(i - done < (long)sizeof(skip) ? i - done : (long)sizeof(skip));

        if (BIO_read(bio, skip, step) != step)
            return false;
        done += step;
    }
    return found;
}

static bool name_in(const char *name, const char *const names[])
{
    size_t i;

    for (i = 0; names[i] != NULL; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

kbr_err ca_pem_next(BIO *bio, const char *const names[], unsigned char **der, long *len)
{
    kbr_err err = KBR_OK;
    char *got = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    bool at_end = false;

    *der = NULL;
    *len = 0;
    if (!at_begin(bio, &at_end)) {
        err = at_end ? KBR_ERR_NOT_FOUND : KBR_ERR_BAD_REQUEST;
        goto out;
    }
    KBR_ENSURE(PEM_read_bio(bio, &got, &header, &data, &dlen) == 1, KBR_ERR_BAD_REQUEST);
    KBR_ENSURE(name_in(got, names) && header[0] == '\0' && dlen > 0, KBR_ERR_BAD_REQUEST);
    *der = data;
    *len = dlen;
    data = NULL;
out:
    OPENSSL_free(got);
    OPENSSL_free(header);
    OPENSSL_free(data);
    return err;
}
