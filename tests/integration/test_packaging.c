/*
 * test_packaging.c - what an operator installs: `make install DESTDIR=...` lays out the
 * binaries, man pages, unit, sample configuration and alert rules (and keeps an edited
 * configuration); the unit passes `systemd-analyze verify` and keeps its sandbox; the daemon
 * serves, forks its HSM processes and reloads under the unit's process restrictions
 * (no_new_privs, no writable executable memory, a read-only file system but its state); the
 * alert rules pass promtool and name metrics the broker exports; `make deb` builds a daemon
 * package and a client package that needs none of the daemon's libraries.
 *
 * It runs from the source tree (make check's working directory).  A tool that is not there
 * (systemd-analyze, promtool, dpkg-buildpackage) skips its part, saying so; .ci/run installs
 * them all.  On PostgreSQL only the parts a daemon takes part in run again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#endif
#ifndef PR_MDWE_REFUSE_EXEC_GAIN
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static kbt_env *env;    /* a scratch directory, and the restricted daemon's deployment */
static char src[1024];  /* the source tree */
static char self[1024]; /* this program, the restricting wrapper */

static int setup(void **state)
{
    (void)state;
    if (getcwd(src, sizeof(src)) == NULL || access("debian/control", R_OK) != 0 ||
        access("contrib/systemd/keybrokerd.service", R_OK) != 0)
        fail_msg("run from the source tree (make check): debian/control not found");
    assert_true(readlink("/proc/self/exe", self, sizeof(self) - 1) > 0);
    env = kbt_new();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kbt_free(env);
    return 0;
}

static bool have(const char *tool)
{
    char *cmd = NULL;
    bool yes;

    assert_true(asprintf(&cmd, "command -v %s >/dev/null 2>&1", tool) > 0);
    yes = kbt_sh(env, cmd, NULL) == 0;
    free(cmd);
    return yes;
}

static void must_contain(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        fail_msg("expected \"%s\" in:\n%s", needle, text);
}

/* `make TARGET VARS` in the source tree, as an operator runs it, free of the make running us. */
static int make_in_src(const char *args, char **out)
{
    char *cmd = NULL;
    int rc;

    assert_true(asprintf(&cmd,
                         "cd '%s' && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES "
                         "make --no-print-directory BIN='%s' -o '%s/keybrokerd' -o '%s/keybroker' "
                         "%s 2>&1",
                         src, env->bin_dir, env->bin_dir, env->bin_dir, args) > 0);
    rc = kbt_sh(env, cmd, out);
    free(cmd);
    return rc;
}

static void check_mode(const char *path, mode_t mode)
{
    struct stat sb;

    if (stat(path, &sb) != 0)
        fail_msg("%s was not installed: %s", path, strerror(errno));
    if ((sb.st_mode & 07777) != mode)
        fail_msg("%s has mode %o, not %o", path, sb.st_mode & 07777, mode);
}

