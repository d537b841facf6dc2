/*
 * hsm.c - the PKCS#11 module's lifetime: loading it, finding the token by
 * label, logging in, per-thread sessions, and getting a lost session or
 * login back (the retry every operation runs through).
 *
 * Shared state (slot, anchor session, logins) changes only under hsm->lock.
 * A kbr_hsm_session belongs to one thread and is used without locking.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "hsm_int.h"

static bool session_is_user(const CK_SESSION_INFO *info)
{
    return info->state == CKS_RW_USER_FUNCTIONS || info->state == CKS_RO_USER_FUNCTIONS;
}

static void label_pad(const char *label, unsigned char out[32])
{
    size_t n = strlen(label);

    memset(out, ' ', 32);
    memcpy(out, label, n < 32 ? n : 32);
}

static kbr_err slot_list(CK_FUNCTION_LIST *f, CK_SLOT_ID **out, CK_ULONG *n)
{
    kbr_err err = KBR_OK;
    CK_SLOT_ID *slots = NULL;
    CK_ULONG cnt = 0;

    *out = NULL;
    *n = 0;
    KBR_GUARD(kbr_hsm_err_from_rv(f->C_GetSlotList(CK_TRUE, NULL, &cnt)));
    KBR_ENSURE(cnt > 0, KBR_ERR_HSM_TOKEN);
    slots = calloc(cnt, sizeof(*slots));
    KBR_ENSURE(slots != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_hsm_err_from_rv(f->C_GetSlotList(CK_TRUE, slots, &cnt)));
    *out = slots;
    *n = cnt;
    slots = NULL;
out:
    free(slots);
    return err;
}

/* The slot holding the token labelled label; KBR_ERR_HSM_TOKEN if none. */
static kbr_err slot_find(CK_FUNCTION_LIST *f, const unsigned char label[32], CK_SLOT_ID *out)
{
    kbr_err err = KBR_OK;
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_TOKEN_INFO ti;
    CK_ULONG i;

    KBR_GUARD(slot_list(f, &slots, &n));
    for (i = 0; i < n; i++) {
        /* A slot whose token vanished between the two calls is skipped. */
        if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        if (memcmp(ti.label, label, 32) == 0)
            break;
    }
    KBR_ENSURE(i < n, KBR_ERR_HSM_TOKEN);
    *out = slots[i];
out:
    free(slots);
    return err;
}

static bool anchor_alive(kbr_hsm *hsm)
{
    CK_SESSION_INFO info;

    if (!hsm->anchor_open)
        return false;
    if (hsm->f->C_GetSessionInfo(hsm->anchor, &info) != CKR_OK)
        return false;
    return info.slotID == hsm->slot && session_is_user(&info);
}

static void anchor_drop(kbr_hsm *hsm)
{
    if (hsm->anchor_open)
        (void)hsm->f->C_CloseSession(hsm->anchor);
    hsm->anchor_open = false;
}

#define LOGIN_BACKOFF_FIRST_MS 100
#define LOGIN_BACKOFF_MAX_MS   2000

static bool backing_off(const kbr_hsm *hsm)
{
    struct timespec now;

    if (hsm->backoff_ms == 0)
        return false;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec < hsm->retry_at.tv_sec ||
           (now.tv_sec == hsm->retry_at.tv_sec && now.tv_nsec < hsm->retry_at.tv_nsec);
}

static void backoff_after(kbr_hsm *hsm, kbr_err err)
{
    long ms;

    if (err == KBR_OK) {
        hsm->backoff_ms = 0;
        return;
    }
    ms = hsm->backoff_ms == 0 ? LOGIN_BACKOFF_FIRST_MS : hsm->backoff_ms * 2;
    hsm->backoff_ms = ms > LOGIN_BACKOFF_MAX_MS ? LOGIN_BACKOFF_MAX_MS : ms;
    clock_gettime(CLOCK_MONOTONIC, &hsm->retry_at);
    hsm->retry_at.tv_sec += hsm->backoff_ms / 1000;
    hsm->retry_at.tv_nsec += (hsm->backoff_ms % 1000) * 1000000L;
    if (hsm->retry_at.tv_nsec >= 1000000000L) {
        hsm->retry_at.tv_sec++;
        hsm->retry_at.tv_nsec -= 1000000000L;
    }
}

static kbr_err login_attempt(kbr_hsm *hsm);

