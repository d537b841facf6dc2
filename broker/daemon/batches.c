/*
 * batches.c - the event thread's registry of production batches with their
 * exact counters.  A provisioning reserves a slot here before it reaches a
 * worker, and gives it back or turns it into a committed device when its
 * audit record settles: the quantity holds under any concurrency without a
 * lock.  At start the counters come from the store, where each device was
 * committed in the same transaction as its audit entry.
 */
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "kbd.h"

typedef struct {
    kbd_batch b;
    UT_hash_handle hh;
} batch_node;

struct kbd_batches {
    batch_node *by_name;
};

kbr_err kbd_batches_new(kbd_batches **out)
{
    *out = calloc(1, sizeof(**out));
    return *out == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

static void node_free(batch_node *n)
{
    if (n == NULL)
        return;
    free(n->b.batch);
    free(n->b.product);
    free(n->b.factory);
    free(n);
}

void kbd_batches_free(kbd_batches *b)
{
    batch_node *n, *tmp;

    if (b == NULL)
        return;
    HASH_ITER(hh, b->by_name, n, tmp)
    {
        HASH_DEL(b->by_name, n);
        node_free(n);
    }
    free(b);
}

kbd_batch *kbd_batches_find(kbd_batches *b, const char *name)
{
    batch_node *n = NULL;

    HASH_FIND_STR(b->by_name, name, n);
    return n == NULL ? NULL : &n->b;
}

kbr_err kbd_batches_put(kbd_batches *b, const json_t *batch)
{
    kbr_err err = KBR_OK;
    const char *name = json_string_value(json_object_get(batch, "batch"));
    const char *product = json_string_value(json_object_get(batch, "product"));
    const char *factory = json_string_value(json_object_get(batch, "factory"));
    json_t *quantity = json_object_get(batch, "quantity");
    batch_node *n = NULL;
    kbd_batch *old;

    KBR_ENSURE(name != NULL && product != NULL && factory != NULL && json_is_integer(quantity),
               KBR_ERR_INTERNAL);
    old = kbd_batches_find(b, name);
    if (old != NULL) {
        old->quantity = json_integer_value(quantity);
        old->provisioned = json_integer_value(json_object_get(batch, "provisioned"));
        goto out;
    }
    n = calloc(1, sizeof(*n));
    KBR_ENSURE(n != NULL, KBR_ERR_NOMEM);
    n->b.batch = strdup(name);
    n->b.product = strdup(product);
    n->b.factory = strdup(factory);
    KBR_ENSURE(n->b.batch != NULL && n->b.product != NULL && n->b.factory != NULL, KBR_ERR_NOMEM);
    n->b.quantity = json_integer_value(quantity);
    n->b.provisioned = json_integer_value(json_object_get(batch, "provisioned"));
    HASH_ADD_KEYPTR(hh, b->by_name, n->b.batch, strlen(n->b.batch), n);
    n = NULL;
out:
    node_free(n);
    return err;
}
