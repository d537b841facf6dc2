/*
 * connlimit.c - bounds on open connections, overall and per source, applied
 * as a connection is accepted: before a byte of it is read and before a TLS
 * handshake is spent on it.  A factory network is not trusted, and without
 * this one host could hold every descriptor the broker has.
 *
 * libevent 2.1's evhttp has no connection limit, and the only hook it calls
 * for a new connection is the bufferevent callback, which does not see the
 * socket.  So the callback makes the bufferevent, holds a reference to it,
 * queues it and activates the admission event; that runs right after the
 * accept callback returns, when evhttp has handed every bufferevent of the
 * batch its socket and before the loop polls any of them.  Admission counts
 * the connection against its source (the peer's address) and either lets
 * evhttp keep it or closes it.  A connection that was never admitted (the
 * queue could not grow, or evhttp made its own plain bufferevent because
 * ours could not be made) is refused at its first request, so neither a
 * plain-text connection on the TLS port nor an uncounted one is served.
 *
 * When descriptors run out anyway, the listener pauses for a second rather
 * than spin on a socket that stays readable.
 *
 * Slow clients: libevent's own timeout only closes a connection that sends
 * nothing, so one that trickles a byte a minute would keep its slot.  Every
 * connection therefore owes a complete request within request_timeout of
 * its accept or of its last response, unless a request of it is being
 * handled; a sweep each second closes those that are late.  The same
 * deadline bounds a client that is slow to read its response.
 *
 * Refusals are recorded, but not one entry each, or a flood would fill the
 * disk: they are counted per source and written as one connection.refused
 * entry per flush interval.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <uthash.h>

#include "kbd.h"
#include "routes.h"

#define SOURCE_LEN 64
/* How many sources a connection.refused entry names; the rest are in the total. */
#define REPORT_SOURCES 16
/*
 * Connections accepted and not yet admitted: at this many the listener pauses
 * until they are decided, and the rest wait in the kernel's accept queue, which
 * holds no descriptor of ours.
 */
#define ADMIT_BATCH 128
/*
 * The kernel's accept queue (it clamps this to net.core.somaxconn).  libevent
 * listens with 128; a factory's burst of connections on a busy host overflowed
 * that, and each connection that did waited a second for TCP to retry.
 */
#define LISTEN_BACKLOG 1024
/*
 * Descriptors kept free of admitted connections: one batch awaiting admission,
 * then the store, the HSM, the logs and the workers, and the refused uploads
 * still being read after their connection closed (ingress.c).
 */
#define FD_RESERVE (ADMIT_BATCH + 64 + KBD_LINGER_MAX)
/* Sources remembered only for their refusals, beyond those with open connections. */
#define MAX_REFUSED_SOURCES 4096

typedef struct {
    char key[SOURCE_LEN];
    long open;
    long refused;
    UT_hash_handle hh;
} source;

typedef struct {
    int fd;
    struct evhttp_connection *evcon;
    source *src;
    double since; /* monotonic: accepted, or its last response sent */
    bool busy;    /* a request of it is being handled: never closed under it */
    UT_hash_handle hh;
} conn;

struct kbd_connlimit {
    kbd *d;
    long max_total, max_per_source;
    long open;
    source *sources;
    long nsources;
    conn *conns;
    long refused, refused_over_total; /* since the last connection.refused entry */
    long refused_total;               /* since start, for /metrics */
    long timed_out_total;             /* closed for a request not complete in time */
    double request_timeout;
    struct event *sweep_ev;
    time_t refused_since;
    /* bufferevents made for accepted connections, each with a reference, awaiting admission */
    struct bufferevent **queue;
    size_t queued, queue_cap;
    struct event *admit_ev;
    struct event *resume_ev; /* re-enables the listener after running out of descriptors */
    bool batch_full;         /* the listener paused for a full admission batch */
};

/*
 * The source a peer counts against: its address (IPv4, or IPv6 with the
 * interface for link-local ones).  IPv6 hosts on one SLAAC segment share a
 * /64, so the /64 is not a host; the total limit bounds a host that owns one.
 */