static void test_make_install_layout(void **state)
{
    char *out = NULL, *args = NULL, d[600], *unit = NULL;
    static const struct {
        const char *path;
        mode_t mode;
    } files[] = {
        {"usr/local/bin/keybroker", 0755},
        {"usr/local/sbin/keybrokerd", 0755},
        {"usr/local/share/man/man1/keybroker.1", 0644},
        {"usr/local/share/man/man8/keybrokerd.8", 0644},
        {"usr/local/lib/systemd/system/keybrokerd.service", 0644},
        {"etc/keybroker/keybroker.conf.sample", 0644},
        {"etc/keybroker/keybroker.conf", 0644},
        {"usr/local/share/keybroker/prometheus/keybroker-alerts.yml", 0644},
        {"usr/local/share/doc/keybroker/operations.md", 0644},
    };

    (void)state;
    if (kbt_pg())
        skip(); /* files, the same for either store: checked on the SQLite run */
    snprintf(d, sizeof(d), "%s/inst", env->dir);
    assert_true(asprintf(&args, "install DESTDIR='%s'", d) > 0);
    if (make_in_src(args, &out) != 0)
        fail_msg("make install failed:\n%s", out);
    free(out);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[800];
        snprintf(path, sizeof(path), "%s/%s", d, files[i].path);
        check_mode(path, files[i].mode);
    }
    /* the unit names this layout's paths */
    assert_int_equal(kbt_sh(env, "cat inst/usr/local/lib/systemd/system/keybrokerd.service", &unit),
                     0);
    must_contain(unit, "ExecStart=/usr/local/sbin/keybrokerd -c /etc/keybroker/keybroker.conf\n");
    free(unit);
    /* the installed binaries run */
    assert_int_equal(
        kbt_sh(env, "inst/usr/local/sbin/keybrokerd --version | grep -q '^keybrokerd '", NULL), 0);
    assert_int_equal(kbt_sh(env, "inst/usr/local/bin/keybroker help >/dev/null", NULL), 0);
    /* an edited configuration survives the next install; the sample is renewed */
    assert_int_equal(kbt_sh(env, "echo '# mine' >> inst/etc/keybroker/keybroker.conf", NULL), 0);
    if (make_in_src(args, &out) != 0)
        fail_msg("make install again failed:\n%s", out);
    free(out);
    {
        char *cmd = NULL;
        assert_true(asprintf(&cmd,
                             "tail -1 inst/etc/keybroker/keybroker.conf | grep -qx '# mine' && cmp "
                             "-s inst/etc/keybroker/keybroker.conf.sample "
                             "'%s/contrib/keybroker.conf.sample'",
                             src) > 0);
        assert_int_equal(kbt_sh(env, cmd, NULL), 0);
        free(cmd);
    }
    free(args);
    /* PREFIX=/usr puts the daemon where the packaged unit says */
    assert_true(asprintf(&args, "install-daemon DESTDIR='%s/usr-inst' PREFIX=/usr", env->dir) > 0);
    if (make_in_src(args, &out) != 0)
        fail_msg("make install PREFIX=/usr failed:\n%s", out);
    free(out);
    free(args);
    snprintf(d, sizeof(d), "%s/usr-inst/usr/sbin/keybrokerd", env->dir);
    check_mode(d, 0755);
    assert_int_equal(kbt_sh(env,
                            "grep -qx 'ExecStart=/usr/sbin/keybrokerd -c "
                            "/etc/keybroker/keybroker.conf' "
                            "usr-inst/usr/lib/systemd/system/keybrokerd.service",
                            NULL),
                     0);
}

/*
 * systemd-analyze verify on the installed unit, with ExecStart pointing at the installed
 * binary (verify checks that it exists); man pages are checked below, on their own.  Any
 * line it prints is a finding (an unknown key is a warning with exit status 0).  Its security
 * review keeps the exposure the unit has today.
 */
static void test_unit_verifies(void **state)
{
    char *out = NULL, *unit = NULL, *p;
    double exposure;
    static const char *const needed[] = {
        "Type=notify\n",
        "User=keybroker\n",
        "ExecReload=/bin/kill -HUP $MAINPID\n",
        "ProtectSystem=strict\n",
        "NoNewPrivileges=yes\n",
        "MemoryDenyWriteExecute=yes\n",
        "ReadWritePaths=/var/lib/keybroker\n",
        "LimitNOFILE=65536\n",
    };

    (void)state;
    if (kbt_pg())
        skip(); /* files, the same for either store: checked on the SQLite run */
    assert_int_equal(kbt_sh(env, "cat inst/usr/local/lib/systemd/system/keybrokerd.service", &unit),
                     0);
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
        must_contain(unit, needed[i]);
    free(unit);
    if (!have("systemd-analyze")) {
        print_message("SKIPPED: systemd-analyze is not installed; the unit was not verified\n");
        skip();
    }
    assert_int_equal(kbt_sh(env,
                            "mkdir -p unit && sed \"s|ExecStart=/usr/local/sbin|ExecStart=$(pwd)/"
                            "inst/usr/local/sbin|\" inst/usr/local/lib/systemd/system/"
                            "keybrokerd.service > unit/keybrokerd.service",
                            NULL),
                     0);
    if (kbt_sh(env, "systemd-analyze verify --man=no unit/keybrokerd.service 2>&1", &out) != 0 ||
        out[0] != '\0')
        fail_msg("systemd-analyze verify:\n%s", out);
    free(out);
    assert_int_equal(
        kbt_sh(env, "systemd-analyze security --offline=yes unit/keybrokerd.service 2>&1", &out),
        0);
    p = strstr(out, "Overall exposure level for keybrokerd.service: ");
    assert_non_null(p);
    exposure = atof(p + strlen("Overall exposure level for keybrokerd.service: "));
    if (exposure > 3.0)
        fail_msg("the unit's exposure rose to %.1f:\n%s", exposure, out);
    free(out);
}

