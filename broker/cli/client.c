/* client.c - the one libcurl handle through which every subcommand reaches keybrokerd. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <unistd.h>

#include "cli.h"

#define CLI_CONNECT_TIMEOUT 10L
#define CLI_TOTAL_TIMEOUT   120L
/* An audit page of 1000 entries is far below this; a runaway server is not. */
#define CLI_RESPONSE_MAX (64u * 1024 * 1024)
#define CLI_AUTH_PREFIX  "Authorization: Bearer "

struct cli_client {
    CURL *curl;
    char *base;       /* the URL without trailing '/' */
    kbr_secret *auth; /* the whole Authorization header line */
    /*
     * The header list node that carries auth: built here rather than by
     * curl_slist_append(), which would keep an unwiped copy of the token.
     */
    struct curl_slist auth_node;
    char errbuf[CURL_ERROR_SIZE];
};

void cli_buf_wipe(cli_buf *b)
{
    /* A response may hold a freshly issued token. */
    if (b->data != NULL)
        OPENSSL_cleanse(b->data, b->cap);
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Grows by copy so that the old block can be wiped before it is freed. */
bool cli_buf_grow(cli_buf *b, size_t need)
{
    size_t cap = b->cap != 0 ? b->cap : 16384;
    char *grown = NULL;

    while (cap < need)
        cap *= 2;
    if (cap == b->cap)
        return true;
    grown = malloc(cap);
    if (grown == NULL)
        return false;
    if (b->data != NULL) {
        memcpy(grown, b->data, b->len);
        OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
    }
    b->data = grown;
    b->cap = cap;
    return true;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    cli_buf *b = userdata;
    size_t n = size * nmemb;

    if (b->len + n + 1 > CLI_RESPONSE_MAX) {
        b->overflow = true;
        return 0;
    }
    if (!cli_buf_grow(b, b->len + n + 1))
        return 0;
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static bool is_loopback(const char *host)
{
    return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
           strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0;
}

/* A bearer token never crosses the network in clear; the daemon refuses such listeners too. */
static kbr_err check_url(const char *url, bool has_token, cli_error *ce)
{
    kbr_err err = KBR_OK;
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;

    KBR_ENSURE(u != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
                   curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
                   curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK,
               cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE, "bad URL '%s'", url));
    KBR_ENSURE(strcmp(scheme, "https") == 0 || strcmp(scheme, "http") == 0,
               cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE, "URL '%s' is not http(s)", url));
    KBR_ENSURE(!has_token || strcmp(scheme, "https") == 0 || is_loopback(host),
               cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE,
                        "refusing to send a token over plain http to %s; use https", host));
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return err;
}

static kbr_err set_tls(CURL *curl, const cli_client_conf *conf)
{
    if (conf->cacert != NULL && curl_easy_setopt(curl, CURLOPT_CAINFO, conf->cacert) != CURLE_OK)
        return KBR_ERR_CONFIG;
    if (conf->cert != NULL && curl_easy_setopt(curl, CURLOPT_SSLCERT, conf->cert) != CURLE_OK)
        return KBR_ERR_CONFIG;
    if (conf->cert_key != NULL &&
        curl_easy_setopt(curl, CURLOPT_SSLKEY, conf->cert_key) != CURLE_OK)
        return KBR_ERR_CONFIG;
    return KBR_OK;
}

static kbr_err set_common(cli_client *c, const cli_client_conf *conf)
{
    CURL *h = c->curl;

    /* Redirects are refused: following one would hand the token to another host. */
    if (curl_easy_setopt(h, CURLOPT_FAILONERROR, 0L) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CLI_CONNECT_TIMEOUT) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_TIMEOUT, CLI_TOTAL_TIMEOUT) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_USERAGENT, "keybroker-cli/1") != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK)
        return KBR_ERR_INTERNAL;
    return set_tls(h, conf);
}

static kbr_err make_auth(const kbr_secret *token, kbr_secret **out, cli_error *ce)
{
    kbr_err err = KBR_OK;
    size_t plen = strlen(CLI_AUTH_PREFIX), len = plen + token->len;
    unsigned char *zeros = NULL;

    *out = NULL;
    for (size_t i = 0; i < token->len; i++)
        KBR_ENSURE(token->buf[i] > 0x20 && token->buf[i] < 0x7f,
                   cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE,
                            "the token contains blanks or control characters"));
    zeros = calloc(1, len);
    KBR_ENSURE(zeros != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_secret_new(zeros, len, out));
    memcpy((*out)->buf, CLI_AUTH_PREFIX, plen);
    memcpy((*out)->buf + plen, token->buf, token->len);