static bool source_of(const struct sockaddr *sa, char out[SOURCE_LEN])
{
    char text[INET6_ADDRSTRLEN];

    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &in4->sin_addr, text, sizeof(text)) == NULL)
            return false;
        snprintf(out, SOURCE_LEN, "%s", text);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            if (inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], text, sizeof(text)) == NULL)
                return false;
            snprintf(out, SOURCE_LEN, "%s", text);
            return true;
        }
        if (inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text)) == NULL)
            return false;
        if (IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr))
            snprintf(out, SOURCE_LEN, "%s%%%u", text, (unsigned)in6->sin6_scope_id);
        else
            snprintf(out, SOURCE_LEN, "%s", text);
        return true;
    }
    return false;
}

/* NULL when out of memory, or when a refused-only source would be one too many. */
static source *source_get(kbd_connlimit *cl, const char *key, bool for_refusal)
{
    source *s = NULL;

    HASH_FIND_STR(cl->sources, key, s);
    if (s != NULL)
        return s;
    if (for_refusal && cl->nsources >= cl->max_total + MAX_REFUSED_SOURCES)
        return NULL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    snprintf(s->key, sizeof(s->key), "%s", key);
    HASH_ADD_STR(cl->sources, key, s);
    cl->nsources++;
    return s;
}

static void source_maybe_drop(kbd_connlimit *cl, source *s)
{
    if (s->open == 0 && s->refused == 0) {
        HASH_DEL(cl->sources, s);
        cl->nsources--;
        free(s);
    }
}

/* A connection closed: its slot goes back to its source. */
static void conn_release(kbd_connlimit *cl, conn *c)
{
    HASH_DEL(cl->conns, c);
    c->src->open--;
    cl->open--;
    source_maybe_drop(cl, c->src);
    free(c);
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    kbd_connlimit *cl = arg;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    int fd = bev != NULL ? (int)bufferevent_getfd(bev) : -1;
    conn *c = NULL;

    /* a response still being streamed on it stops */
    kbd_backup_conn_closed(cl->d, evcon);
    HASH_FIND_INT(cl->conns, &fd, c);
    if (c != NULL)
        conn_release(cl, c);
}

static void refuse(kbd_connlimit *cl, struct evhttp_connection *evcon, const char *key,
                   bool over_total)
{
    source *s = source_get(cl, key, true);

    evhttp_connection_free(evcon);
    cl->refused_total++;
    if (cl->refused++ == 0)
        cl->refused_since = time(NULL);
    if (over_total)
        cl->refused_over_total++;
    if (s != NULL)
        s->refused++;
}

/* Decides on one accepted connection; evcon is closed when it is over a limit. */
static void admit(kbd_connlimit *cl, struct evhttp_connection *evcon, int fd)
{
    char key[SOURCE_LEN];
    source *s = NULL;
    conn *c = NULL;

    /* A descriptor still counted was closed without evhttp telling us. */
    HASH_FIND_INT(cl->conns, &fd, c);
    if (c != NULL)
        conn_release(cl, c);
    c = NULL;
    if (!source_of(evhttp_connection_get_addr(evcon), key)) {
        /* no peer address: nothing to count it against */
        evhttp_connection_free(evcon);
        return;
    }
    if (cl->open >= cl->max_total) {
        refuse(cl, evcon, key, true);
        return;
    }
    s = source_get(cl, key, false);
    c = s != NULL ? calloc(1, sizeof(*c)) : NULL;
    if (c == NULL || s->open >= cl->max_per_source) {
        free(c);
        refuse(cl, evcon, key, false);
        return;
    }
    c->fd = fd;
    c->evcon = evcon;
    c->src = s;
    c->since = kbr_monotonic_seconds();
    s->open++;
    cl->open++;
    HASH_ADD_INT(cl->conns, fd, c);
    evhttp_connection_set_closecb(evcon, on_close, cl);
}

