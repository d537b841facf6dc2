/*
 * ops.c - ops_listen: a second listener, plain HTTP, that serves GET
 * /v1/health and GET /metrics and nothing else, so monitoring needs neither
 * a client certificate nor a token.  Neither answer holds a secret: health
 * says which part is down, metrics count requests by route and status.
 * Every other path is 404 and every other method 405, without reading a
 * body; no route of the API is reachable here.
 *
 * It is bounded on its own: at most OPS_MAX_CONNECTIONS open connections
 * (more are closed as they are accepted, before a byte is read), each
 * closed after OPS_TIMEOUT seconds without a request, heads of at most
 * 8 KiB, no bodies.  It may listen on any address (a Prometheus server
 * elsewhere scrapes it); keep it off networks that should not see the
 * broker's request counts.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "kbd.h"

#define OPS_MAX_CONNECTIONS 64
#define OPS_TIMEOUT         10

/* Bufferevents of accepted connections, each with a reference, until admitted. */
static struct {
    struct bufferevent **queue;
    size_t queued, cap;
    struct event *admit_ev;
} ops;

static void send_json(struct evhttp_request *req, int status, json_t *body)
{
    struct evbuffer *buf = evbuffer_new();
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    if (buf != NULL && text != NULL)
        evbuffer_add_printf(buf, "%s\n", text);
    evhttp_send_reply(req, status, status < 400 ? "OK" : "Error", buf);
    if (buf != NULL)
        evbuffer_free(buf);
    free(text);
    json_decref(body);
}

static void on_ops_request(struct evhttp_request *req, void *arg)
{
    kbd *d = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    json_t *body = NULL;
    int status;

    if (path != NULL && strcmp(path, "/v1/health") == 0) {
        status = kbd_health_body(d, &body);
        send_json(req, status, body);
        return;
    }
    if (path != NULL && strcmp(path, "/metrics") == 0) {
        struct evbuffer *buf = evbuffer_new();
        if (buf == NULL) {
            evhttp_send_error(req, 503, "out of memory");
            return;
        }
        kbd_metrics_text(d, buf);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(req, 200, "OK", buf);
        evbuffer_free(buf);
        return;
    }
    send_json(req, 404,
              json_pack("{s:{s:s,s:s}}", "error", "code", "not_found", "message",
                        "ops_listen serves GET /v1/health and GET /metrics only"));
}

static void on_ops_close(struct evhttp_connection *evcon, void *arg)
{
    kbd *d = arg;

    (void)evcon;
    d->ops_open--;
}

/* After the accept callback returned: evhttp has given each new bufferevent its connection. */
static void on_admit(evutil_socket_t unused, short what, void *arg)
{
    kbd *d = arg;
    size_t n = ops.queued;

    (void)unused;
    (void)what;
    ops.queued = 0;
    for (size_t i = 0; i < n; i++) {
        struct bufferevent *bev = ops.queue[i];
        void *evcon = NULL;

        bufferevent_getcb(bev, NULL, NULL, NULL, &evcon);
        if (evcon != NULL) {
            if (d->ops_open >= OPS_MAX_CONNECTIONS) {
                evhttp_connection_free(evcon);
            } else {
                d->ops_open++;
                evhttp_connection_set_closecb(evcon, on_ops_close, d);
            }
        }
        bufferevent_decref(bev);
    }
}

static struct bufferevent *on_ops_connection(struct event_base *base, void *arg)
{
    kbd *d = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);

    (void)d;
    if (bev == NULL)
        return NULL;
    if (ops.queued == ops.cap) {
        size_t cap = ops.cap > 0 ? 2 * ops.cap : 64;
        struct bufferevent **q = realloc(ops.queue, cap * sizeof(*q));
        if (q == NULL)
            return bev; /* served, uncounted: memory is what ran out, not descriptors */
        ops.queue = q;
        ops.cap = cap;
    }
    bufferevent_incref(bev);
    ops.queue[ops.queued++] = bev;
    event_active(ops.admit_ev, EV_TIMEOUT, 1);
    return bev;
}

kbr_err kbd_ops_start(kbd *d, kbr_msg *msg)
{
    if (d->cfg.ops_listen_host == NULL)
        return KBR_OK;
    d->ops_http = evhttp_new(d->base);
    ops.admit_ev = event_new(d->base, -1, 0, on_admit, d);
    if (d->ops_http == NULL || ops.admit_ev == NULL)
        return kbr_fail(msg, KBR_ERR_NOMEM, "cannot create the ops listener");
    evhttp_set_allowed_methods(d->ops_http, EVHTTP_REQ_GET);
    evhttp_set_max_headers_size(d->ops_http, 8192);
    evhttp_set_max_body_size(d->ops_http, 0);
    evhttp_set_timeout(d->ops_http, OPS_TIMEOUT);
    evhttp_set_gencb(d->ops_http, on_ops_request, d);
    evhttp_set_bevcb(d->ops_http, on_ops_connection, d);
    d->ops_bound = evhttp_bind_socket_with_handle(d->ops_http, d->cfg.ops_listen_host,
                                                  (ev_uint16_t)d->cfg.ops_listen_port);
    if (d->ops_bound == NULL)
        return kbr_fail(msg, KBR_ERR_CONFIG, "cannot listen on ops_listen %s:%d",
                        d->cfg.ops_listen_host, d->cfg.ops_listen_port);
    {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int port = d->cfg.ops_listen_port;
        if (getsockname(evhttp_bound_socket_get_fd(d->ops_bound), (struct sockaddr *)&ss, &sl) == 0)
            port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                            : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        kbd_log(KBD_LOG_INFO, "listening.ops", NULL,
                "ops listening on %s:%d (plain HTTP: /v1/health and /metrics only)",
                d->cfg.ops_listen_host, port);
    }
    return KBR_OK;
}

void kbd_ops_stop_listening(kbd *d)
{
    if (d->ops_bound != NULL) {
        evhttp_del_accept_socket(d->ops_http, d->ops_bound);
        d->ops_bound = NULL;
    }
}

void kbd_ops_free(kbd *d)
{
    for (size_t i = 0; i < ops.queued; i++)
        bufferevent_decref(ops.queue[i]);
    ops.queued = 0;
    free(ops.queue);
    ops.queue = NULL;
    ops.cap = 0;
    if (d->ops_http != NULL)
        evhttp_free(d->ops_http);
    d->ops_http = NULL;
    if (ops.admit_ev != NULL)
        event_free(ops.admit_ev);
    ops.admit_ev = NULL;
}
