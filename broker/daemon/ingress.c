/*
 * ingress.c - a filter between each connection and evhttp that reads every
 * request head first and decides whether its body may be read at all.
 *
 * evhttp (libevent 2.1) reads a whole request body into memory before the
 * request callback runs, so a handler could only refuse a body it already
 * held: hundreds of uploads without a token held hundreds of megabytes, and
 * the allocator kept them.  libevent 2.1 has no hook between head and body
 * for a server, but the daemon makes each connection's bufferevent itself
 * (connlimit.c), and this filter goes over it, under evhttp.  For each head
 * it:
 *  - passes the request untouched when it announces no body, or when the
 *    handler would read the body: the same route match, token check and op
 *    check (kbd_http_body_allowed); it then follows the Content-Length or
 *    chunked framing to find the next head;
 *  - otherwise passes a rewritten head (no body, no Expect, Connection:
 *    close) and discards every later byte: evhttp delivers a bodiless
 *    request, the normal path answers it (401, 403, 404, audited as ever),
 *    and the connection closes;
 *  - refuses a head it cannot frame exactly as evhttp would (head.c) by
 *    passing a stand-in request that the handler answers 400, and closes.
 *
 * Writing: evhttp takes "output buffer empty" for "response written", and
 * frees the connection right then when it is to close.  Through a filter
 * the output is empty once it has moved to the bufferevent below, before
 * it reached the socket, and would be lost on close.  So output moves down
 * without the filter reporting progress, and evhttp's write callback runs
 * only once the bufferevent below has drained.  evhttp also queues a
 * response before it enables writing, which the filter does not notice, so
 * an event of ours pushes queued output down ("pump").
 *
 * Closing on a client that is still sending makes the kernel reset the
 * connection, and a reset can destroy the answer before the client reads
 * it.  A refused connection that still owes body bytes is therefore kept
 * open for reading after evhttp let go of it, and what arrives is thrown
 * away, until the client has sent what it announced or closes, or until
 * it goes quiet or takes too long ("lingering close").  At most
 * KBD_LINGER_MAX connections linger at a time (connlimit.c keeps their
 * descriptors in its reserve); past that, they close at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "kbd.h"

/* Raw bytes of the largest head evhttp can accept: every line is at least two bytes long. */
#define HEAD_MAX       (2 * KBD_MAX_HEADERS + 2)
#define CHUNK_LINE_MAX 64
#define LINGER_IDLE    2            /* seconds without a byte */
#define LINGER_TOTAL   10           /* seconds in all */
#define LINGER_READ    (256 * 1024) /* bytes read in one go, so that others get their turn */

typedef enum {
    IN_HEAD,       /* reading a head */
    IN_BODY,       /* passing left body bytes */
    IN_CHUNK_SIZE, /* reading a chunk-size line */
    IN_CHUNK_DATA, /* passing left chunk bytes */
    IN_CHUNK_END,  /* reading the end of line after a chunk */
    IN_TRAILER,    /* passing trailer lines up to a blank one */
    IN_DISCARD     /* throwing everything away: the connection ends after its answer */
} in_state;

typedef struct {
    kbd *d;
    struct bufferevent *bev;   /* the filter, which evhttp reads and writes */
    struct bufferevent *under; /* the socket or TLS bufferevent */
    struct evbuffer_cb_entry *under_cb;
    struct event *pump;
    in_state state;
    uint64_t left;   /* IN_BODY, IN_CHUNK_DATA; IN_DISCARD: announced bytes not yet seen */
    bool left_known; /* IN_DISCARD: left counts what the client will still send */
    size_t scanned;  /* IN_HEAD: where the line still being looked at starts */
    size_t searched; /* IN_HEAD: how far that line was searched for its end, in vain */
    size_t held;     /* bytes the last filter call left in the input below */
    size_t trailer;  /* IN_TRAILER: bytes passed */
    bool owed;       /* output moved below and not yet reported written */
    bool refused;    /* a request was refused: the connection ends with its answer */
} gate;

typedef struct linger_conn linger_conn;
struct linger_conn {
    struct kbd_ingress *in;
    int fd;
    struct event *ev;
    uint64_t left;
    bool left_known;
    double until;
    linger_conn *prev, *next;
};

struct kbd_ingress {
    kbd *d;
    bool stopping;
    long lingering;
    linger_conn *lingerers;
};

/* ---- lingering close ---- */