out:
    free(zeros);
    return err;
}

static kbr_err base_url(const char *url, char **out)
{
    size_t len = strlen(url);

    while (len > 0 && url[len - 1] == '/')
        len--;
    *out = strndup(url, len);
    return *out != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

kbr_err cli_client_new(const cli_client_conf *conf, kbr_secret *token, cli_client **out,
                       cli_error *ce)
{
    kbr_err err = KBR_OK;
    cli_client *c = NULL;

    *out = NULL;
    KBR_GUARD(check_url(conf->url, token != NULL, ce));
    c = calloc(1, sizeof(*c));
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(base_url(conf->url, &c->base));
    if (token != NULL)
        KBR_GUARD(make_auth(token, &c->auth, ce));
    c->curl = curl_easy_init();
    KBR_ENSURE(c->curl != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(set_common(c, conf) == KBR_OK,
               cli_fail(ce, KBR_ERR_CONFIG, "tls", "libcurl refused the TLS settings"));
    *out = c;
    c = NULL;
out:
    kbr_secret_free(token);
    cli_client_free(c);
    return err;
}

void cli_client_free(cli_client *c)
{
    if (c == NULL)
        return;
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    kbr_secret_free(c->auth);
    free(c->base);
    free(c);
}

void cli_response_cleanup(cli_response *r)
{
    if (r == NULL)
        return;
    json_decref(r->body);
    r->body = NULL;
    r->status = 0;
    free(r->raw);
    r->raw = NULL;
    r->raw_len = 0;
}

static const char *transport_code(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
        return "connection_failed";
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CLIENTCERT:
        return "tls_error";
    default:
        return "transport_error";
    }
}

kbr_err cli_http_error(long status, const json_t *body, cli_error *ce)
{
    const json_t *e = json_object_get(body, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *message = json_string_value(json_object_get(e, "message"));

    if (code == NULL)
        return cli_fail(ce, kbr_err_from_api(status, NULL), "http_error",
                        "the server answered HTTP %ld without an error body", status);
    return cli_fail(ce, kbr_err_from_api(status, code), code, "%s",
                    message != NULL ? message : "(no message)");
}

static kbr_err set_method(CURL *h, const char *method, const char *body)
{
    CURLcode rc;

    if (strcmp(method, "GET") == 0) {
        rc = curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        rc = curl_easy_setopt(h, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        if (rc == CURLE_OK)
            rc =
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(body != NULL ? strlen(body) : 0));
    }
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST,
                              strcmp(method, "GET") == 0 || strcmp(method, "POST") == 0 ? NULL
                                                                                        : method);
    return rc == CURLE_OK ? KBR_OK : KBR_ERR_INTERNAL;
}

static kbr_err make_headers(cli_client *c, bool has_body, struct curl_slist **list,
                            struct curl_slist **head)
{
    struct curl_slist *l = curl_slist_append(NULL, "Accept: application/json");

    *list = *head = NULL;
    if (l != NULL && has_body)
        l = curl_slist_append(l, "Content-Type: application/json");
    if (l == NULL)
        return KBR_ERR_NOMEM;
    *list = l;
    *head = l;
    if (c->auth != NULL) {
        c->auth_node.data = (char *)c->auth->buf;
        c->auth_node.next = l;
        *head = &c->auth_node;
    }
    return KBR_OK;
}

static kbr_err full_url(const cli_client *c, const char *path, char **out)
{
    size_t len = strlen(c->base) + strlen(path) + 1;

    *out = malloc(len);
    if (*out == NULL)
        return KBR_ERR_NOMEM;
    snprintf(*out, len, "%s%s", c->base, path);
    return KBR_OK;
}

static kbr_err perform(cli_client *c, cli_buf *buf, cli_error *ce)
{
    CURLcode rc;

    c->errbuf[0] = '\0';
    if (curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, buf) != CURLE_OK)
        return KBR_ERR_INTERNAL;
    rc = curl_easy_perform(c->curl);
    if (buf->overflow)
        return cli_fail(ce, KBR_ERR_TOO_LARGE, "bad_response", "the response exceeds %u bytes",
                        CLI_RESPONSE_MAX);
    if (rc != CURLE_OK)
        return cli_fail(ce, KBR_ERR_IO, transport_code(rc), "%s",
                        c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(rc));
    return KBR_OK;
}