static void test_man_pages(void **state)
{
    char *out = NULL;

    (void)state;
    if (kbt_pg())
        skip(); /* files, the same for either store: checked on the SQLite run */
    if (!have("groff")) {
        print_message("SKIPPED: groff is not installed; the man pages were not checked\n");
        skip();
    }
    /* no roff warnings, and every option of the daemon is there */
    assert_int_equal(
        kbt_sh(env,
               "true; for m in inst/usr/local/share/man/man*/*; do LC_ALL=C.UTF-8 groff "
               "-man -ww -z -Tutf8 $m; done 2>&1",
               &out),
        0);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(kbt_sh(env,
                            "LC_ALL=C.UTF-8 groff -man -Tutf8 -P-c "
                            "inst/usr/local/share/man/man8/keybrokerd.8 2>/dev/null | col -bx",
                            &out),
                     0);
    must_contain(out, "--check");
    must_contain(out, "--init");
    must_contain(out, "--verify-store");
    must_contain(out, "SIGHUP");
    must_contain(out, "ops_listen");
    free(out);
    assert_int_equal(kbt_sh(env,
                            "LC_ALL=C.UTF-8 groff -man -Tutf8 -P-c "
                            "inst/usr/local/share/man/man1/keybroker.1 2>/dev/null | col -bx",
                            &out),
                     0);
    must_contain(out, "backup --out FILE");
    must_contain(out, "KEYBROKER_URL");
    free(out);
}

/* The wrapper: restricts itself as the unit restricts keybrokerd, then runs it. */
static int restricted_exec(int argc, char **argv)
{
    const char *state_dir = getenv("KBT_STATE_DIR");

    if (argc < 3 || state_dir == NULL)
        return 127;
    /* NoNewPrivileges= */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return 126;
    /* MemoryDenyWriteExecute=: the kernel's own form of it (Linux 6.3 and later) */
    if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0)
        fprintf(stderr, "kbt: no PR_SET_MDWE on this kernel (%s)\n", strerror(errno));
    else
        fprintf(stderr, "kbt: MDWE on\n");
    /* ProtectSystem=strict with ReadWritePaths= the state directory, where root may mount */
    if (geteuid() == 0 && unshare(CLONE_NEWNS) == 0 &&
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
        mount(state_dir, state_dir, NULL, MS_BIND, NULL) == 0) {
        struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
        if (syscall(SYS_mount_setattr, -1, "/", AT_RECURSIVE, &ro, sizeof(ro)) == 0 &&
            mount(NULL, state_dir, NULL, MS_REMOUNT | MS_BIND, NULL) == 0)
            fprintf(stderr, "kbt: read-only but %s\n", state_dir);
    }
    execv(argv[2], argv + 2);
    return 127;
}

static bool log_has(const char *needle, int wait_ms)
{
    char *cmd = NULL;
    bool found = false;

    assert_true(asprintf(&cmd, "grep -qF '%s' keybrokerd.log", needle) > 0);
    for (int waited = 0; !found && waited <= wait_ms; waited += 50) {
        found = kbt_sh(env, cmd, NULL) == 0;
        if (!found)
            usleep(50 * 1000);
    }
    free(cmd);
    return found;
}

/*
 * keybrokerd forks its HSM keeper and HSM process and installs seccomp filters: under the
 * unit's restrictions it starts, makes a key in the HSM, replaces a killed HSM process,
 * reloads on SIGHUP and stops cleanly.
 */
