/*
 * test_evidence.c - the log is the source of truth: keybrokerd --verify-store rebuilds
 * every ledger fact from the audit entries of a deployment that has lived a little (keys and
 * a CA certificate, batches, devices provisioned, replayed, rotated and revoked, CRLs, builds
 * signed with a CycloneDX document and an inline list, an OTA report, a debug unlock, tokens
 * issued and revoked, checkpoints), finds the store equal to its log, also while the broker serves,
 * and names the first difference of every kind of tampering with a copy of it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/rand.h>
#include <sqlite3.h>

#include "harness.h"
#include "kbr_audit.h"
#include "kbr_store.h"

static kbt_env *env;

static void must(kbt_resp r, long status, const char *what)
{
    if (r.status != status)
        fail_msg("%s: expected %ld, got %ld %s", what, status, r.status, r.body);
    kbt_resp_free(&r);
}

/* The device provisioned, and its answer asked for again (a replay changes nothing). */
static void provision(const char *tok, const char *serial)
{
    char *csr = kbt_csr_pem(NULL, NULL);
    json_t *body = json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:s}}", "key", "ca-ev", "csr_pem", csr,
                             "device", "serial", serial, "product", "meter", "batch", "b-ev",
                             "firmware_version", "1.0.0");

    must(kbt_callj(env, "POST", "/v1/provision", tok, body), 201, serial);
    must(kbt_callj(env, "POST", "/v1/provision", tok, body), 200, serial);
    json_decref(body);
    free(csr);
}

static void sign_cyclonedx(const char *tok)
{
    static const char doc[] =
        "{\"bomFormat\":\"CycloneDX\",\"specVersion\":\"1.5\",\"components\":["
        "{\"name\":\"openssl\",\"version\":\"3.0.11\",\"purl\":\"pkg:deb/debian/openssl@3.0.11\"},"
        "{\"name\":\"z\\u00fcrich-lib\",\"version\":\"1\"}]}";
    char *b64 = NULL, body[2048];

    assert_int_equal(kbr_b64_encode((const unsigned char *)doc, strlen(doc), &b64), KBR_OK);
    snprintf(body, sizeof(body),
             "{\"key\":\"fw-ev\",\"digest\":\"%064d\",\"artifact\":{\"product\":\"meter\","
             "\"version\":\"1.0.0\"},\"sbom_b64\":\"%s\"}",
             1, b64);
    must(kbt_call(env, "POST", "/v1/sign", tok, body), 200, "sign 1.0.0");
    free(b64);
}

static void debug_unlock(void)
{
    char *tok = kbt_token(env, "{\"sub\":\"factory:rework\",\"ops\":[\"debug-auth\"],\"ttl\":600}");
    unsigned char ch[32], msg[36];
    char hex[65], *b64 = NULL;
    json_t *body;

    RAND_bytes(ch, sizeof(ch));
    memcpy(msg, "ADAC", 4);
    memcpy(msg + 4, ch, 32);
    kbr_hex_encode_buf(ch, 32, hex);
    assert_int_equal(kbr_b64_encode(msg, sizeof(msg), &b64), KBR_OK);
    body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "key", "dbg-ev", "device", "M-2", "product",
                     "meter", "challenge", hex, "permissions", "01", "ticket", "RMA-1",
                     "message_b64", b64);
    must(kbt_callj(env, "POST", "/v1/debug-auth", tok, body), 200, "debug unlock");
    json_decref(body);
    free(b64);
    free(tok);
}

static void rotate(const char *serial)
{
    char *tok = kbt_token(env, "{\"sub\":\"ota:meter\",\"ops\":[\"rotate\"],\"keys\":[\"ca-ev\"],"
                               "\"ttl\":600}");
    char *csr = kbt_csr_pem(NULL, NULL), path[96];
    json_t *body = json_pack("{s:s,s:s,s:s}", "key", "ca-ev", "product", "meter", "csr_pem", csr);

    snprintf(path, sizeof(path), "/v1/devices/%s/certificates", serial);
    must(kbt_callj(env, "POST", path, tok, body), 201, "rotate");
    json_decref(body);
    free(csr);
    free(tok);
}

static void ota_report(void)
{
    char *tok = kbt_token(env, "{\"sub\":\"ota:meter\",\"ops\":[\"ota-report\"],\"ttl\":600}");
    char at[KBR_TIME_LEN];
    json_t *body;

    kbr_time_fmt(time(NULL), at);
    body = json_pack("{s:s,s:s,s:s,s:[{s:s,s:s,s:s},{s:s,s:s,s:s}]}", "product", "meter", "version",
                     "1.1.0", "campaign", "c-1", "results", "device", "M-1", "status", "installed",
                     "at", at, "device", "M-2", "status", "failed", "at", at);
    must(kbt_callj(env, "POST", "/v1/ota/deployments", tok, body), 200, "OTA report");
    json_decref(body);
    free(tok);
}

static int setup(void **state)
{
    char *factory, *ci, *spare;
    kbt_resp r;

    (void)state;
    env = kbt_start("checkpoint_every = 5\n");
    /* PostgreSQL's identity columns skip values a rolled-back insert took; here every one
     * skips its first seven, so --verify-store must compare what the ids name (the rebuild
     * numbers from 1), never the numbers */
    if (kbt_pg() &&
        kbt_store_query(env,
                        "SELECT count(setval(pg_get_serial_sequence(table_name, column_name), 7))"
                        " FROM information_schema.columns WHERE table_schema = current_schema()"
                        " AND is_identity = 'YES'",
                        NULL, 0, NULL) != 0)
        fail_msg("cannot move the identity columns on");
    kbt_key(env, "ca-ev", "device-identity-ca", "ecdsa-p256", "meter");
    kbt_key(env, "fw-ev", "firmware-signing", "ecdsa-p256", "meter");
    kbt_key(env, "dbg-ev", "debug-auth", "ecdsa-p256", "meter");
    must(kbt_call(env, "POST", "/v1/keys/ca-ev/certificate", env->admin,
                  "{\"self_signed\":{\"subject\":\"CN=Meter CA\",\"days\":3650}}"),
         201, "CA certificate");
    must(kbt_call(env, "POST", "/v1/batches", env->admin,
                  "{\"batch\":\"b-ev\",\"product\":\"meter\",\"factory\":\"factory:acme\","
                  "\"quantity\":5,\"market\":[\"DE\",\"JP\"]}"),
         201, "batch");
    ci = kbt_token(env,
                   "{\"sub\":\"ci:meter\",\"ops\":[\"sign\"],\"keys\":[\"fw-ev\"],\"ttl\":600}");
    factory = kbt_token(env, "{\"sub\":\"factory:acme\",\"ops\":[\"provision\"],\"ttl\":600}");
    sign_cyclonedx(ci);
    must(kbt_call(env, "POST", "/v1/sign", ci,
                  "{\"key\":\"fw-ev\",\"digest\":\"0000000000000000000000000000000000000000000000"
                  "000000000000000002\",\"artifact\":{\"product\":\"meter\",\"version\":\"1.1.0\"},"
                  "\"sbom\":{\"format\":\"cyclonedx\",\"components\":[{\"name\":\"openssl\","
                  "\"version\":\"3.0.13\",\"purl\":\"pkg:deb/debian/openssl@3.0.13\"}]}}"),
         200, "sign 1.1.0");
    provision(factory, "M-1");
    provision(factory, "M-2");
    rotate("M-1");
    /* CRLs before and after a revocation: each one's number and times are the log's */
    must(kbt_call(env, "GET", "/v1/cas/ca-ev/crl", NULL, NULL), 200, "first CRL");
    must(kbt_call(env, "POST", "/v1/devices/M-1/revoke", env->admin,
                  "{\"product\":\"meter\",\"reason\":\"keyCompromise\"}"),
         200, "revoke M-1");
    must(kbt_call(env, "GET", "/v1/cas/ca-ev/crl", NULL, NULL), 200, "CRL after the revocation");
    ota_report();
    debug_unlock();
    spare = kbt_token(env, "{\"sub\":\"ci:spare\",\"ops\":[\"read\"],\"ttl\":600}");
    r = kbt_call(env, "POST", "/v1/revocations", env->admin, "{\"sub\":\"ci:spare\"}");
    must(r, 200, "revoke by principal");
    free(spare);
    free(ci);
    free(factory);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kbt_free(env);
    return 0;
}

