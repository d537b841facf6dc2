/*
 * test_store_audit.c - the audit rows the store keeps: pages, scopes, and what cannot be
 * rewritten.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "entry.h"
#include "kbr_store.h"
#include "store_fixture.h"

static void insert_row(kbr_store *st, int64_t seq, const char *sub)
{
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbt_entry_insert(st, seq, &(kbt_entry){.sub = sub, .op = "read"}), KBR_OK);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
}

/* An entry about products (a JSON array text, or NULL for none) naming key. */
static void insert_about(kbr_store *st, int64_t seq, const char *key, const char *products)
{
    json_t *p = products != NULL ? json_loads(products, 0, NULL) : NULL;

    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbt_entry_insert(st, seq, &(kbt_entry){.key = key, .products = p}), KBR_OK);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
    json_decref(p);
}

static char *seqs_within(kbr_store *st, int64_t after, int64_t limit, const kbr_audit_scope *scope)
{
    json_t *page = NULL;
    char buf[256] = "";
    size_t i;
    const json_t *e;

    assert_int_equal(kbr_store_audit_page_within(st, after, limit, scope, &page), KBR_OK);
    json_array_foreach(page, i, e)
    {
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof(buf) - n, "%s%lld", i > 0 ? "," : "",
                 (long long)json_integer_value(json_object_get(e, "seq")));
    }
    json_decref(page);
    return strdup(buf);
}

static void expect_seqs(kbr_store *st, int64_t after, int64_t limit, const kbr_audit_scope *scope,
                        const char *want)
{
    char *got = seqs_within(st, after, limit, scope);

    if (strcmp(got, want) != 0)
        fail_msg("expected entries %s, got %s", want, got);
    free(got);
}

/* What a reader limited to products or keys reads of the log (API.md "Custody boundaries"). */
static void test_audit_within_scope(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    const char *acme[] = {"acme"}, *acmes[] = {"acme*"}, *fw[] = {"fw-*"};
    kbr_audit_scope by_acme = {.products_limited = true, .products = acme, .nproducts = 1};
    kbr_audit_scope by_prefix = {.products_limited = true, .products = acmes, .nproducts = 1};
    kbr_audit_scope by_key = {.keys_limited = true, .keys = fw, .nkeys = 1};
    kbr_audit_scope both = {.products_limited = true,
                            .products = acme,
                            .nproducts = 1,
                            .keys_limited = true,
                            .keys = fw,
                            .nkeys = 1};
    kbr_audit_scope nothing = {.products_limited = true, .nproducts = 0};
    bool visible = true;

    insert_about(st, 1, NULL, NULL);                     /* the broker's own */
    insert_about(st, 2, "fw-acme", "[\"acme\"]");        /* acme's key */
    insert_about(st, 3, "fw-globex", "[\"globex\"]");    /* another team's */
    insert_about(st, 4, "dbg", "[\"acme\",\"globex\"]"); /* a shared key */
    insert_about(st, 5, NULL, "[\"acme-gw\"]");          /* a product acme* names */
    insert_about(st, 6, NULL, "[\"acme*\"]");            /* what an acme* token did */
    insert_about(st, 7, "fw-acme", "[\"acme\"]");
    expect_seqs(st, 0, 100, NULL, "1,2,3,4,5,6,7");
    expect_seqs(st, 0, 100, &by_acme, "2,4,7");
    expect_seqs(st, 2, 1, &by_acme, "4"); /* pages by seq, however sparse */
    expect_seqs(st, 4, 100, &by_acme, "7");
    expect_seqs(st, 0, 100, &by_prefix, "2,4,5,6,7");
    expect_seqs(st, 0, 100, &by_key, "2,3,7");
    expect_seqs(st, 0, 100, &both, "2,7");
    expect_seqs(st, 0, 100, &nothing, "");
    assert_int_equal(kbr_store_audit_visible(st, 3, &by_acme, &visible), KBR_OK);
    assert_false(visible);
    assert_int_equal(kbr_store_audit_visible(st, 6, &by_prefix, &visible), KBR_OK);
    assert_true(visible);
    assert_int_equal(kbr_store_audit_visible(st, 6, &by_acme, &visible), KBR_OK);
    assert_false(visible);
    assert_int_equal(kbr_store_audit_visible(st, 2, &both, &visible), KBR_OK);
    assert_true(visible);
    assert_int_equal(kbr_store_audit_visible(st, 1, NULL, &visible), KBR_OK);
    assert_true(visible);
    assert_int_equal(kbr_store_audit_visible(st, 8, NULL, &visible), KBR_ERR_NOT_FOUND);
    kbr_store_close(st);
}

