/*
 * test_ingress.c - what keybrokerd does with a request before any handler
 * sees it, spoken over raw sockets so that nothing smooths the bytes:
 * bodies of requests that may not send one are refused before they are
 * read, also by the hundred; pipelined, kept-alive, chunked and 100-continue
 * requests with a valid token pass as before; framing that could be read
 * two ways is refused; path segments that would change meaning when decoded
 * are refused by name; and every error body is JSON, whatever bytes the
 * request carried.
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

#define MIB (1024L * 1024L)

static kbt_env *env;
static char *signer; /* op sign on key fw */
static char *reader; /* op read only */

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

/* True when the broker ends the connection, cleanly or not, within wait_ms,
 * with nothing more. */
static bool raw_ends(raw_conn *c, int wait_ms)
{
    double deadline = now_ms() + wait_ms;

    while (!c->eof && now_ms() < deadline)
        raw_fill(c, (int)(deadline - now_ms()) + 1);
    return c->eof && c->len == 0;
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

static bool says_close(const raw_resp *r)
{
    const char *v = header_in(r->head, strlen(r->head), "Connection");

    return v != NULL && strncasecmp(v, "close", 5) == 0;
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

static char *sign_body(int n)
{
    char *body = NULL;

    assert_true(asprintf(&body,
                         "{\"key\":\"fw\",\"digest\":\"%064x\",\"artifact\":{\"product\":"
                         "\"gw\","
                         "\"version\":\"ing-%d\"},\"sbom\":{\"format\":\"cyclonedx\","
                         "\"components\":[{\"name\":\"zlib\"}]}}",
                         n, n) > 0);
    return body;
}

/* A whole sign request with a Content-Length body. */
static char *sign_request(const char *tok, int n, const char *extra_headers)
{
    char *body = sign_body(n), *req = NULL;

    assert_true(asprintf(&req,
                         "POST /v1/sign HTTP/1.1\r\nHost: keybroker\r\n"
                         "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                         "%sContent-Length: %zu\r\n\r\n%s",
                         tok, extra_headers != NULL ? extra_headers : "", strlen(body), body) > 0);
    free(body);
    return req;
}

static void expect_signed(const raw_resp *r)
{
    if (r->status != 200 || json_object_get(r->json, "signature_b64") == NULL)
        fail_msg("expected a signature, got %d: %s%s", r->status, r->head, r->body);
}

static int group_setup(void **state)
{
    (void)state;
    env = kbt_start("max_connections_per_source = 256\n");
    kbt_key(env, "fw", "firmware-signing", "ecdsa-p256", "gw");
    signer = kbt_token(env, "{\"sub\":\"ci:gw\",\"ops\":[\"sign\"],\"ttl\":3600}");
    reader = kbt_token(env, "{\"sub\":\"ci:reader\",\"ops\":[\"read\"],\"ttl\":3600}");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(signer);
    free(reader);
    kbt_free(env);
    return 0;
}

/* ---- bodies that may not be sent are not read ---- */

static long vmrss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = atol(line + 6);
    fclose(f);
    assert_true(kib > 0);
    return kib;
}

#define FLOOD_CONNS 200
#define FLOOD_BODY  MIB

typedef struct {
    raw_conn *c;
    char head[256];
    size_t head_len;
    size_t sent;   /* of head and body */
    bool stopped;  /* sending failed: the broker closed */
    raw_resp resp; /* status 0 until it arrived */
} upload;

/* Sends the next piece of u if the socket takes it. */
static void upload_step(upload *u, const char *chunk, size_t chunk_len)
{
    size_t total = u->head_len + FLOOD_BODY;
    const char *p;
    size_t n;
    ssize_t w;

    if (u->stopped || u->sent == total)
        return;
    if (u->sent < u->head_len) {
        p = u->head + u->sent;
        n = u->head_len - u->sent;
    } else {
        p = chunk;
        n = total - u->sent < chunk_len ? total - u->sent : chunk_len;
    }
    w = send(u->c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0)
        u->sent += (size_t)w;
    else if (w < 0 && errno != EAGAIN && errno != EINTR)
        u->stopped = true;
}

/*
 * 200 clients without a valid token upload 1 MiB each, all at once.  The broker
 * must answer each with 401 and keep its memory: before the bodies were refused
 * unread, every one of them was held whole until the token was looked at.
 */
static void test_unauthenticated_upload_flood(void **state)
{
    static char chunk[65536];
    upload *u = calloc(FLOOD_CONNS, sizeof(*u));
    struct pollfd *p = calloc(FLOOD_CONNS, sizeof(*p));
    long base, peak, after;
    double deadline = now_ms() + 60000, next_sample = 0;
    int answered = 0, done = 0;
    kbt_resp warm;

    (void)state;
    memset(chunk, 'x', sizeof(chunk));
    assert_non_null(u);
    assert_non_null(p);
    warm = kbt_call(env, "GET", "/v1/keys", env->admin, NULL);
    assert_int_equal(warm.status, 200);
    kbt_resp_free(&warm);
    base = peak = vmrss_kib(env->pid);
    for (int i = 0; i < FLOOD_CONNS; i++) {
        u[i].c = raw_open("127.0.0.2");
        u[i].head_len =
            (size_t)snprintf(u[i].head, sizeof(u[i].head),
                             "POST /v1/sign HTTP/1.1\r\nHost: keybroker\r\nContent-Type: "
                             "application/json\r\n"
                             "%sContent-Length: %ld\r\n\r\n",
                             i % 2 ? "Authorization: Bearer not.a.token\r\n" : "", FLOOD_BODY);
        fcntl(u[i].c->fd, F_SETFL, fcntl(u[i].c->fd, F_GETFL) | O_NONBLOCK);
    }
    while (done < FLOOD_CONNS && now_ms() < deadline) {
        done = 0;
        for (int i = 0; i < FLOOD_CONNS; i++) {
            bool sending = !u[i].stopped && u[i].sent < u[i].head_len + FLOOD_BODY;
            p[i] = (struct pollfd){.fd = u[i].c->fd, .events = POLLIN | (sending ? POLLOUT : 0)};
            if (u[i].c->eof)
                p[i].fd = -1;
            done += u[i].c->eof || (u[i].resp.status != 0 && !sending);
        }
        poll(p, FLOOD_CONNS, 50);
        for (int i = 0; i < FLOOD_CONNS; i++) {
            if (p[i].revents & POLLOUT)
                upload_step(&u[i], chunk, sizeof(chunk));
            if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                raw_fill(u[i].c, 0);
                if (u[i].resp.status == 0 && raw_take(u[i].c, &u[i].resp))
                    answered++;
                if (u[i].c->eof)
                    u[i].stopped = true;
            }
        }
        if (now_ms() >= next_sample) {
            long rss = vmrss_kib(env->pid);
            peak = rss > peak ? rss : peak;
            next_sample = now_ms() + 20;
        }
    }
    for (int i = 0; i < FLOOD_CONNS; i++) {
        if (u[i].resp.status == 0)
            fail_msg("client %d got no answer (sent %zu, eof %d, errno %d)", i, u[i].sent,
                     u[i].c->eof, u[i].c->err);
        expect_error(&u[i].resp, 401, "unauthenticated", NULL);
        raw_resp_free(&u[i].resp);
        raw_close(u[i].c);
    }
    usleep(500 * 1000);
    after = vmrss_kib(env->pid);
    printf("flood of %d x %ld KiB: VmRSS %ld KiB before, %ld KiB at the peak, "
           "%ld KiB after\n",
           FLOOD_CONNS, FLOOD_BODY / 1024, base, peak, after);
    assert_int_equal(answered, FLOOD_CONNS);
    if (peak - base > 64 * 1024 || after - base > 64 * 1024)
        fail_msg("the flood grew the broker by %ld KiB at the peak, %ld KiB after", peak - base,
                 after - base);
    free(u);
    free(p);
}