/* keybrokerd --verify-store on the store of config conf: exit status, output into *out. */
static int verify(const char *conf, char **out)
{
    char args[128];

    snprintf(args, sizeof(args), "-c %s --verify-store", conf);
    return kbt_run_daemon(env, args, out);
}

static void test_store_matches_its_log(void **state)
{
    char *out = NULL;
    json_t *entries;
    size_t i, with_effects = 0, with_documents = 0;
    const json_t *e;

    (void)state;
    /* while the broker serves: one snapshot is checked */
    if (verify("keybroker.conf", &out) != 0)
        fail_msg("--verify-store on a live store: %s", out);
    assert_non_null(strstr(out, "matches its audit log"));
    free(out);

    entries = kbt_audit_all(env);
    json_array_foreach(entries, i, e)
    {
        with_effects += json_object_get(e, "effects") != NULL;
        with_documents += json_object_get(e, "documents") != NULL;
    }
    /* keys, certificate, batch, tokens, builds, devices, rotation, revocation, CRLs, OTA,
     * unlock, checkpoints */
    assert_true(with_effects >= 18);
    /* the CycloneDX document and the inline list */
    assert_int_equal(with_documents, 2);
    json_decref(entries);

    kbt_stop(env);
    if (verify("keybroker.conf", &out) != 0)
        fail_msg("--verify-store: %s", out);
    free(out);
    assert_int_equal(kbt_spawn_daemon(env), 0);
}

/* A copy of the store, changed by sql (run by sqlite3), checked. */
static void expect_named(const char *sql, const char *want1, const char *want2)
{
    char cmd[2048], *out = NULL;
    int rc;

    snprintf(cmd, sizeof(cmd),
             "rm -f t.db t.db-wal t.db-shm && sqlite3 keybroker.db '.backup t.db' && "
             "sed 's|^store *=.*|store = sqlite:t.db|' keybroker.conf > t.conf && "
             "grep -q '^store = sqlite:t.db' t.conf && sqlite3 t.db \"%s\"",
             sql);
    rc = kbt_sh(env, cmd, &out);
    if (rc != 0)
        fail_msg("tampering with a copy (%s): %s", sql, out != NULL ? out : "");
    free(out);
    rc = verify("t.conf", &out);
    if (rc != 1 || out == NULL || strstr(out, want1) == NULL ||
        (want2 != NULL && strstr(out, want2) == NULL))
        fail_msg("after %s: exit %d, expected 1 naming \"%s\" and \"%s\": %s", sql, rc, want1,
                 want2 != NULL ? want2 : "", out != NULL ? out : "");
    free(out);
}

/* On PostgreSQL: sql run on the store, the check expected to fail naming want1 and want2,
 * then undo run to put the store back. */
static void expect_named_pg(const char *sql, const char *undo, const char *want1, const char *want2)
{
    char *out = NULL;
    int rc;

    if (kbt_store_query(env, sql, NULL, 0, NULL) != 0)
        fail_msg("tampering with the store (%s) failed", sql);
    rc = verify("keybroker.conf", &out);
    if (rc != 1 || out == NULL || strstr(out, want1) == NULL ||
        (want2 != NULL && strstr(out, want2) == NULL))
        fail_msg("after %s: exit %d, expected 1 naming \"%s\" and \"%s\": %s", sql, rc, want1,
                 want2 != NULL ? want2 : "", out != NULL ? out : "");
    free(out);
    if (kbt_store_query(env, undo, NULL, 0, NULL) != 0)
        fail_msg("cannot undo %s", sql);
}

static void test_tampering_named_pg(void **state)
{
    char *out = NULL;

    if (!kbt_pg())
        skip(); /* test_tampering_named, on copies of the SQLite file */

    (void)state;
    kbt_stop(env);
    /* changes with no trigger behind them, so that each undo puts the store back */
    expect_named_pg("UPDATE batches SET quantity = quantity + 1000 WHERE batch = 'b-ev'",
                    "UPDATE batches SET quantity = quantity - 1000 WHERE batch = 'b-ev'",
                    "table batches, row (batch = \"b-ev\")", "quantity is ");
    expect_named_pg("UPDATE keys SET products = '[\"*\"]' WHERE name = 'ca-ev'",
                    "UPDATE keys SET products = '[\"meter\"]' WHERE name = 'ca-ev'",
                    "table keys, row (name = \"ca-ev\")", "products is \"[\"*\"]\" in the store");
    expect_named_pg("INSERT INTO batches(batch, product, factory, quantity, markets, provisioned,"
                    " created_at, created_by, audit_seq) VALUES ('b-ghost', 'meter', 'factory:x',"
                    " 9, '[\"US\"]', 0, '2026-01-01T00:00:00Z', 'security:bootstrap', 3)",
                    "DELETE FROM batches WHERE batch = 'b-ghost'", "table batches",
                    "is in the store, but no audit entry records it");
    /* a table compared in the order of its identity column */
    expect_named_pg("UPDATE components SET cversion = '3.0.14' WHERE cversion = '3.0.13'",
                    "UPDATE components SET cversion = '3.0.13' WHERE cversion = '3.0.14'",
                    "table components", "3.0.14");
    expect_named_pg("UPDATE token_usage SET uses = uses + 5",
                    "UPDATE token_usage SET uses = uses - 5", "table token_usage", "uses");
    /* what is not this broker's schema */
    expect_named_pg("CREATE TABLE shadow(x int)", "DROP TABLE shadow",
                    "schema: table shadow is in the store but not in this broker's schema", NULL);
    expect_named_pg("ALTER TABLE keys ADD COLUMN note text", "ALTER TABLE keys DROP COLUMN note",
                    "schema: table keys: column note is in the store", NULL);
    /* a column of the store's own making: its name is reported, never put in a query */
    expect_named_pg("ALTER TABLE batches ADD COLUMN \"x\"\"; --\" bigint GENERATED ALWAYS AS "
                    "IDENTITY",
                    "ALTER TABLE batches DROP COLUMN \"x\"\"; --\"",
                    "schema: table batches: column x\"; -- is in the store", NULL);
    /* what would choose how the check compares: an id the store declares, a type, row
     * security, a generated column of the log made plain and changed */
    expect_named_pg("ALTER TABLE firmware_history_versions ALTER history ADD GENERATED BY DEFAULT"
                    " AS IDENTITY",
                    "ALTER TABLE firmware_history_versions ALTER history DROP IDENTITY",
                    "column history is an identity in the store", NULL);
    expect_named_pg("ALTER TABLE keys ALTER algorithm TYPE varchar(64)",
                    "ALTER TABLE keys ALTER algorithm TYPE ctext",
                    "column algorithm is of type character varying in the store, not text", NULL);
    expect_named_pg("ALTER TABLE batches ENABLE ROW LEVEL SECURITY",
                    "ALTER TABLE batches DISABLE ROW LEVEL SECURITY",
                    "batches in the store is not a plain table", NULL);
    expect_named_pg("ALTER TABLE audit ALTER jti DROP EXPRESSION;"
                    " UPDATE audit SET jti = 'forged' WHERE seq = 2",
                    "UPDATE audit SET jti = entry::jsonb ->> 'jti' WHERE seq = 2",
                    "table audit, row (seq = 2): a column generated from the entry", NULL);
    /* every change undone: the store matches again */
    if (verify("keybroker.conf", &out) != 0)
        fail_msg("--verify-store after the changes were undone: %s", out);
    free(out);
    assert_int_equal(kbt_spawn_daemon(env), 0);
}