/*
 * Finds the token again, opens the anchor session and logs in, unless a
 * recent attempt failed and its backoff has not run out (then KBR_ERR_HSM
 * at once).  Caller holds hsm->lock.
 */
static kbr_err login_locked(kbr_hsm *hsm)
{
    kbr_err err;

    if (backing_off(hsm))
        return KBR_ERR_HSM;
    err = login_attempt(hsm);
    backoff_after(hsm, err);
    return err;
}

static kbr_err login_attempt(kbr_hsm *hsm)
{
    kbr_err err = KBR_OK;
    CK_RV rv;

    anchor_drop(hsm);
    KBR_GUARD(slot_find(hsm->f, hsm->token_label, &hsm->slot));
    hsm->slot_known = true;
    KBR_GUARD(kbr_hsm_err_from_rv(hsm->f->C_OpenSession(
        hsm->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &hsm->anchor)));
    hsm->anchor_open = true;
    rv = hsm->f->C_Login(hsm->anchor, CKU_USER, hsm->pin->buf, hsm->pin->len);
    if (rv == CKR_USER_ALREADY_LOGGED_IN)
        rv = CKR_OK;
    KBR_GUARD(kbr_hsm_err_from_rv(rv));
out:
    if (err != KBR_OK)
        anchor_drop(hsm);
    return err;
}

/* Makes sure the user is logged in, doing it again only if the anchor lost it. */
static kbr_err recover_locked(kbr_hsm *hsm)
{
    if (anchor_alive(hsm))
        return KBR_OK;
    return login_locked(hsm);
}

static kbr_err module_load(const char *path, kbr_hsm *hsm, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    CK_C_GetFunctionList get_list = NULL;

    /*
     * Never unmapped: vendor modules start threads and register atexit
     * handlers that crash if their code disappears under them.
     */
    hsm->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (hsm->dl == NULL) {
        err = kbr_fail(msg, KBR_ERR_IO, "pkcs11 module %s cannot be loaded: %s", path, dlerror());
        goto out;
    }
    /* POSIX allows this conversion for dlsym results. */
    *(void **)(&get_list) = dlsym(hsm->dl, "C_GetFunctionList");
    if (get_list == NULL || get_list(&hsm->f) != CKR_OK || hsm->f == NULL) {
        err = kbr_fail(msg, KBR_ERR_IO, "%s is not a PKCS#11 module", path);
        goto out;
    }
out:
    return err;
}

static kbr_err module_init(kbr_hsm *hsm, kbr_msg *msg)
{
    CK_C_INITIALIZE_ARGS args;
    CK_RV rv;

    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    rv = hsm->f->C_Initialize(&args);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
        return KBR_OK;
    if (rv != CKR_OK)
        return kbr_fail(msg, KBR_ERR_HSM, "C_Initialize failed: 0x%lx", (unsigned long)rv);
    hsm->finalize = true;
    return KBR_OK;
}

static kbr_err first_login(kbr_hsm *hsm, const char *token_label, kbr_msg *msg)
{
    kbr_err err = KBR_OK;

    pthread_mutex_lock(&hsm->lock);
    err = login_locked(hsm);
    pthread_mutex_unlock(&hsm->lock);
    if (err == KBR_ERR_HSM_TOKEN)
        return kbr_fail(msg, err, "no token labelled \"%s\"", token_label);
    if (err == KBR_ERR_HSM_PIN)
        return kbr_fail(msg, err, "token \"%s\" refused the PIN", token_label);
    if (err == KBR_ERR_HSM_SESSION)
        err = KBR_ERR_HSM;
    if (err != KBR_OK)
        return kbr_fail(msg, err, "login to token \"%s\" failed", token_label);
    return KBR_OK;
}

static void local_close(kbr_hsm *hsm);

static kbr_hsm *hsm_alloc(void)
{
    kbr_hsm *hsm = calloc(1, sizeof(*hsm));

    if (hsm == NULL)
        return NULL;
    hsm->ops = &kbr_p11_local_ops;
    hsm->ctl = -1;
    pthread_mutex_init(&hsm->lock, NULL);
    pthread_rwlock_init(&hsm->objects_lock, NULL);
    return hsm;
}