static void test_daemon_under_unit_restrictions(void **state)
{
    kbt_resp r;
    pid_t keeper, hsm;
    char *status = NULL, path[64];

    (void)state;
    env->wrapper[0] = self;
    env->wrapper[1] = "--restricted-exec";
    setenv("KBT_STATE_DIR", env->dir, 1);
    kbt_launch(env, "checkpoint_every = 1s\n");
    assert_true(log_has("kbt: MDWE on", 0) || log_has("no PR_SET_MDWE", 0));
    if (!log_has("kbt: MDWE on", 0))
        print_message("note: this kernel has no PR_SET_MDWE; tested without it\n");
    if (geteuid() == 0)
        assert_true(log_has("kbt: read-only but", 0));
    else
        print_message("note: not root; tested without a read-only file system\n");
    snprintf(path, sizeof(path), "/proc/%d/status", (int)env->pid);
    {
        size_t n = 0;
        assert_int_equal(kbr_file_read(path, 1 << 16, &status, &n), KBR_OK);
    }
    must_contain(status, "NoNewPrivs:\t1");
    free(status);
    if (geteuid() == 0) {
        /* in its mount namespace the root is read-only, the state directory writable */
        char *cmd = NULL;
        assert_true(asprintf(&cmd,
                             "awk '$5 == \"/\" {print $6}' /proc/%d/mountinfo | grep -q '^ro' && "
                             "awk -v d='%s' '$5 == d {print $6}' /proc/%d/mountinfo | "
                             "grep -q '^rw'",
                             (int)env->pid, env->dir, (int)env->pid) > 0);
        assert_int_equal(kbt_sh(env, cmd, NULL), 0);
        free(cmd);
    }
    kbt_key(env, "fw", "firmware-signing", "ecdsa-p256", "gateway");
    kbt_hsm_pids(env, &keeper, &hsm);
    kill(hsm, SIGKILL);
    assert_true(log_has("starting another", 5000));
    for (int i = 0; i < 100; i++) {
        r = kbt_call(env, "GET", "/v1/health", NULL, NULL);
        long st = r.status;
        kbt_resp_free(&r);
        if (st == 200)
            break;
        usleep(100 * 1000);
    }
    kbt_key(env, "fw2", "firmware-signing", "ed25519", "gateway");
    kill(env->pid, SIGHUP);
    assert_true(log_has("reload done", 5000));
    kbt_stop(env);
    env->wrapper[0] = NULL;
}

/* Every metric an alert names is one keybrokerd exports; promtool checks and tests the rules. */
static void test_alert_rules(void **state)
{
    char *out = NULL, *metrics = NULL, *cmd = NULL;

    (void)state;
    assert_int_equal(kbt_spawn_daemon(env), 0);
    {
        kbt_resp r = kbt_call(env, "GET", "/metrics", NULL, NULL);
        assert_int_equal(r.status, 200);
        metrics = strdup(r.body);
        kbt_resp_free(&r);
    }
    kbt_stop(env);
    assert_true(asprintf(&cmd,
                         "grep -o 'keybroker_[a-z_]*' '%s/contrib/prometheus/keybroker-alerts.yml' "
                         "| sort -u",
                         src) > 0);
    assert_int_equal(kbt_sh(env, cmd, &out), 0);
    free(cmd);
    {
        char *save = NULL;
        int n = 0;
        for (char *m = strtok_r(out, "\n", &save); m != NULL; m = strtok_r(NULL, "\n", &save)) {
            char family[160];
            snprintf(family, sizeof(family), "# TYPE %s ", m);
            /* the certificate's expiry is exported only with TLS (test_reload.c sees it) */
            if (strcmp(m, "keybroker_tls_certificate_expiry_timestamp_seconds") != 0 &&
                strstr(metrics, family) == NULL)
                fail_msg("an alert names %s, which /metrics does not have", m);
            n++;
        }
        assert_true(n >= 6);
    }
    free(out);
    free(metrics);
    if (!have("promtool")) {
        print_message("SKIPPED: promtool is not installed; the rules were checked only for the "
                      "metrics they name\n");
        skip();
    }
    assert_true(asprintf(&cmd,
                         "cd '%s/contrib/prometheus' && promtool check rules keybroker-alerts.yml "
                         "2>&1 && promtool test rules keybroker-alerts.test.yml 2>&1",
                         src) > 0);
    if (kbt_sh(env, cmd, &out) != 0)
        fail_msg("promtool:\n%s", out);
    must_contain(out, "SUCCESS");
    free(out);
    free(cmd);
}

static char *deb_field(const char *deb, const char *field)
{
    char *cmd = NULL, *out = NULL;

    assert_true(asprintf(&cmd, "dpkg-deb -f deb/%s %s", deb, field) > 0);
    assert_int_equal(kbt_sh(env, cmd, &out), 0);
    free(cmd);
    return out;
}

/*
 * make deb: keybrokerd with the unit, /etc/keybroker and the user made on install; keybroker,
 * the client, which needs neither libevent, SQLite nor p11-kit.  lintian finds no error.
 */