static PGresult *pg_must(PGconn *c, const char *sql, ExecStatusType want)
{
    PGresult *r = PQexec(c, sql);

    if (PQresultStatus(r) != want)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    return r;
}

/*
 * On PostgreSQL a table rewritten (ALTER TABLE, TRUNCATE) after a REPEATABLE READ snapshot
 * reads as empty in it.  So the check holds every table of the store (ACCESS SHARE) before its
 * first read: held by the last one, which another session has locked, the check waits with
 * every other table held, a rewrite of any of them waits for the check, not the other way, and
 * a write does not; the check's snapshot, taken once the tables are held, sees that write.
 */
#define CHECK_TABLES                                                                               \
    "SELECT c.oid, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON"         \
    " n.oid = c.relnamespace WHERE n.nspname = pg_catalog.current_schema() AND c.relkind = 'r'"

/* The broker stopped and two sessions of its store opened, *x to hold a table, *y to look on;
 * with the store's last table (by name) held ACCESS EXCLUSIVE by *x, --verify-store started in
 * the background (its output, then "rc=N", in held.out): the pid of its session waiting for
 * that table, in waiter ("" when it never waited).  *n_tables counts the schema's tables. */
static void start_held_check(PGconn **xp, PGconn **yp, char *last, size_t last_len, long *n_tables,
                             char *waiter, size_t waiter_len)
{
    PGconn *x, *y;
    PGresult *r;
    char sql[1024], cmd[1024];

    kbt_stop(env);
    *xp = x = PQconnectdb(env->store);
    *yp = y = PQconnectdb(env->store);
    assert_int_equal(PQstatus(x), CONNECTION_OK);
    assert_int_equal(PQstatus(y), CONNECTION_OK);

    snprintf(sql, sizeof(sql), "SELECT count(*), max(relname) FROM (%s) t", CHECK_TABLES);
    r = pg_must(x, sql, PGRES_TUPLES_OK);
    *n_tables = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    snprintf(last, last_len, "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    assert_true(*n_tables > 30);
    PQclear(pg_must(x, "BEGIN", PGRES_COMMAND_OK));
    snprintf(sql, sizeof(sql), "LOCK TABLE \"%s\" IN ACCESS EXCLUSIVE MODE", last);
    PQclear(pg_must(x, sql, PGRES_COMMAND_OK));
    snprintf(cmd, sizeof(cmd),
             "rm -f held.out; (timeout -s TERM 120 '%s/keybrokerd' -c keybroker.conf "
             "--verify-store; echo \"rc=$?\") > held.out 2>&1 &",
             env->bin_dir);
    assert_int_equal(kbt_sh(env, cmd, NULL), 0);
    snprintf(sql, sizeof(sql),
             "SELECT l.pid FROM pg_catalog.pg_locks l WHERE l.relation = '\"%s\"'::regclass AND "
             "NOT l.granted",
             last);
    waiter[0] = '\0';
    for (int i = 0; i < 600 && waiter[0] == '\0'; i++) {
        r = pg_must(y, sql, PGRES_TUPLES_OK);
        if (PQntuples(r) > 0)
            snprintf(waiter, waiter_len, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        if (waiter[0] == '\0')
            usleep(50 * 1000);
    }
}

/* What the background --verify-store wrote, once it has ended (new, the caller's to free). */
static char *held_check_output(void)
{
    char *out = NULL;

    for (int i = 0; i < 1200; i++) {
        free(out);
        out = NULL;
        assert_int_equal(kbt_sh(env, "cat held.out", &out), 0);
        if (strstr(out, "rc=") != NULL)
            break;
        usleep(50 * 1000);
    }
    return out;
}

static void test_check_holds_tables_pg(void **state)
{
    PGconn *x, *y;
    PGresult *r;
    char sql[1024], last[128], waiter[32], problem[1200] = "", *out = NULL;
    long n_tables, held = 0;

    (void)state;
    if (!kbt_pg())
        skip(); /* SQLite's snapshots see a whole file */
    /* the check waits for the table locked, holding every other one */
    start_held_check(&x, &y, last, sizeof(last), &n_tables, waiter, sizeof(waiter));
    /* what goes wrong is said once the lock is released, so that nothing after waits on it */
    if (waiter[0] == '\0')
        snprintf(problem, sizeof(problem), "--verify-store never waited for table %s", last);
    if (problem[0] == '\0') {
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM pg_catalog.pg_locks l JOIN (%s) t ON t.oid = l.relation "
                 "WHERE l.pid = %s AND l.granted AND l.mode = 'AccessShareLock'",
                 CHECK_TABLES, waiter);
        r = pg_must(y, sql, PGRES_TUPLES_OK);
        held = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        if (held != n_tables - 1)
            snprintf(problem, sizeof(problem),
                     "waiting for %s, the check holds %ld of the other %ld tables", last, held,
                     n_tables - 1);
    }
    /* a rewrite waits for the check (here: gives up after 300 ms) */
    PQclear(pg_must(y, "SET lock_timeout = '300ms'", PGRES_COMMAND_OK));
    r = PQexec(y, "ALTER TABLE batches SET UNLOGGED");
    if (problem[0] == '\0' && (PQresultStatus(r) != PGRES_FATAL_ERROR ||
                               strcmp(PQresultErrorField(r, PG_DIAG_SQLSTATE), "55P03") != 0))
        snprintf(problem, sizeof(problem),
                 "a rewrite of batches during the check: %s (want a lock timeout)",
                 PQresultStatus(r) == PGRES_FATAL_ERROR ? PQerrorMessage(y) : "it ran");
    if (PQresultStatus(r) == PGRES_COMMAND_OK)
        PQclear(pg_must(y, "ALTER TABLE batches SET LOGGED", PGRES_COMMAND_OK));
    PQclear(r);
    /* a write does not wait for the check, and the check's snapshot, taken once its tables
     * are held, sees what was committed while it waited */
    r = PQexec(y, "UPDATE batches SET quantity = quantity + 1000 WHERE batch = 'b-ev'");
    if (PQresultStatus(r) != PGRES_COMMAND_OK && problem[0] == '\0')
        snprintf(problem, sizeof(problem), "a write during the check: %s", PQerrorMessage(y));
    PQclear(r);
    /* released, the check runs: it names the change made while it waited */
    PQclear(pg_must(x, "ROLLBACK", PGRES_COMMAND_OK));
    PQfinish(x);
    out = held_check_output();
    PQclear(pg_must(y, "UPDATE batches SET quantity = quantity - 1000 WHERE batch = 'b-ev'",
                    PGRES_COMMAND_OK));
    PQfinish(y);
    assert_int_equal(kbt_spawn_daemon(env), 0);
    if (problem[0] != '\0')
        fail_msg("%s: %s", problem, out);
    if (strstr(out, "rc=1") == NULL || strstr(out, "table batches, row (batch = \"b-ev\")") == NULL)
        fail_msg("--verify-store once the lock was released, of a change made while it waited: %s",
                 out);
    free(out);
    /* undone, the store matches again */
    if (verify("keybroker.conf", &out) != 0)
        fail_msg("--verify-store after the change was undone: %s", out);
    free(out);
}

/* A check that cannot hold its tables (here: its wait for one cancelled, as a lock timeout
 * would end it) fails, naming why, and checks nothing. */
static void test_check_hold_failure_named_pg(void **state)
{
    PGconn *x, *y;
    char sql[256], last[128], waiter[32], *out = NULL;
    long n_tables;

    (void)state;
    if (!kbt_pg())
        skip();
    start_held_check(&x, &y, last, sizeof(last), &n_tables, waiter, sizeof(waiter));
    if (waiter[0] != '\0') {
        snprintf(sql, sizeof(sql), "SELECT pg_catalog.pg_cancel_backend(%s)", waiter);
        PQclear(pg_must(y, sql, PGRES_TUPLES_OK));
    }
    out = held_check_output();
    PQclear(pg_must(x, "ROLLBACK", PGRES_COMMAND_OK));
    PQfinish(x);
    PQfinish(y);
    assert_int_equal(kbt_spawn_daemon(env), 0);
    if (waiter[0] == '\0')
        fail_msg("--verify-store never waited for table %s: %s", last, out);
    if (strstr(out, "rc=1") == NULL ||
        strstr(out, "cannot hold its tables against a rewrite for the check: canceling "
                    "statement due to user request") == NULL)
        fail_msg("--verify-store whose hold failed: %s", out);
    free(out);
}

static void test_tampering_named(void **state)
{
    char *out = NULL;

    if (kbt_pg())
        skip(); /* --verify-store reads sqlite: stores only */

    (void)state;
    kbt_stop(env);
    /* a fact changed, removed or added behind the log */
    expect_named("UPDATE devices SET current_firmware = '9.9.9' WHERE serial = 'M-1'",
                 "table devices",
                 "current_firmware is \"9.9.9\" in the store, \"1.1.0\" by the log");
    expect_named("UPDATE tokens SET revoked_at = NULL, revoke_reason = NULL"
                 " WHERE sub = 'ci:spare'",
                 "table tokens", "revoked_at is null in the store");
    expect_named("DELETE FROM certificates WHERE superseded_at IS NOT NULL", "table certificates",
                 "the log records it, but the store does not have it");
    expect_named("INSERT INTO batches(batch, product, factory, quantity, markets, provisioned,"
                 " created_at, created_by, audit_seq) VALUES ('b-ghost', 'meter', 'factory:x',"
                 " 9, '[\\\"US\\\"]', 0, '2026-01-01T00:00:00Z', 'security:bootstrap', 3)",
                 "table batches", "is in the store, but no audit entry records it");
    expect_named("UPDATE components SET cversion = '3.0.14' WHERE cversion = '3.0.13'",
                 "table components", "3.0.14");
    expect_named("UPDATE batches SET markets = '[\\\"DE\\\",\\\"JP\\\",\\\"FR\\\"]'",
                 "table batches", "markets");
    expect_named("UPDATE debug_challenges SET serial = 'M-1'", "debug_challenges", NULL);
    expect_named("UPDATE token_usage SET uses = uses + 5", "table token_usage", "uses");
    /* a document swapped: its content no longer hashes to its name */
    expect_named("UPDATE documents SET body = CAST('{}' AS BLOB)", "document", "has been changed");
    expect_named("DELETE FROM documents", "names document", "does not have");
    /* the log itself: an entry's text changed, or a trigger planted to rewrite what comes */
    expect_named("UPDATE audit SET entry = replace(entry, 'ci:meter', 'ci:other')"
                 " WHERE entry LIKE '%ci:meter%'",
                 "audit entry", "hash does not match its content");
    expect_named("UPDATE audit SET legacy_key_use = 1 WHERE seq = 3", "legacy_key_use", NULL);
    expect_named("CREATE TRIGGER quiet AFTER INSERT ON devices BEGIN SELECT 1; END",
                 "schema: trigger quiet", NULL);
    /* a revocation undone, or a CRL renumbered, behind the log */
    expect_named("DELETE FROM certificate_revocations", "table certificate_revocations",
                 "the log records it, but the store does not have it");
    expect_named("DELETE FROM device_revocations", "table device_revocations",
                 "the log records it, but the store does not have it");
    expect_named("UPDATE crls SET number = number + 10", "table crls", NULL);

    /* the columns an entry's row shows are the entry's: none can be rewritten */
    assert_int_not_equal(
        kbt_sh(env, "sqlite3 keybroker.db \"UPDATE audit SET sub = 'mallory'\"", &out), 0);
    free(out);
    if (verify("keybroker.conf", &out) != 0)
        fail_msg("the untouched store: %s", out);
    free(out);
    assert_int_equal(kbt_spawn_daemon(env), 0);
}

/*
 * Appends to the store at path one entry recording effects, chained to the last one, the way
 * the audit writer does: what an older broker, with older rules, would have written.
 */
static void append_entry(const char *path, const char *op, json_t *effects)
{
    char url[600], prev[65], now[KBR_TIME_LEN], hash[65], *text = NULL;
    kbr_store *st = NULL;
    kbr_audit_rec *rec = NULL;
    kbr_msg msg = {{0}};
    size_t len;
    int64_t last = 0;

    snprintf(url, sizeof(url), "sqlite:%s", path);
    assert_int_equal(kbr_store_open(url, &st, &msg), KBR_OK);
    assert_int_equal(kbr_store_audit_tail(st, &last, prev), KBR_OK);
    assert_int_equal(kbr_audit_rec_new("security:bootstrap", NULL, op, NULL, &rec), KBR_OK);
    assert_int_equal(kbr_effects_from_json(effects, &rec->effects), KBR_OK);
    kbr_time_fmt(time(NULL), now);
    assert_int_equal(kbr_audit_entry_text(rec, last + 1, now, prev, &text, &len), KBR_OK);
    assert_int_equal(kbr_audit_leaf_hash(text, len, hash), KBR_OK);
    assert_int_equal(kbr_store_begin(st), KBR_OK);
    assert_int_equal(kbr_store_apply(st, rec->effects, last + 1), KBR_OK);
    assert_int_equal(kbr_store_audit_insert(st, &(kbr_store_audit_row){last + 1, text, hash}),
                     KBR_OK);
    assert_int_equal(kbr_store_merkle_append(st, last + 1, hash), KBR_OK);
    assert_int_equal(kbr_store_commit(st), KBR_OK);
    kbr_store_close(st);
    kbr_audit_rec_free(rec);
    json_decref(effects);
    free(text);
}

/* A copy of the store in t.db, with t.conf naming it; more sql run on it (may be NULL). */
static void copy_store(const char *sql)
{
    char cmd[4096], *out = NULL;

    snprintf(cmd, sizeof(cmd),
             "rm -f t.db t.db-wal t.db-shm && sqlite3 keybroker.db '.backup t.db' && "
             "sed 's|^store *=.*|store = sqlite:t.db|' keybroker.conf > t.conf && "
             "grep -q '^store = sqlite:t.db' t.conf%s%s%s",
             sql != NULL ? " && sqlite3 t.db \"" : "", sql != NULL ? sql : "",
             sql != NULL ? "\"" : "");
    if (kbt_sh(env, cmd, &out) != 0)
        fail_msg("copying the store: %s", out != NULL ? out : "");
    free(out);
}

/*
 * A batch an older broker accepted with markets that are no countries ("EL", the EU's own
 * code for Greece, and "UK"): the store matches its log, and --verify-store still fails,
 * naming the batch and each code, because the CRA figures count its devices nowhere.
 */
static void test_old_batch_markets(void **state)
{
    char path[512], *out = NULL;
    int rc;

    if (kbt_pg())
        skip(); /* a copy of a sqlite: store, read by --verify-store */

    (void)state;
    kbt_stop(env);
    copy_store(NULL);
    snprintf(path, sizeof(path), "%s/t.db", env->dir);
    append_entry(path, "batch.create",
                 json_pack("[{s:s,s:s,s:s,s:s,s:i,s:[s,s,s],s:s,s:s}]", "type", "batch.create",
                           "batch", "b-old", "product", "meter", "factory", "factory:acme",
                           "quantity", 5, "markets", "DE", "EL", "UK", "created_at",
                           "2024-05-01T00:00:00Z", "created_by", "security:bootstrap"));
    rc = verify("t.conf", &out);
    if (rc != 1 || strstr(out, "matches its audit log") == NULL ||
        strstr(out, "batch b-old (product meter") == NULL ||
        strstr(out, "market[1]: market \"EL\"") == NULL ||
        strstr(out, "market[2]: market \"UK\"") == NULL || strstr(out, "market[0]") != NULL ||
        strstr(out, "2 markets of 1 batch are no ISO 3166-1 alpha-2 code") == NULL)
        fail_msg("--verify-store with an old batch: exit %d: %s", rc, out);
    free(out);
    /* the store itself passes */
    if (verify("keybroker.conf", &out) != 0 || strstr(out, "ISO 3166-1 alpha-2 code") == NULL)
        fail_msg("the untouched store: %s", out);
    free(out);
    assert_int_equal(kbt_spawn_daemon(env), 0);
}

/* What cmd (run by sh in the deployment's directory) prints; it must succeed. */
static char *sh_text(const char *cmd)
{
    char *out = NULL;

    if (kbt_sh(env, cmd, &out) != 0)
        fail_msg("%s: %s", cmd, out != NULL ? out : "");
    return out;
}

/* What makes a copy of the store one of version 7 again: what versions 8 to 10 add, removed. */
static const char *const to_v7 =
    "DROP TRIGGER certificate_revocations_expiry; DROP TRIGGER audit_products_of;"
    " ALTER TABLE audit DROP COLUMN products;"
    " CREATE TRIGGER audit_products_of AFTER INSERT ON audit"
    " WHEN json_type(new.entry, '$.products') = 'array' BEGIN"
    " INSERT OR IGNORE INTO audit_products(product, seq) SELECT value, new.seq"
    " FROM json_each(new.entry, '$.products') WHERE type = 'text'; END;"
    " DROP TRIGGER certificates_expiry_drop;"
    " CREATE TRIGGER certificates_expiry_drop AFTER UPDATE OF superseded_at"
    " ON certificates WHEN new.owner_kind = 'device' AND old.superseded_at IS NULL"
    " AND new.superseded_at IS NOT NULL BEGIN UPDATE device_cert_expiry"
    " SET count = count - 1 WHERE product = new.product"
    " AND day = substr(new.not_after, 1, 10); END;"
    /* as version 9 counted them: revoked certificates too */
    " UPDATE device_cert_expiry SET count = count + r.n FROM (SELECT c.product AS"
    " product, substr(c.not_after, 1, 10) AS day, count(*) AS n FROM"
    " certificate_revocations v JOIN certificates c ON c.fingerprint = v.fingerprint"
    " WHERE c.owner_kind = 'device' AND c.superseded_at IS NULL GROUP BY 1, 2) AS r"
    " WHERE device_cert_expiry.product = r.product AND device_cert_expiry.day = r.day;"
    " DROP TABLE key_deliveries; DROP TRIGGER devices_history_batch_move; DROP TRIGGER "
    "devices_incident_move;"
    " DROP TABLE history_firmware_batch; DROP TABLE incident_reports;"
    " DROP TABLE incident_fleet; DROP TABLE incident_builds; DROP TABLE incidents;"
    " DROP TABLE products; DROP INDEX components_purl_key;"
    " ALTER TABLE components DROP COLUMN purl_key;"
    " CREATE INDEX components_purl ON components(purl);"
    " UPDATE meta SET schema_version = 7;";

/*
 * A store of version 7, before key deliveries and the CRA step: --verify-store checks a copy
 * of it taken to this version (the schema step fills components.purl_key and
 * history_firmware_batch from the rows; test_store_schema checks both fills by value), and
 * the result is what the log rebuilds, row for row.  The store itself is not changed: a backup
 * kept as evidence has the same bytes after its check, and no file is left beside it.  (The
 * copy is made version 7 again by removing what versions 8 and 9 add.)
 */
static void test_migrate_v7_store(void **state)
{
    char *out = NULL, *before, *after;

    if (kbt_pg())
        skip(); /* a copy of a sqlite: store, read by --verify-store */

    (void)state;
    kbt_stop(env);
    copy_store(to_v7);
    before = sh_text("sha256sum t.db; ls -A | sort");
    if (verify("t.conf", &out) != 0)
        fail_msg("--verify-store on a version 7 store: %s", out);
    if (strstr(out, "has schema version 7: checked as a copy taken to version") == NULL ||
        strstr(out, "matches its audit log") == NULL)
        fail_msg("--verify-store on a version 7 store: %s", out);
    free(out);
    after = sh_text("sha256sum t.db; ls -A | sort");
    assert_string_equal(before, after);
    free(before);
    free(after);
    out = sh_text("sqlite3 -readonly t.db 'SELECT max(schema_version) FROM meta'");
    assert_string_equal(out, "7\n");
    free(out);
    assert_int_equal(kbt_spawn_daemon(env), 0);
}

/*
 * cmd run without the power to write where a directory's mode forbids it: as root, with the
 * capabilities that override modes gone from the bounding set (so from what cmd runs), as an
 * auditor's read-only copy or mount would be.
 */
static int run_unprivileged(const char *cmd, char **out)
{
    char full[2048];

    snprintf(full, sizeof(full), "%s%s 2>&1",
             geteuid() == 0 ? "setpriv --bounding-set=-dac_override,-dac_read_search " : "", cmd);
    return kbt_sh(env, full, out);
}

/* keybrokerd -c ev.conf args, run as run_unprivileged runs a command. */
static int daemon_unprivileged(const char *args, char **out)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd), "'%s/keybrokerd' -c ev.conf %s", env->bin_dir, args);
    return run_unprivileged(cmd, out);
}

