/* err.c - descriptions of kbr_err and the message helper. */
#include <stdarg.h>
#include <stdio.h>

#include "kbr_common.h"

static const char *const err_text[KBR_ERR__COUNT] = {
    [KBR_OK] = "success",
    [KBR_ERR_NOMEM] = "out of memory",
    [KBR_ERR_BAD_REQUEST] = "bad request",
    [KBR_ERR_UNAUTHENTICATED] = "unauthenticated",
    [KBR_ERR_FORBIDDEN] = "forbidden",
    [KBR_ERR_NOT_FOUND] = "not found",
    [KBR_ERR_CONFLICT] = "conflict",
    [KBR_ERR_TOO_LARGE] = "request too large",
    [KBR_ERR_QUOTA] = "quota exhausted",
    [KBR_ERR_RATE_LIMITED] = "rate limited",
    [KBR_ERR_AUDIT] = "audit log unavailable",
    [KBR_ERR_HSM] = "HSM unavailable",
    [KBR_ERR_HSM_SESSION] = "HSM session lost",
    [KBR_ERR_HSM_PIN] = "HSM PIN refused",
    [KBR_ERR_HSM_TOKEN] = "HSM token not found",
    [KBR_ERR_HSM_MECHANISM] = "mechanism not supported by the HSM",
    [KBR_ERR_HSM_KEY] = "HSM key object missing or unusable",
    [KBR_ERR_CRYPTO] = "cryptographic operation failed",
    [KBR_ERR_STORE] = "store failure",
    [KBR_ERR_STORE_CONSTRAINT] = "store uniqueness constraint",
    [KBR_ERR_CONFIG] = "bad configuration",
    [KBR_ERR_IO] = "I/O error",
    [KBR_ERR_INTERNAL] = "internal error",
};

const char *kbr_err_str(kbr_err err)
{
    if ((unsigned)err >= KBR_ERR__COUNT || err_text[err] == NULL)
        return "unknown error";
    return err_text[err];
}

kbr_err kbr_fail(kbr_msg *msg, kbr_err code, const char *fmt, ...)
{
    va_list ap;

    if (msg == NULL)
        return code;
    va_start(ap, fmt);
    vsnprintf(msg->text, sizeof(msg->text), fmt, ap);
    va_end(ap);
    return code;
}
