/*
 * test_ops.c - what an operator relies on: a store that is not there is
 * refused, --check reports every problem and changes nothing (an older
 * schema included), /metrics is valid Prometheus text, the log is one JSON
 * object per line when asked and follows logrotate on SIGHUP, and an online
 * backup taken while the broker commits is a consistent store, in the log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static kbt_env *env;

static int setup(void **state)
{
    (void)state;
    env = kbt_start("log_format = json\nlog_file = broker.log\ncheckpoint_every = 2 1s\n");
    kbt_key(env, "fw", "firmware-signing", "ecdsa-p256", "gateway");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kbt_free(env);
    return 0;
}

static char *sh_out(const char *cmd)
{
    char *out = NULL;

    assert_int_equal(kbt_sh(env, cmd, &out), 0);
    return out;
}

static void must_contain(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        fail_msg("expected \"%s\" in:\n%s", needle, text);
}

/* What a directory holds and every file's digest: --check must leave it exactly so. */
/* The deployment's files and what its store holds (a PostgreSQL store: pg_dump's text). */
static char *snapshot(void)
{
    char *files, *dump = NULL, *both = NULL;
    size_t n = 0;

    if (!kbt_pg())
        return sh_out("ls -A | sort && sha256sum keybroker.db* | sort");
    files = sh_out("ls -A | sort");
    assert_int_equal(kbt_store_dump(env, &dump, &n), 0);
    assert_true(asprintf(&both, "%s\n%.*s", files, (int)n, dump) > 0);
    free(files);
    free(dump);
    return both;
}

static void write_conf(const char *name, const char *extra)
{
    char *cmd = NULL;

    assert_true(asprintf(&cmd, "grep -v '^log_' keybroker.conf > %s && printf '%%s\\n' '%s' >> %s",
                         name, extra, name) > 0);
    assert_int_equal(kbt_sh(env, cmd, NULL), 0);
    free(cmd);
}

static int run(const char *args, char **out)
{
    return kbt_run_daemon(env, args, out);
}

/* A test that failed may have left the daemon stopped. */
static void ensure_running(void)
{
    if (env->pid <= 0)
        assert_int_equal(kbt_spawn_daemon(env), 0);
}

/* Until a signed checkpoint covers the log. */
static void await_checkpoint(void)
{
    for (int i = 0; i < 100; i++) {
        kbt_resp r = kbt_call(env, "GET", "/v1/audit/checkpoint", env->admin, NULL);
        long status = r.status;
        kbt_resp_free(&r);
        if (status == 200)
            return;
        usleep(100 * 1000);
    }
    fail_msg("no checkpoint was made");
}

/* Only --init makes a store: a mistyped path stops the start and creates nothing (the
 * serving daemon's own store changes meanwhile: only the names are compared). */
