/*
 * test_ingress.c - what keybrokerd does with a request before any handler
 * sees it, spoken over raw sockets so that nothing smooths the bytes: path
 * segments that would change meaning when decoded are refused by name, and
 * every error body is JSON, whatever bytes the request carried.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static kbt_env *env;

/* ---- a raw HTTP/1.1 client ---- */

typedef struct {
    int fd;
    char *buf; /* received, not yet taken as responses */
    size_t len, cap;
    bool eof; /* end of file seen */
    int err;  /* errno of a failed recv, 0 if none */
} raw_conn;

typedef struct {
    int status;
    char *head;
    char *body;
    size_t body_len;
    json_t *json;
} raw_resp;

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static raw_conn *raw_open(const char *src)
{
    raw_conn *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->fd = kbt_connect_from(src, env->port);
    return c;
}

static void raw_close(raw_conn *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    free(c->buf);
    free(c);
}

static void raw_send(raw_conn *c, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail_msg("send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

static void raw_sends(raw_conn *c, const char *text)
{
    raw_send(c, text, strlen(text));
}

/* Reads what the socket has, waiting up to wait_ms for the first byte: false on
 * end of file. */
static bool raw_fill(raw_conn *c, int wait_ms)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    ssize_t n;

    if (c->eof || poll(&p, 1, wait_ms) <= 0)
        return !c->eof;
    if (c->len + 65536 + 1 > c->cap) {
        c->cap = (c->len + 65536 + 1) * 2;
        c->buf = realloc(c->buf, c->cap);
        assert_non_null(c->buf);
    }
    n = recv(c->fd, c->buf + c->len, 65536, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return true;
    if (n <= 0) {
        c->err = n < 0 ? errno : 0;
        c->eof = true;
        return false;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    return true;
}

static const char *header_in(const char *head, size_t head_len, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = strstr(head, "\r\n"); p != NULL && p < head + head_len;
         p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':')
            return p + 3 + n + strspn(p + 3 + n, " ");
    }
    return NULL;
}

/* Takes one whole response off the front of what was received, if there is one.
 */
static bool raw_take(raw_conn *c, raw_resp *r)
{
    char *end = c->len > 0 ? strstr(c->buf, "\r\n\r\n") : NULL;
    size_t head_len, body_len = 0;
    const char *cl;

    if (end == NULL)
        return false;
    head_len = (size_t)(end - c->buf) + 4;
    memset(r, 0, sizeof(*r));
    assert_int_equal(sscanf(c->buf, "HTTP/1.%*d %d", &r->status), 1);
    cl = header_in(c->buf, head_len, "Content-Length");
    if (cl != NULL)
        body_len = strtoul(cl, NULL, 10);
    else if (r->status >= 200) /* an HTTP/1.0 answer: the body ends with the connection */
        body_len = c->eof ? c->len - head_len : SIZE_MAX - head_len;
    if (c->len < head_len + body_len)
        return false;
    r->head = strndup(c->buf, head_len);
    r->body = strndup(c->buf + head_len, body_len);
    r->body_len = body_len;
    r->json = json_loadb(r->body, body_len, 0, NULL);
    memmove(c->buf, c->buf + head_len + body_len, c->len - head_len - body_len + 1);
    c->len -= head_len + body_len;
    return true;
}

/* The next response within wait_ms, or a failed test. */
static raw_resp raw_read(raw_conn *c, int wait_ms)
{
    double deadline = now_ms() + wait_ms;
    raw_resp r;

    while (!raw_take(c, &r)) {
        int left = (int)(deadline - now_ms());
        if (left <= 0 || c->eof)
            fail_msg("no whole response within %d ms (eof %d, errno %d, %zu bytes: "
                     "%.200s)",
                     wait_ms, c->eof, c->err, c->len, c->buf != NULL ? c->buf : "");
        raw_fill(c, left);
    }
    return r;
}

static void raw_resp_free(raw_resp *r)
{
    free(r->head);
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static const char *code_of(const raw_resp *r)
{
    const char *s = json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
    return s != NULL ? s : "";
}

static const char *message_of(const raw_resp *r)
{
    const char *s =
        json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
    return s != NULL ? s : "";
}

/* A whole JSON error object {"error":{"code","message"}}, and nothing else. */
static void expect_error(const raw_resp *r, int status, const char *code, const char *msg_part)
{
    json_t *err = json_object_get(r->json, "error");

    if (r->status != status || r->json == NULL || json_object_size(r->json) != 1 ||
        json_object_size(err) != 2 || strcmp(code_of(r), code) != 0 ||
        json_string_value(json_object_get(err, "message")) == NULL ||
        (msg_part != NULL && strstr(message_of(r), msg_part) == NULL))
        fail_msg("expected %d %s (\"%s\"), got %d: %s%s", status, code,
                 msg_part != NULL ? msg_part : "", r->status, r->head, r->body);
}

/* One request on its own connection, its response read. */
static raw_resp raw_once(const char *request)
{
    raw_conn *c = raw_open("127.0.0.1");
    raw_resp r;

    raw_sends(c, request);
    r = raw_read(c, 10000);
    raw_close(c);
    return r;
}

static int group_setup(void **state)
{
    (void)state;
    env = kbt_start(NULL);
    kbt_key(env, "fw", "firmware-signing", "ecdsa-p256", "gw");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kbt_free(env);
    return 0;
}

/* ---- path segments ---- */

/* Every route with a {} segment, with a body where it takes one. */
static const struct {
    const char *method, *before, *after;
} param_routes[] = {
    {"GET", "/v1/keys/", ""},
    {"POST", "/v1/keys/", "/retire"},
    {"POST", "/v1/keys/", "/certificate"},
    {"POST", "/v1/tokens/", "/revoke"},
    {"GET", "/v1/batches/", ""},
    {"POST", "/v1/devices/", "/certificates"},
    {"GET", "/v1/views/products/", ""},
    {"GET", "/v1/views/keys/", "/custody"},
    {"GET", "/v1/views/devices/", ""},
};

static raw_resp path_call(const char *method, const char *path)
{
    char req[2048];

    snprintf(req, sizeof(req),
             "%s %s HTTP/1.1\r\nHost: keybroker\r\nAuthorization: Bearer "
             "%s\r\n%s\r\n%s",
             method, path, env->admin,
             strcmp(method, "POST") == 0 ? "Content-Type: application/json\r\nContent-Length: 2\r\n"
                                         : "",
             strcmp(method, "POST") == 0 ? "{}" : "");
    return raw_once(req);
}

static void test_path_segments(void **state)
{
    static const struct {
        const char *segment, *named;
    } bad[] = {
        {"a%2fb", "%2F"},     {"a%2Fb", "%2F"},   {"%2f", "%2F"},      {"a%00b", "%00"},
        {"%00", "%00"},       {".", "\".\""},     {"..", "\"..\""},    {"%2e", "\".\""},
        {"%2E%2e", "\"..\""}, {".%2e", "\"..\""}, {"a%zz", "percent"}, {"a%4", "percent"},
    };
    char path[512];
    raw_resp r;

    (void)state;
    for (size_t i = 0; i < sizeof(param_routes) / sizeof(param_routes[0]); i++) {
        for (size_t j = 0; j < sizeof(bad) / sizeof(bad[0]); j++) {
            snprintf(path, sizeof(path), "%s%s%s", param_routes[i].before, bad[j].segment,
                     param_routes[i].after);
            r = path_call(param_routes[i].method, path);
            if (r.status != 400 || strcmp(code_of(&r), "bad_request") != 0 ||
                strstr(message_of(&r), bad[j].named) == NULL)
                fail_msg("%s %s: expected 400 bad_request naming %s, got %d %s",
                         param_routes[i].method, path, bad[j].named, r.status, r.body);
            raw_resp_free(&r);
        }
    }
    /* outside a {} segment too */
    r = path_call("GET", "/v1/../v1/keys");
    expect_error(&r, 400, "bad_request", "\"..\"");
    raw_resp_free(&r);
    r = path_call("GET", "/v1/%2e/keys");
    expect_error(&r, 400, "bad_request", "\".\"");
    raw_resp_free(&r);

    /* names are still decoded, and dots inside a name are fine */
    r = path_call("GET", "/v1/keys/%66w");
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "name")), "fw");
    raw_resp_free(&r);
    r = path_call("GET", "/v1/keys/a.b");
    expect_error(&r, 404, "not_found", "a.b");
    raw_resp_free(&r);
    r = path_call("GET", "/v1/keys/...");
    expect_error(&r, 404, "not_found", "...");
    raw_resp_free(&r);
}