static void on_admit(evutil_socket_t unused, short what, void *arg)
{
    kbd_connlimit *cl = arg;
    size_t n = cl->queued;

    (void)unused;
    (void)what;
    cl->queued = 0;
    if (cl->batch_full) {
        cl->batch_full = false;
        /* unless it is paused for want of descriptors (on_resume ends that) */
        if (cl->d->bound != NULL && !evtimer_pending(cl->resume_ev, NULL))
            evconnlistener_enable(evhttp_bound_socket_get_listener(cl->d->bound));
    }
    for (size_t i = 0; i < n; i++) {
        struct bufferevent *bev = cl->queue[i];
        void *cbarg = NULL;
        int fd = (int)bufferevent_getfd(bev);

        /* evhttp's callbacks carry the connection; none means it is already gone */
        bufferevent_getcb(bev, NULL, NULL, NULL, &cbarg);
        if (cbarg != NULL && fd >= 0)
            admit(cl, cbarg, fd);
        bufferevent_decref(bev);
    }
}

static bool enqueue(kbd_connlimit *cl, struct bufferevent *bev)
{
    if (cl->queued == cl->queue_cap) {
        size_t cap = cl->queue_cap > 0 ? 2 * cl->queue_cap : 64;
        struct bufferevent **q = realloc(cl->queue, cap * sizeof(*q));
        if (q == NULL)
            return false;
        cl->queue = q;
        cl->queue_cap = cap;
    }
    bufferevent_incref(bev);
    cl->queue[cl->queued++] = bev;
    /* no timeout: runs once this accept callback has returned, before any read */
    event_active(cl->admit_ev, EV_TIMEOUT, 1);
    /* libevent's listener accepts until the queue is empty unless it is disabled */
    if (cl->queued >= ADMIT_BATCH && cl->d->bound != NULL && !cl->batch_full) {
        cl->batch_full = true;
        evconnlistener_disable(evhttp_bound_socket_get_listener(cl->d->bound));
    }
    return true;
}

static struct bufferevent *on_connection(struct event_base *base, void *arg)
{
    kbd_connlimit *cl = arg;
    struct bufferevent *bev = cl->d->tls != NULL
                                  ? kbd_tls_bufferevent(cl->d, base)
                                  : bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);

    /* Request heads are read before evhttp reads a body (ingress.c). */
    if (bev != NULL)
        bev = kbd_ingress_wrap(cl->d, bev);
    /* Not admitted (and not TLS when it had to be): refused at its first request. */
    if (bev != NULL)
        (void)enqueue(cl, bev);
    return bev;
}

static conn *conn_of(kbd *d, struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
    int fd = bev != NULL ? (int)bufferevent_getfd(bev) : -1;
    conn *c = NULL;

    HASH_FIND_INT(d->connlimit->conns, &fd, c);
    return c != NULL && c->evcon == evcon ? c : NULL;
}

bool kbd_connlimit_request_begins(kbd *d, struct evhttp_connection *evcon)
{
    conn *c;

    if (d->connlimit == NULL)
        return true;
    c = conn_of(d, evcon);
    if (c != NULL)
        c->busy = true;
    return c != NULL;
}

void kbd_connlimit_request_ends(kbd *d, struct evhttp_connection *evcon)
{
    conn *c = d->connlimit != NULL ? conn_of(d, evcon) : NULL;

    if (c != NULL) {
        c->busy = false;
        c->since = kbr_monotonic_seconds();
    }
}

/* Closes the connections that owe a request and are late with it. */
static void on_sweep(evutil_socket_t unused, short what, void *arg)
{
    kbd_connlimit *cl = arg;
    double now = kbr_monotonic_seconds();
    conn *c, *next;

    (void)unused;
    (void)what;
    for (c = cl->conns; c != NULL; c = next) {
        next = c->hh.next;
        if (!c->busy && now - c->since > cl->request_timeout) {
            cl->timed_out_total++;
            /* its close callback releases c */
            evhttp_connection_free(c->evcon);
        }
    }
}

static void on_resume(evutil_socket_t unused, short what, void *arg)
{
    kbd *d = arg;

    (void)unused;
    (void)what;
    if (d->bound != NULL)
        evconnlistener_enable(evhttp_bound_socket_get_listener(d->bound));
}

