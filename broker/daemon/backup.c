/*
 * backup.c - GET /v1/backup (op admin, a token limited to nothing): a
 * consistent copy of the whole store, streamed to the caller.
 *
 *   1. a thread of its own (not a worker: a large store takes minutes, and
 *      signing must not wait) opens a store connection and has the store
 *      copy itself in one read transaction (kbr_store_backup: VACUUM INTO
 *      for SQLite), so the copy is the store at one instant while the
 *      writer goes on committing; it hashes the copy (SHA-256) and reads
 *      from the copy the last audit entry it holds;
 *   2. the request's audit record says so (bytes, sha256, the copy's
 *      last_seq and last_hash) and, as for every answer, the copy leaves
 *      only once that record is durable: the copy is in the log before
 *      anyone has it.  The copy holds the log up to last_seq; the backup's
 *      own entry (X-Audit-Seq) comes after it;
 *   3. the event thread streams the file (already unlinked: nothing stays
 *      on disk) with a Content-Length, BACKUP_CHUNK bytes at a time, each
 *      sent once the previous one reached the socket, so a slow reader
 *      holds one chunk of memory; the headers carry X-Backup-SHA256 and
 *      X-Backup-Last-Seq for the client to check what it received.
 *
 * One backup at a time (409 while one runs).  A client that goes away, or
 * reads nothing for request_timeout, ends its stream (connlimit.c); SIGTERM
 * waits for a stream to finish like any request in flight, and a second
 * SIGTERM interrupts a copy being made.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/evp.h>

#include "kbd.h"
#include "routes.h"

#define BACKUP_CHUNK (256 * 1024)

struct kbd_backup {
    kbd *d;
    kbd_req *r;
    pthread_t thread;
    bool joined;
    struct event *copied;            /* the thread made the copy, or could not */
    pthread_mutex_t mu;              /* guards st while the thread uses it */
    kbr_store *st;                   /* the copying connection, for kbr_store_interrupt */
    struct evhttp_connection *evcon; /* the client's, NULL once it closed */
    bool streaming;
    int fd;
    off_t size, sent;
    kbr_store_backup_info info;
    char sha256[65];
    kbr_err err; /* the thread's: the copy, or why there is none (msg) */
    kbr_msg msg;
};

static kbr_err hash_file(int fd, off_t *size, char hex[65])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(BACKUP_CHUNK), md[32];
    kbr_err err = KBR_OK;
    off_t at = 0;
    ssize_t n;

    KBR_ENSURE(ctx != NULL && buf != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1, KBR_ERR_CRYPTO);
    while ((n = pread(fd, buf, BACKUP_CHUNK, at)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        KBR_ENSURE(n > 0, KBR_ERR_IO);
        KBR_ENSURE(EVP_DigestUpdate(ctx, buf, (size_t)n) == 1, KBR_ERR_CRYPTO);
        at += n;
    }
    KBR_ENSURE(EVP_DigestFinal_ex(ctx, md, NULL) == 1, KBR_ERR_CRYPTO);
    kbr_hex_encode_buf(md, sizeof(md), hex);
    *size = at;
out:
    free(buf);
    EVP_MD_CTX_free(ctx);
    return err;
}

/* The thread: the copy and its digest; then the event thread takes the request on. */
static void *backup_main(void *arg)
{
    struct kbd_backup *b = arg;
    kbr_store *st = NULL;
    kbr_err err;

    err = kbr_store_open_existing(b->d->cfg.store, &st, &b->msg);
    if (err == KBR_OK) {
        pthread_mutex_lock(&b->mu);
        b->st = st;
        pthread_mutex_unlock(&b->mu);
        err = kbr_store_backup(st, &b->fd, &b->info, &b->msg);
        pthread_mutex_lock(&b->mu);
        b->st = NULL;
        pthread_mutex_unlock(&b->mu);
    }
    kbr_store_close(st);
    if (err == KBR_OK && hash_file(b->fd, &b->size, b->sha256) != KBR_OK) {
        err = KBR_ERR_IO;
        snprintf(b->msg.text, sizeof(b->msg.text), "the copy could not be read back");
    }
    if (err != KBR_OK)
        kbd_log(KBD_LOG_ERROR, "backup.failed", b->r->request_id, "backup failed: %s", b->msg.text);
    b->err = err;
    event_active(b->copied, EV_READ, 0);
    return NULL;
}