kbr_err kbr_hsm_open(const char *module_path, const char *token_label, const kbr_secret *pin,
                     kbr_hsm **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_hsm *hsm = NULL;

    *out = NULL;
    KBR_ENSURE(module_path != NULL && token_label != NULL && pin != NULL, KBR_ERR_INTERNAL);
    if (strlen(token_label) == 0 || strlen(token_label) > 32) {
        err = kbr_fail(msg, KBR_ERR_HSM_TOKEN, "token label must be 1..32 bytes");
        goto out;
    }
    hsm = hsm_alloc();
    KBR_ENSURE(hsm != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_secret_new(pin->buf, pin->len, &hsm->pin));
    label_pad(token_label, hsm->token_label);
    KBR_GUARD(module_load(module_path, hsm, msg));
    KBR_GUARD(module_init(hsm, msg));
    KBR_GUARD(first_login(hsm, token_label, msg));
    *out = hsm;
    hsm = NULL;
out:
    local_close(hsm);
    return err;
}

static void local_close(kbr_hsm *hsm)
{
    if (hsm == NULL)
        return;
    if (hsm->f != NULL) {
        if (hsm->anchor_open)
            (void)hsm->f->C_Logout(hsm->anchor);
        if (hsm->slot_known)
            (void)hsm->f->C_CloseAllSessions(hsm->slot);
        if (hsm->finalize)
            (void)hsm->f->C_Finalize(NULL);
    }
    if (hsm->dl != NULL)
        dlclose(hsm->dl);
    kbr_secret_free(hsm->pin);
    pthread_mutex_destroy(&hsm->lock);
    pthread_rwlock_destroy(&hsm->objects_lock);
    free(hsm);
}

/* Replaces the thread's session with a fresh one, logged in. */
static kbr_err session_reopen(kbr_hsm_session *s, bool force_login)
{
    kbr_err err = KBR_OK;
    kbr_hsm *hsm = s->hsm;
    CK_RV rv;

    kbr_p11_cache_clear(s);
    if (s->open)
        (void)hsm->f->C_CloseSession(s->h);
    s->open = false;
    pthread_mutex_lock(&hsm->lock);
    err = force_login ? login_locked(hsm) : recover_locked(hsm);
    if (err == KBR_OK) {
        rv = hsm->f->C_OpenSession(hsm->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                   &s->h);
        err = kbr_hsm_err_from_rv(rv);
    }
    pthread_mutex_unlock(&hsm->lock);
    s->open = err == KBR_OK;
    return err;
}

/* A failed reopen says nothing useful to the caller beyond "the HSM is not there". */
static kbr_err reopen_failed(kbr_err err)
{
    return err == KBR_ERR_NOMEM ? err : KBR_ERR_HSM;
}

kbr_err kbr_p11_session_open(kbr_hsm *hsm, kbr_hsm_session **out)
{
    kbr_err err = KBR_OK;
    kbr_hsm_session *s = NULL;

    *out = NULL;
    KBR_ENSURE(hsm != NULL, KBR_ERR_INTERNAL);
    s = calloc(1, sizeof(*s));
    KBR_ENSURE(s != NULL, KBR_ERR_NOMEM);
    s->hsm = hsm;
    s->fd = -1;
    err = session_reopen(s, false);
    if (err == KBR_ERR_HSM_SESSION)
        err = session_reopen(s, true);
    if (err != KBR_OK) {
        err = reopen_failed(err);
        goto out;
    }
    *out = s;
    s = NULL;
out:
    kbr_p11_session_close(s);
    return err;
}

void kbr_p11_session_close(kbr_hsm_session *s)
{
    if (s == NULL)
        return;
    if (s->open)
        (void)s->hsm->f->C_CloseSession(s->h);
    free(s);
}

kbr_err kbr_p11_with_retry(kbr_hsm_session *s, kbr_p11_attempt fn, void *ctx)
{
    kbr_err err = KBR_ERR_HSM_SESSION;

    if (s->open)
        err = fn(s, ctx);
    if (err != KBR_ERR_HSM_SESSION)
        goto out;
    err = session_reopen(s, false);
    if (err != KBR_OK) {
        err = reopen_failed(err);
        goto out;
    }
    err = fn(s, ctx);
    if (err == KBR_ERR_HSM_SESSION)
        err = KBR_ERR_HSM;
out:
    return err;
}

kbr_err kbr_p11_check_login(kbr_hsm_session *s)
{
    kbr_err err = KBR_OK;
    CK_SESSION_INFO info;

    KBR_GUARD(kbr_hsm_err_from_rv(s->hsm->f->C_GetSessionInfo(s->h, &info)));
    KBR_ENSURE(session_is_user(&info), KBR_ERR_HSM_SESSION);
out:
    return err;
}