/* A client that sends its head and waits for a go-ahead gets its refusal at
 * once. */
static void test_refused_before_the_body(void **state)
{
    raw_conn *c;
    raw_resp r;
    char req[4096];

    (void)state;
    /* no token */
    c = raw_open("127.0.0.1");
    raw_sends(c, "POST /v1/sign HTTP/1.1\r\nHost: keybroker\r\nContent-Length: "
                 "1048576\r\n\r\n");
    r = raw_read(c, 3000);
    expect_error(&r, 401, "unauthenticated", "Bearer");
    assert_true(says_close(&r));
    raw_resp_free(&r);
    assert_true(raw_ends(c, 15000));
    raw_close(c);

    /* a token that is not one: 100-continue is not promised, the refusal comes
     * first */
    c = raw_open("127.0.0.1");
    raw_sends(c, "POST /v1/sign HTTP/1.1\r\nHost: keybroker\r\nAuthorization: "
                 "Bearer a.b.c\r\n"
                 "Expect: 100-continue\r\nContent-Length: 1048576\r\n\r\n");
    r = raw_read(c, 3000);
    expect_error(&r, 401, "unauthenticated", NULL);
    raw_resp_free(&r);
    raw_close(c);

    /* a valid token without the route's op */
    c = raw_open("127.0.0.1");
    assert_true(
        (size_t)snprintf(req, sizeof(req),
                         "POST /v1/sign HTTP/1.1\r\nHost: keybroker\r\nAuthorization: Bearer "
                         "%s\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n",
                         reader) < sizeof(req));
    raw_sends(c, req);
    r = raw_read(c, 3000);
    expect_error(&r, 403, "forbidden", "sign");
    assert_true(says_close(&r));
    assert_true(r.json != NULL);
    raw_resp_free(&r);
    raw_close(c);

    /* no such endpoint, and an endpoint that takes no body */
    r = raw_once("POST /v1/nowhere HTTP/1.1\r\nHost: "
                 "keybroker\r\nContent-Length: 900000\r\n\r\n");
    expect_error(&r, 404, "not_found", NULL);
    raw_resp_free(&r);
    r = raw_once("GET /v1/health HTTP/1.1\r\nHost: keybroker\r\nContent-Length: "
                 "900000\r\n\r\n");
    assert_int_equal(r.status, 200);
    assert_true(says_close(&r));
    raw_resp_free(&r);
}