static kbr_err stop_at_two(int64_t seq, const char *entry_json, const char *hash, void *arg)
{
    (void)entry_json;
    (void)hash;
    *(int64_t *)arg = seq;
    return seq == 2 ? KBR_ERR_NOT_FOUND : KBR_OK;
}

static void test_audit_rows(void **state)
{
    static const char *const rewrites[] = {
        "UPDATE audit SET sub = 'mallory' WHERE seq = 2",
        "UPDATE audit SET op = 'read', outcome = 'denied' WHERE seq = 2",
        "UPDATE audit SET key_use = 1",
        "UPDATE audit SET prev_hash = 'x'",
    };
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    json_t *page = NULL;
    int64_t seen = 0;
    char hash[65];

    insert_row(st, 1, "ci:one");
    insert_row(st, 2, "ci:two");
    insert_row(st, 3, "ci:three");
    /* seq is the primary key: the log cannot hold two entries with one number. */
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbt_entry_insert(st, 2, &(kbt_entry){.sub = "ci:again"}),
                     KBR_ERR_STORE_CONSTRAINT);
    kbr_store_rollback(st);
    /* a row is the entry it holds: its seq, and nothing that is not JSON */
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbr_store_audit_insert(st, &(kbr_store_audit_row){4,
                                                                       "{\"seq\":5,\"time\":"
                                                                       "\"t\",\"outcome\":"
                                                                       "\"ok\",\"prev_hash\":"
                                                                       "\"x\"}",
                                                                       ZEROS_OF_64}),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_not_equal(
        kbr_store_audit_insert(st, &(kbr_store_audit_row){4, "{\"seq\":4,", ZEROS_OF_64}), KBR_OK);
    kbr_store_rollback(st);

    assert_int_equal(kbr_store_audit_page(st, 1, 5, &page), KBR_OK);
    assert_int_equal(json_array_size(page), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(page, 0), "sub")),
                        "ci:two");
    snprintf(hash, sizeof(hash), "%s",
             json_string_value(json_object_get(json_array_get(page, 1), "hash")));
    assert_int_equal(strspn(hash, "0123456789abcdef"), 64);
    json_decref(page);

    /* what the store keeps about an entry is derived from it: none of it can be rewritten */
    assert_int_equal(
        kbt_store_sql(f->url, "SELECT sub FROM audit WHERE seq = 2", hash, sizeof(hash), NULL), 0);
    assert_string_equal(hash, "ci:two"); /* the connection reaches the rows it must not change */
    for (size_t i = 0; i < sizeof(rewrites) / sizeof(rewrites[0]); i++)
        if (kbt_store_sql(f->url, rewrites[i], NULL, 0, NULL) == 0)
            fail_msg("%s was allowed", rewrites[i]);
    assert_int_equal(kbr_store_audit_page(st, 1, 1, &page), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(json_array_get(page, 0), "sub")),
                        "ci:two");
    json_decref(page);
    assert_int_equal(kbr_store_audit_walk(st, 0, 10, stop_at_two, &seen), KBR_ERR_NOT_FOUND);
    assert_int_equal(seen, 2);
    kbr_store_close(st);
}

/*
 * The SQL the store runs over scopes is the C rule: GLOB for a "prefix*" entry (where the index
 * needs it) and the kbr_name_matches SQL function agree with kbr_name_matches on every pair of
 * a corpus of names and patterns built to find the edges.
 */
/*
 * The writer keeps the WAL short by itself.  The checkpointer beside it can be a commit
 * behind all the time under load, and a WAL that never starts over grows without end; here
 * no checkpointer runs at all, and 10,000 commits must still leave the WAL near
 * kbr_store_writer_between's threshold of 8,192 frames, not at their 30,000 and more.
 */
static void test_writer_keeps_wal_short(void **state)
{
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    char wal[160], hash[65];
    struct stat sb;
    int64_t last = 0;
    int copies = 0;
    bool copied;

    if (kbt_pg()) {
        kbr_store_close(st);
        skip(); /* PostgreSQL keeps its own WAL */
    }
    assert_int_equal(kbr_store_writer_mode(st), KBR_OK);
    for (int64_t seq = 1; seq <= 10000; seq++) {
        insert_row(st, seq, "ci:wal");
        assert_int_equal(kbr_store_writer_between(st, &copied), KBR_OK);
        copies += copied;
    }
    /* it says when it copied (the writer times those): not at every commit, only past 8,192
     * frames; here about once in 2,500 commits */
    if (copies < 1 || copies > 10000 / 1000)
        fail_msg("the writer copied %d times in 10,000 commits", copies);
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_int_equal(stat(wal, &sb), 0);
    /* 8,192 frames and the few of the commit that crossed it (a frame: 4 KiB and 24 bytes) */
    if (sb.st_size > 8300 * (4096 + 24))
        fail_msg("the WAL is %lld bytes after 10,000 commits", (long long)sb.st_size);
    /* and every commit is there */
    assert_int_equal(kbr_store_audit_tail(st, &last, hash), KBR_OK);
    assert_int_equal(last, 10000);
    kbr_store_close(st);
}