static void linger_end(linger_conn *l)
{
    struct kbd_ingress *in = l->in;

    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        in->lingerers = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    in->lingering--;
    event_free(l->ev);
    close(l->fd);
    free(l);
}

/* Reads and forgets what the client still sends; ends at its end, or when it is done or late. */
static void linger_read(evutil_socket_t fd, short what, void *arg)
{
    linger_conn *l = arg;
    char buf[16384];
    ssize_t n = 0;

    for (size_t got = 0; !(what & EV_TIMEOUT) && got < LINGER_READ; got += (size_t)n) {
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) {
            n = 0;
            continue;
        }
        if (n <= 0)
            break;
        l->left = (uint64_t)n < l->left ? l->left - (uint64_t)n : 0;
        if (l->left_known && l->left == 0)
            break;
    }
    if ((what & EV_TIMEOUT) || n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
        (l->left_known && l->left == 0) || kbr_monotonic_seconds() > l->until)
        linger_end(l);
}

/*
 * evhttp has shut down writing on fd and is about to close it: a duplicate keeps the socket
 * open for reading.
 */
static void linger_start(struct kbd_ingress *in, int fd, uint64_t left, bool left_known)
{
    static const struct timeval idle = {LINGER_IDLE, 0};
    linger_conn *l = NULL;
    int dup_fd = -1;

    if (in == NULL || in->stopping || in->lingering >= KBD_LINGER_MAX || fd < 0)
        return;
    dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    l = dup_fd >= 0 ? calloc(1, sizeof(*l)) : NULL;
    if (l != NULL)
        l->ev = event_new(in->d->base, dup_fd, EV_READ | EV_PERSIST, linger_read, l);
    if (l == NULL || l->ev == NULL || event_add(l->ev, &idle) != 0) {
        if (l != NULL && l->ev != NULL)
            event_free(l->ev);
        free(l);
        if (dup_fd >= 0)
            close(dup_fd);
        return;
    }
    shutdown(dup_fd, SHUT_WR);
    l->in = in;
    l->fd = dup_fd;
    l->left = left;
    l->left_known = left_known;
    l->until = kbr_monotonic_seconds() + LINGER_TOTAL;
    l->next = in->lingerers;
    if (l->next != NULL)
        l->next->prev = l;
    in->lingerers = l;
    in->lingering++;
}

/* ---- reading ---- */

/* Where the line at offset from ends and how long its end of line is; false if not there yet. */
static bool find_eol(struct evbuffer *src, size_t from, size_t *at, size_t *eol_len)
{
    struct evbuffer_ptr pos, eol;

    if (evbuffer_ptr_set(src, &pos, from, EVBUFFER_PTR_SET) != 0)
        return false;
    eol = evbuffer_search_eol(src, &pos, eol_len, EVBUFFER_EOL_CRLF);
    if (eol.pos < 0)
        return false;
    *at = (size_t)eol.pos;
    return true;
}

/* The length of the head at the front of src, its blank line included; 0 until it is all there. */
static size_t head_length(gate *g, struct evbuffer *src)
{
    /* a line that arrives a byte at a time is not searched from its start each time */
    size_t at = 0, eol_len = 0, from = g->searched > g->scanned + 1 ? g->searched - 1 : g->scanned;

    while (find_eol(src, from, &at, &eol_len)) {
        /* a blank line ends the head; as its first line it is a malformed request line */
        if (at == g->scanned) {
            g->scanned = g->searched = 0;
            return at + eol_len;
        }
        g->scanned = from = at + eol_len;
    }
    g->searched = evbuffer_get_length(src);
    return 0;
}

/* From now on every byte is thrown away; left says what the client announced, if it did. */
static void discard_rest(gate *g, uint64_t left, bool left_known)
{
    g->state = IN_DISCARD;
    g->refused = true;
    g->left = left;
    /* the TLS records of the body are larger than the body */
    g->left_known = left_known && g->d->tls == NULL;
}

/* Passes a stand-in request that the handler answers with the problem (head.c), and closes. */
static void refuse_head(gate *g, struct evbuffer *src, struct evbuffer *dst, size_t n, int problem)
{
    evbuffer_drain(src, n);
    evbuffer_add_printf(
        dst, "GET / HTTP/1.1\r\n" KBD_INGRESS_HEADER ": %d\r\nConnection: close\r\n\r\n", problem);
    discard_rest(g, 0, false);
}