/*
 * A refused client that sends its whole body anyway gets its answer and then a
 * clean end of the connection: the broker reads what was announced before it
 * closes, so no reset can destroy the answer in flight.
 */
static void test_refused_upload_ends_cleanly(void **state)
{
    static char body[4 * 65536];
    raw_conn *c = raw_open("127.0.0.1");
    raw_resp r;

    (void)state;
    memset(body, 'x', sizeof(body));
    raw_sends(c, "POST /v1/keys HTTP/1.1\r\nHost: keybroker\r\nContent-Length: "
                 "1048576\r\n\r\n");
    for (int i = 0; i < 4; i++)
        raw_send(c, body, sizeof(body));
    r = raw_read(c, 5000);
    expect_error(&r, 401, "unauthenticated", NULL);
    raw_resp_free(&r);
    assert_true(raw_ends(c, 10000));
    assert_int_equal(c->err, 0);
    raw_close(c);
}

/* Keep-alive, pipelining, chunked bodies and 100-continue work as before for a
 * valid token. */
static void test_valid_bodies_pass(void **state)
{
    raw_conn *c = raw_open("127.0.0.1");
    char *a = sign_request(signer, 1, NULL), *b = sign_request(signer, 2, NULL);
    char *both = NULL, *body = sign_body(3), *req = NULL;
    raw_resp r;

    (void)state;
    /* two sign requests and a health check in one write */
    assert_true(asprintf(&both, "%s%sGET /v1/health HTTP/1.1\r\nHost: keybroker\r\n\r\n", a, b) >
                0);
    raw_sends(c, both);
    for (int i = 0; i < 2; i++) {
        r = raw_read(c, 10000);
        expect_signed(&r);
        assert_false(says_close(&r));
        raw_resp_free(&r);
    }
    r = raw_read(c, 10000);
    assert_int_equal(r.status, 200);
    raw_resp_free(&r);

    /* the same connection, a chunked body cut across writes */
    assert_true(asprintf(&req,
                         "POST /v1/sign HTTP/1.1\r\nHost: "
                         "keybroker\r\nAuthorization: Bearer %s\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n%zx\r\n",
                         signer, strlen(body) - 10) > 0);
    raw_sends(c, req);
    raw_send(c, body, strlen(body) - 10);
    usleep(50 * 1000);
    raw_sends(c, "\r\na\r");
    usleep(50 * 1000);
    raw_send(c, "\n", 1);
    raw_send(c, body + strlen(body) - 10, 10);
    raw_sends(c, "\r\n0\r\nX-Trailer: 1\r\n\r\n");
    r = raw_read(c, 10000);
    expect_signed(&r);
    raw_resp_free(&r);
    free(req);
    free(body);

    /* chunk extensions (RFC 9112 7.1.1) are allowed and mean nothing */
    body = sign_body(5);
    assert_true(asprintf(&req,
                         "POST /v1/sign HTTP/1.1\r\nHost: keybroker\r\nAuthorization: Bearer "
                         "%s\r\nTransfer-Encoding: chunked\r\n\r\n%zx;name=\"v\"\r\n%s\r\n"
                         "0 ; last\r\n\r\n",
                         signer, strlen(body), body) > 0);
    raw_sends(c, req);
    r = raw_read(c, 10000);
    expect_signed(&r);
    raw_resp_free(&r);
    free(req);
    free(body);

    /* 100-continue: the go-ahead, then the body, then the answer */
    body = sign_body(4);
    assert_true(asprintf(&req,
                         "POST /v1/sign HTTP/1.1\r\nHost: "
                         "keybroker\r\nAuthorization: Bearer %s\r\n"
                         "Expect: 100-continue\r\nContent-Length: %zu\r\n\r\n",
                         signer, strlen(body)) > 0);
    raw_sends(c, req);
    r = raw_read(c, 5000);
    assert_int_equal(r.status, 100);
    raw_resp_free(&r);
    raw_sends(c, body);
    r = raw_read(c, 10000);
    expect_signed(&r);
    raw_resp_free(&r);

    /* and the connection is still good */
    raw_sends(c, a);
    r = raw_read(c, 10000);
    expect_signed(&r);
    raw_resp_free(&r);
    raw_close(c);
    free(req);
    free(body);
    free(a);
    free(b);
    free(both);
}