static void test_scope_rule_in_sql(void **state)
{
    static const char alphabet[] = "ab.-_:@+9Z";
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    char names[400][8], pattern[9];
    unsigned seed = 7;
    int checked = 0;

    kbr_store_close(st);
    if (kbt_pg())
        skip(); /* SQLite's GLOB; the PostgreSQL store matches scopes by the patterns test_common
                   checks */
    for (int i = 0; i < 400; i++) {
        int len = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 6;
        for (int k = 0; k < len; k++)
            names[i][k] = alphabet[((seed = seed * 1103515245u + 12345u) >> 16) % 10];
        names[i][len] = '\0';
    }
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    /* the store's own connection registers the function; a plain one gets GLOB only */
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT ?2 GLOB ?1", -1, &stmt, NULL), SQLITE_OK);
    for (int p = 0; p < 400; p++) {
        size_t plen = (size_t)(p % 5);
        snprintf(pattern, sizeof(pattern), "%.*s*", (int)plen, names[p]);
        for (int n = 0; n < 400; n++) {
            sqlite3_bind_text(stmt, 1, pattern, -1, SQLITE_STATIC);
            sqlite3_bind_text(stmt, 2, names[n], -1, SQLITE_STATIC);
            assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
            if ((sqlite3_column_int(stmt, 0) != 0) != kbr_name_matches(pattern, names[n]))
                fail_msg("\"%s\" GLOB \"%s\" disagrees with the scope rule", names[n], pattern);
            sqlite3_reset(stmt);
            checked++;
        }
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    assert_int_equal(checked, 160000);
}

/*
 * The scope rule as each back end applies it in SQL (SQLite's GLOB, PostgreSQL's LIKE with
 * the prefix's '_' and '%' escaped), against kbr_name_matches, through the store's own API:
 * 400 entries, each with a random name from an alphabet of the name characters that SQL
 * patterns treat specially ('_', '.', '-') and others, as its key and its product; then what
 * a reader limited to each of 400 patterns (exact names and prefixes of 0 to 4 characters
 * followed by '*') reads, by key and by product.
 */
static void test_scope_rule_in_store(void **state)
{
    static const char alphabet[] = "ab.-_:@+9Z";
    fixture *f = *state;
    kbr_store *st = open_ok(f);
    char names[400][8], pattern[9];
    unsigned seed = 11;
    int checked = 0;

    for (int i = 0; i < 400; i++) {
        int len = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 6;
        for (int k = 0; k < len; k++)
            names[i][k] = alphabet[((seed = seed * 1103515245u + 12345u) >> 16) % 10];
        names[i][len] = '\0';
    }
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    for (int i = 0; i < 400; i++) {
        json_t *products = json_pack("[s]", names[i]);
        assert_int_equal(
            kbt_entry_insert(st, i + 1, &(kbt_entry){.key = names[i], .products = products}),
            KBR_OK);
        json_decref(products);
    }
    assert_int_equal(kbr_store_commit(st), KBR_OK);
    for (int p = 0; p < 400; p++) {
        const char *one[1] = {pattern};
        kbr_audit_scope by_key = {.keys_limited = true, .keys = one, .nkeys = 1};
        kbr_audit_scope by_product = {.products_limited = true, .products = one, .nproducts = 1};
        const kbr_audit_scope *scopes[2] = {&by_key, &by_product};

        if (p % 6 == 5)
            snprintf(pattern, sizeof(pattern), "%.7s", names[p]);
        else
            snprintf(pattern, sizeof(pattern), "%.*s*", p % 5, names[p]);
        for (int k = 0; k < 2; k++) {
            bool seen[401] = {false};
            json_t *page = NULL;
            const json_t *e;
            size_t i;

            assert_int_equal(kbr_store_audit_page_within(st, 0, 1000, scopes[k], &page), KBR_OK);
            json_array_foreach(page, i, e)
            {
                json_int_t seq = json_integer_value(json_object_get(e, "seq"));
                assert_true(seq >= 1 && seq <= 400);
                seen[seq] = true;
            }
            json_decref(page);
            for (int n = 0; n < 400; n++, checked++)
                if (seen[n + 1] != kbr_name_matches(pattern, names[n]))
                    fail_msg("a reader limited to %s \"%s\" %s the entry about \"%s\"",
                             k == 0 ? "key" : "product", pattern,
                             seen[n + 1] ? "reads" : "does not read", names[n]);
        }
    }
    assert_int_equal(checked, 320000);
    kbr_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_audit_within_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scope_rule_in_sql, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scope_rule_in_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_keeps_wal_short, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
