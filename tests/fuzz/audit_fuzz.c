/*
 * audit_fuzz.c - offline verification of an audit export: the input is
 * what `keybroker audit export` writes (one entry per line) or the same
 * entries as one JSON array, checked with kbr_audit_verify_entries from the
 * first entry's own seq and prev_hash (a partial export) and from seq 1
 * (a whole log), and each entry hashed with kbr_audit_entry_hash.
 *
 * Beyond not crashing, a verified chain must stay verified from any of its
 * entries on, and must stop verifying when an entry's content changes.
 */
#include "kbr_audit.h"

#include "fuzz.h"

#define MAX_ENTRIES 4096

/* One JSON value per line, as the export writes them; NULL at the first bad line. */
static json_t *read_lines(const char *text, size_t len)
{
    json_t *entries = json_array();
    size_t off = 0;

    FUZZ_CHECK(entries != NULL);
    while (off < len && json_array_size(entries) < MAX_ENTRIES) {
        json_error_t jerr;
        json_t *e =
            json_loadb(text + off, len - off,
                       JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &jerr);
        if (e == NULL) {
            json_decref(entries);
            return NULL;
        }
        json_array_append_new(entries, e);
        FUZZ_CHECK(jerr.position > 0);
        off += (size_t)jerr.position;
        while (off < len && (text[off] == '\n' || text[off] == '\r' || text[off] == ' '))
            off++;
    }
    return entries;
}

static json_t *read_export(const uint8_t *data, size_t size)
{
    json_t *v = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);

    if (json_is_array(v))
        return v;
    json_decref(v);
    return read_lines((const char *)data, size);
}

/* Changes obj whatever it held: a member "fuzz" that is true becomes false and else true. */
static void alter(json_t *obj)
{
    FUZZ_CHECK(json_object_set_new(obj, "fuzz",
                                   json_boolean(!json_is_true(json_object_get(obj, "fuzz")))) == 0);
}

/* The hash leaves out the entry's own "hash" member and nothing else. */
static void hash_entry(const json_t *e)
{
    char h1[65], h2[65];
    json_t *copy;
    kbr_err err = kbr_audit_entry_hash(e, h1);

    if (!json_is_object(e)) {
        FUZZ_CHECK(err == KBR_ERR_BAD_REQUEST);
        return;
    }
    FUZZ_CHECK(err == KBR_OK && strlen(h1) == 64 && strspn(h1, "0123456789abcdef") == 64);
    copy = json_copy((json_t *)e);
    FUZZ_CHECK(copy != NULL);
    json_object_set_new(copy, "hash", json_string("not the hash"));
    FUZZ_CHECK(kbr_audit_entry_hash(copy, h2) == KBR_OK && strcmp(h1, h2) == 0);
    alter(copy);
    FUZZ_CHECK(kbr_audit_entry_hash(copy, h2) == KBR_OK && strcmp(h1, h2) != 0);
    json_decref(copy);
}

/* A chain verified from seq first still verifies from its second entry on. */
static void check_suffix(const json_t *entries, int64_t first)
{
    json_t *rest = json_array();
    const char *prev = json_string_value(json_object_get(json_array_get(entries, 0), "hash"));
    kbr_msg msg = {{0}};

    FUZZ_CHECK(rest != NULL && prev != NULL);
    for (size_t i = 1; i < json_array_size(entries); i++)
        json_array_append(rest, json_array_get(entries, i));
    FUZZ_CHECK(kbr_audit_verify_entries(rest, first + 1, prev, &msg) == KBR_OK);
    json_decref(rest);
}

/* ... and no longer verifies once its last entry says something else. */
static void check_tamper(const json_t *entries, int64_t first, const char *prev)
{
    json_t *forged = json_deep_copy(entries);
    json_t *last;
    kbr_msg msg = {{0}};

    FUZZ_CHECK(forged != NULL);
    last = json_array_get(forged, json_array_size(forged) - 1);
    alter(last);
    FUZZ_CHECK(kbr_audit_verify_entries(forged, first, prev, &msg) == KBR_ERR_BAD_REQUEST);
    FUZZ_CHECK(strncmp(msg.text, "entry ", 6) == 0);
    json_decref(forged);
}

static void verify(const json_t *entries)
{
    const json_t *head = json_array_get(entries, 0);
    const json_t *seq = json_object_get(head, "seq");
    const char *prev = json_string_value(json_object_get(head, "prev_hash"));
    int64_t first = json_is_integer(seq) ? (int64_t)json_integer_value(seq) : 1;
    kbr_msg msg = {{0}};
    kbr_err err;

    if (prev != NULL && strlen(prev) != 64)
        prev = NULL;
    err = kbr_audit_verify_entries(entries, 1, NULL, &msg);
    FUZZ_CHECK(err == KBR_OK || err == KBR_ERR_BAD_REQUEST);
    err = kbr_audit_verify_entries(entries, first, prev, &msg);
    FUZZ_CHECK(err == KBR_OK || err == KBR_ERR_BAD_REQUEST);
    if (err != KBR_OK || json_array_size(entries) == 0)
        return;
    check_tamper(entries, first, prev);
    if (json_array_size(entries) > 1 && first < INT64_MAX)
        check_suffix(entries, first);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *entries = read_export(data, size), *e;
    size_t i;

    if (entries == NULL)
        return 0;
    json_array_foreach(entries, i, e)
    {
        hash_entry(e);
    }
    verify(entries);
    json_decref(entries);
    return 0;
}