/* files moved from the deployment into a new directory ev of mode 0555, with ev.conf naming
 * ev/t.db as the store, and an empty directory sc beside it. */
static void to_read_only_dir(const char *files)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd),
             "rm -rf ev sc && mkdir ev sc && mv %s ev/ && chmod 0555 ev &&"
             " sed 's|^store *=.*|store = sqlite:ev/t.db|' t.conf > ev.conf",
             files);
    free(sh_text(cmd));
}

/* What cmd prints must be before (which is freed). */
static void expect_same(char *before, const char *cmd)
{
    char *after = sh_text(cmd);

    assert_string_equal(before, after);
    free(before);
    free(after);
}

/*
 * A store kept where the check cannot write (evidence on read-only media; here a directory of
 * mode 0555 and a keybrokerd that cannot override it): --verify-store says it cannot make its
 * scratch directory there and names --scratch-dir; with --scratch-dir it checks the store,
 * here one of version 7 so its migrated copy goes there too, and leaves that directory as it
 * found it.  --scratch-dir belongs to --verify-store alone.
 */
static void test_scratch_dir(void **state)
{
    char *out = NULL, *before;
    int rc;

    if (kbt_pg())
        skip(); /* a copy of a sqlite: store, read by --verify-store */

    (void)state;
    kbt_stop(env);
    copy_store(to_v7);
    to_read_only_dir("t.db");
    /* the premise: nothing run this way can write in ev */
    rc = run_unprivileged("touch ev/probe", &out);
    if (rc == 0)
        fail_msg("a directory of mode 0555 could be written: %s", out);
    free(out);
    before = sh_text("sha256sum ev/t.db; ls -A ev");

    rc = daemon_unprivileged("--verify-store", &out);
    if (rc != 1 || strstr(out, "cannot make a scratch directory in") == NULL ||
        strstr(out, "Permission denied") == NULL ||
        strstr(out, "--scratch-dir names another directory") == NULL)
        fail_msg("--verify-store beside a store it cannot write: exit %d: %s", rc, out);
    free(out);

    rc = daemon_unprivileged("--verify-store --scratch-dir sc", &out);
    if (rc != 0 || strstr(out, "has schema version 7: checked as a copy") == NULL ||
        strstr(out, "matches its audit log") == NULL)
        fail_msg("--verify-store --scratch-dir: exit %d: %s", rc, out);
    free(out);
    expect_same(before, "sha256sum ev/t.db; ls -A ev");
    out = sh_text("ls -A sc");
    assert_string_equal(out, "");
    free(out);

    /* a scratch directory that is not there is named */
    rc = kbt_run_daemon(env, "-c ev.conf --verify-store --scratch-dir nowhere", &out);
    if (rc != 1 || strstr(out, "scratch directory in nowhere: No such file or directory") == NULL)
        fail_msg("--scratch-dir nowhere: exit %d: %s", rc, out);
    free(out);
    /* and without --verify-store it is a usage error */
    assert_int_equal(kbt_run_daemon(env, "-c keybroker.conf --check --scratch-dir sc", &out), 2);
    free(out);
    free(sh_text("chmod 0755 ev && rm -rf ev sc ev.conf"));
    assert_int_equal(kbt_spawn_daemon(env), 0);
}