/*
 * The listener's own argument is evhttp's, so its error callback finds the
 * limits here; a daemon has one listener.
 */
static kbd_connlimit *listener_limits;

/* accept() failed for want of descriptors: pause rather than spin on a readable socket. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    kbd_connlimit *cl = listener_limits;
    struct timeval pause = {1, 0};
    int e = EVUTIL_SOCKET_ERROR();

    (void)arg;
    if (cl == NULL || (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM))
        return;
    kbd_log(KBD_LOG_WARN, "accept.paused", NULL, "accept: %s; not accepting for a second",
            strerror(e));
    evconnlistener_disable(lev);
    evtimer_add(cl->resume_ev, &pause);
}

/*
 * The descriptors the limits need, raising the soft limit up to the hard one.  A
 * max_connections the configuration sets is kept or the start refused; the default is
 * lowered to what the hard limit allows, and says so.
 */
static kbr_err check_fd_limit(kbd_config *cfg, kbr_msg *msg)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)cfg->max_connections + FD_RESERVE;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return kbr_fail(msg, KBR_ERR_IO, "cannot read the open-files limit");
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        if (cfg->max_connections_set || rl.rlim_max < FD_RESERVE + 16)
            return kbr_fail(msg, KBR_ERR_CONFIG,
                            "max_connections = %ld needs %llu open files and the hard limit is "
                            "%llu: lower max_connections or raise the limit",
                            cfg->max_connections, (unsigned long long)need,
                            (unsigned long long)rl.rlim_max);
        cfg->max_connections = (long)(rl.rlim_max - FD_RESERVE);
        if (cfg->max_connections_per_source > cfg->max_connections)
            cfg->max_connections_per_source = cfg->max_connections;
        kbd_log(KBD_LOG_WARN, "connections.limit_lowered", NULL,
                "max_connections lowered to %ld (%ld per source) to fit the "
                "open-files hard limit of %llu; set it, or raise the limit",
                cfg->max_connections, cfg->max_connections_per_source,
                (unsigned long long)rl.rlim_max);
        need = rl.rlim_max;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            return kbr_fail(msg, KBR_ERR_IO, "cannot raise the open-files limit to %llu",
                            (unsigned long long)need);
    }
    return KBR_OK;
}

kbr_err kbd_connlimit_start(kbd *d, kbr_msg *msg)
{
    static const struct timeval every_second = {1, 0};
    kbd_connlimit *cl;

    if (check_fd_limit(&d->cfg, msg) != KBR_OK)
        return KBR_ERR_CONFIG;
    cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return kbr_fail(msg, KBR_ERR_NOMEM, "out of memory");
    d->connlimit = cl;
    cl->d = d;
    cl->max_total = d->cfg.max_connections;
    cl->max_per_source = d->cfg.max_connections_per_source;
    cl->request_timeout = (double)d->cfg.request_timeout;
    cl->admit_ev = event_new(d->base, -1, 0, on_admit, cl);
    cl->resume_ev = evtimer_new(d->base, on_resume, d);
    cl->sweep_ev = event_new(d->base, -1, EV_PERSIST, on_sweep, cl);
    if (cl->admit_ev == NULL || cl->resume_ev == NULL || cl->sweep_ev == NULL)
        return kbr_fail(msg, KBR_ERR_NOMEM, "out of memory");
    evtimer_add(cl->sweep_ev, &every_second);
    evhttp_set_bevcb(d->http, on_connection, cl);
    return KBR_OK;
}

void kbd_connlimit_listening(kbd *d)
{
    if (d->connlimit == NULL || d->bound == NULL)
        return;
    /* Linux sets a listening socket's backlog again on a second listen(). */
    if (listen(evhttp_bound_socket_get_fd(d->bound), LISTEN_BACKLOG) != 0)
        kbd_log(KBD_LOG_WARN, "listen.backlog", NULL,
                "cannot deepen the accept queue to %d: %s; it stays at 128", LISTEN_BACKLOG,
                strerror(errno));
    listener_limits = d->connlimit;
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(d->bound), on_accept_error);
}

