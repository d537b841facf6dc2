/*
 * metrics.c - GET /metrics in the Prometheus text format (version 0.0.4):
 * every family with # HELP and # TYPE, requests by route and status,
 * latency histograms of requests (by route), HSM calls (by call) and audit
 * commits, the audit writer's group sizes, the last signed checkpoint, and
 * whether the HSM and the store are up.  The same text is served on the API
 * listener and on ops_listen.
 *
 * Route labels are the route table's patterns ("/v1/keys/{}"), never the
 * path asked for, so a client cannot grow the number of series; a request
 * that matched no route counts under route="none".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "kbd.h"
#include "routes.h"
#include "kbr_version.h"

/* The statuses the broker answers with; anything else counts as "other". */
static const int statuses[] = {200, 201, 400, 401, 403, 404, 409, 413, 429, 500, 503};
#define NSTATUS (sizeof(statuses) / sizeof(statuses[0]))

struct kbd_metrics {
    size_t nroutes;    /* the table's routes, then "none" */
    long *responses;   /* [route][status slot], NSTATUS + 1 slots ("other" last) */
    kbr_hist *latency; /* per route */
};

kbr_err kbd_metrics_new(kbd_metrics **out)
{
    kbd_metrics *m = calloc(1, sizeof(*m));

    *out = NULL;
    if (m == NULL)
        return KBR_ERR_NOMEM;
    m->nroutes = kbd_route_count() + 1;
    m->responses = calloc(m->nroutes * (NSTATUS + 1), sizeof(*m->responses));
    m->latency = calloc(m->nroutes, sizeof(*m->latency));
    if (m->responses == NULL || m->latency == NULL) {
        kbd_metrics_free(m);
        return KBR_ERR_NOMEM;
    }
    for (size_t i = 0; i < m->nroutes; i++)
        kbr_hist_init(&m->latency[i], kbr_hist_seconds, kbr_hist_seconds_n);
    *out = m;
    return KBR_OK;
}

void kbd_metrics_free(kbd_metrics *m)
{
    if (m == NULL)
        return;
    free(m->responses);
    free(m->latency);
    free(m);
}

void kbd_metrics_response(kbd *d, const kbd_route *route, int status, double seconds)
{
    kbd_metrics *m = d->metrics;
    size_t i = kbd_route_index(route), slot = NSTATUS;

    if (m == NULL)
        return;
    for (size_t k = 0; k < NSTATUS; k++)
        if (statuses[k] == status)
            slot = k;
    m->responses[i * (NSTATUS + 1) + slot]++;
    kbr_hist_observe(&m->latency[i], seconds);
}

static void family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(struct evbuffer *b, const char *name, const char *type, const char *help,
                   double value)
{
    family(b, name, type, help);
    evbuffer_add_printf(b, "%s %.17g\n", name, value);
}

static uint64_t hist_count(const kbr_hist *h)
{
    uint64_t n = 0;

    for (size_t i = 0; i <= h->nbounds; i++)
        n += atomic_load(&h->counts[i]);
    return n;
}

/* One histogram's series; labels is "" or `name="value",...` without braces. */
static void hist(struct evbuffer *b, const char *name, const char *labels, const kbr_hist *h)
{
    const char *sep = labels[0] != '\0' ? "," : "";
    uint64_t cum = 0;

    for (size_t i = 0; i < h->nbounds; i++) {
        cum += atomic_load(&h->counts[i]);
        evbuffer_add_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, h->bounds[i],
                            (unsigned long long)cum);
    }
    cum += atomic_load(&h->counts[h->nbounds]);
    evbuffer_add_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                        (unsigned long long)cum);
    evbuffer_add_printf(b, "%s_sum%s%s%s %.6f\n", name, labels[0] != '\0' ? "{" : "", labels,
                        labels[0] != '\0' ? "}" : "",
                        (double)atomic_load(&h->sum_millionths) / 1e6);
    evbuffer_add_printf(b, "%s_count%s%s%s %llu\n", name, labels[0] != '\0' ? "{" : "", labels,
                        labels[0] != '\0' ? "}" : "", (unsigned long long)cum);
}

static void route_labels(size_t i, char *out, size_t n)
{
    const kbd_route *route = kbd_route_at(i);

    /* patterns are the table's own text: nothing in them needs escaping */
    if (route != NULL)
        snprintf(out, n, "method=\"%s\",route=\"%s\"", route->method, route->pattern);
    else
        snprintf(out, n, "method=\"\",route=\"none\"");
}