/* The highest audit seq in the store file at path as read without its WAL (SQLite's
 * immutable mode, which ignores -wal and -shm). */
static long long seq_without_log(const char *path)
{
    char cmd[800], *out;
    long long seq;

    snprintf(cmd, sizeof(cmd), "sqlite3 'file:%s?mode=ro&immutable=1' 'SELECT max(seq) FROM audit'",
             path);
    out = sh_text(cmd);
    seq = atoll(out);
    free(out);
    return seq;
}

/*
 * Commits one more entry (a batch) to the store at path, in its -wal only, and removes the
 * -shm: a broker stopped without folding its log in, copied without the index.  A second
 * connection, open across the commit and closed without a checkpoint, keeps the first from
 * folding the log in at its close.
 */
static void commit_to_log_only(const char *path)
{
    sqlite3 *holder = NULL;
    char shm[620];
    int off = 0;

    assert_int_equal(sqlite3_open(path, &holder), SQLITE_OK);
    assert_int_equal(sqlite3_db_config(holder, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, &off),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(holder, "SELECT count(*) FROM audit", NULL, NULL, NULL),
                     SQLITE_OK);
    append_entry(path, "batch.create",
                 json_pack("[{s:s,s:s,s:s,s:s,s:i,s:[s],s:s,s:s}]", "type", "batch.create", "batch",
                           "b-logged", "product", "meter", "factory", "factory:acme", "quantity", 5,
                           "markets", "DE", "created_at", "2026-01-01T00:00:00Z", "created_by",
                           "security:bootstrap"));
    assert_int_equal(sqlite3_close(holder), SQLITE_OK);
    snprintf(shm, sizeof(shm), "%s-shm", path);
    assert_int_equal(unlink(shm), 0);
}

