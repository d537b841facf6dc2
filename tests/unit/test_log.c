/*
 * test_log.c - keybrokerd's log lines (broker/daemon/log.c): one line per event whatever the
 * message holds, text with control characters escaped, JSON that parses with the fields a
 * collector indexes, and log_file reopened by name after a move.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../broker/daemon/kbd.h"
#include "tmpdir.h"

static char dir[64];
static int saved_stderr = -1;

static int setup(void **state)
{
    (void)state;
    if (kbt_tmpdir(dir, sizeof(dir), "log") != 0)
        return -1;
    saved_stderr = dup(STDERR_FILENO);
    return saved_stderr >= 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    close(saved_stderr);
    return kbt_rmtree(dir);
}

/* Each test's log goes to a file: standard error comes back after it, failed or not. */
static int restore_stderr(void **state)
{
    (void)state;
    dup2(saved_stderr, STDERR_FILENO);
    kbd_log_cleanup();
    return 0;
}

static char *slurp(const char *path)
{
    char *buf = NULL;
    size_t n = 0;

    assert_int_equal(kbr_file_read(path, 1 << 20, &buf, &n), KBR_OK);
    return buf;
}

/* Logging set to file name (log_file) in format json or text. */
static void log_to(const char *name, bool json)
{
    kbd_config cfg;
    char path[128];
    kbr_msg m = {{0}};

    memset(&cfg, 0, sizeof(cfg));
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    cfg.log_file = path;
    cfg.log_json = json;
    assert_int_equal(kbd_log_setup(&cfg, &m), KBR_OK);
}

static void test_text_lines_cannot_be_forged(void **state)
{
    char path[128], *text;

    (void)state;
    log_to("text.log", false);
    kbd_log(KBD_LOG_INFO, "x", NULL, "path %s", "/v1/a\nkeybrokerd: forged\x1b[31m");
    kbd_log(KBD_LOG_ERROR, "y", "req-1", "audit record not durable");
    snprintf(path, sizeof(path), "%s/text.log", dir);
    text = slurp(path);
    assert_string_equal(text, "keybrokerd: path /v1/a\\x0akeybrokerd: forged\\x1b[31m\n"
                              "keybrokerd: audit record not durable (request req-1)\n");
    free(text);
}

static void test_json_lines(void **state)
{
    char path[128], *text, *save = NULL;
    int lines = 0;

    (void)state;
    log_to("json.log", true);
    kbd_log(KBD_LOG_WARN, "reload.needs_restart", NULL, "a\nb \xc3\xa9 \"q\"");
    kbd_log(KBD_LOG_ERROR, "audit.unavailable", "0123456789abcdef", "bytes \xff\xfe here");
    snprintf(path, sizeof(path), "%s/json.log", dir);
    text = slurp(path);
    /* ASCII only, one object per line */
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++)
        assert_true(*c < 0x80);
    for (char *l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        json_t *o = json_loads(l, 0, NULL);
        assert_non_null(o);
        assert_non_null(json_string_value(json_object_get(o, "time")));
        assert_string_equal(json_string_value(json_object_get(o, "process")), "keybrokerd");
        assert_true(json_integer_value(json_object_get(o, "pid")) == (json_int_t)getpid());
        if (lines == 0) {
            assert_string_equal(json_string_value(json_object_get(o, "level")), "warning");
            assert_string_equal(json_string_value(json_object_get(o, "event")),
                                "reload.needs_restart");
            assert_string_equal(json_string_value(json_object_get(o, "message")),
                                "a\nb \xc3\xa9 \"q\"");
            assert_null(json_object_get(o, "request_id"));
        } else {
            /* bytes that are not UTF-8 still make a line */
            assert_string_equal(json_string_value(json_object_get(o, "level")), "error");
            assert_string_equal(json_string_value(json_object_get(o, "request_id")),
                                "0123456789abcdef");
            assert_non_null(strstr(json_string_value(json_object_get(o, "message")), "here"));
        }
        json_decref(o);
        lines++;
    }
    assert_int_equal(lines, 2);
    free(text);
}

/* logrotate moves the file; a reopen (SIGHUP) writes to a new one by the same name. */
static void test_reopen_after_a_move(void **state)
{
    char path[128], moved[160], *text;

    (void)state;
    log_to("rot.log", false);
    kbd_log(KBD_LOG_INFO, "x", NULL, "before");
    snprintf(path, sizeof(path), "%s/rot.log", dir);
    snprintf(moved, sizeof(moved), "%s/rot.log.1", dir);
    assert_int_equal(rename(path, moved), 0);
    kbd_log(KBD_LOG_INFO, "x", NULL, "still the old file");
    {
        kbr_msg m = {{0}};
        assert_int_equal(kbd_log_reopen(&m), KBR_OK);
    }
    kbd_log(KBD_LOG_INFO, "x", NULL, "after");
    /* the HSM processes' way: a flag from the signal handler, the reopen before the next line */
    assert_int_equal(rename(path, moved), 0);
    kbd_log_reopen_later();
    kbd_log(KBD_LOG_INFO, "x", NULL, "after the flag");
    text = slurp(path);
    assert_string_equal(text, "keybrokerd: after the flag\n");
    free(text);
    text = slurp(moved);
    assert_string_equal(text, "keybrokerd: after\n");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_text_lines_cannot_be_forged, restore_stderr),
        cmocka_unit_test_teardown(test_json_lines, restore_stderr),
        cmocka_unit_test_teardown(test_reopen_after_a_move, restore_stderr),
    };

    return cmocka_run_group_tests_name("keybrokerd log", tests, setup, teardown);
}
