/*
 * arena.c - kbr_arena: a list of blocks, each filled front to back.
 *
 * An allocation larger than a block gets a block of its own, so the common
 * case (many short strings) wastes little and a large one never fails for
 * fragmentation.
 */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "kbr_common.h"

#define BLOCK_SIZE 4096

typedef struct block {
    struct block *next;
    size_t used, size;
    alignas(max_align_t) unsigned char data[];
} block;

struct kbr_arena {
    block *head;
};

kbr_err kbr_arena_new(kbr_arena **out)
{
    *out = calloc(1, sizeof(**out));
    return *out == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

void kbr_arena_free(kbr_arena *a)
{
    block *b, *next;

    if (a == NULL)
        return;
    for (b = a->head; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    free(a);
}

static block *block_new(size_t size)
{
    block *b = calloc(1, sizeof(*b) + size);

    if (b != NULL)
        b->size = size;
    return b;
}

void *kbr_arena_alloc(kbr_arena *a, size_t n)
{
    const size_t align = alignof(max_align_t);
    size_t need = (n + align - 1) / align * align;
    block *b = a->head;
    void *p;

    if (need < n)
        return NULL;
    if (b == NULL || b->size - b->used < need) {
        b = block_new(need > BLOCK_SIZE ? need : BLOCK_SIZE);
        if (b == NULL)
            return NULL;
        /* a full-size block becomes the one to fill; a one-off block goes behind it */
        if (a->head != NULL && need > BLOCK_SIZE) {
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    p = b->data + b->used;
    b->used += need;
    return p;
}

char *kbr_arena_strdup(kbr_arena *a, const char *s)
{
    size_t n;
    char *copy;

    if (s == NULL)
        return NULL;
    n = strlen(s) + 1;
    copy = kbr_arena_alloc(a, n);
    if (copy != NULL)
        memcpy(copy, s, n);
    return copy;
}