/* Requests without a body pipelined in one write: each is answered at once, in order (the
 * second waited for the request timeout). */
static void test_pipelined_without_bodies(void **state)
{
    raw_conn *c = raw_open("127.0.0.1");
    char *all = NULL, path[64];
    raw_resp r;
    double t0 = now_ms();

    (void)state;
    assert_true(asprintf(&all,
                         "GET /v1/health HTTP/1.1\r\nHost: keybroker\r\n\r\n"
                         "GET /v1/health HTTP/1.1\r\nHost: keybroker\r\n\r\n"
                         "GET /v1/keys/fw HTTP/1.1\r\nHost: keybroker\r\nAuthorization: Bearer "
                         "%s\r\n\r\n"
                         "GET /v1/jwks HTTP/1.1\r\nHost: keybroker\r\n\r\n"
                         "GET /v1/nothing-here HTTP/1.1\r\nHost: keybroker\r\n\r\n",
                         reader) > 0);
    raw_sends(c, all);
    for (int i = 0; i < 5; i++) {
        static const int want[] = {200, 200, 200, 200, 404};

        r = raw_read(c, 5000);
        snprintf(path, sizeof(path), "answer %d", i + 1);
        if (r.status != want[i])
            fail_msg("%s of 5 pipelined requests: status %d after %.0f ms", path, r.status,
                     now_ms() - t0);
        assert_false(says_close(&r));
        raw_resp_free(&r);
    }
    if (now_ms() - t0 > 3000)
        fail_msg("5 pipelined requests took %.0f ms", now_ms() - t0);
    /* and the connection is still good */
    raw_sends(c, "GET /v1/health HTTP/1.1\r\nHost: keybroker\r\n\r\n");
    r = raw_read(c, 5000);
    assert_int_equal(r.status, 200);
    raw_resp_free(&r);
    raw_close(c);
    free(all);
}

