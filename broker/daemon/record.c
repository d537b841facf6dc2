/*
 * record.c - what a request puts into its audit record besides the
 * outcome: the ledger effects it asks the writer to apply.
 */
#include <stdlib.h>

#include "kbd.h"

kbr_err kbd_req_effect(kbd_req *r, const kbr_effect *e)
{
    kbr_err err = KBR_OK;

    if (r->rec->effects == NULL)
        KBR_GUARD(kbr_effects_new(&r->rec->effects));
    KBR_GUARD(kbr_effects_add(r->rec->effects, e));
out:
    return err;
}

kbr_err kbd_req_document(kbd_req *r, const void *body, size_t len, char sha256[65])
{
    kbr_err err = KBR_OK;

    if (r->rec->effects == NULL)
        KBR_GUARD(kbr_effects_new(&r->rec->effects));
    KBR_GUARD(kbr_effects_add_document(r->rec->effects, body, len, sha256));
out:
    return err;
}

kbr_err kbd_strings_of(const json_t *arr, kbr_strings *out)
{
    const char **items = calloc(json_array_size(arr) + 1, sizeof(*items));
    size_t i;
    const json_t *v;

    *out = (kbr_strings){NULL, 0};
    if (items == NULL)
        return KBR_ERR_NOMEM;
    json_array_foreach(arr, i, v)
    {
        items[i] = json_string_value(v);
    }
    *out = (kbr_strings){items, json_array_size(arr)};
    return KBR_OK;
}

json_t *kbd_effect_json(const kbr_effect *e)
{
    kbr_effects *one = NULL;
    json_t *arr = NULL, *obj = NULL;

    if (kbr_effects_new(&one) == KBR_OK && kbr_effects_add(one, e) == KBR_OK &&
        kbr_effects_to_json(one, &arr) == KBR_OK) {
        obj = json_incref(json_array_get(arr, 0));
        json_object_del(obj, "type");
    }
    json_decref(arr);
    kbr_effects_free(one);
    return obj;
}