/*
 * --verify-store on t.db, beside which side (t.db-wal or t.db-journal) means SQLite must write
 * before the store reads as it last committed: it says so (says), finds want, and leaves the
 * store's directory as it found it.  Then the same with both files moved into ev, a directory
 * nothing can be written to, and --scratch-dir; there --check fails naming the problem
 * (check_says), and neither writes anything.  The files are left in ev, its mode 0755.
 */
static void verify_beside(const char *side, const char *says, const char *check_says,
                          const char *want)
{
    char cmd[256], files[64], *out = NULL, *before;
    int rc;

    snprintf(cmd, sizeof(cmd), "sha256sum t.db %s; ls -A", side);
    before = sh_text(cmd);
    rc = verify("t.conf", &out);
    if (rc != 0 || strstr(out, says) == NULL || strstr(out, want) == NULL)
        fail_msg("--verify-store beside %s: exit %d: %s (want \"%s\")", side, rc, out, want);
    free(out);
    expect_same(before, cmd);

    /* where nothing can be written beside it */
    snprintf(files, sizeof(files), "t.db %s", side);
    to_read_only_dir(files);
    snprintf(cmd, sizeof(cmd), "sha256sum ev/t.db ev/%s; ls -A ev", side);
    before = sh_text(cmd);
    rc = daemon_unprivileged("--verify-store --scratch-dir sc", &out);
    if (rc != 0 || strstr(out, says) == NULL || strstr(out, want) == NULL)
        fail_msg("--verify-store --scratch-dir beside %s: exit %d: %s", side, rc, out);
    free(out);
    rc = daemon_unprivileged("--check", &out);
    if (rc != 1 || strstr(out, check_says) == NULL)
        fail_msg("--check beside %s on read-only media: exit %d: %s", side, rc, out);
    free(out);
    expect_same(before, cmd);
    out = sh_text("ls -A sc");
    assert_string_equal(out, "");
    free(out);
    free(sh_text("chmod 0755 ev"));
}

/*
 * A store whose -wal holds a commit but lost its -shm.  Read as an immutable file (how a store
 * at rest is read without a change) it would look as it was before that commit, and be found
 * to match its log.  --verify-store checks a copy of both instead, made in its own directory
 * (beside the store, or in --scratch-dir where the store's cannot be written), and leaves the
 * store's directory as it found it.  --check reads it through its log where a -shm can be made
 * (SQLite makes one), and names the problem where none can.
 */
static void test_log_without_index(void **state)
{
    char path[600], want[64], *out = NULL;
    long long at_rest;
    int rc;

    if (kbt_pg())
        skip(); /* a copy of a sqlite: store */

    (void)state;
    kbt_stop(env);
    copy_store(NULL);
    snprintf(path, sizeof(path), "%s/t.db", env->dir);
    at_rest = seq_without_log(path);
    commit_to_log_only(path);
    /* the premise: the commit is in the -wal only, and there is no -shm */
    assert_int_equal(seq_without_log(path), at_rest);
    out = sh_text("ls t.db*");
    assert_string_equal(out, "t.db\nt.db-wal\n");
    free(out);
    snprintf(want, sizeof(want), "matches its audit log: %lld entries", at_rest + 1);
    verify_beside("t.db-wal",
                  "has a write-ahead log without its index (-shm): checked as a copy of both",
                  "has no -shm and none can be made there; read without the log it would miss "
                  "commits",
                  want);

    /* where a -shm can be made, --check reads the store through its log (and SQLite makes
     * the -shm) */
    snprintf(want, sizeof(want), "ev/t.db: %lld audit entries", at_rest + 1);
    rc = kbt_run_daemon(env, "-c ev.conf --check", &out);
    if (strstr(out, want) == NULL || strstr(out, "would miss commits") != NULL)
        fail_msg("--check, a -wal without its -shm: exit %d: %s (want \"%s\")", rc, out, want);
    free(out);
    out = sh_text("ls ev");
    assert_string_equal(out, "t.db\nt.db-shm\nt.db-wal\n");
    free(out);
    free(sh_text("rm -rf ev sc ev.conf"));
    assert_int_equal(kbt_spawn_daemon(env), 0);
}

/*
 * Leaves the store at path (in rollback mode) as a process that died in the middle of a change
 * leaves it: the change, removing the last audit entry, half written into the file, and the
 * pages it replaced in a hot -journal.  Filler rows written after it overflow the page
 * cache, so that the entry's pages are written out before the commit that never comes.
 */