static long long audit_seq_header(CURL *h)
{
    struct curl_header *hdr = NULL;
    long long seq = -1;

    if (curl_easy_header(h, "X-Audit-Seq", 0, CURLH_HEADER, -1, &hdr) != CURLHE_OK ||
        cli_parse_ll(hdr->value, 0, LLONG_MAX, &seq) != KBR_OK)
        return -1;
    return seq;
}

kbr_err cli_read_response(cli_client *c, const cli_buf *buf, cli_response *resp, cli_error *ce)
{
    json_error_t jerr;

    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp->status);
    resp->audit_seq = audit_seq_header(c->curl);
    /* a member said twice means different things to different readers: not read at all */
    if (buf->len > 0)
        resp->body = json_loadb(buf->data, buf->len, JSON_REJECT_DUPLICATES, &jerr);
    if (resp->keep_raw && resp->status < 400) {
        resp->raw = malloc(buf->len + 1);
        if (resp->raw == NULL)
            return KBR_ERR_NOMEM;
        memcpy(resp->raw, buf->data != NULL ? buf->data : "", buf->len);
        resp->raw[buf->len] = '\0';
        resp->raw_len = buf->len;
    }
    if (resp->status >= 400)
        return cli_http_error(resp->status, resp->body, ce);
    if (buf->len > 0 && resp->body == NULL)
        return cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response",
                        "HTTP %ld with a body that is not JSON: %s", resp->status, jerr.text);
    return KBR_OK;
}

static kbr_err send_request(cli_client *c, const char *method, const char *url, const char *body,
                            cli_buf *buf, cli_error *ce)
{
    kbr_err err = KBR_OK;
    struct curl_slist *list = NULL, *head = NULL;

    KBR_GUARD(make_headers(c, body != NULL, &list, &head));
    KBR_ENSURE(curl_easy_setopt(c->curl, CURLOPT_URL, url) == CURLE_OK &&
                   curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, head) == CURLE_OK,
               KBR_ERR_INTERNAL);
    KBR_GUARD(set_method(c->curl, method, body));
    KBR_GUARD(perform(c, buf, ce));
out:
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, NULL);
    c->auth_node.data = NULL;
    c->auth_node.next = NULL;
    curl_slist_free_all(list);
    return err;
}

kbr_err cli_call(cli_client *c, const char *method, const char *path, const json_t *body,
                 cli_response *resp, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *url = NULL, *text = NULL;
    cli_buf buf = {0};

    resp->status = 0;
    resp->body = NULL;
    resp->audit_seq = -1;
    KBR_GUARD(full_url(c, path, &url));
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
        KBR_ENSURE(text != NULL, KBR_ERR_NOMEM);
    }
    KBR_GUARD(send_request(c, method, url, text, &buf, ce));
    KBR_GUARD(cli_read_response(c, &buf, resp, ce));
out:
    cli_buf_wipe(&buf);
    free(text);
    free(url);
    return err;
}