static void test_make_deb(void **state)
{
    char *out = NULL, *args = NULL, *dep;

    (void)state;
    if (kbt_pg())
        skip(); /* files, the same for either store: checked on the SQLite run */
    /* the packages are built from the tree, not from the binaries under test: once is enough,
     * by the suite of the default build (make check), not again by asan, tsan or clang */
    {
        char bin[1100];
        snprintf(bin, sizeof(bin), "%s/bin", src);
        if (SANITIZED || strcmp(env->bin_dir, bin) != 0) {
            print_message("SKIPPED: make deb is checked by make check's suite (binaries in "
                          "%s, not %s)\n",
                          bin, env->bin_dir);
            skip();
        }
    }
    if (!have("dpkg-buildpackage") || !have("dh")) {
        print_message("SKIPPED: dpkg-buildpackage or debhelper is not installed; no packages "
                      "built\n");
        skip();
    }
    assert_true(asprintf(&args, "deb DEB_DIR='%s/deb'", env->dir) > 0);
    if (make_in_src(args, &out) != 0)
        fail_msg("make deb failed:\n%s", out);
    free(out);
    free(args);
    /* the client: its binary and page, none of the daemon's libraries, directly or by package */
    dep = deb_field("keybroker_*.deb", "Depends");
    assert_null(strstr(dep, "libevent"));
    assert_null(strstr(dep, "libsqlite3"));
    assert_null(strstr(dep, "p11-kit"));
    free(dep);
    assert_int_equal(kbt_sh(env, "dpkg-deb -c deb/keybroker_*.deb | awk '{print $6}' | sort", &out),
                     0);
    must_contain(out, "./usr/bin/keybroker\n");
    must_contain(out, "./usr/share/man/man1/keybroker.1.gz\n");
    assert_null(strstr(out, "keybrokerd"));
    free(out);
    assert_int_equal(kbt_sh(env,
                            "rm -rf x && dpkg-deb -x deb/keybroker_*.deb x && readelf -d "
                            "x/usr/bin/keybroker | grep NEEDED",
                            &out),
                     0);
    assert_null(strstr(out, "libevent"));
    assert_null(strstr(out, "libsqlite3"));
    assert_null(strstr(out, "libp11-kit"));
    free(out);
    /* the daemon: unit, configuration (a conffile), page, rules; its user made on install */
    dep = deb_field("keybrokerd_*.deb", "Depends");
    must_contain(dep, "libevent");
    must_contain(dep, "libsqlite3");
    must_contain(dep, "adduser");
    free(dep);
    assert_int_equal(
        kbt_sh(env, "dpkg-deb -c deb/keybrokerd_*.deb | awk '{print $6}' | sort", &out), 0);
    must_contain(out, "./usr/sbin/keybrokerd\n");
    must_contain(out, "./lib/systemd/system/keybrokerd.service\n");
    must_contain(out, "./etc/keybroker/keybroker.conf\n");
    must_contain(out, "./usr/share/man/man8/keybrokerd.8.gz\n");
    must_contain(out, "./usr/share/keybroker/prometheus/keybroker-alerts.yml\n");
    free(out);
    assert_int_equal(kbt_sh(env, "dpkg-deb -I deb/keybrokerd_*.deb conffiles", &out), 0);
    must_contain(out, "/etc/keybroker/keybroker.conf");
    free(out);
    assert_int_equal(kbt_sh(env, "dpkg-deb -I deb/keybrokerd_*.deb postinst", &out), 0);
    must_contain(out, "adduser --system --group");
    must_contain(out, "keybroker");
    free(out);
    if (!have("lintian")) {
        print_message("SKIPPED: lintian is not installed; the packages were not linted\n");
        return;
    }
    if (kbt_sh(env, "lintian --fail-on error deb/*.changes 2>&1", &out) != 0)
        fail_msg("lintian:\n%s", out);
    free(out);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_make_install_layout),
        cmocka_unit_test(test_unit_verifies),
        cmocka_unit_test(test_man_pages),
        cmocka_unit_test(test_daemon_under_unit_restrictions),
        cmocka_unit_test(test_alert_rules),
        cmocka_unit_test(test_make_deb),
    };

    if (argc > 1 && strcmp(argv[1], "--restricted-exec") == 0)
        return restricted_exec(argc, argv);
    return cmocka_run_group_tests_name("installing and packaging", tests, setup, teardown);
}