static void backup_free(struct kbd_backup *b)
{
    if (b == NULL)
        return;
    if (!b->joined)
        pthread_join(b->thread, NULL);
    if (b->fd >= 0)
        close(b->fd);
    if (b->copied != NULL)
        event_free(b->copied);
    pthread_mutex_destroy(&b->mu);
    if (b->d->backup == b)
        b->d->backup = NULL;
    free(b);
}

/* The request's typed request goes with the request; the thread is joined by then. */
void kbd_backup_free(void *p)
{
    backup_free(p);
}

static void end_stream(struct kbd_backup *b, bool complete)
{
    kbd_req *r = b->r;

    if (complete)
        kbd_log(KBD_LOG_INFO, "backup.sent", r->request_id,
                "backup sent: %lld bytes, audit log up to entry %lld, sha256 %s",
                (long long)b->size, (long long)b->info.last_seq, b->sha256);
    else
        kbd_log(KBD_LOG_WARN, "backup.abandoned", r->request_id,
                "backup not delivered: the client left after %lld of %lld bytes",
                (long long)b->sent, (long long)b->size);
    b->streaming = false;
    kbd_req_done(r);
}

static void on_chunk_sent(struct evhttp_connection *evcon, void *arg);

static void send_chunk(struct kbd_backup *b)
{
    struct evbuffer *buf;
    size_t want;
    ssize_t n;
    char *space;
    struct evbuffer_iovec v;

    if (b->sent >= b->size) {
        evhttp_send_reply_end(b->r->http);
        end_stream(b, true);
        return;
    }
    buf = evbuffer_new();
    want = (size_t)(b->size - b->sent < BACKUP_CHUNK ? b->size - b->sent : BACKUP_CHUNK);
    if (buf == NULL || evbuffer_reserve_space(buf, (ev_ssize_t)want, &v, 1) < 1) {
        if (buf != NULL)
            evbuffer_free(buf);
        /* out of memory: the client sees a short body against its Content-Length */
        evhttp_connection_free(b->evcon);
        return;
    }
    space = v.iov_base;
    do
        n = pread(b->fd, space, want, b->sent);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        evbuffer_free(buf);
        kbd_log(KBD_LOG_ERROR, "backup.failed", b->r->request_id,
                "backup: the copy could not be read: %s", n < 0 ? strerror(errno) : "short");
        evhttp_connection_free(b->evcon);
        return;
    }
    v.iov_len = (size_t)n;
    evbuffer_commit_space(buf, &v, 1);
    b->sent += n;
    evhttp_send_reply_chunk_with_cb(b->r->http, buf, on_chunk_sent, b);
    evbuffer_free(buf);
}

static void on_chunk_sent(struct evhttp_connection *evcon, void *arg)
{
    struct kbd_backup *b = arg;

    /* the client reads: its deadline for the next chunk starts again */
    kbd_connlimit_request_ends(b->d, evcon);
    send_chunk(b);
}

/* Event thread, once the record is durable: the headers, then the file. */
void kbd_backup_respond(kbd_req *r, int64_t seq)
{
    struct kbd_backup *b = r->ctx;
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->http);
    char num[32];

    if (b->evcon == NULL) {
        /* the client left while the copy was made: the request is no connection's now */
        evhttp_send_reply_end(r->http);
        b->sent = 0;
        end_stream(b, false);
        return;
    }
    evhttp_add_header(h, "Content-Type", "application/vnd.sqlite3");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "Content-Disposition", "attachment; filename=\"keybroker-backup.db\"");
    snprintf(num, sizeof(num), "%lld", (long long)b->size);
    evhttp_add_header(h, "Content-Length", num);
    snprintf(num, sizeof(num), "%lld", (long long)seq);
    evhttp_add_header(h, "X-Audit-Seq", num);
    snprintf(num, sizeof(num), "%lld", (long long)b->info.last_seq);
    evhttp_add_header(h, "X-Backup-Last-Seq", num);
    evhttp_add_header(h, "X-Backup-SHA256", b->sha256);
    kbd_req_response_begins(r, 200);
    b->streaming = true;
    evhttp_send_reply_start(r->http, 200, "OK");
    send_chunk(b);
}

