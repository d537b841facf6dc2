/*
 * worker.c - the worker pool.  Each worker owns one HSM session and one
 * store read connection for its whole life, so neither is ever shared
 * between threads.  A finished job's audit record goes straight from the
 * worker to the audit writer; the event thread sees the request again only
 * when the record is durable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "routes.h"

void kbd_note_hsm(kbd *d, kbr_err err)
{
    bool hsm_fault = err == KBR_ERR_HSM || err == KBR_ERR_HSM_SESSION || err == KBR_ERR_HSM_PIN ||
                     err == KBR_ERR_HSM_TOKEN;

    int was;

    if (hsm_fault)
        d->stats.hsm_failures++;
    was = atomic_exchange(&d->stats.hsm_ok, hsm_fault ? 0 : 1);
    /* log transitions only: a dead HSM under load must not flood the log */
    if (was && hsm_fault)
        kbd_log(KBD_LOG_ERROR, "hsm.unavailable", NULL, "HSM unavailable: %s", kbr_err_str(err));
    else if (!was && !hsm_fault)
        kbd_log(KBD_LOG_INFO, "hsm.available", NULL, "HSM available again");
}

static kbd_req *next_job(kbd *d)
{
    kbd_req *r;

    pthread_mutex_lock(&d->jobs_lock);
    while (d->jobs_head == NULL && !d->stopping_workers)
        pthread_cond_wait(&d->jobs_cond, &d->jobs_lock);
    r = d->jobs_head;
    if (r != NULL) {
        d->jobs_head = r->next;
        if (d->jobs_head == NULL)
            d->jobs_tail = NULL;
        r->next = NULL;
    }
    pthread_mutex_unlock(&d->jobs_lock);
    return r;
}

static void run_job(kbd_worker *w, kbd_req *r)
{
    if (r->work != NULL)
        r->work(r, w);
    if (r->rec == NULL) {
        kbd_complete(w->d, r);
        return;
    }
    kbd_req_audit_and_reply(r);
}

static void *worker_main(void *arg)
{
    kbd_worker *w = arg;
    kbd_req *r;

    while ((r = next_job(w->d)) != NULL)
        run_job(w, r);
    return NULL;
}

void kbd_workers_submit(kbd *d, kbd_req *r)
{
    pthread_mutex_lock(&d->jobs_lock);
    r->next = NULL;
    if (d->jobs_tail != NULL)
        d->jobs_tail->next = r;
    else
        d->jobs_head = r;
    d->jobs_tail = r;
    pthread_cond_signal(&d->jobs_cond);
    pthread_mutex_unlock(&d->jobs_lock);
}

static kbr_err worker_open(kbd *d, kbd_worker *w, int index, kbr_msg *msg)
{
    kbr_err err;

    w->d = d;
    w->index = index;
    err = kbr_hsm_session_open(d->hsm, &w->hsm);
    if (err != KBR_OK)
        return kbr_fail(msg, err, "worker %d: cannot open an HSM session: %s", index,
                        kbr_err_str(err));
    return kbr_store_open_existing(d->cfg.store, &w->store, msg);
}

kbr_err kbd_workers_start(kbd *d, kbr_msg *msg)
{
    kbr_err err;

    d->nworkers = 0; /* threads running; sessions are opened for cfg.workers */
    d->workers = calloc((size_t)d->cfg.workers, sizeof(*d->workers));
    d->threads = calloc((size_t)d->cfg.workers, sizeof(*d->threads));
    if (d->workers == NULL || d->threads == NULL)
        return KBR_ERR_NOMEM;
    pthread_mutex_init(&d->jobs_lock, NULL);
    pthread_cond_init(&d->jobs_cond, NULL);
    for (int i = 0; i < d->cfg.workers; i++) {
        err = worker_open(d, &d->workers[i], i, msg);
        if (err != KBR_OK)
            return err;
    }
    for (int i = 0; i < d->cfg.workers; i++) {
        if (pthread_create(&d->threads[i], NULL, worker_main, &d->workers[i]) != 0)
            return kbr_fail(msg, KBR_ERR_INTERNAL, "cannot start worker threads");
        d->nworkers++;
    }
    return KBR_OK;
}

void kbd_workers_stop(kbd *d)
{
    if (d->workers == NULL)
        return;
    pthread_mutex_lock(&d->jobs_lock);
    d->stopping_workers = true;
    pthread_cond_broadcast(&d->jobs_cond);
    pthread_mutex_unlock(&d->jobs_lock);
    for (int i = 0; i < d->nworkers; i++)
        pthread_join(d->threads[i], NULL);
    for (int i = 0; i < d->cfg.workers; i++) {
        kbd_issuer_cache_free(d->workers[i].issuer_cache);
        kbr_hsm_session_close(d->workers[i].hsm);
        kbr_store_close(d->workers[i].store);
    }
    free(d->workers);
    free(d->threads);
    d->workers = NULL;
    d->threads = NULL;
}