/* Sources with the most refusals first. */
static int by_refused(const void *a, const void *b)
{
    const source *sa = *(const source *const *)a, *sb = *(const source *const *)b;

    return (sb->refused > sa->refused) - (sb->refused < sa->refused);
}

static json_t *refused_sources(kbd_connlimit *cl)
{
    source *s, **list;
    size_t n = 0;
    json_t *arr = json_array();

    list = calloc(HASH_COUNT(cl->sources) + 1, sizeof(*list));
    if (list == NULL || arr == NULL) {
        free(list);
        return arr;
    }
    for (s = cl->sources; s != NULL; s = s->hh.next)
        if (s->refused > 0)
            list[n++] = s;
    qsort(list, n, sizeof(*list), by_refused);
    for (size_t i = 0; i < n && i < REPORT_SOURCES; i++)
        json_array_append_new(arr, json_pack("{s:s, s:I}", "source", list[i]->key, "refused",
                                             (json_int_t)list[i]->refused));
    free(list);
    return arr;
}

static void reset_refused(kbd_connlimit *cl)
{
    source *s, *next;

    for (s = cl->sources; s != NULL; s = next) {
        next = s->hh.next;
        s->refused = 0;
        source_maybe_drop(cl, s);
    }
    cl->refused = 0;
    cl->refused_over_total = 0;
}

void kbd_connlimit_flush(kbd *d)
{
    kbd_connlimit *cl = d->connlimit;
    kbr_audit_rec *rec = NULL;
    char since[KBR_TIME_LEN], until[KBR_TIME_LEN];

    if (cl == NULL || cl->refused == 0 ||
        kbr_audit_rec_new("service:keybrokerd", NULL, "connection.refused", NULL, &rec) != KBR_OK)
        return;
    kbr_time_fmt(cl->refused_since, since);
    kbr_time_fmt(time(NULL), until);
    json_object_set_new(rec->detail, "refused", json_integer((json_int_t)cl->refused));
    json_object_set_new(rec->detail, "over_max_connections",
                        json_integer((json_int_t)cl->refused_over_total));
    json_object_set_new(rec->detail, "sources", refused_sources(cl));
    json_object_set_new(rec->detail, "max_connections", json_integer((json_int_t)cl->max_total));
    json_object_set_new(rec->detail, "max_connections_per_source",
                        json_integer((json_int_t)cl->max_per_source));
    json_object_set_new(rec->detail, "since", json_string(since));
    json_object_set_new(rec->detail, "until", json_string(until));
    reset_refused(cl);
    /* the writer frees the record once it is committed */
    kbr_audit_submit(d->audit, rec);
}

void kbd_connlimit_stats(const kbd *d, long *open, long *refused_total, long *timed_out_total)
{
    *open = d->connlimit != NULL ? d->connlimit->open : 0;
    *refused_total = d->connlimit != NULL ? d->connlimit->refused_total : 0;
    *timed_out_total = d->connlimit != NULL ? d->connlimit->timed_out_total : 0;
}

void kbd_connlimit_free(kbd *d)
{
    kbd_connlimit *cl = d->connlimit;
    source *s, *stmp;
    conn *c, *ctmp;

    if (cl == NULL)
        return;
    if (listener_limits == cl)
        listener_limits = NULL;
    for (size_t i = 0; i < cl->queued; i++)
        bufferevent_decref(cl->queue[i]);
    free(cl->queue);
    if (cl->admit_ev != NULL)
        event_free(cl->admit_ev);
    if (cl->resume_ev != NULL)
        event_free(cl->resume_ev);
    if (cl->sweep_ev != NULL)
        event_free(cl->sweep_ev);
    HASH_ITER(hh, cl->conns, c, ctmp)
    {
        HASH_DEL(cl->conns, c);
        free(c);
    }
    HASH_ITER(hh, cl->sources, s, stmp)
    {
        HASH_DEL(cl->sources, s);
        free(s);
    }
    free(cl);
    d->connlimit = NULL;
}
