/* err.c - descriptions of kbr_err and the message helper. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

/*
 * What a caller of the API is told of each kbr_err (docs/api.md "Errors"): the HTTP status,
 * the error code, and the class it is shown as (a lost HSM session is "the HSM", a store
 * failure is "the audit log", a broken invariant is "internal").  One table for the daemon,
 * which answers with it, and the CLI, which reads answers back with it.  Its size is the
 * enum's: a new kbr_err without a line here does not compile.
 */
static const struct {
    int status;
    const char *code;
    kbr_err shown;
} api_view[] = {
    [KBR_OK] = {200, NULL, KBR_OK},
    [KBR_ERR_NOMEM] = {500, "internal_error", KBR_ERR_INTERNAL},
    [KBR_ERR_BAD_REQUEST] = {400, "bad_request", KBR_ERR_BAD_REQUEST},
    [KBR_ERR_UNAUTHENTICATED] = {401, "unauthenticated", KBR_ERR_UNAUTHENTICATED},
    [KBR_ERR_FORBIDDEN] = {403, "forbidden", KBR_ERR_FORBIDDEN},
    [KBR_ERR_NOT_FOUND] = {404, "not_found", KBR_ERR_NOT_FOUND},
    [KBR_ERR_CONFLICT] = {409, "conflict", KBR_ERR_CONFLICT},
    [KBR_ERR_TOO_LARGE] = {413, "too_large", KBR_ERR_TOO_LARGE},
    [KBR_ERR_QUOTA] = {429, "quota_exhausted", KBR_ERR_QUOTA},
    [KBR_ERR_RATE_LIMITED] = {429, "rate_limited", KBR_ERR_RATE_LIMITED},
    [KBR_ERR_AUDIT] = {503, "audit_unavailable", KBR_ERR_AUDIT},
    [KBR_ERR_HSM] = {503, "hsm_unavailable", KBR_ERR_HSM},
    [KBR_ERR_HSM_SESSION] = {503, "hsm_unavailable", KBR_ERR_HSM},
    [KBR_ERR_HSM_PIN] = {503, "hsm_unavailable", KBR_ERR_HSM},
    [KBR_ERR_HSM_TOKEN] = {503, "hsm_unavailable", KBR_ERR_HSM},
    [KBR_ERR_HSM_MECHANISM] = {503, "hsm_unavailable", KBR_ERR_HSM},
    [KBR_ERR_HSM_KEY] = {503, "hsm_unavailable", KBR_ERR_HSM},
    [KBR_ERR_CRYPTO] = {503, "hsm_unavailable", KBR_ERR_HSM},
    [KBR_ERR_STORE] = {503, "audit_unavailable", KBR_ERR_AUDIT},
    [KBR_ERR_STORE_CONSTRAINT] = {503, "audit_unavailable", KBR_ERR_AUDIT},
    [KBR_ERR_CONFIG] = {500, "internal_error", KBR_ERR_INTERNAL},
    [KBR_ERR_IO] = {500, "internal_error", KBR_ERR_INTERNAL},
    [KBR_ERR_INTERNAL] = {500, "internal_error", KBR_ERR_INTERNAL},
};

_Static_assert(sizeof(api_view) / sizeof(api_view[0]) == KBR_ERR__COUNT,
               "every kbr_err needs its line in api_view");

static kbr_err known(kbr_err err)
{
    return (unsigned)err < KBR_ERR__COUNT && api_view[err].status != 0 ? err : KBR_ERR_INTERNAL;
}

int kbr_err_http_status(kbr_err err)
{
    return api_view[known(err)].status;
}

const char *kbr_err_api_code(kbr_err err)
{
    return api_view[known(err)].code;
}

kbr_err kbr_err_public(kbr_err err)
{
    return api_view[known(err)].shown;
}

kbr_err kbr_err_from_api(long status, const char *code)
{
    /* the classes a caller may be shown, in the order the table gives them */
    for (size_t i = 0; i < KBR_ERR__COUNT; i++) {
        if (api_view[i].shown != (kbr_err)i || api_view[i].status != status)
            continue;
        if (code == NULL || api_view[i].code == NULL || strcmp(api_view[i].code, code) == 0)
            return (kbr_err)i;
    }
    /* an unknown code under a known status: the first class of that status */
    for (size_t i = 0; i < KBR_ERR__COUNT; i++)
        if (api_view[i].shown == (kbr_err)i && api_view[i].status == status)
            return (kbr_err)i;
    return KBR_ERR_INTERNAL;
}

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
