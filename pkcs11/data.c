/*
 * data.c - data objects on the token (CKO_DATA): what the broker keeps in the HSM beside its
 * keys, addressed by label.  Today one: the audit record, the latest signed tree head, kept
 * where an attacker holding only the broker's disk cannot rewind it.
 *
 * Objects are created as token objects, private (read and written only by the logged-in
 * user), with CKA_APPLICATION "keybroker".  A write makes a new object and then destroys the
 * ones it replaces, so a label holds one object, or, after an interrupted write, the old and
 * the new: a read returns every one.
 */
#include <stdlib.h>
#include <string.h>

#include "hsm_int.h"

#define APPLICATION "keybroker"

/* Handles of every data object labelled label (none: *n == 0, after making sure a lost login
 * is not what hides them). */
static kbr_err data_find(kbr_hsm_session *s, const char *label, CK_OBJECT_HANDLE **out, size_t *n)
{
    kbr_err err = KBR_OK;
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE templ[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, (void *)label, strlen(label)},
    };

    KBR_GUARD(kbr_p11_find_all(s, templ, 2, out, n));
    if (*n == 0)
        KBR_GUARD(kbr_p11_check_login(s));
    /* more than a write interrupted at every step could leave: not ours to choose from */
    KBR_ENSURE(*n <= KBR_HSM_DATA_OBJECTS_MAX, KBR_ERR_HSM_KEY);
out:
    if (err != KBR_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return err;
}

void kbr_hsm_data_free(kbr_hsm_data *items, size_t n)
{
    for (size_t i = 0; items != NULL && i < n; i++)
        free(items[i].value);
    free(items);
}

typedef struct {
    const char *label;
    const unsigned char *value;
    size_t len;
    kbr_hsm_data *items;
    size_t n;
    bool vanished; /* an object found was gone when its value was read */
} data_ctx;

/* Searches made again for a label whose objects another writer keeps replacing. */
#define DATA_GET_TRIES 8

static kbr_err get_attempt(kbr_hsm_session *s, void *ctx)
{
    kbr_err err = KBR_OK;
    data_ctx *c = ctx;
    CK_OBJECT_HANDLE *found = NULL;
    kbr_hsm_data *items = NULL;
    size_t n = 0, got = 0;

    KBR_GUARD(data_find(s, c->label, &found, &n));
    items = calloc(n > 0 ? n : 1, sizeof(*items));
    KBR_ENSURE(items != NULL, KBR_ERR_NOMEM);
    for (got = 0; got < n; got++) {
        err = kbr_p11_get_attr(s, found[got], CKA_VALUE, &items[got].value, &items[got].len);
        c->vanished = err == KBR_ERR_HSM_KEY;
        KBR_GUARD(err);
        KBR_ENSURE(items[got].len >= 1 && items[got].len <= KBR_HSM_DATA_MAX, KBR_ERR_HSM_KEY);
    }
    c->items = items;
    c->n = n;
    items = NULL;
out:
    kbr_hsm_data_free(items, n);
    free(found);
    return err;
}

/*
 * Another process may replace the objects between the search and the read of their values
 * (`keybrokerd --check` reads the audit record while the serving broker writes it).  A writer
 * makes the new object before it destroys the old, so an object gone when its value is read
 * means a newer one is there: the search is made again.
 */
kbr_err kbr_p11_data_get(kbr_hsm_session *s, const char *label, kbr_hsm_data **out, size_t *n)
{
    kbr_err err = KBR_OK;
    data_ctx c = {.label = label};

    for (int tries = 1;; tries++) {
        c.vanished = false;
        err = kbr_p11_with_retry(s, get_attempt, &c);
        if (err != KBR_ERR_HSM_KEY || !c.vanished || tries == DATA_GET_TRIES)
            break;
    }
    KBR_GUARD(err);
    *out = c.items;
    *n = c.n;
out:
    return err;
}

/*
 * The new object first, then the old ones go: an interruption between the two leaves both,
 * never neither, and the next read returns both for the caller to choose from.  (A value is
 * not changed in place: modules, SoftHSM2 among them, may keep CKA_VALUE of a data object
 * read-only.)
 */
static kbr_err put_attempt(kbr_hsm_session *s, void *ctx)
{
    static CK_BBOOL yes = CK_TRUE;
    kbr_err err = KBR_OK;
    data_ctx *c = ctx;
    CK_FUNCTION_LIST *f = s->hsm->f;
    CK_OBJECT_HANDLE *old = NULL, obj = CK_INVALID_HANDLE;
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE templ[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_MODIFIABLE, &yes, sizeof(yes)},
        {CKA_LABEL, (void *)c->label, strlen(c->label)},
        {CKA_APPLICATION, (void *)APPLICATION, strlen(APPLICATION)},
        {CKA_VALUE, (void *)c->value, c->len},
    };
    size_t n = 0;

    KBR_GUARD(data_find(s, c->label, &old, &n));
    KBR_GUARD(kbr_hsm_err_from_rv(
        f->C_CreateObject(s->h, templ, sizeof(templ) / sizeof(templ[0]), &obj)));
    for (size_t i = 0; i < n; i++)
        KBR_GUARD(kbr_hsm_err_from_rv(f->C_DestroyObject(s->h, old[i])));
out:
    free(old);
    return err;
}

kbr_err kbr_p11_data_put(kbr_hsm_session *s, const char *label, const unsigned char *value,
                         size_t len)
{
    data_ctx c = {.label = label, .value = value, .len = len};

    /* the caller holds objects_lock for writing (hsm.c), so the look-up, the creation and the
     * removals go together and writes do not interleave */
    return kbr_p11_with_retry(s, put_attempt, &c);
}