static kbr_err ping_attempt(kbr_hsm_session *s, void *ctx)
{
    (void)ctx;
    return kbr_p11_check_login(s);
}

kbr_err kbr_p11_session_ping(kbr_hsm_session *s)
{
    if (s == NULL)
        return KBR_ERR_INTERNAL;
    return kbr_p11_with_retry(s, ping_attempt, NULL);
}

/* Calls that read token objects, beside a key being made (see objects_lock). */
static kbr_err local_find_key(kbr_hsm_session *s, const char *label, kbr_hsm_key_info *out)
{
    kbr_err err;

    pthread_rwlock_rdlock(&s->hsm->objects_lock);
    err = kbr_p11_find_key(s, label, out);
    pthread_rwlock_unlock(&s->hsm->objects_lock);
    return err;
}

static kbr_err local_public_key(kbr_hsm_session *s, const char *label, EVP_PKEY **out)
{
    kbr_err err;

    pthread_rwlock_rdlock(&s->hsm->objects_lock);
    err = kbr_p11_public_key(s, label, out);
    pthread_rwlock_unlock(&s->hsm->objects_lock);
    return err;
}

static kbr_err local_sign(kbr_hsm_session *s, const char *label, kbr_sig_format fmt, kbr_hash hash,
                          const unsigned char *in, size_t inlen, unsigned char **sig,
                          size_t *siglen)
{
    kbr_err err;

    pthread_rwlock_rdlock(&s->hsm->objects_lock);
    err = kbr_p11_sign(s, label, fmt, hash, in, inlen, sig, siglen);
    pthread_rwlock_unlock(&s->hsm->objects_lock);
    return err;
}

static kbr_err local_list_objects(kbr_hsm_session *s, kbr_hsm_key_info **out, size_t *n)
{
    kbr_err err;

    pthread_rwlock_rdlock(&s->hsm->objects_lock);
    err = kbr_p11_list_objects(s, out, n);
    pthread_rwlock_unlock(&s->hsm->objects_lock);
    return err;
}

/* Making a deliverable key runs alone like any key (kbr_p11_generate_deliverable locks);
 * a delivery reads the token's key beside the others. */
static kbr_err local_deliver(kbr_hsm_session *s, const char *label, const kbr_hsm_delivery_req *req,
                             kbr_hsm_delivery *out)
{
    kbr_err err;

    pthread_rwlock_rdlock(&s->hsm->objects_lock);
    err = kbr_p11_deliver(s, label, req, out);
    pthread_rwlock_unlock(&s->hsm->objects_lock);
    return err;
}

static kbr_err local_data_get(kbr_hsm_session *s, const char *label, kbr_hsm_data **out, size_t *n)
{
    kbr_err err;

    pthread_rwlock_rdlock(&s->hsm->objects_lock);
    err = kbr_p11_data_get(s, label, out, n);
    pthread_rwlock_unlock(&s->hsm->objects_lock);
    return err;
}

/* In the process that holds the module, whoever calls writes: there is nothing to check the
 * write against but the caller, who holds the PIN (keybrokerd --init and --recover).  A write
 * makes and destroys token objects, so it waits for readers as a key being made does, and
 * its look-up, creation and removals are not interleaved with another write's. */
static kbr_err local_data_put(kbr_hsm_session *s, const char *label, const unsigned char *value,
                              size_t len, const unsigned char *evidence, size_t evlen)
{
    kbr_err err;

    (void)evidence;
    (void)evlen;
    pthread_rwlock_wrlock(&s->hsm->objects_lock);
    err = kbr_p11_data_put(s, label, value, len);
    pthread_rwlock_unlock(&s->hsm->objects_lock);
    return err;
}

const kbr_hsm_ops kbr_p11_local_ops = {
    .close = local_close,
    .session_open = kbr_p11_session_open,
    .session_close = kbr_p11_session_close,
    .ping = kbr_p11_session_ping,
    .generate = kbr_p11_generate,
    .find_key = local_find_key,
    .public_key = local_public_key,
    .sign = local_sign,
    .list_objects = local_list_objects,
    .generate_deliverable = kbr_p11_generate_deliverable,
    .deliver = local_deliver,
    .data_get = local_data_get,
    .data_put = local_data_put,
};