void kbd_backup_conn_closed(kbd *d, struct evhttp_connection *evcon)
{
    struct kbd_backup *b = d->backup;

    if (b == NULL || b->evcon != evcon)
        return;
    b->evcon = NULL;
    if (!b->streaming)
        return; /* kbd_backup_respond() sees it */
    /*
     * A request still on the connection goes with it (evhttp frees it right after this
     * callback); one evhttp took off the connection when it failed is ours to free.
     */
    if (evhttp_request_get_connection(b->r->http) != evcon)
        evhttp_send_reply_end(b->r->http);
    end_stream(b, false);
}

/* ---- the route's stages ---- */

/* The copy's state, made empty: the request carries nothing to parse. */
kbr_err kbd_backup_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    struct kbd_backup *b = calloc(1, sizeof(*b));

    (void)msg;
    *out = b;
    if (b == NULL)
        return KBR_ERR_NOMEM;
    b->d = r->d;
    b->fd = -1;
    b->joined = true;
    pthread_mutex_init(&b->mu, NULL);
    return KBR_OK;
}

/* An admin of everything, on a store this broker copies, and no other backup under way. */
kbr_err kbd_backup_authorize(kbd_req *r, void *req)
{
    const kbr_scope *s = &r->tok->scope;

    (void)req;
    if (!kbd_scope_unlimited(s))
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "a backup holds every product's records: it needs " KBD_UNLIMITED_ADMIN);
    if (kbr_store_shared(r->d->cfg.store))
        return kbr_fail(&r->msg, KBR_ERR_CONFLICT,
                        "this store is a PostgreSQL database: copy it with pg_dump, which reads "
                        "one snapshot while brokers serve");
    if (r->d->backup != NULL)
        return kbr_fail(&r->msg, KBR_ERR_CONFLICT, "a backup is being made; try again after it");
    return KBR_OK;
}

/* Event thread: the copy is made, or will not be; the request's stages go on. */
static void copied(struct kbd_backup *b)
{
    char why[KBR_MSG_LEN + 64];

    if (b->err == KBR_OK) {
        kbd_req_resume(b->r, KBR_OK, NULL);
        return;
    }
    snprintf(why, sizeof(why), "the store could not be copied: %s", b->msg.text);
    kbd_req_resume(b->r, KBR_ERR_STORE, why);
}

static void on_copied(evutil_socket_t fd, short what, void *arg)
{
    struct kbd_backup *b = arg;

    (void)fd;
    (void)what;
    pthread_join(b->thread, NULL);
    b->joined = true;
    copied(b);
}

/* The copy is made on a thread of its own (not a worker: see above), and the request waits
 * for it. */
kbr_err kbd_backup_wait(kbd_req *r, void *req, bool *waiting)
{
    struct kbd_backup *b = req;

    *waiting = false;
    b->r = r;
    b->evcon = evhttp_request_get_connection(r->http);
    b->copied = event_new(r->d->base, -1, 0, on_copied, b);
    if (b->copied == NULL)
        return kbr_fail(&r->msg, KBR_ERR_NOMEM, "cannot start the backup");
    if (pthread_create(&b->thread, NULL, backup_main, b) != 0)
        return kbr_fail(&r->msg, KBR_ERR_NOMEM, "cannot start the backup");
    b->joined = false;
    r->d->backup = b;
    *waiting = true;
    return KBR_OK;
}

/* Event thread: the record says what the copy is (bytes, sha256, the log it holds). */
void kbd_backup_work(kbd_req *r, kbd_worker *w)
{
    struct kbd_backup *b = r->ctx;

    (void)w;
    json_object_set_new(r->rec->detail, "bytes", json_integer((json_int_t)b->size));
    json_object_set_new(r->rec->detail, "sha256", json_string(b->sha256));
    json_object_set_new(r->rec->detail, "last_seq", json_integer(b->info.last_seq));
    json_object_set_new(r->rec->detail, "last_hash", json_string(b->info.last_hash));
    json_object_set_new(r->rec->detail, "schema_version", json_integer(b->info.schema_version));
}

void kbd_backup_stop(kbd *d)
{
    struct kbd_backup *b = d->backup;

    if (b == NULL || b->joined)
        return;
    pthread_mutex_lock(&b->mu);
    kbr_store_interrupt(b->st);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    b->joined = true;
    /* the event loop has ended: the request goes on here, so its record reaches the writer */
    event_del(b->copied);
    copied(b);
}