static kbr_err escaped(cli_client *c, const char *s, char **out)
{
    char *e = curl_easy_escape(c->curl, s, 0);

    *out = NULL;
    if (e == NULL)
        return KBR_ERR_NOMEM;
    *out = strdup(e);
    curl_free(e);
    return *out != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

kbr_err cli_path_join(cli_client *c, const char *prefix, const char *segment, const char *suffix,
                      char **out)
{
    kbr_err err = KBR_OK;
    char *seg = NULL;
    size_t len;

    *out = NULL;
    KBR_GUARD(escaped(c, segment, &seg));
    len = strlen(prefix) + strlen(seg) + (suffix != NULL ? strlen(suffix) : 0) + 1;
    *out = malloc(len);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
    snprintf(*out, len, "%s%s%s", prefix, seg, suffix != NULL ? suffix : "");
out:
    free(seg);
    return err;
}

kbr_err cli_query_add(cli_client *c, char **path, const char *name, const char *value)
{
    kbr_err err = KBR_OK;
    char *val = NULL, *grown = NULL;
    size_t len;

    KBR_GUARD(escaped(c, value, &val));
    len = strlen(*path) + 1 + strlen(name) + 1 + strlen(val) + 1;
    grown = malloc(len);
    KBR_ENSURE(grown != NULL, KBR_ERR_NOMEM);
    snprintf(grown, len, "%s%c%s=%s", *path, strchr(*path, '?') != NULL ? '&' : '?', name, val);
    free(*path);
    *path = grown;
out:
    free(val);
    return err;
}

/* ---- streamed downloads ---- */

typedef struct {
    CURL *curl;
    int fd;
    EVP_MD_CTX *md;
    cli_buf err_body; /* an error answer, read whole */
    long long received;
    bool write_failed;
} stream_state;

static size_t on_stream(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    stream_state *st = userdata;
    size_t n = size * nmemb, done = 0;
    long status = 0;

    curl_easy_getinfo(st->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300)
        return on_body(ptr, size, nmemb, &st->err_body);
    if (EVP_DigestUpdate(st->md, ptr, n) != 1)
        return 0;
    while (done < n) {
        ssize_t w = write(st->fd, ptr + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            st->write_failed = true;
            return 0;
        }
        done += (size_t)w;
    }
    st->received += (long long)n;
    return n;
}

static long long header_ll(CURL *h, const char *name)
{
    struct curl_header *hdr = NULL;
    long long v = -1;

    if (curl_easy_header(h, name, 0, CURLH_HEADER, -1, &hdr) != CURLHE_OK ||
        cli_parse_ll(hdr->value, 0, LLONG_MAX, &v) != KBR_OK)
        return -1;
    return v;
}

kbr_err cli_get_to_fd(cli_client *c, const char *path, int fd, cli_download *got, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *url = NULL;
    stream_state st = {.curl = c->curl, .fd = fd};
    struct curl_slist *list = NULL, *head = NULL;
    struct curl_header *hdr = NULL;
    json_error_t jerr;
    json_t *body = NULL;
    CURLcode rc;

    memset(got, 0, sizeof(*got));
    got->audit_seq = got->content_length = got->backup_last_seq = -1;
    st.md = EVP_MD_CTX_new();
    KBR_ENSURE(st.md != NULL && EVP_DigestInit_ex(st.md, EVP_sha256(), NULL) == 1, KBR_ERR_NOMEM);
    KBR_GUARD(full_url(c, path, &url));
    KBR_GUARD(make_headers(c, false, &list, &head));
    KBR_ENSURE(curl_easy_setopt(c->curl, CURLOPT_URL, url) == CURLE_OK &&
                   curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, head) == CURLE_OK &&
                   curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L) == CURLE_OK &&
                   curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_stream) == CURLE_OK &&
                   curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &st) == CURLE_OK &&
                   curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 0L) == CURLE_OK &&
                   curl_easy_setopt(c->curl, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK,
               KBR_ERR_INTERNAL);
    c->errbuf[0] = '\0';
    rc = curl_easy_perform(c->curl);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &got->status);
    got->received = st.received;
    KBR_ENSURE(!st.write_failed, cli_fail(ce, KBR_ERR_IO, "io_error",
                                          "cannot write what arrived: %s", strerror(errno)));
    KBR_ENSURE(!st.err_body.overflow,
               cli_fail(ce, KBR_ERR_TOO_LARGE, "bad_response", "the error answer is too large"));
    KBR_ENSURE(rc == CURLE_OK, cli_fail(ce, KBR_ERR_IO, transport_code(rc), "%s",
                                        c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(rc)));
    if (got->status < 200 || got->status >= 300) {
        if (st.err_body.len > 0)
            body = json_loadb(st.err_body.data, st.err_body.len, JSON_REJECT_DUPLICATES, &jerr);
        err = cli_http_error(got->status, body, ce);
        goto out;
    }
    got->audit_seq = audit_seq_header(c->curl);
    got->content_length = header_ll(c->curl, "Content-Length");
    got->backup_last_seq = header_ll(c->curl, "X-Backup-Last-Seq");
    if (curl_easy_header(c->curl, "X-Backup-SHA256", 0, CURLH_HEADER, -1, &hdr) == CURLHE_OK)
        snprintf(got->backup_sha256, sizeof(got->backup_sha256), "%s", hdr->value);
    KBR_ENSURE(EVP_DigestFinal_ex(st.md, got->sha256, NULL) == 1, KBR_ERR_CRYPTO);
out:
    /* the handle goes back to what cli_call expects */
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, CLI_TOTAL_TIMEOUT);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    c->auth_node.data = NULL;
    c->auth_node.next = NULL;
    curl_slist_free_all(list);
    json_decref(body);
    cli_buf_wipe(&st.err_body);
    EVP_MD_CTX_free(st.md);
    free(url);
    return err;
}