static void interrupt_change(const char *path)
{
    pid_t pid = fork();
    int status = 0;

    assert_true(pid >= 0);
    if (pid == 0) {
        sqlite3 *db = NULL;
        int rc = sqlite3_open(path, &db);

        if (rc == SQLITE_OK)
            rc = sqlite3_exec(db,
                              "PRAGMA cache_size=10; BEGIN;"
                              " DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit);"
                              " INSERT INTO audit_products(product, seq)"
                              " WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c"
                              " WHERE i < 2000) SELECT hex(randomblob(400)), -i FROM c;",
                              NULL, NULL, NULL);
        _exit(rc == SQLITE_OK ? 0 : 1); /* no commit, no rollback */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/*
 * A store kept in rollback mode (as a copy for evidence may be) that a process changed and
 * died in the middle of.  Read as an immutable file it would show the change half made; here
 * its last audit entry gone.  --verify-store checks a copy with the change rolled back and
 * finds the store as it last committed; --check names the journal, and neither writes to the
 * store or beside it, where the directory can be written or not.
 */
static void test_interrupted_change(void **state)
{
    char path[600], want[64], *out = NULL, *before;
    long long at_rest;
    int rc;

    if (kbt_pg())
        skip(); /* a copy of a sqlite: store */

    (void)state;
    kbt_stop(env);
    copy_store("PRAGMA journal_mode=DELETE");
    snprintf(path, sizeof(path), "%s/t.db", env->dir);
    at_rest = seq_without_log(path);
    interrupt_change(path);
    /* the premise: read as an immutable file, the store lacks its last entry */
    assert_int_equal(seq_without_log(path), at_rest - 1);
    out = sh_text("ls t.db*");
    assert_string_equal(out, "t.db\nt.db-journal\n");
    free(out);
    snprintf(want, sizeof(want), "matches its audit log: %lld entries", at_rest);
    verify_beside("t.db-journal",
                  "has a change that was interrupted, in its rollback journal (-journal): "
                  "checked as a copy of both with the change rolled back",
                  "holds a change that was interrupted", want);

    /* nor where it could roll the change back, which would write to the store */
    before = sh_text("sha256sum ev/t.db ev/t.db-journal; ls -A ev");
    rc = kbt_run_daemon(env, "-c ev.conf --check", &out);
    if (rc != 1 || strstr(out, "its -journal (") == NULL ||
        strstr(out, "holds a change that was interrupted") == NULL)
        fail_msg("--check, an interrupted change: exit %d: %s", rc, out);
    free(out);
    expect_same(before, "sha256sum ev/t.db ev/t.db-journal; ls -A ev");
    /* named through a symbolic link in another directory: SQLite follows the link and keeps
     * the journal beside the file it reaches, so both look there, not beside the link */
    free(sh_text("rm -rf lk && mkdir lk && ln -s ../ev/t.db lk/t.db &&"
                 " sed 's|^store *=.*|store = sqlite:lk/t.db|' t.conf > lk.conf &&"
                 " grep -q '^store = sqlite:lk/t.db$' lk.conf"));
    before = sh_text("sha256sum ev/t.db ev/t.db-journal; ls -A ev");
    rc = kbt_run_daemon(env, "-c lk.conf --verify-store", &out);
    if (rc != 0 || strstr(out, "ev/t.db has a change that was interrupted") == NULL ||
        strstr(out, want) == NULL)
        fail_msg("--verify-store through a link: exit %d: %s (want \"%s\")", rc, out, want);
    free(out);
    rc = kbt_run_daemon(env, "-c lk.conf --check", &out);
    if (rc != 1 || strstr(out, "ev/t.db: its -journal (") == NULL)
        fail_msg("--check through a link: exit %d: %s", rc, out);
    free(out);
    expect_same(before, "sha256sum ev/t.db ev/t.db-journal; ls -A ev");
    out = sh_text("ls -A lk");
    assert_string_equal(out, "t.db\n");
    free(out);
    /* nor one whose journal cannot be read, which SQLite takes for hot */
    free(sh_text("chmod 0 ev/t.db-journal"));
    rc = daemon_unprivileged("--check", &out);
    if (rc != 1 || strstr(out, "holds a change that was interrupted") == NULL)
        fail_msg("--check beside a -journal it cannot read: exit %d: %s", rc, out);
    free(out);

    /* a journal SQLite finished with (zeroed) is no change: the store is read as at rest,
     * and nothing is made beside it */
    copy_store(NULL);
    free(sh_text("head -c 4096 /dev/zero > t.db-journal"));
    before = sh_text("sha256sum t.db t.db-journal; ls -A");
    snprintf(want, sizeof(want), "t.db: %lld audit entries", at_rest);
    rc = kbt_run_daemon(env, "-c t.conf --check", &out);
    if (rc != 0 || strstr(out, want) == NULL)
        fail_msg("--check beside a finished -journal: exit %d: %s (want \"%s\")", rc, out, want);
    free(out);
    expect_same(before, "sha256sum t.db t.db-journal; ls -A");
    free(sh_text("rm -rf ev sc lk ev.conf lk.conf t.db-journal"));
    assert_int_equal(kbt_spawn_daemon(env), 0);
}

/* ---- evidence bundles ---- */

/* The CLI with the bootstrap token (or tok): exit status, output into *out. */
static int cli(const char *tok, const char *args, char **out)
{
    char cmd[4096];

    snprintf(cmd, sizeof(cmd), "KEYBROKER_URL='%s' KEYBROKER_TOKEN='%s' '%s/keybroker' %s 2>&1",
             env->url, tok != NULL ? tok : env->admin, env->bin_dir, args);
    return kbt_sh(env, cmd, out);
}

static json_t *load(const char *name)
{
    char path[512];
    json_t *v;

    snprintf(path, sizeof(path), "%s/%s", env->dir, name);
    v = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(v);
    return v;
}

static void save(const char *name, const json_t *v)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", env->dir, name);
    assert_int_equal(json_dump_file(v, path, JSON_COMPACT), 0);
}

/* The audit public key, pinned from the bundle's own checkpoint as an auditor would from a
 * checkpoint kept elsewhere. */
static void pin_audit_key(const json_t *bundle)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/audit.pem", env->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(
        json_string_value(json_object_get(json_object_get(bundle, "checkpoint"), "public_key_pem")),
        f);
    assert_int_equal(fclose(f), 0);
}

static bool has_effect(const json_t *bundle, const char *type)
{
    const json_t *item, *fx;
    size_t i, k;

    json_array_foreach(json_object_get(bundle, "entries"), i, item)
    {
        json_array_foreach(json_object_get(json_object_get(item, "entry"), "effects"), k, fx)
        {
            if (strcmp(json_string_value(json_object_get(fx, "type")), type) == 0)
                return true;
        }
    }
    return false;
}

/* A bundle changed by change(), then verified: exit 1 naming want. */
static void expect_refused(const char *what, void (*change)(json_t *), const char *want)
{
    json_t *b = load("m1.json");
    char *out = NULL;
    int rc;

    change(b);
    save("bad.json", b);
    json_decref(b);
    rc = cli(NULL, "evidence verify bad.json --pubkey audit.pem", &out);
    if (rc == 0 || out == NULL || strstr(out, want) == NULL)
        fail_msg("%s: exit %d, expected non-zero naming \"%s\": %s", what, rc, want,
                 out != NULL ? out : "");
    free(out);
}

static json_t *item_of(json_t *b, const char *type)
{
    json_t *item, *fx;
    size_t i, k;

    json_array_foreach(json_object_get(b, "entries"), i, item)
    {
        json_array_foreach(json_object_get(json_object_get(item, "entry"), "effects"), k, fx)
        {
            if (strcmp(json_string_value(json_object_get(fx, "type")), type) == 0)
                return item;
        }
    }
    fail_msg("no %s entry in the bundle", type);
    return NULL;
}

