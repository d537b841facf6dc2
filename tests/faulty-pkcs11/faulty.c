/*
 * faulty.c - a PKCS#11 module for tests that forwards every call to a real
 * module (KBR_FAULTY_MODULE, default SoftHSM2) and fails on command: while
 * the file named by KBR_FAULTY_FILE exists, the calls a broker makes during
 * operation answer CKR_DEVICE_REMOVED, as a token pulled from its slot or
 * an HSM that dropped off the network would.  Removing the file brings the
 * "device" back.
 *
 * While the file named by KBR_FAULTY_DIE_AFTER_WRITE exists, a data object
 * written (C_CreateObject) is written, and then the broker dies at once,
 * every process of it: the network process (the HSM process's grandparent),
 * the HSM keeper and the HSM process, as a power cut right after the HSM
 * recorded a checkpoint would leave them.
 *
 * While the file named by KBR_FAULTY_VANISH exists, the next read of a data object's
 * CKA_VALUE answers CKR_OBJECT_HANDLE_INVALID, and the file is removed: the object a search
 * found was replaced by another process's writer (the new object made, then the old
 * destroyed) before its value was read.
 */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST real;
static CK_FUNCTION_LIST wrapped;
static int loaded;

static int faulty(void)
{
    const char *f = getenv("KBR_FAULTY_FILE");

    return f != NULL && access(f, F_OK) == 0;
}

#define FAULT_OR(call)                                                                             \
    do {                                                                                           \
        if (faulty())                                                                              \
            return CKR_DEVICE_REMOVED;                                                             \
        return (call);                                                                             \
    } while (0)

static CK_RV w_open_session(CK_SLOT_ID slot, CK_FLAGS flags, void *app, CK_NOTIFY notify,
                            CK_SESSION_HANDLE *out)
{
    FAULT_OR(real.C_OpenSession(slot, flags, app, notify, out));
}

static CK_RV w_get_session_info(CK_SESSION_HANDLE s, CK_SESSION_INFO *info)
{
    FAULT_OR(real.C_GetSessionInfo(s, info));
}

static CK_RV w_login(CK_SESSION_HANDLE s, CK_USER_TYPE type, unsigned char *pin, unsigned long len)
{
    FAULT_OR(real.C_Login(s, type, pin, len));
}

static CK_RV w_find_init(CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, unsigned long n)
{
    FAULT_OR(real.C_FindObjectsInit(s, tmpl, n));
}

static int vanished(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, const CK_ATTRIBUTE *tmpl,
                    unsigned long n)
{
    const char *f = getenv("KBR_FAULTY_VANISH");
    CK_OBJECT_CLASS cls = 0;
    CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};

    if (f == NULL || n != 1 || tmpl[0].type != CKA_VALUE || access(f, F_OK) != 0)
        return 0;
    if (real.C_GetAttributeValue(s, o, &a, 1) != CKR_OK || cls != CKO_DATA)
        return 0;
    return unlink(f) == 0;
}

static CK_RV w_get_attr(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE *tmpl,
                        unsigned long n)
{
    if (faulty())
        return CKR_DEVICE_REMOVED;
    if (vanished(s, o, tmpl, n))
        return CKR_OBJECT_HANDLE_INVALID;
    return real.C_GetAttributeValue(s, o, tmpl, n);
}

static CK_RV w_sign_init(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE k)
{
    FAULT_OR(real.C_SignInit(s, m, k));
}

static CK_RV w_sign(CK_SESSION_HANDLE s, unsigned char *in, unsigned long inlen, unsigned char *sig,
                    unsigned long *siglen)
{
    FAULT_OR(real.C_Sign(s, in, inlen, sig, siglen));
}

/* The parent of pid, from /proc/pid/stat ("pid (comm) state ppid ..."); 0 if unknown. */
static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512], *close_paren;
    FILE *f;
    size_t n;
    int ppid = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    close_paren = strrchr(buf, ')');
    if (close_paren == NULL || sscanf(close_paren + 1, " %*c %d", &ppid) != 1)
        return 0;
    return (pid_t)ppid;
}

static void die_after_write(void)
{
    const char *f = getenv("KBR_FAULTY_DIE_AFTER_WRITE");
    pid_t keeper, network;

    if (f == NULL || access(f, F_OK) != 0)
        return;
    keeper = getppid();
    network = parent_of(keeper);
    if (network > 1)
        kill(network, SIGKILL);
    if (keeper > 1)
        kill(keeper, SIGKILL);
    kill(getpid(), SIGKILL);
}

static CK_RV w_create_object(CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, unsigned long n,
                             CK_OBJECT_HANDLE *out)
{
    CK_RV rv;

    if (faulty())
        return CKR_DEVICE_REMOVED;
    rv = real.C_CreateObject(s, tmpl, n, out);
    if (rv == CKR_OK)
        die_after_write();
    return rv;
}

static CK_RV w_generate_key_pair(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_ATTRIBUTE *pub,
                                 unsigned long npub, CK_ATTRIBUTE *priv, unsigned long npriv,
                                 CK_OBJECT_HANDLE *hpub, CK_OBJECT_HANDLE *hpriv)
{
    FAULT_OR(real.C_GenerateKeyPair(s, m, pub, npub, priv, npriv, hpub, hpriv));
}

static CK_RV load_real(void)
{
    const char *path = getenv("KBR_FAULTY_MODULE");
    CK_C_GetFunctionList get = NULL;
    CK_FUNCTION_LIST *list = NULL;
    void *dl;

    if (loaded)
        return CKR_OK;
    dl = dlopen(path != NULL ? path : "/usr/lib/softhsm/libsofthsm2.so",
                RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (dl == NULL)
        return CKR_GENERAL_ERROR;
    *(void **)(&get) = dlsym(dl, "C_GetFunctionList");
    if (get == NULL || get(&list) != CKR_OK)
        return CKR_GENERAL_ERROR;
    real = *list;
    wrapped = *list;
    wrapped.C_OpenSession = w_open_session;
    wrapped.C_GetSessionInfo = w_get_session_info;
    wrapped.C_Login = w_login;
    wrapped.C_FindObjectsInit = w_find_init;
    wrapped.C_GetAttributeValue = w_get_attr;
    wrapped.C_SignInit = w_sign_init;
    wrapped.C_Sign = w_sign;
    wrapped.C_GenerateKeyPair = w_generate_key_pair;
    wrapped.C_CreateObject = w_create_object;
    wrapped.C_GetFunctionList = C_GetFunctionList;
    loaded = 1;
    return CKR_OK;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST **out)
{
    CK_RV rv = load_real();

    if (rv != CKR_OK)
        return rv;
    *out = &wrapped;
    return CKR_OK;
}