/* A refused request behind a good one: the good one is answered, the refused
 * one closes. */
static void test_pipelined_refusal(void **state)
{
    raw_conn *c = raw_open("127.0.0.1");
    char *a = sign_request(signer, 10, NULL), *all = NULL;
    raw_resp r;

    (void)state;
    assert_true(asprintf(&all,
                         "%sPOST /v1/sign HTTP/1.1\r\nHost: keybroker\r\nContent-Length: "
                         "5\r\n\r\n"
                         "helloGET /v1/health HTTP/1.1\r\nHost: keybroker\r\n\r\n",
                         a) > 0);
    raw_sends(c, all);
    r = raw_read(c, 10000);
    expect_signed(&r);
    raw_resp_free(&r);
    r = raw_read(c, 10000);
    expect_error(&r, 401, "unauthenticated", NULL);
    assert_true(says_close(&r));
    raw_resp_free(&r);
    assert_true(raw_ends(c, 10000));
    raw_close(c);
    free(a);
    free(all);
}

/* Framing that two parsers could read two ways is refused, and the connection
 * closed. */
static void test_ambiguous_framing(void **state)
{
    static const char *const heads[] = {
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: 5 5\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding:\tchunked\r\n",
        "Content-Length : 5\r\n",
        "X-Folded: a\r\n b\r\nContent-Length: 5\r\n",
        "Expect: 100-continue-please\r\nContent-Length: 5\r\n",
    };
    char req[4096];
    raw_resp r;

    (void)state;
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        raw_conn *c = raw_open("127.0.0.1");
        assert_true((size_t)snprintf(req, sizeof(req),
                                     "POST /v1/sign HTTP/1.1\r\nHost: keybroker\r\nAuthorization: "
                                     "Bearer %s\r\n%s\r\n"
                                     "hello",
                                     signer, heads[i]) < sizeof(req));
        raw_sends(c, req);
        r = raw_read(c, 5000);
        expect_error(&r, 400, "bad_request", NULL);
        assert_true(says_close(&r));
        raw_resp_free(&r);
        assert_true(raw_ends(c, 10000));
        raw_close(c);
    }
    /* a head that never ends */
    {
        raw_conn *c = raw_open("127.0.0.1");
        char line[1024];
        memset(line, 'a', sizeof(line));
        raw_sends(c, "GET /v1/health HTTP/1.1\r\n");
        for (int i = 0; i < 40 && !c->eof; i++) {
            if (send(c->fd, line, sizeof(line), MSG_NOSIGNAL) < 0)
                break;
        }
        r = raw_read(c, 5000);
        assert_true(r.status == 400 || r.status == 413);
        assert_non_null(r.json);
        raw_resp_free(&r);
        raw_close(c);
    }
    /* chunk framing broken in the middle of a good request: the connection ends
     */
    {
        raw_conn *c = raw_open("127.0.0.1");
        assert_true((size_t)snprintf(req, sizeof(req),
                                     "POST /v1/sign HTTP/1.1\r\nHost: keybroker\r\nAuthorization: "
                                     "Bearer %s\r\n"
                                     "Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
                                     signer) < sizeof(req));
        raw_sends(c, req);
        assert_true(raw_ends(c, 5000));
        raw_close(c);
    }
}