/* "." and ".." are no name, wherever a name is given. */
static void test_dot_names(void **state)
{
    kbt_resp r;

    (void)state;
    for (int i = 0; i < 2; i++) {
        char body[256];
        snprintf(body, sizeof(body),
                 "{\"name\":\"%s\",\"purpose\":\"firmware-signing\",\"algorithm\":"
                 "\"ecdsa-p256\","
                 "\"products\":[\"gw\"]}",
                 i == 0 ? "." : "..");
        r = kbt_call(env, "POST", "/v1/keys", env->admin, body);
        assert_int_equal(r.status, 400);
        assert_string_equal(kbt_err_code(&r), "bad_request");
        assert_non_null(strstr(kbt_err_message(&r), "name"));
        kbt_resp_free(&r);
    }
    r = kbt_call(env, "POST", "/v1/batches", env->admin,
                 "{\"batch\":\"..\",\"product\":\"gw\",\"factory\":\"factory:a\","
                 "\"quantity\":1}");
    assert_int_equal(r.status, 400);
    kbt_resp_free(&r);
}

/* ---- error bodies ---- */

static const char REPLACEMENT[] = "\xef\xbf\xbd";

/* Bytes that are not UTF-8, echoed in a message, still give a JSON error body.
 */
static void test_error_bodies_are_json(void **state)
{
    char path[512], long_jti[128];
    json_t *all, *last = NULL, *entry;
    size_t i;
    raw_resp r;

    (void)state;
    r = path_call("POST", "/v1/tokens/%ff/revoke");
    expect_error(&r, 404, "not_found", REPLACEMENT);
    raw_resp_free(&r);

    /* raw bytes in the request target */
    r = raw_once("GET /v1/\xff\xfe HTTP/1.1\r\nHost: keybroker\r\n\r\n");
    expect_error(&r, 404, "not_found", REPLACEMENT);
    raw_resp_free(&r);

    /* valid UTF-8 that a length limit cuts in half */
    memset(long_jti, 'a', 63);
    snprintf(long_jti + 63, sizeof(long_jti) - 63, "%%C3%%A9");
    snprintf(path, sizeof(path), "/v1/tokens/%s/revoke", long_jti);
    r = path_call("POST", path);
    expect_error(&r, 404, "not_found", REPLACEMENT);
    raw_resp_free(&r);

    /* the audit entry of a denial keeps the path, made readable */
    r = path_call("GET", "/v1/keys/\xff");
    expect_error(&r, 400, "bad_request", NULL);
    raw_resp_free(&r);
    all = kbt_audit_all(env);
    json_array_foreach(all, i, entry)
    {
        if (strcmp(json_string_value(json_object_get(entry, "op")), "key.show") == 0)
            last = entry;
    }
    assert_non_null(last);
    assert_string_equal(json_string_value(json_object_get(json_object_get(last, "detail"), "path")),
                        "/v1/keys/\xef\xbf\xbd");
    json_decref(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_segments),
        cmocka_unit_test(test_dot_names),
        cmocka_unit_test(test_error_bodies_are_json),
    };

    return cmocka_run_group_tests_name("keybrokerd ingress", tests, group_setup, group_teardown);
}