/* Passes the head without its body, announcing that the connection closes after the answer. */
static void refuse_body(gate *g, struct evbuffer *src, struct evbuffer *dst, const char *head,
                        size_t n, const kbd_head *h)
{
    size_t cap = KBD_HEAD_REWRITE_MAX(n);
    char *out = malloc(cap);

    if (out == NULL) {
        refuse_head(g, src, dst, n, KBD_HEAD_TOO_LARGE);
        return;
    }
    evbuffer_add(dst, out, kbd_head_rewrite(head, n, out));
    /* the head carries the token */
    OPENSSL_cleanse(out, cap);
    free(out);
    evbuffer_drain(src, n);
    discard_rest(g, h->length, !h->chunked);
}

static bool is_method(const kbd_head *h, const char *m)
{
    return h->method_len == strlen(m) && memcmp(h->method, m, h->method_len) == 0;
}

/* Asks what the handler asks before it reads a body (server.c). */
static bool body_allowed(gate *g, const kbd_head *h)
{
    char *target = strndup(h->target, h->target_len), x5t[64];
    char *auth = h->authorization != NULL ? strndup(h->authorization, h->authorization_len) : NULL;
    bool cert = auth != NULL && g->d->tls != NULL && kbd_tls_bev_x5t(g->under, x5t);
    bool ok =
        target != NULL && kbd_http_body_allowed(g->d, is_method(h, "GET") ? "GET" : "POST", target,
                                                auth, cert ? x5t : NULL, h->length, h->chunked);

    free(target);
    if (auth != NULL)
        OPENSSL_cleanse(auth, h->authorization_len);
    free(auth);
    return ok;
}

/* A head: passed, passed rewritten, or refused.  False while it has not all arrived. */
static bool take_head(gate *g, struct evbuffer *src, struct evbuffer *dst)
{
    size_t n = head_length(g, src);
    const char *head;
    kbd_head h;
    int problem;

    if (n == 0 && evbuffer_get_length(src) > HEAD_MAX)
        refuse_head(g, src, dst, evbuffer_get_length(src), KBD_HEAD_TOO_LARGE);
    if (n == 0)
        return g->state != IN_HEAD;
    head = (const char *)evbuffer_pullup(src, (ev_ssize_t)n);
    problem = head == NULL   ? KBD_HEAD_TOO_LARGE
              : n > HEAD_MAX ? KBD_HEAD_TOO_LARGE
                             : kbd_head_parse(head, n, &h);
    if (problem != KBD_HEAD_OK) {
        refuse_head(g, src, dst, n, problem);
        return true;
    }
    /* evhttp frames other methods its own way (HEAD never has a body): none is served anyway */
    if (!is_method(&h, "GET") && !is_method(&h, "POST")) {
        refuse_body(g, src, dst, head, n, &h);
        return true;
    }
    if ((h.chunked || h.length > 0) && !body_allowed(g, &h)) {
        refuse_body(g, src, dst, head, n, &h);
        return true;
    }
    evbuffer_remove_buffer(src, dst, n);
    g->state = h.chunked ? IN_CHUNK_SIZE : h.length > 0 ? IN_BODY : IN_HEAD;
    g->left = h.length;
    return true;
}

/*
 * Framing broken inside a request already let through: its head has gone to evhttp, so there
 * is no answering it.  evhttp is told the client went away, and closes.
 */
static bool broken(gate *g, struct evbuffer *src)
{
    evbuffer_drain(src, evbuffer_get_length(src));
    discard_rest(g, 0, false);
    bufferevent_trigger_event(g->bev, BEV_EVENT_EOF | BEV_EVENT_READING, BEV_OPT_DEFER_CALLBACKS);
    return false;
}

static bool pass_bytes(gate *g, struct evbuffer *src, struct evbuffer *dst, ev_ssize_t lim,
                       in_state next)
{
    size_t n = evbuffer_get_length(src);

    if (n > g->left)
        n = (size_t)g->left;
    if (lim >= 0 && n > (size_t)lim)
        n = (size_t)lim;
    if (n == 0)
        return false;
    evbuffer_remove_buffer(src, dst, n);
    g->left -= n;
    if (g->left == 0)
        g->state = next;
    return true;
}

/*
 * A chunk-size line.  Chunk extensions (RFC 9112 7.1.1: ";name=value" after the size), which
 * evhttp refuses, mean nothing to the broker: the line goes up as the size alone.
 */