static void test_missing_store_refused(void **state)
{
    char *out = NULL, *before, *after;

    (void)state;
    ensure_running();
    write_conf("typo.conf", "store = sqlite:keybroker-typo.db");
    before = sh_out("ls -A | sort");
    assert_int_equal(run("-c typo.conf", &out), 1);
    must_contain(out, "keybroker-typo.db does not exist");
    must_contain(out, "only keybrokerd --init creates a store");
    free(out);
    after = sh_out("ls -A | sort");
    assert_string_equal(before, after);
    assert_int_not_equal(kbt_sh(env, "ls keybroker-typo.db* 2>/dev/null | grep -q .", NULL), 0);
    free(before);
    free(after);
    /* an empty file where the store should be (a copy that did not finish, a file a crash
     * emptied) and another program's database: each refused as what it is, not given a schema
     * and then refused as a rollback, and left as it was */
    free(sh_out("umask 077; : > keybroker-empty.db && "
                "sqlite3 keybroker-other.db 'CREATE TABLE t(x); INSERT INTO t VALUES (1)'"));
    write_conf("empty.conf", "store = sqlite:keybroker-empty.db");
    write_conf("other.conf", "store = sqlite:keybroker-other.db");
    before = sh_out(
        "sha256sum keybroker-empty.db keybroker-other.db; ls keybroker-*.db* | grep -v .lock$");
    assert_int_equal(run("-c empty.conf", &out), 1);
    must_contain(out, "keybroker-empty.db holds no keybroker schema (an empty or foreign file) "
                      "and is left as it is");
    if (strstr(out, "rollback") != NULL)
        fail_msg("an empty store file refused as a rollback: %s", out);
    free(out);
    assert_int_equal(run("-c other.conf", &out), 1);
    must_contain(out, "keybroker-other.db holds no keybroker schema");
    free(out);
    assert_int_equal(run("-c empty.conf --check", &out), 1);
    must_contain(out, "keybroker-empty.db holds no keybroker schema");
    free(out);
    after = sh_out(
        "sha256sum keybroker-empty.db keybroker-other.db; ls keybroker-*.db* | grep -v .lock$");
    assert_string_equal(before, after);
    must_contain(after, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    free(before);
    free(after);
    if (kbt_pg()) {
        /* a PostgreSQL URL whose search_path names a schema without a store: refused, and
         * the schema stays empty */
        char line[1024], *url = strdup(env->store), *at = strstr(url, "search_path%3D");
        char count[32];

        assert_non_null(at);
        at[strlen("search_path%3D")] = '\0';
        snprintf(line, sizeof(line), "store = %skbt_typo_schema", url);
        free(url);
        assert_int_equal(
            kbt_store_query(env, "CREATE SCHEMA IF NOT EXISTS kbt_typo_schema", NULL, 0, NULL), 0);
        write_conf("typo-pg.conf", line);
        assert_int_equal(run("-c typo-pg.conf", &out), 1);
        must_contain(out, "holds no keybroker store in its current schema");
        free(out);
        assert_int_equal(kbt_store_query(env,
                                         "SELECT count(*) FROM pg_tables WHERE schemaname = "
                                         "'kbt_typo_schema'",
                                         count, sizeof(count), NULL),
                         0);
        assert_string_equal(count, "0");
        assert_int_equal(kbt_store_query(env, "DROP SCHEMA kbt_typo_schema CASCADE", NULL, 0, NULL),
                         0);
    }
}

/* A PostgreSQL URL with a password, in either form libpq takes (trust authentication lets the
 * test's cluster ignore it): --check names the store without it, and so does the refusal of a
 * mistyped scheme. */
static void check_names_no_password(void)
{
    static const char secret[] = "kbt-not-a-secret-4711";
    char line[1200], *out = NULL;
    const char *rest = strstr(env->store, ":///");

    assert_non_null(rest);
    snprintf(line, sizeof(line), "store = %s&password=%s", env->store, secret);
    write_conf("pw-param.conf", line);
    snprintf(line, sizeof(line), "store = postgresql://kbr:%s@/%s", secret, rest + 4);
    write_conf("pw-user.conf", line);
    snprintf(line, sizeof(line), "store = postgresq://kbr:%s@/%s", secret, rest + 4);
    write_conf("pw-typo.conf", line);
    if (run("-c pw-param.conf --check", &out) != 0)
        fail_msg("--check with password= in the store URL failed:\n%s", out);
    must_contain(out, "audit entries; the latest checkpoint");
    if (strstr(out, secret) != NULL)
        fail_msg("--check shows the store's password:\n%s", out);
    free(out);
    if (run("-c pw-user.conf --check", &out) != 0)
        fail_msg("--check with user:password@ in the store URL failed:\n%s", out);
    must_contain(out, "store postgresql://kbr:***@/");
    if (strstr(out, secret) != NULL)
        fail_msg("--check shows the store's password:\n%s", out);
    free(out);
    assert_int_equal(run("-c pw-typo.conf --check", &out), 1);
    must_contain(out, "unsupported URL \"postgresq://kbr:***@/");
    if (strstr(out, secret) != NULL)
        fail_msg("--check shows the password of a mistyped store URL:\n%s", out);
    free(out);
}

/* A good deployment, stopped: every check passes and not a byte changes. */
static void test_check_good_changes_nothing(void **state)
{
    char *out = NULL, *before, *after;

    (void)state;
    ensure_running();
    await_checkpoint();
    kbt_stop(env);
    before = snapshot();
    if (run("-c keybroker.conf --check", &out) != 0)
        fail_msg("--check failed on a good deployment:\n%s", out);
    must_contain(out, "ok: configuration");
    must_contain(out, "ok: HSM: module");
    must_contain(out, "ok: issuer key kbr/issuer is in the HSM");
    must_contain(out, "ok: audit key kbr/audit is in the HSM");
    must_contain(out, "audit entries; the latest checkpoint");
    must_contain(out, "verifies with the audit key");
    must_contain(out, "no problems");
    if (strstr(out, "open to other users") != NULL)
        fail_msg("--check warns of the mode of a store made 0600:\n%s", out);
    free(out);
    after = snapshot();
    assert_string_equal(before, after);
    free(before);
    free(after);
    if (kbt_pg()) { /* no file to have a mode */
        check_names_no_password();
        assert_int_equal(kbt_spawn_daemon(env), 0);
        return;
    }
    /* a store others may read (made before stores were 0600 from the start): a warning from
     * --check and at every start, naming each file and its mode; nothing is changed */
    free(sh_out("chmod 644 keybroker.db"));
    if (run("-c keybroker.conf --check", &out) != 0)
        fail_msg("--check failed on a store of mode 0644:\n%s", out);
    must_contain(out, "warning: store ");
    must_contain(out, "keybroker.db (0644) open to other users");
    must_contain(out, "chmod 600");
    free(out);
    assert_int_equal(kbt_spawn_daemon(env), 0);
    out = sh_out("grep '\"event\":\"store.mode\"' broker.log | tail -n 1; stat -c %a keybroker.db");
    must_contain(out, "keybroker.db (0644) open to other users");
    must_contain(out, "\n644\n");
    free(out);
    free(sh_out("chmod 600 keybroker.db keybroker.db-wal keybroker.db-shm"));
}

static void check_fails(const char *conf, const char *const *needles, size_t n)
{
    char *out = NULL, *args = NULL, *before = snapshot(), *after;
    int rc;

    assert_true(asprintf(&args, "-c %s --check", conf) > 0);
    rc = run(args, &out);
    if (rc != 1)
        fail_msg("--check of %s: expected exit 1, got %d:\n%s", conf, rc, out);
    for (size_t i = 0; i < n; i++)
        must_contain(out, needles[i]);
    after = snapshot();
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(args);
    free(out);
}

/* Each kind of problem is named, all of them in one run, and nothing changes. */
static void test_check_reports_each_problem(void **state)
{
    (void)state;
    ensure_running();
    kbt_stop(env);
    {
        /* two bad lines and a missing setting: three problems, each with its line */
        const char *n[] = {"bad.conf:", "unknown key \"listen_adress\"", "bad value for workers",
                           "tls_client_ca needs tls_cert", "problem"};
        write_conf("bad.conf",
                   "listen_adress = 127.0.0.1:1\nworkers = many\ntls_client_ca = x.pem");
        check_fails("bad.conf", n, 5);
    }
    {
        const char *n[] = {"problem: ", "/nonexistent/libpkcs11.so"};
        write_conf("mod.conf", "pkcs11_module = /nonexistent/libpkcs11.so");
        check_fails("mod.conf", n, 2);
    }
    {
        const char *n[] = {"problem: ", "PIN"};
        assert_int_equal(kbt_sh(env, "echo 9999 > wrong.pin", NULL), 0);
        write_conf("pin.conf", "pin_file = wrong.pin");
        check_fails("pin.conf", n, 2);
    }
    {
        const char *n[] = {"problem: store", "nowhere.db does not exist"};
        write_conf("store.conf", "store = sqlite:nowhere.db");
        check_fails("store.conf", n, 2);
    }
    {
        const char *n[] = {"problem: ", "plain HTTP is only allowed on a loopback address"};
        write_conf("net.conf", "listen = 0.0.0.0:0");
        check_fails("net.conf", n, 2);
    }
    {
        /* a certificate whose key is another */
        const char *n[] = {"problem: tls_key", "b.key", "mismatch"};
        assert_int_equal(
            kbt_sh(env,
                   "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                   "-nodes -keyout a.key -out a.pem -days 1 -subj /CN=a 2>/dev/null && "
                   "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
                   "-out b.key 2>/dev/null",
                   NULL),
            0);
        write_conf("tls.conf", "tls_cert = a.pem\ntls_key = b.key");
        check_fails("tls.conf", n, 3);
    }
    {
        /* the HSM holds no issuer or audit key: another token */
        const char *n[] = {"issuer key kbr/issuer not found in the HSM",
                           "audit key kbr/audit not found in the HSM"};
        assert_int_equal(kbt_sh(env,
                                "softhsm2-util --init-token --free --label empty --pin 1234 "
                                "--so-pin 5678 >/dev/null",
                                NULL),
                         0);
        write_conf("keys.conf", "token_label = empty");
        check_fails("keys.conf", n, 2);
    }
    assert_int_equal(kbt_spawn_daemon(env), 0);
}

/* A store of an older schema is reported, and left as it is: no migration, no WAL files. */
static void test_check_old_schema_not_migrated(void **state)
{
    char *out = NULL, *before, *after, *version;

    (void)state;
    /* the test runs from the source tree (make check), where the schema files are */
    if (access("store/sql/v1.sql", R_OK) != 0)
        fail_msg("run from the source tree: store/sql/v1.sql not found");
    {
        char *cmd = NULL, cwd[1024];
        assert_non_null(getcwd(cwd, sizeof(cwd)));
        assert_true(asprintf(&cmd,
                             "sqlite3 old.db < '%s/store/sql/v1.sql' && "
                             "sqlite3 old.db 'INSERT INTO meta(schema_version) VALUES (1)'",
                             cwd) > 0);
        assert_int_equal(kbt_sh(env, cmd, NULL), 0);
        free(cmd);
    }
    write_conf("old.conf", "store = sqlite:old.db");
    before = sh_out("ls -A | sort");
    {
        char *all = sh_out("sha256sum old.db; ls -A");
        int rc = run("-c old.conf --check", &out);
        char *again = sh_out("sha256sum old.db; ls -A");
        if (rc != 0)
            fail_msg("an older schema is a warning, not a problem; got %d:\n%s", rc, out);
        assert_string_equal(all, again);
        free(all);
        free(again);
    }
    must_contain(out, "warning: store");
    must_contain(out, "has schema version 1; the next start (or --init) migrates it to");
    after = sh_out("ls -A | sort");
    assert_string_equal(before, after);
    version = sh_out("sqlite3 -readonly old.db 'SELECT max(schema_version) FROM meta'");
    assert_string_equal(version, "1\n");
    free(version);
    free(before);
    free(after);
    free(out);
}

/* Beside a serving daemon --check says who serves the store, and still passes. */
static void test_check_beside_a_serving_daemon(void **state)
{
    char *out = NULL, pid[64];

    (void)state;
    ensure_running();
    if (run("-c keybroker.conf --check", &out) != 0)
        fail_msg("--check beside a daemon failed:\n%s", out);
    /* several brokers serve a PostgreSQL store at once: none of them is "the" one */
    snprintf(pid, sizeof(pid), "is being served by keybrokerd (pid %d)", (int)env->pid);
    if (!kbt_pg())
        must_contain(out, pid);
    must_contain(out, "no problems");
    free(out);
}

/* Prometheus text format: every family has HELP and TYPE before its samples, histograms have
 * cumulative buckets up to +Inf, _sum and _count, and +Inf equals _count. */
static void check_exposition(const char *text)
{
    char *copy = strdup(text), *save = NULL, help[128] = "", type[128] = "", kind[16] = "";
    char series[512] = "";
    long long inf = -1, prev = -1;
    int families = 0, histograms = 0;

    assert_non_null(copy);
    for (char *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char name[128];
        size_t n;
        if (sscanf(line, "# HELP %127s", help) == 1)
            continue;
        if (sscanf(line, "# TYPE %127s %15s", type, kind) == 2) {
            if (strcmp(help, type) != 0)
                fail_msg("# TYPE %s without its # HELP", type);
            assert_true(strcmp(kind, "counter") == 0 || strcmp(kind, "gauge") == 0 ||
                        strcmp(kind, "histogram") == 0);
            families++;
            histograms += strcmp(kind, "histogram") == 0;
            series[0] = '\0';
            continue;
        }
        assert_true(line[0] != '#');
        n = strcspn(line, "{ ");
        assert_true(n < sizeof(name));
        memcpy(name, line, n);
        name[n] = '\0';
        if (strcmp(kind, "histogram") != 0) {
            if (strcmp(name, type) != 0)
                fail_msg("sample %s under # TYPE %s", line, type);
            continue;
        }
        {
            size_t base = strlen(type);
            const char *suffix = name + base, *le = strstr(line, "le=\"");
            long long v = atoll(strrchr(line, ' ') + 1);
            if (strncmp(name, type, base) != 0 ||
                (strcmp(suffix, "_bucket") != 0 && strcmp(suffix, "_sum") != 0 &&
                 strcmp(suffix, "_count") != 0))
                fail_msg("sample %s is not of histogram %s", line, type);
            if (strcmp(suffix, "_bucket") == 0) {
                size_t k = le != NULL ? (size_t)(le - line) : 0;
                if (le == NULL)
                    fail_msg("a bucket without le: %s", line);
                /* a new series (its labels but le) starts its count again */
                if (k >= sizeof(series) || strncmp(series, line, k) != 0 || series[k] != '\0') {
                    assert_true(k < sizeof(series));
                    memcpy(series, line, k);
                    series[k] = '\0';
                    prev = -1;
                }
                if (v < prev)
                    fail_msg("buckets are not cumulative at %s", line);
                prev = v;
                if (strstr(line, "le=\"+Inf\"") != NULL)
                    inf = v;
            } else if (strcmp(suffix, "_count") == 0 && v != inf) {
                fail_msg("%s: _count %lld, +Inf bucket %lld", type, v, inf);
            }
        }
    }
    assert_true(families >= 20);
    assert_true(histograms >= 4);
    free(copy);
}

static void test_metrics_format(void **state)
{
    kbt_resp r;

    (void)state;
    ensure_running();
    kbt_key(env, "fw2", "firmware-signing", "ecdsa-p256", "gateway");
    r = kbt_call(env, "GET", "/v1/keys/nope", env->admin, NULL);
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/nope", NULL, NULL);
    assert_int_equal(r.status, 404);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/metrics", NULL, NULL);
    assert_int_equal(r.status, 200);
    check_exposition(r.body);
    must_contain(r.body, "keybroker_http_requests_total{method=\"GET\",route=\"/v1/keys/{}\","
                         "status=\"404\"} 1\n");
    must_contain(r.body, "keybroker_http_requests_total{method=\"\",route=\"none\","
                         "status=\"404\"} 1\n");
    must_contain(r.body, "keybroker_http_request_duration_seconds_bucket{method=\"POST\","
                         "route=\"/v1/keys\",le=\"+Inf\"} 1\n");
    must_contain(r.body, "keybroker_hsm_call_duration_seconds_count{call=\"generate\"} 1\n");
    must_contain(r.body, "keybroker_hsm_call_duration_seconds_count{call=\"find_key\"}");
    must_contain(r.body, "keybroker_audit_commit_duration_seconds_count ");
    must_contain(r.body, "keybroker_audit_group_size_bucket{le=\"1\"}");
    /* a few commits never make the WAL long enough to start over */
    must_contain(r.body, "# TYPE keybroker_audit_wal_restart_duration_seconds histogram\n");
    must_contain(r.body, "keybroker_audit_wal_restart_duration_seconds_count 0\n");
    must_contain(r.body, "# TYPE keybroker_audit_checkpoint_age_seconds gauge\n");
    must_contain(r.body, "keybroker_hsm_up 1\n");
    must_contain(r.body, "keybroker_audit_up 1\n");
    must_contain(r.body, "keybroker_requests_total ");
    /* a path nobody routes counts as "none", never as itself */
    assert_null(strstr(r.body, "/v1/nope"));
    kbt_resp_free(&r);
    /* promtool, where it is installed, says the same */
    if (kbt_sh(env, "command -v promtool >/dev/null", NULL) == 0) {
        char *cmd = NULL, *out = NULL;
        assert_true(asprintf(&cmd, "curl -s %s/metrics | promtool check metrics 2>&1", env->url) >
                    0);
        if (kbt_sh(env, cmd, &out) != 0)
            fail_msg("promtool check metrics:\n%s", out);
        free(out);
        free(cmd);
    }
}

static bool log_has(const char *file, const char *needle, int wait_ms)
{
    char *cmd = NULL;
    bool found = false;

    assert_true(asprintf(&cmd, "grep -qF '%s' %s", needle, file) > 0);
    for (int waited = 0; !found && waited <= wait_ms; waited += 50) {
        found = kbt_sh(env, cmd, NULL) == 0;
        if (!found)
            usleep(50 * 1000);
    }
    free(cmd);
    return found;
}

/*
 * log_format = json: one object per line with time, level, event and the request's id; after
 * logrotate's move and SIGHUP, every process of the broker writes to the new file.
 */
static void test_json_log_follows_rotation(void **state)
{
    char *lines = NULL;
    kbt_resp r;
    pid_t keeper, hsm;

    (void)state;
    ensure_running();
    assert_true(log_has("broker.log", "\"event\":\"listening\"", 0));
    /* every line is a JSON object with the fields a collector indexes */
    lines = sh_out("cat broker.log");
    {
        char *save = NULL;
        for (char *l = strtok_r(lines, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
            json_t *o = json_loads(l, 0, NULL);
            if (o == NULL)
                fail_msg("not a JSON line: %s", l);
            assert_non_null(json_string_value(json_object_get(o, "time")));
            assert_non_null(json_string_value(json_object_get(o, "level")));
            assert_non_null(json_string_value(json_object_get(o, "event")));
            assert_non_null(json_string_value(json_object_get(o, "message")));
            json_decref(o);
        }
    }
    free(lines);
    assert_int_equal(kbt_sh(env, "mv broker.log broker.log.1", NULL), 0);
    kill(env->pid, SIGHUP);
    assert_true(log_has("broker.log", "\"event\":\"reload.done\"", 5000));
    assert_int_equal(kill(env->pid, 0), 0);
    /* the HSM keeper writes to the new file too */
    kbt_hsm_pids(env, &keeper, &hsm);
    kill(hsm, SIGKILL);
    if (!log_has("broker.log", "\"event\":\"hsm.process_died\"", 5000))
        fail_msg("the keeper's line did not reach the reopened log");
    assert_false(log_has("broker.log.1", "hsm.process_died", 0));
    /* a request's id: the client's when well-formed, echoed in the response */
    {
        char *cmd = NULL, *out = NULL;
        assert_true(asprintf(&cmd,
                             "curl -s -D - -o /dev/null -H 'X-Request-Id: line-7.run_42' "
                             "%s/v1/health",
                             env->url) > 0);
        out = sh_out(cmd);
        must_contain(out, "X-Request-Id: line-7.run_42");
        free(out);
        free(cmd);
    }
    /* the keeper started a new HSM process: health is 503 until it serves, then 200 */
    for (int waited = 0;; waited += 100) {
        r = kbt_call(env, "GET", "/v1/health", NULL, NULL);
        if (r.status == 200)
            break;
        assert_int_equal(r.status, 503);
        kbt_resp_free(&r);
        if (waited >= 15000)
            fail_msg("the broker did not serve again after its HSM process was killed");
        usleep(100 * 1000);
    }
    kbt_resp_free(&r);
}

/* The broker commits while the copy is made; the copy is a whole store, and in the log. */
static void test_backup_consistent_and_recorded(void **state)
{
    char *cmd = NULL, *out = NULL, *sha = NULL, *seq = NULL;
    json_t *all, *e = NULL;
    size_t i;
    const char *limited;

    if (kbt_pg())
        skip(); /* a PostgreSQL store is copied with pg_dump */
    (void)state;
    ensure_running();
    /* two writers issue tokens throughout the backup */
    assert_true(
        asprintf(&cmd,
                 "true; writer() { for i in $(seq 60); do curl -s -o /dev/null -H 'Authorization: "
                 "Bearer %s' -d '{\"sub\":\"ci:w'$1'\",\"ops\":[\"read\"],\"ttl\":600}' "
                 "%s/v1/tokens; done; }; writer 1 & writer 2 & "
                 "KEYBROKER_URL=%s KEYBROKER_TOKEN='%s' '%s/keybroker' backup --out copy.db; "
                 "rc=$?; wait; exit $rc",
                 env->admin, env->url, env->url, env->admin, env->bin_dir) > 0);
    if (kbt_sh(env, cmd, &out) != 0)
        fail_msg("keybroker backup failed: %s", out);
    free(cmd);
    must_contain(out, "backup copy.db: ");
    must_contain(out, "recorded as audit entry");
    free(out);
    /* the log line about it carries the request's id */
    out = sh_out("grep '\"event\":\"backup.sent\"' broker.log");
    must_contain(out, "\"request_id\":\"");
    free(out);
    assert_int_equal(kbt_sh(env, "stat -c %a copy.db | grep -qx 600", NULL), 0);
    out = sh_out("sqlite3 copy.db 'PRAGMA integrity_check'");
    assert_string_equal(out, "ok\n");
    free(out);
    /* what arrived, before anything opens it */
    sha = sh_out("sha256sum copy.db | cut -c1-64 | tr -d '\\n'");
    seq = sh_out("sqlite3 copy.db 'SELECT max(seq) FROM audit' | tr -d '\\n'");
    /* the copy is a store --verify-store finds consistent with its own log */
    write_conf("copy.conf", "store = sqlite:copy.db");
    if (kbt_run_daemon(env, "-c copy.conf --verify-store", &out) != 0)
        fail_msg("--verify-store on the copy: %s", out);
    must_contain(out, "matches its audit log");
    free(out);
    /* and left it as it arrived: the same bytes, no WAL files, nothing of the check's */
    out = sh_out("sha256sum copy.db | cut -c1-64 | tr -d '\\n'; "
                 "ls -d copy.db-wal copy.db-shm .keybroker-verify* 2>/dev/null || true");
    assert_string_equal(out, sha);
    free(out);
    /* and the backup is an entry naming the copy's digest and the log it holds */
    all = kbt_audit_all(env);
    json_array_foreach(all, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "op")), "store.backup") == 0)
            break;
    }
    assert_true(i < json_array_size(all));
    assert_string_equal(json_string_value(json_object_get(json_object_get(e, "detail"), "sha256")),
                        sha);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(e, "detail"), "last_seq")),
                     atoll(seq));
    /* the entry comes after what the copy holds: its own record is not in it */
    assert_true(json_integer_value(json_object_get(e, "seq")) > atoll(seq));
    json_decref(all);
    free(sha);
    free(seq);
    /* a token limited to a product is refused: a copy holds every product */
    limited = kbt_token(env, "{\"sub\":\"security:gw\",\"ops\":[\"admin\"],\"products\":"
                             "[\"gateway\"],\"ttl\":600}");
    assert_true(asprintf(&cmd,
                         "KEYBROKER_URL=%s KEYBROKER_TOKEN='%s' '%s/keybroker' backup --out "
                         "no.db 2>&1",
                         env->url, limited, env->bin_dir) > 0);
    assert_int_equal(kbt_sh(env, cmd, &out), 1);
    must_contain(out, "forbidden");
    must_contain(out, "limited to no products");
    assert_int_not_equal(kbt_sh(env, "ls no.db* 2>/dev/null | grep -q .", NULL), 0);
    free(out);
    free(cmd);
    free((char *)limited);
    /* --out names a FIFO: the copy goes through it (to encryption, say), which stays a FIFO;
     * a symbolic link is refused before any copy is made, and stays as it was */
    assert_true(
        asprintf(&cmd,
                 "rm -f p link.db && mkfifo -m 0600 p && ln -s copy.db link.db && "
                 "{ timeout 30 cat p > viafifo.db & } && KEYBROKER_URL=%s KEYBROKER_TOKEN='%s' "
                 "'%s/keybroker' backup --out p >/dev/null && wait && test -p p && "
                 "sqlite3 viafifo.db 'PRAGMA integrity_check' && "
                 "KEYBROKER_URL=%s KEYBROKER_TOKEN='%s' '%s/keybroker' backup --out link.db "
                 "2>&1; echo \"rc=$?\"; test -L link.db && echo still-a-link",
                 env->url, env->admin, env->bin_dir, env->url, env->admin, env->bin_dir) > 0);
    assert_int_equal(kbt_sh(env, cmd, &out), 0);
    must_contain(out, "ok\n");
    must_contain(out, "--out link.db");
    must_contain(out, "symbolic link");
    must_contain(out, "rc=1\nstill-a-link");
    free(out);
    free(cmd);
    /* the store moved away under a running daemon: the backup fails and names it, and no empty
     * store is made in its place to be copied as if it were the deployment's */
    assert_true(asprintf(&cmd,
                         "mv keybroker.db aside.db && KEYBROKER_URL=%s KEYBROKER_TOKEN='%s' "
                         "'%s/keybroker' backup --out gone.db 2>&1; rc=$?; "
                         "test ! -e keybroker.db && test ! -e gone.db; "
                         "st=$?; mv aside.db keybroker.db; echo \"rc=$rc st=$st\"",
                         env->url, env->admin, env->bin_dir) > 0);
    assert_int_equal(kbt_sh(env, cmd, &out), 0);
    must_contain(out, "rc=1 st=0");
    free(out);
    free(cmd);
    out = sh_out("grep '\"event\":\"backup.failed\"' broker.log | tail -n 1");
    must_contain(out, "keybroker.db does not exist");
    free(out);
    /* interrupted while the copy is awaited (the daemon stopped): the command dies of the
     * signal and takes its temporary file beside FILE with it; FILE is not made */
    assert_true(asprintf(&cmd,
                         "kill -STOP %d; KEYBROKER_URL=%s KEYBROKER_TOKEN='%s' '%s/keybroker' "
                         "backup --out cut.db >/dev/null 2>&1 & b=$!; n=0; "
                         "while ! ls cut.db.partial-* >/dev/null 2>&1 && [ $n -lt 200 ]; do "
                         "sleep 0.05; n=$((n+1)); done; ls cut.db.partial-* >/dev/null 2>&1 && "
                         "echo made; kill -TERM $b; wait $b; rc=$?; kill -CONT %d; "
                         "ls cut.db* 2>/dev/null; echo \"rc=$rc\"",
                         (int)env->pid, env->url, env->admin, env->bin_dir, (int)env->pid) > 0);
    assert_int_equal(kbt_sh(env, cmd, &out), 0);
    assert_string_equal(out, "made\nrc=143\n");
    free(out);
    free(cmd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_store_refused),
        cmocka_unit_test(test_check_good_changes_nothing),
        cmocka_unit_test(test_check_reports_each_problem),
        cmocka_unit_test(test_check_old_schema_not_migrated),
        cmocka_unit_test(test_check_beside_a_serving_daemon),
        cmocka_unit_test(test_metrics_format),
        cmocka_unit_test(test_json_log_follows_rotation),
        cmocka_unit_test(test_backup_consistent_and_recorded),
    };

    return cmocka_run_group_tests_name("keybrokerd operations", tests, setup, teardown);
}
