/*
 * test_common.c - the shared encoders, secrets, times and canonical JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kbr_common.h"
#include "tmpdir.h"

static void test_hex(void **state)
{
    unsigned char *out = NULL;
    size_t n = 0;
    char *hex = NULL;
    const unsigned char in[] = {0x00, 0xab, 0xff, 0x10};

    (void)state;
    assert_int_equal(kbr_hex_encode(in, sizeof(in), &hex), KBR_OK);
    assert_string_equal(hex, "00abff10");
    assert_int_equal(kbr_hex_decode("00ABff10", &out, &n), KBR_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(out, in, 4);
    free(out);
    free(hex);
    assert_int_equal(kbr_hex_decode("abc", &out, &n), KBR_ERR_BAD_REQUEST);
    assert_null(out);
    assert_int_equal(kbr_hex_decode("zz", &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_hex_decode("", &out, &n), KBR_ERR_BAD_REQUEST);
}

static void test_base64(void **state)
{
    unsigned char *out = NULL;
    size_t n = 0;
    char *s = NULL;

    (void)state;
    assert_int_equal(kbr_b64_encode((const unsigned char *)"hello", 5, &s), KBR_OK);
    assert_string_equal(s, "aGVsbG8=");
    free(s);
    assert_int_equal(kbr_b64_decode("aGVsbG8=", &out, &n), KBR_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "hello", 5);
    free(out);
    /* whitespace, bad padding and foreign characters are refused, not skipped */
    assert_int_equal(kbr_b64_decode("aGVs bG8=", &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_b64_decode("aGVsbG8", &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_b64_decode("aGV*bG8=", &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_b64_decode("", &out, &n), KBR_ERR_BAD_REQUEST);
    /* base64url: no padding, - and _ */
    const unsigned char bin[] = {0xfb, 0xff, 0xbf};
    assert_int_equal(kbr_b64url_encode(bin, 3, &s), KBR_OK);
    assert_string_equal(s, "-_-_");
    free(s);
    assert_int_equal(kbr_b64url_decode("-_-_", 4, &out, &n), KBR_OK);
    assert_memory_equal(out, bin, 3);
    free(out);
    assert_int_equal(kbr_b64url_decode("aGVsbG8", 7, &out, &n), KBR_OK);
    assert_int_equal(n, 5);
    free(out);
    assert_int_equal(kbr_b64url_decode("aGVsbG8=", 8, &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_b64url_decode("a+b/", 4, &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_b64url_decode("abcde", 5, &out, &n), KBR_ERR_BAD_REQUEST);
    /* "QQ" is the one spelling of 0x41; "QR".."QZ" differ only in bits that carry nothing */
    assert_int_equal(kbr_b64url_decode("QQ", 2, &out, &n), KBR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 0x41);
    free(out);
    assert_int_equal(kbr_b64url_decode("QR", 2, &out, &n), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_b64url_decode("QUE", 3, &out, &n), KBR_OK);
    free(out);
    assert_int_equal(kbr_b64url_decode("QUF", 3, &out, &n), KBR_ERR_BAD_REQUEST);
}

static void test_time(void **state)
{
    char buf[KBR_TIME_LEN];
    time_t t = 0;

    (void)state;
    kbr_time_fmt(1795874400, buf);
    assert_string_equal(buf, "2026-11-28T14:00:00Z");
    assert_int_equal(kbr_time_parse("2026-11-28T14:00:00Z", &t), KBR_OK);
    assert_int_equal(t, 1795874400);
    assert_int_equal(kbr_time_parse("2026-11-28T14:00:00.123Z", &t), KBR_OK);
    assert_int_equal(t, 1795874400);
    assert_int_equal(kbr_time_parse("2026-11-28T14:00:00+02:00", &t), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_time_parse("yesterday", &t), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_time_parse("2026-11-28", &t), KBR_ERR_BAD_REQUEST);
}

static void test_canonical_json(void **state)
{
    json_t *a = json_loads("{\"b\": 1, \"a\": {\"y\": [1, 2], \"x\": \"\\u00e9\"}}", 0, NULL);
    json_t *b = json_loads("{\"a\":{\"x\":\"\\u00e9\",\"y\":[1,2]},\"b\":1}", 0, NULL);
    char *ca = NULL, *cb = NULL;

    (void)state;
    assert_int_equal(kbr_json_canonical(a, &ca), KBR_OK);
    assert_int_equal(kbr_json_canonical(b, &cb), KBR_OK);
    /* same value, same bytes, whatever order or spacing it arrived in */
    assert_string_equal(ca, cb);
    assert_string_equal(ca, "{\"a\":{\"x\":\"\\u00E9\",\"y\":[1,2]},\"b\":1}");
    free(ca);
    free(cb);
    json_decref(a);
    json_decref(b);
}

static void test_secret_and_files(void **state)
{
    char dir[64];
    char path[128], big[5000];
    kbr_secret *s = NULL;
    char *data = NULL;
    size_t n = 0;

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-common"), 0);
    snprintf(path, sizeof(path), "%s/pin", dir);
    assert_int_equal(kbr_file_write(path, "1234\n\n", 6, 0600, NULL), KBR_OK);
    assert_int_equal(kbr_secret_from_file(path, &s), KBR_OK);
    assert_int_equal(s->len, 4);
    assert_true(kbr_secret_equal(s->buf, s->len, "1234", 4));
    assert_false(kbr_secret_equal(s->buf, s->len, "1235", 4));
    assert_false(kbr_secret_equal(s->buf, s->len, "12345", 5));
    kbr_secret_free(s);
    kbr_secret_free(NULL);
    /* an empty PIN file is a configuration error, not an empty PIN */
    assert_int_equal(kbr_file_write(path, "\n", 1, 0600, NULL), KBR_OK);
    assert_int_equal(kbr_secret_from_file(path, &s), KBR_ERR_CONFIG);
    assert_null(s);
    memset(big, 'x', sizeof(big));
    assert_int_equal(kbr_file_write(path, big, sizeof(big), 0600, NULL), KBR_OK);
    assert_int_equal(kbr_secret_from_file(path, &s), KBR_ERR_TOO_LARGE);
    assert_int_equal(kbr_file_read(path, sizeof(big), &data, &n), KBR_OK);
    assert_int_equal(n, sizeof(big));
    free(data);
    snprintf(path, sizeof(path), "%s/missing", dir);
    assert_int_equal(kbr_file_read(path, 10, &data, &n), KBR_ERR_IO);
    assert_int_equal(kbr_file_write("/proc/no/such/file", "x", 1, 0600, NULL), KBR_ERR_IO);
    assert_int_equal(kbt_rmtree(dir), 0);
}

/* ---- kbr_file_write: what the path names decides how it is written ---- */

#define FW_SECRET "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"

static void fw_join(char *out, size_t n, const char *dir, const char *name)
{
    assert_true((size_t)snprintf(out, n, "%s/%s", dir, name) < n);
}

static void fw_expect_content(const char *path, const char *want)
{
    char *data = NULL;
    size_t n = 0;

    assert_int_equal(kbr_file_read(path, 4096, &data, &n), KBR_OK);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(data, want, n);
    free(data);
}

/* A refusal names the path and says why. */
static void fw_expect_refused(const char *path, const char *why)
{
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_file_write(path, FW_SECRET, strlen(FW_SECRET), 0600, &msg), KBR_ERR_IO);
    if (strncmp(msg.text, path, strlen(path)) != 0 || strstr(msg.text, why) == NULL)
        fail_msg("refusal of %s says '%s', not '%s'", path, msg.text, why);
    memset(&msg, 0, sizeof(msg));
    assert_int_equal(kbr_file_write_check(path, 0600, &msg), KBR_ERR_IO);
    if (strstr(msg.text, why) == NULL)
        fail_msg("the check of %s says '%s', not '%s'", path, msg.text, why);
}

/* Entries of dir other than . and ..: a failed or finished write leaves no temporary file. */
static size_t fw_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    const struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void test_file_write_regular(void **state)
{
    char dir[64], path[128];
    struct stat before, after;
    mode_t old_umask;

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-fw"), 0);
    fw_join(path, sizeof(path), dir, "token");
    /* a new file gets exactly the mode asked for, whatever the umask allows */
    old_umask = umask(0);
    assert_int_equal(kbr_file_write(path, FW_SECRET, strlen(FW_SECRET), 0600, NULL), KBR_OK);
    umask(old_umask);
    assert_int_equal(lstat(path, &before), 0);
    assert_true(S_ISREG(before.st_mode));
    assert_int_equal(before.st_mode & 07777, 0600);
    fw_expect_content(path, FW_SECRET);
    /* an existing file is replaced by a new one renamed over it, not rewritten in place */
    old_umask = umask(077);
    assert_int_equal(kbr_file_write(path, "pem\n", 4, 0644, NULL), KBR_OK);
    umask(old_umask);
    assert_int_equal(lstat(path, &after), 0);
    assert_true(S_ISREG(after.st_mode));
    assert_int_equal(after.st_mode & 07777, 0644);
    assert_true(after.st_ino != before.st_ino);
    fw_expect_content(path, "pem\n");
    assert_int_equal(kbr_file_write_check(path, 0600, NULL), KBR_OK);
    fw_join(path, sizeof(path), dir, "no/such/dir");
    assert_int_equal(kbr_file_write_check(path, 0600, NULL), KBR_ERR_IO);
    assert_int_equal(kbr_file_write(path, "x", 1, 0600, NULL), KBR_ERR_IO);
    assert_int_equal(fw_count_entries(dir), 1);
    assert_int_equal(kbt_rmtree(dir), 0);
}

/*
 * The temporary file's name cannot be guessed and is never opened through
 * what someone else put there: a link planted at the old predictable name
 * would have sent the token into the file it points to.
 */
static void test_file_write_planted_temporary(void **state)
{
    char dir[64], path[128], victim[128], planted[192];

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-fw"), 0);
    fw_join(path, sizeof(path), dir, "token");
    fw_join(victim, sizeof(victim), dir, "victim");
    assert_int_equal(kbr_file_write(victim, "keep\n", 5, 0644, NULL), KBR_OK);
    snprintf(planted, sizeof(planted), "%s.tmp.%ld", path, (long)getpid());
    assert_int_equal(symlink(victim, planted), 0);
    assert_int_equal(kbr_file_write(path, FW_SECRET, strlen(FW_SECRET), 0600, NULL), KBR_OK);
    fw_expect_content(victim, "keep\n");
    fw_expect_content(path, FW_SECRET);
    assert_int_equal(kbt_rmtree(dir), 0);
}

static void test_file_write_symlink(void **state)
{
    char dir[64], other[64], link[128], target[128];
    struct stat st;

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-fw"), 0);
    assert_int_equal(kbt_tmpdir(other, sizeof(other), "kbr-fw-other"), 0);
    fw_join(target, sizeof(target), other, "file");
    fw_join(link, sizeof(link), dir, "out");
    assert_int_equal(kbr_file_write(target, "theirs\n", 7, 0644, NULL), KBR_OK);
    assert_int_equal(symlink(target, link), 0);
    /* refused: neither the link nor the file in the other directory changes */
    fw_expect_refused(link, "symbolic link");
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    fw_expect_content(target, "theirs\n");
    /* a dangling link is refused too: writing would create the file it names */
    assert_int_equal(unlink(target), 0);
    fw_expect_refused(link, "symbolic link");
    assert_int_equal(lstat(target, &st), -1);
    assert_int_equal(fw_count_entries(dir), 1);
    assert_int_equal(kbt_rmtree(other), 0);
    assert_int_equal(kbt_rmtree(dir), 0);
}

static void test_file_write_directory(void **state)
{
    char dir[64], sub[128];
    struct stat st;

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-fw"), 0);
    fw_join(sub, sizeof(sub), dir, "sub");
    assert_int_equal(mkdir(sub, 0700), 0);
    fw_expect_refused(sub, "is a directory");
    assert_int_equal(lstat(sub, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(fw_count_entries(dir), 1);
    assert_int_equal(kbt_rmtree(dir), 0);
}

/* A reader of the FIFO in a child: exit 0 when it read exactly want, then EOF. */
static pid_t fw_fifo_reader(const char *fifo, const char *want)
{
    pid_t pid = fork();
    char buf[256];
    size_t got = 0;
    ssize_t n;
    int fd;

    assert_true(pid >= 0);
    if (pid > 0)
        return pid;
    alarm(10); /* a writer that never comes must not hang the suite */
    fd = open(fifo, O_RDONLY);
    if (fd < 0)
        _exit(2);
    while ((n = read(fd, buf + got, sizeof(buf) - got)) > 0)
        got += (size_t)n;
    _exit(n == 0 && got == strlen(want) && memcmp(buf, want, got) == 0 ? 0 : 1);
}

static void test_file_write_fifo(void **state)
{
    char dir[64], fifo[128];
    struct stat st;
    pid_t reader;
    kbr_err err;
    bool still_fifo;
    int status = 0;
    kbr_msg msg;

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-fw"), 0);
    fw_join(fifo, sizeof(fifo), dir, "pipe");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    reader = fw_fifo_reader(fifo, FW_SECRET);
    err = kbr_file_write(fifo, FW_SECRET, strlen(FW_SECRET), 0600, NULL);
    still_fifo = lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode);
    /* a FIFO replaced by a file leaves the reader waiting for a writer that never comes */
    if (!still_fifo)
        kill(reader, SIGKILL);
    assert_int_equal(waitpid(reader, &status, 0), reader);
    assert_int_equal(err, KBR_OK);
    assert_true(still_fifo);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(kbr_file_write_check(fifo, 0600, NULL), KBR_OK);
    /*
     * Whoever opens a FIFO first reads what is written: a secret goes only
     * into one nobody else may open. The reader stands by in case it does.
     */
    assert_int_equal(chmod(fifo, 0644), 0);
    reader = fw_fifo_reader(fifo, FW_SECRET);
    memset(&msg, 0, sizeof(msg));
    err = kbr_file_write(fifo, FW_SECRET, strlen(FW_SECRET), 0600, &msg);
    kill(reader, SIGKILL);
    assert_int_equal(waitpid(reader, &status, 0), reader);
    assert_int_equal(err, KBR_ERR_IO);
    assert_non_null(strstr(msg.text, "other users may read from this FIFO"));
    fw_expect_refused(fifo, "other users may read from this FIFO");
    /* another user's FIFO may be there to catch the token (root can hand it over to test this) */
    if (geteuid() == 0) {
        assert_int_equal(chown(fifo, 65534, 65534), 0);
        fw_expect_refused(fifo, "belongs to uid 65534");
    }
    assert_int_equal(fw_count_entries(dir), 1);
    assert_int_equal(kbt_rmtree(dir), 0);
}

/* Only what cannot harm the machine: /dev/null takes the write and stays the device it was. */
static void test_file_write_dev_null(void **state)
{
    struct stat before, after;

    (void)state;
    assert_int_equal(lstat("/dev/null", &before), 0);
    assert_true(S_ISCHR(before.st_mode));
    assert_int_equal(kbr_file_write("/dev/null", FW_SECRET, strlen(FW_SECRET), 0600, NULL), KBR_OK);
    assert_int_equal(lstat("/dev/null", &after), 0);
    assert_true(S_ISCHR(after.st_mode));
    assert_int_equal(after.st_rdev, before.st_rdev);
    assert_int_equal(after.st_ino, before.st_ino);
    assert_int_equal(after.st_mode, before.st_mode);
    assert_int_equal(kbr_file_write_check("/dev/null", 0600, NULL), KBR_OK);
}

/* "-" is standard output, not a file of that name in the working directory. */
static void test_file_write_stdout(void **state)
{
    char dir[64], cwd[4096], buf[64];
    int fds[2], saved;
    ssize_t n;
    kbr_err err;

    (void)state;
    assert_int_equal(kbt_tmpdir(dir, sizeof(dir), "kbr-fw"), 0);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fds[1], STDOUT_FILENO), STDOUT_FILENO);
    err = kbr_file_write("-", "on stdout\n", 10, 0600, NULL);
    assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
    close(saved);
    close(fds[1]);
    n = read(fds[0], buf, sizeof(buf));
    close(fds[0]);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(err, KBR_OK);
    assert_int_equal(n, 10);
    assert_memory_equal(buf, "on stdout\n", 10);
    assert_int_equal(fw_count_entries(dir), 0);
    assert_int_equal(kbt_rmtree(dir), 0);
}

static void test_errors(void **state)
{
    kbr_msg m = {{0}};

    (void)state;
    for (int e = 0; e < KBR_ERR__COUNT; e++)
        assert_string_not_equal(kbr_err_str((kbr_err)e), "unknown error");
    assert_string_equal(kbr_err_str((kbr_err)999), "unknown error");
    assert_int_equal(kbr_fail(&m, KBR_ERR_BAD_REQUEST, "digest: %d bytes", 31),
                     KBR_ERR_BAD_REQUEST);
    assert_string_equal(m.text, "digest: 31 bytes");
    assert_int_equal(kbr_fail(NULL, KBR_ERR_CONFLICT, "x"), KBR_ERR_CONFLICT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_canonical_json),
        cmocka_unit_test(test_secret_and_files),
        cmocka_unit_test(test_file_write_regular),
        cmocka_unit_test(test_file_write_planted_temporary),
        cmocka_unit_test(test_file_write_symlink),
        cmocka_unit_test(test_file_write_directory),
        cmocka_unit_test(test_file_write_fifo),
        cmocka_unit_test(test_file_write_dev_null),
        cmocka_unit_test(test_file_write_stdout),
        cmocka_unit_test(test_errors),
    };

    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