static bool take_chunk_size(gate *g, struct evbuffer *src, struct evbuffer *dst)
{
    char line[CHUNK_LINE_MAX];
    size_t at = 0, eol_len = 0, digits;
    const char *ext;
    int64_t size;

    if (!find_eol(src, 0, &at, &eol_len))
        return evbuffer_get_length(src) > CHUNK_LINE_MAX ? broken(g, src) : false;
    if (at > CHUNK_LINE_MAX)
        return broken(g, src);
    evbuffer_copyout(src, line, at);
    ext = memchr(line, ';', at);
    digits = ext != NULL ? (size_t)(ext - line) : at;
    while (ext != NULL && digits > 0 && (line[digits - 1] == ' ' || line[digits - 1] == '\t'))
        digits--;
    size = kbd_chunk_size(line, digits);
    if (size < 0)
        return broken(g, src);
    if (ext == NULL) {
        evbuffer_remove_buffer(src, dst, at + eol_len);
    } else {
        evbuffer_drain(src, at + eol_len);
        if (evbuffer_add(dst, line, digits) != 0 || evbuffer_add(dst, "\r\n", 2) != 0)
            return broken(g, src);
    }
    g->left = (uint64_t)size;
    g->trailer = 0;
    g->state = size > 0 ? IN_CHUNK_DATA : IN_TRAILER;
    return true;
}

/* After a chunk's data comes an end of line, and nothing else. */
static bool take_chunk_end(gate *g, struct evbuffer *src, struct evbuffer *dst)
{
    size_t at = 0, eol_len = 0;

    if (!find_eol(src, 0, &at, &eol_len))
        return evbuffer_get_length(src) >= 2 ? broken(g, src) : false;
    if (at != 0)
        return broken(g, src);
    evbuffer_remove_buffer(src, dst, eol_len);
    g->state = IN_CHUNK_SIZE;
    return true;
}

static bool take_trailer_line(gate *g, struct evbuffer *src, struct evbuffer *dst)
{
    size_t at = 0, eol_len = 0;

    if (!find_eol(src, 0, &at, &eol_len))
        return g->trailer + evbuffer_get_length(src) > HEAD_MAX ? broken(g, src) : false;
    g->trailer += at + eol_len;
    if (g->trailer > HEAD_MAX)
        return broken(g, src);
    evbuffer_remove_buffer(src, dst, at + eol_len);
    if (at == 0)
        g->state = IN_HEAD;
    return true;
}

static bool discard(gate *g, struct evbuffer *src)
{
    size_t n = evbuffer_get_length(src);

    evbuffer_drain(src, n);
    g->left = n < g->left ? g->left - n : 0;
    return false;
}

/* One step through what src holds; false when it needs more bytes. */
static bool step(gate *g, struct evbuffer *src, struct evbuffer *dst, ev_ssize_t lim)
{
    switch (g->state) {
    case IN_HEAD:
        return take_head(g, src, dst);
    case IN_BODY:
        return pass_bytes(g, src, dst, lim, IN_HEAD);
    case IN_CHUNK_SIZE:
        return take_chunk_size(g, src, dst);
    case IN_CHUNK_DATA:
        return pass_bytes(g, src, dst, lim, IN_CHUNK_END);
    case IN_CHUNK_END:
        return take_chunk_end(g, src, dst);
    case IN_TRAILER:
        return take_trailer_line(g, src, dst);
    case IN_DISCARD:
    default:
        return discard(g, src);
    }
}

/* libevent's input filter: from the socket or TLS bufferevent (src) to evhttp (dst). */
static enum bufferevent_filter_result gate_in(struct evbuffer *src, struct evbuffer *dst,
                                              ev_ssize_t lim, enum bufferevent_flush_mode mode,
                                              void *arg)
{
    gate *g = arg;
    size_t before = evbuffer_get_length(dst);
    bool arrived = evbuffer_get_length(src) != g->held;

    (void)mode;
    while (evbuffer_get_length(src) > 0 && step(g, src, dst, lim))
        ;
    g->held = evbuffer_get_length(src);
    /*
     * Progress calls evhttp back and restarts its idle timeout.  Bytes that arrived count, as
     * they did without the filter: a client trickling a head is closed by connlimit.c's request
     * deadline, and counted there, not by the idle timeout.  A call that neither took nor gave
     * a byte is no progress, or libevent would call again at once.
     */
    return evbuffer_get_length(dst) > before || arrived ? BEV_OK : BEV_NEED_MORE;
}