static void change_serial(json_t *b)
{
    json_t *fx = json_array_get(
        json_object_get(json_object_get(item_of(b, "device.rotate"), "entry"), "effects"), 0);

    json_object_set_new(fx, "serial", json_string("M-9"));
}

static void change_market(json_t *b)
{
    json_t *fx = json_array_get(
        json_object_get(json_object_get(item_of(b, "batch.create"), "entry"), "effects"), 0);

    json_object_set_new(fx, "markets", json_pack("[s]", "US"));
}

static void swap_entries(json_t *b)
{
    json_t *entries = json_object_get(b, "entries"),
           *first = json_incref(json_array_get(entries, 0));

    json_array_remove(entries, 0);
    json_array_insert_new(entries, 1, first);
}

static void change_document(json_t *b)
{
    json_t *docs = json_object_get(b, "documents");
    const char *name = json_object_iter_key(json_object_iter(docs));

    json_object_set_new(docs, name, json_string("e30=")); /* "{}" */
}

static void drop_document(json_t *b)
{
    json_object_clear(json_object_get(b, "documents"));
}

static void change_proof(json_t *b)
{
    json_t *proof = json_object_get(item_of(b, "device.provision"), "inclusion_proof");

    json_array_set_new(proof, 0,
                       json_string("00000000000000000000000000000000000000000000000000000000"
                                   "00000000"));
}

static void change_checkpoint(json_t *b)
{
    json_t *cp = json_object_get(b, "checkpoint");

    json_object_set_new(cp, "size",
                        json_integer(json_integer_value(json_object_get(cp, "size")) + 1));
}

static void change_subject(json_t *b)
{
    json_object_set_new(json_object_get(b, "subject"), "serial", json_string("M-2"));
}

static void add_member(json_t *b)
{
    json_object_set_new(b, "note", json_string("trust me"));
}

static void test_device_bundle(void **state)
{
    char *out = NULL;
    json_t *b;

    (void)state;
    /* fetched right after a change: a checkpoint that covers it is made for the bundle */
    rotate("M-2");
    if (cli(NULL, "evidence device M-1 --product meter --out m1.json", &out) != 0)
        fail_msg("evidence device: %s", out);
    free(out);
    b = load("m1.json");
    assert_string_equal(json_string_value(json_object_get(b, "format")), "keybroker-evidence/1");
    /* the device's whole record, and what it leans on */
    assert_true(has_effect(b, "device.provision"));
    assert_true(has_effect(b, "device.rotate"));
    assert_true(has_effect(b, "ota.report"));
    assert_true(has_effect(b, "batch.create"));
    assert_true(has_effect(b, "firmware.sign"));
    assert_true(has_effect(b, "key.certificate"));
    assert_true(has_effect(b, "token.issue"));
    /* the factory image's CycloneDX document, as it was sent */
    assert_int_equal(json_object_size(json_object_get(b, "documents")), 2);
    pin_audit_key(b);
    json_decref(b);
    if (cli(NULL, "evidence verify m1.json --pubkey audit.pem", &out) != 0)
        fail_msg("evidence verify: %s", out);
    assert_non_null(strstr(out, "ok: device meter M-1"));
    free(out);

    expect_refused("a changed serial", change_serial, "hash does not match its content");
    expect_refused("a changed market", change_market, "hash does not match its content");
    expect_refused("entries reordered", swap_entries, "seq order");
    expect_refused("a document swapped", change_document, "does not hash to its name");
    expect_refused("a document left out", drop_document, "is missing from the bundle");
    expect_refused("a proof changed", change_proof, "inclusion proof does not lead");
    expect_refused("a checkpoint changed", change_checkpoint, "bad signature");
    expect_refused("another subject", change_subject, "provisions device M-2");
    expect_refused("a member added", add_member, "unknown member \"note\"");

    /* a repeated key, a cut file, another key */
    assert_int_equal(
        kbt_sh(env,
               "sed 's/\"format\":/\"format\":\"x\",\"format\":/' m1.json > dup.json"
               " && head -c 2000 m1.json > cut.json && openssl ecparam -name "
               "prime256v1 -genkey -noout | openssl ec -pubout > other.pem 2>/dev/null",
               NULL),
        0);
    assert_int_not_equal(cli(NULL, "evidence verify dup.json --pubkey audit.pem", &out), 0);
    assert_non_null(strstr(out, "duplicate"));
    free(out);
    assert_int_not_equal(cli(NULL, "evidence verify cut.json --pubkey audit.pem", &out), 0);
    free(out);
    assert_int_not_equal(cli(NULL, "evidence verify m1.json --pubkey other.pem", &out), 0);
    assert_non_null(strstr(out, "bad signature"));
    free(out);
}

static void test_product_bundle_and_scope(void **state)
{
    char *out = NULL, *other;
    json_t *b;
    kbt_resp r;

    (void)state;
    if (cli(NULL, "evidence product meter --out meter.json", &out) != 0)
        fail_msg("evidence product: %s", out);
    free(out);
    b = load("meter.json");
    assert_true(has_effect(b, "key.create"));
    assert_true(has_effect(b, "batch.create"));
    assert_true(has_effect(b, "firmware.sign"));
    assert_false(has_effect(b, "device.provision")); /* each device has its own bundle */
    json_decref(b);
    if (cli(NULL, "evidence verify meter.json --pubkey audit.pem", &out) != 0)
        fail_msg("evidence verify: %s", out);
    free(out);

    /* within scope only */
    other = kbt_token(env, "{\"sub\":\"security:lamp\",\"ops\":[\"read\"],\"products\":[\"lamp\"],"
                           "\"ttl\":600}");
    r = kbt_call(env, "GET", "/v1/evidence/products/meter", other, NULL);
    assert_int_equal(r.status, 403);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/evidence/devices/M-1", other, NULL);
    assert_int_equal(r.status, 403);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/evidence/devices/NOPE", env->admin, NULL);
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/evidence/products/lamp", env->admin, NULL);
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);
    free(other);
}

static void test_verify_store_refusals(void **state)
{
    char *out = NULL;

    (void)state;
    /* a store that is not there is not created */
    assert_int_equal(kbt_sh(env,
                            "sed 's|^store *=.*|store = sqlite:nowhere.db|' keybroker.conf > n.conf"
                            " && grep -q nowhere n.conf",
                            NULL),
                     0);
    assert_int_equal(verify("n.conf", &out), 1);
    assert_non_null(strstr(out, "no such store"));
    free(out);
    assert_int_not_equal(kbt_sh(env, "test -e nowhere.db", NULL), 0);
    /* --init and --verify-store do not go together */
    assert_int_equal(kbt_run_daemon(env, "-c keybroker.conf --init --verify-store", &out), 2);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_matches_its_log),
        cmocka_unit_test(test_tampering_named),
        cmocka_unit_test(test_tampering_named_pg),
        cmocka_unit_test(test_check_holds_tables_pg),
        cmocka_unit_test(test_check_hold_failure_named_pg),
        cmocka_unit_test(test_verify_store_refusals),
        cmocka_unit_test(test_device_bundle),
        cmocka_unit_test(test_product_bundle_and_scope),
        cmocka_unit_test(test_old_batch_markets),
        cmocka_unit_test(test_migrate_v7_store),
        cmocka_unit_test(test_scratch_dir),
        cmocka_unit_test(test_log_without_index),
        cmocka_unit_test(test_interrupted_change),
    };

    return cmocka_run_group_tests_name("evidence", tests, setup, teardown);
}