/* A response to a client that asked for the connection to close arrives whole.
 */
static void test_close_after_a_large_response(void **state)
{
    raw_conn *c;
    raw_resp r;
    char req[4096];

    (void)state;
    for (int i = 0; i < 600; i++) {
        kbt_resp k = kbt_call(env, "GET", "/v1/keys", env->admin, NULL);
        assert_int_equal(k.status, 200);
        kbt_resp_free(&k);
    }
    for (int version = 0; version < 2; version++) {
        c = raw_open("127.0.0.1");
        assert_true((size_t)snprintf(req, sizeof(req),
                                     "GET /v1/audit?limit=1000 HTTP/1.%d\r\nHost: keybroker\r\n"
                                     "Authorization: Bearer %s\r\n%s\r\n",
                                     version, env->admin,
                                     version == 1 ? "Connection: close\r\n" : "") < sizeof(req));
        raw_sends(c, req);
        r = raw_read(c, 10000);
        assert_int_equal(r.status, 200);
        assert_non_null(r.json);
        assert_true(r.body_len > 200000);
        assert_true(json_array_size(json_object_get(r.json, "entries")) >= 400);
        raw_resp_free(&r);
        assert_true(raw_ends(c, 5000));
        raw_close(c);
    }
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
    char req[4096];

    assert_true((size_t)snprintf(req, sizeof(req),
                                 "%s %s HTTP/1.1\r\nHost: keybroker\r\nAuthorization: Bearer "
                                 "%s\r\n%s\r\n%s",
                                 method, path, env->admin,
                                 strcmp(method, "POST") == 0
                                     ? "Content-Type: application/json\r\nContent-Length: 2\r\n"
                                     : "",
                                 strcmp(method, "POST") == 0 ? "{}" : "") < sizeof(req));
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
            /* bad input from a valid token is recorded, under the route's action */
            if (header_in(r.head, strlen(r.head), "X-Audit-Seq") == NULL)
                fail_msg("%s %s: the 400 carries no audit seq: %s", param_routes[i].method, path,
                         r.head);
            raw_resp_free(&r);
        }
    }
    /* a query parameter given twice (the first or the last could be taken): refused, recorded */
    for (int i = 0; i < 2; i++) {
        r = path_call("GET",
                      i == 0 ? "/v1/audit?limit=1&limit=1000000" : "/v1/audit?limit=1&LIMIT=2");
        expect_error(&r, 400, "bad_request", "query parameter \"limit\" is given more than once");
        assert_non_null(header_in(r.head, strlen(r.head), "X-Audit-Seq"));
        raw_resp_free(&r);
    }
    r = path_call("GET", "/v1/audit?limit=1&after=0");
    assert_int_equal(r.status, 200);
    raw_resp_free(&r);
    /* without a token, the token is what is refused first */
    r = raw_once("GET /v1/keys/a%2fb HTTP/1.1\r\nHost: keybroker\r\n\r\n");
    expect_error(&r, 401, "unauthenticated", NULL);
    raw_resp_free(&r);
    /* outside a {} segment too (a path no route matches: not recorded, as a 404 is not) */
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
        cmocka_unit_test(test_unauthenticated_upload_flood),
        cmocka_unit_test(test_refused_before_the_body),
        cmocka_unit_test(test_refused_upload_ends_cleanly),
        cmocka_unit_test(test_valid_bodies_pass),
        cmocka_unit_test(test_pipelined_without_bodies),
        cmocka_unit_test(test_pipelined_refusal),
        cmocka_unit_test(test_ambiguous_framing),
        cmocka_unit_test(test_close_after_a_large_response),
        cmocka_unit_test(test_path_segments),
        cmocka_unit_test(test_dot_names),
        cmocka_unit_test(test_error_bodies_are_json),
    };

    return cmocka_run_group_tests_name("keybrokerd ingress", tests, group_setup, group_teardown);
}