static void requests(struct evbuffer *b, kbd_metrics *m)
{
    char labels[192];

    family(b, "keybroker_http_requests_total", "counter",
           "Responses sent, by route (the route table's pattern) and HTTP status.");
    for (size_t i = 0; m != NULL && i < m->nroutes; i++) {
        route_labels(i, labels, sizeof(labels));
        for (size_t k = 0; k <= NSTATUS; k++) {
            long n = m->responses[i * (NSTATUS + 1) + k];
            if (n == 0)
                continue;
            if (k < NSTATUS)
                evbuffer_add_printf(b, "keybroker_http_requests_total{%s,status=\"%d\"} %ld\n",
                                    labels, statuses[k], n);
            else
                evbuffer_add_printf(b, "keybroker_http_requests_total{%s,status=\"other\"} %ld\n",
                                    labels, n);
        }
    }
    family(b, "keybroker_http_request_duration_seconds", "histogram",
           "Seconds from a request's arrival to its response, by route; for authenticated "
           "routes this includes the audit commit.");
    for (size_t i = 0; m != NULL && i < m->nroutes; i++) {
        if (hist_count(&m->latency[i]) == 0)
            continue;
        route_labels(i, labels, sizeof(labels));
        hist(b, "keybroker_http_request_duration_seconds", labels, &m->latency[i]);
    }
}

static void hsm_calls(struct evbuffer *b)
{
    char labels[64];

    family(b, "keybroker_hsm_call_duration_seconds", "histogram",
           "Seconds each call to the HSM process took (PKCS#11 included), by call, failures "
           "included.");
    for (int c = 0; c < KBR_HSM_CALL__COUNT; c++) {
        const kbr_hist *h = kbr_hsm_call_latency((kbr_hsm_call)c);
        if (h == NULL || hist_count(h) == 0)
            continue;
        snprintf(labels, sizeof(labels), "call=\"%s\"", kbr_hsm_call_name((kbr_hsm_call)c));
        hist(b, "keybroker_hsm_call_duration_seconds", labels, h);
    }
}

static void audit(struct evbuffer *b, kbd *d)
{
    kbr_audit_stats st = {0};
    time_t now = time(NULL);
    long long cp_time = atomic_load(&d->stats.checkpoint_time);

    if (d->audit != NULL)
        kbr_audit_get_stats(d->audit, &st);
    sample(b, "keybroker_audit_last_seq", "gauge",
           "Sequence number of the last durable audit entry.",
           d->audit != NULL ? (double)kbr_audit_last_seq(d->audit) : 0);
    sample(b, "keybroker_audit_records_total", "counter",
           "Audit records made durable since the start.", (double)st.records);
    sample(b, "keybroker_audit_commits_total", "counter",
           "Audit writer transactions committed since the start.", (double)st.commits);
    sample(b, "keybroker_audit_failed_commits_total", "counter",
           "Audit writer groups that could not be made durable (their requests got 503).",
           (double)st.failed_commits);
    family(b, "keybroker_audit_commit_duration_seconds", "histogram",
           "Seconds each audit writer transaction took, commit and fsync included.");
    if (d->audit != NULL)
        hist(b, "keybroker_audit_commit_duration_seconds", "", kbr_audit_commit_latency(d->audit));
    family(b, "keybroker_audit_group_size", "histogram",
           "Audit records committed together in one transaction.");
    if (d->audit != NULL)
        hist(b, "keybroker_audit_group_size", "", kbr_audit_group_sizes(d->audit));
    family(b, "keybroker_audit_wal_restart_duration_seconds", "histogram",
           "Seconds the audit writer spent copying the WAL's last frames so that the WAL starts "
           "over (SQLite stores); no audit commit happens meanwhile.");
    if (d->audit != NULL)
        hist(b, "keybroker_audit_wal_restart_duration_seconds", "",
             kbr_audit_wal_restart_latency(d->audit));
    sample(b, "keybroker_audit_checkpoint_timestamp_seconds", "gauge",
           "Unix time of the latest signed checkpoint (0 before the first).", (double)cp_time);
    sample(b, "keybroker_audit_checkpoint_age_seconds", "gauge",
           "Seconds since the latest signed checkpoint, or since the start before the first.",
           (double)(now - (cp_time > 0 ? (time_t)cp_time : d->started_at)));
    sample(b, "keybroker_audit_checkpoint_size", "gauge",
           "Entries the latest signed checkpoint covers.",
           (double)atomic_load(&d->stats.checkpoint_size));
    sample(b, "keybroker_audit_checkpoint_seq", "gauge",
           "Sequence number of the latest checkpoint's own audit entry; entries after it are not "
           "yet covered by a signed checkpoint.",
           (double)atomic_load(&d->stats.checkpoint_seq));
    sample(b, "keybroker_audit_checkpoint_interval_seconds", "gauge",
           "The checkpoint_every seconds setting.", (double)d->cfg.checkpoint_seconds);
    sample(b, "keybroker_audit_checkpoint_failures_total", "counter",
           "Checkpoints that could not be signed or recorded.",
           (double)atomic_load(&d->stats.checkpoint_failures));
}

