/*
 * rv.c - the one translation of PKCS#11 return values into kbr_err.
 *
 * The session class is what the retry logic keys on: every value that means
 * "this session or login is gone, a fresh one may work" belongs there.
 */
#include "hsm_int.h"

static bool rv_is_pin(CK_RV rv)
{
    return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED ||
           rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE;
}

static bool rv_is_session(CK_RV rv)
{
    switch (rv) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_DEVICE_ERROR:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    /* The slot went away with its token; a rescan may find it again. */
    case CKR_SLOT_ID_INVALID:
    case CKR_TOKEN_NOT_RECOGNIZED:
        return true;
    default:
        return false;
    }
}

static bool rv_is_mechanism(CK_RV rv)
{
    return rv == CKR_MECHANISM_INVALID || rv == CKR_MECHANISM_PARAM_INVALID ||
           rv == CKR_KEY_TYPE_INCONSISTENT || rv == CKR_KEY_FUNCTION_NOT_PERMITTED ||
           rv == CKR_KEY_SIZE_RANGE || rv == CKR_CURVE_NOT_SUPPORTED;
}

kbr_err kbr_hsm_err_from_rv(unsigned long rv)
{
    if (rv == CKR_OK)
        return KBR_OK;
    if (rv_is_pin(rv))
        return KBR_ERR_HSM_PIN;
    if (rv_is_session(rv))
        return KBR_ERR_HSM_SESSION;
    if (rv_is_mechanism(rv))
        return KBR_ERR_HSM_MECHANISM;
    if (rv == CKR_DATA_LEN_RANGE || rv == CKR_DATA_INVALID)
        return KBR_ERR_BAD_REQUEST;
    if (rv == CKR_HOST_MEMORY)
        return KBR_ERR_NOMEM;
    /* A handle that stopped naming an object: the caller looks it up again. */
    if (rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID)
        return KBR_ERR_HSM_KEY;
    return KBR_ERR_HSM;
}