/* ---- writing ---- */

/* libevent's output filter: moves evhttp's output below, and never reports progress itself. */
static enum bufferevent_filter_result gate_out(struct evbuffer *src, struct evbuffer *dst,
                                               ev_ssize_t lim, enum bufferevent_flush_mode mode,
                                               void *arg)
{
    gate *g = arg;

    (void)lim;
    (void)mode;
    if (evbuffer_get_length(src) == 0)
        return BEV_NEED_MORE;
    if (evbuffer_add_buffer(dst, src) != 0)
        return BEV_ERROR;
    g->owed = true;
    return BEV_NEED_MORE;
}

/* Moves queued output below, and tells evhttp once everything below has been written. */
static void pump(evutil_socket_t fd, short what, void *arg)
{
    gate *g = arg;
    struct evbuffer *out = bufferevent_get_output(g->bev);

    (void)fd;
    (void)what;
    if (evbuffer_get_length(out) > 0)
        bufferevent_flush(g->bev, EV_WRITE, BEV_NORMAL);
    if (g->owed && evbuffer_get_length(out) == 0 &&
        evbuffer_get_length(bufferevent_get_output(g->under)) == 0) {
        g->owed = false;
        /* evhttp's write callback: it may free the connection, and g with it, later */
        bufferevent_trigger(g->bev, EV_WRITE, 0);
    }
}

/* evhttp queued output, perhaps before it enabled writing: push it down from the loop. */
static void on_out(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    gate *g = arg;

    if (info->n_added > 0 && evbuffer_get_length(buf) > 0)
        event_active(g->pump, EV_TIMEOUT, 1);
}

/* The bufferevent below wrote what it held to the socket. */
static void on_under_out(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    gate *g = arg;

    if (info->n_deleted > 0 && evbuffer_get_length(buf) == 0 && g->owed)
        event_active(g->pump, EV_TIMEOUT, 1);
}

/* The filter is being destroyed, the bufferevent below not yet: its socket is still open. */
static void gate_free(void *arg)
{
    gate *g = arg;

    if (g->under_cb != NULL)
        evbuffer_remove_cb_entry(bufferevent_get_output(g->under), g->under_cb);
    if (g->pump != NULL)
        event_free(g->pump);
    if (g->refused && g->state == IN_DISCARD && (!g->left_known || g->left > 0))
        linger_start(g->d->ingress, (int)bufferevent_getfd(g->under), g->left, g->left_known);
    free(g);
}

struct bufferevent *kbd_ingress_wrap(kbd *d, struct bufferevent *under)
{
    gate *g = calloc(1, sizeof(*g));
    struct bufferevent *bev = NULL;

    if (g == NULL || (g->pump = event_new(d->base, -1, 0, pump, g)) == NULL)
        goto out;
    g->d = d;
    g->under = under;
    g->state = IN_HEAD;
    bev = bufferevent_filter_new(under, gate_in, gate_out, BEV_OPT_CLOSE_ON_FREE, gate_free, g);
    if (bev == NULL)
        goto out;
    g->bev = bev;
    g->under_cb = evbuffer_add_cb(bufferevent_get_output(under), on_under_out, g);
    if (g->under_cb == NULL || evbuffer_add_cb(bufferevent_get_output(bev), on_out, g) == NULL) {
        /* frees under, and g through gate_free */
        bufferevent_free(bev);
        return NULL;
    }
    return bev;
out:
    if (g != NULL && g->pump != NULL)
        event_free(g->pump);
    free(g);
    bufferevent_free(under);
    return NULL;
}

kbr_err kbd_ingress_start(kbd *d, kbr_msg *msg)
{
    d->ingress = calloc(1, sizeof(*d->ingress));
    if (d->ingress == NULL)
        return kbr_fail(msg, KBR_ERR_NOMEM, "out of memory");
    d->ingress->d = d;
    return KBR_OK;
}

void kbd_ingress_stop(kbd *d)
{
    if (d->ingress == NULL)
        return;
    d->ingress->stopping = true;
    while (d->ingress->lingerers != NULL)
        linger_end(d->ingress->lingerers);
}

void kbd_ingress_free(kbd *d)
{
    free(d->ingress);
    d->ingress = NULL;
}