void kbd_metrics_text(kbd *d, struct evbuffer *b)
{
    kbd_stats *s = &d->stats;
    long conns_open, conns_refused, conns_timed_out;

    kbd_connlimit_stats(d, &conns_open, &conns_refused, &conns_timed_out);
    family(b, "keybroker_build_info", "gauge", "The running keybrokerd's version.");
    evbuffer_add_printf(b, "keybroker_build_info{version=\"%s\"} 1\n", KBR_VERSION);
    sample(b, "keybroker_start_time_seconds", "gauge", "Unix time keybrokerd started.",
           (double)d->started_at);
    sample(b, "keybroker_hsm_up", "gauge",
           "1 when the last HSM call or probe (every 5 s) succeeded, 0 when the HSM is down.",
           (double)atomic_load(&s->hsm_ok));
    sample(b, "keybroker_audit_up", "gauge",
           "1 when the store took the last audit commit, 0 from a failed commit to the next good "
           "one (requests then get 503 audit_unavailable).",
           d->audit != NULL && kbr_audit_healthy(d->audit) ? 1 : 0);
    sample(b, "keybroker_requests_total", "counter", "Requests received.",
           (double)atomic_load(&s->requests));
    sample(b, "keybroker_denied_total", "counter", "Requests answered with a 4xx status.",
           (double)atomic_load(&s->denied));
    sample(b, "keybroker_signatures_total", "counter", "Signatures released.",
           (double)atomic_load(&s->signatures));
    sample(b, "keybroker_audit_failures_total", "counter",
           "Requests answered 503 audit_unavailable because their record was not durable.",
           (double)atomic_load(&s->audit_failures));
    sample(b, "keybroker_hsm_failures_total", "counter",
           "HSM calls that failed for the HSM's part.", (double)atomic_load(&s->hsm_failures));
    sample(b, "keybroker_inflight_requests", "gauge", "Requests being handled.",
           (double)d->inflight);
    sample(b, "keybroker_connections_open", "gauge", "Open connections on the API listener.",
           (double)conns_open);
    sample(b, "keybroker_connections_refused_total", "counter",
           "Connections closed at accept for max_connections or max_connections_per_source.",
           (double)conns_refused);
    sample(b, "keybroker_connections_timed_out_total", "counter",
           "Connections closed for a request not complete within request_timeout.",
           (double)conns_timed_out);
    requests(b, d->metrics);
    hsm_calls(b);
    audit(b, d);
    if (d->tls != NULL)
        sample(b, "keybroker_tls_certificate_expiry_timestamp_seconds", "gauge",
               "Unix time the served TLS certificate expires (notAfter).",
               (double)d->tls_not_after);
    sample(b, "keybroker_config_last_reload_successful", "gauge",
           "0 when the last SIGHUP reload failed in part (see the log), 1 otherwise.",
           d->reload_at == 0 || d->reload_ok ? 1 : 0);
    sample(b, "keybroker_config_last_reload_timestamp_seconds", "gauge",
           "Unix time of the last SIGHUP reload (0: none).", (double)d->reload_at);
}

/* The route's finish: the text of every family, as Prometheus reads it. */
void kbd_metrics_finish(kbd_req *r)
{
    struct evbuffer *buf = evbuffer_new();
    size_t n;

    if (buf != NULL)
        kbd_metrics_text(r->d, buf);
    n = buf != NULL ? evbuffer_get_length(buf) : 0;
    r->resp_text = buf != NULL ? malloc(n + 1) : NULL;
    if (r->resp_text == NULL) {
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
    } else {
        evbuffer_remove(buf, r->resp_text, n);
        r->resp_text[n] = '\0';
        r->resp_type = "text/plain; version=0.0.4; charset=utf-8";
    }
    if (buf != NULL)
        evbuffer_free(buf);
}

int kbd_health_body(kbd *d, json_t **body)
{
    bool hsm = atomic_load(&d->stats.hsm_ok) != 0;
    bool audit_ok = d->audit != NULL && kbr_audit_healthy(d->audit);

    *body = json_pack("{s:s,s:s,s:s}", "status", hsm && audit_ok ? "ok" : "down", "hsm",
                      hsm ? "ok" : "down", "audit", audit_ok ? "ok" : "down");
    return hsm && audit_ok ? 200 : 503;
}

void kbd_health_finish(kbd_req *r)
{
    r->status = kbd_health_body(r->d, &r->resp);
}
