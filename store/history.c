/*
 * history.c - the firmware history sets both back ends keep (history_sets): which versions
 * a set holds, and the one spelling of a set, so that two devices with the same history
 * share one row however their versions came.
 */
#include <stdlib.h>
#include <string.h>

#include "backend.h"

bool kbr_store_history_holds(const json_t *versions, const char *version)
{
    const json_t *v;
    size_t i;

    json_array_foreach(versions, i, v)
    {
        if (strcmp(json_string_value(v), version) == 0)
            return true;
    }
    return false;
}

static int by_text(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

kbr_err kbr_store_history_text(const json_t *versions, const char *added, char **out)
{
    kbr_err err = KBR_OK;
    size_t n = json_array_size(versions);
    const char **list = NULL;
    json_t *sorted = NULL;

    *out = NULL;
    list = calloc(n + 1, sizeof(*list));
    KBR_ENSURE(list != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < n; i++)
        list[i] = json_string_value(json_array_get(versions, i));
    list[n] = added;
    qsort(list, n + 1, sizeof(*list), by_text);
    sorted = json_array();
    KBR_ENSURE(sorted != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i <= n; i++)
        KBR_ENSURE(json_array_append_new(sorted, json_string(list[i])) == 0, KBR_ERR_NOMEM);
    *out = json_dumps(sorted, JSON_COMPACT);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    json_decref(sorted);
    free(list);
    return err;
}
