/*
 * cra.c - what the Cyber Resilience Act asks of the ledger, composed from the back end's
 * rows: a product's support period (Art. 13(8)), and an incident (Art. 14) with its
 * deadlines, its exposure now (View C's own counters) and its remediation day by day.
 *
 * The clocks (docs/cra.md): the early warning is due 24 hours after the manufacturer became
 * aware of the actively exploited vulnerability, the notification 72 hours after, and the
 * final report 14 days after a corrective measure is available.  A stage is submitted from
 * its first report on; unsubmitted past its due time it is overdue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "backend.h"
#include "kbr_cra.h"

#define HOUR 3600L
#define DAY  (24 * HOUR)

static const char *str_of(const json_t *obj, const char *field)
{
    return json_string_value(json_object_get(obj, field));
}

/* ---- days ---- */

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && leap(y) ? 29 : days[m - 1];
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool date_parts(const char *s, int *y, int *m, int *d)
{
    if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4) ||
        !digits(s + 5, 2) || !digits(s + 8, 2))
        return false;
    *y = atoi(s);
    *m = atoi(s + 5);
    *d = atoi(s + 8);
    return *y >= 1970 && *m >= 1 && *m <= 12 && *d >= 1 && *d <= month_days(*y, *m);
}

bool kbr_store_date_valid(const char *s)
{
    int y, m, d;

    return date_parts(s, &y, &m, &d);
}

/* Days from 1970-01-01 (Howard Hinnant's days_from_civil). */
static long days_from_civil(int y, int m, int d)
{
    long era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

kbr_err kbr_store_date_time(const char *s, time_t *out)
{
    int y, m, d;

    *out = 0;
    if (!date_parts(s, &y, &m, &d))
        return KBR_ERR_BAD_REQUEST;
    *out = (time_t)days_from_civil(y, m, d) * DAY;
    return KBR_OK;
}

/* The day before the k-th anniversary of y-m-d (29 February's is 1 March in a common year):
 * the last day of k years from y-m-d on. */
static kbr_err years_end(int y, int m, int d, int k, time_t *out)
{
    char day[48];

    if (m == 2 && d == 29 && !leap(y + k))
        snprintf(day, sizeof(day), "%04d-03-01", y + k);
    else
        snprintf(day, sizeof(day), "%04d-%02d-%02d", y + k, m, d);
    if (kbr_store_date_time(day, out) != KBR_OK)
        return KBR_ERR_STORE;
    *out -= DAY;
    return KBR_OK;
}

/*
 * The support period from placed (its first day) to until (its last day): its length in
 * days, the whole years it covers, and whether it is shorter than five years (Art. 13(8)).
 */
kbr_err kbr_store_support_period(const char *placed, const char *until, json_t **out)
{
    kbr_err err = KBR_OK;
    int py, pm, pd, uy, um, ud, years = 0;
    time_t from, to, end;

    *out = NULL;
    KBR_ENSURE(date_parts(placed, &py, &pm, &pd) && date_parts(until, &uy, &um, &ud),
               KBR_ERR_STORE);
    KBR_GUARD(kbr_store_date_time(placed, &from));
    KBR_GUARD(kbr_store_date_time(until, &to));
    for (;;) {
        KBR_GUARD(years_end(py, pm, pd, years + 1, &end));
        if (end > to || py + years + 1 > 9999)
            break;
        years++;
    }
    *out = json_pack("{s:I,s:i,s:b}", "days", (json_int_t)((to - from) / DAY + 1), "years", years,
                     "under_five_years", years < 5);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    return err;
}

kbr_err kbr_store_product_get(kbr_store *st, const char *product, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *row = NULL, *period = NULL;

    *out = NULL;
    KBR_GUARD(st->ops->product_get(st, product, &row));
    KBR_GUARD(kbr_store_support_period(json_string_value(json_object_get(row, "placed_on_market")),
                                       json_string_value(json_object_get(row, "support_until")),
                                       &period));
    KBR_ENSURE(json_object_set_new(row, "support_period", period) == 0, KBR_ERR_NOMEM);
    period = NULL;
    *out = row;
    row = NULL;
out:
    json_decref(period);
    json_decref(row);
    return err;
}

/* ---- continuity: what a product depends on that lapses within its support period ---- */

/*
 * When each algorithm keybroker uses stops being acceptable for new signatures: NIST IR 8547
 * (initial public draft, November 2024, "Transition to Post-Quantum Cryptography Standards"),
 * table 2 and 3, disallows the quantum-vulnerable signature schemes of 128 bits of security and
 * more (ECDSA P-256 and P-384, EdDSA, RSA of 3072 bits and more) after 2035.  A support period
 * reaching past that day needs a post-quantum key before it ends.
 */
static const struct {
    const char *algorithm, *usable_until;
} algorithm_lapses[] = {
    {"ecdsa-p256", "2035-12-31"}, {"ecdsa-p384", "2035-12-31"}, {"ed25519", "2035-12-31"},
    {"rsa-3072", "2035-12-31"},   {"rsa-4096", "2035-12-31"},
};

#define ALGORITHM_SOURCE                                                                           \
    "NIST IR 8547 (initial public draft, 2024): quantum-vulnerable digital signatures disallowed " \
    "after 2035"

static const char *usable_until(const char *algorithm)
{
    for (size_t i = 0;
         algorithm != NULL && i < sizeof(algorithm_lapses) / sizeof(*algorithm_lapses); i++)
        if (strcmp(algorithm_lapses[i].algorithm, algorithm) == 0)
            return algorithm_lapses[i].usable_until;
    return NULL;
}

static kbr_err add_item(json_t *items, json_t *item)
{
    if (item == NULL)
        return KBR_ERR_NOMEM;
    return json_array_append_new(items, item) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

/* The certificates of a chain (PEM) that expire by end, each {key, subject, not_after}. */
static kbr_err chain_lapses(const char *key, const char *chain, const char *end, json_t *items)
{
    kbr_err err = KBR_OK;
    BIO *in = BIO_new_mem_buf(chain, -1), *name = NULL;
    X509 *x = NULL;
    char not_after[KBR_TIME_LEN], *subject = NULL;
    struct tm tm;

    KBR_ENSURE(in != NULL, KBR_ERR_NOMEM);
    while ((x = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL) {
        KBR_ENSURE(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1, KBR_ERR_STORE);
        kbr_time_fmt(timegm(&tm), not_after);
        if (strcmp(not_after, end) <= 0) {
            long len;
            name = BIO_new(BIO_s_mem());
            KBR_ENSURE(name != NULL, KBR_ERR_NOMEM);
            X509_NAME_print_ex(name, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
            len = BIO_get_mem_data(name, &subject);
            KBR_GUARD(add_item(items, json_pack("{s:s,s:s,s:s%,s:s}", "kind", "issuer-certificate",
                                                "key", key, "subject", subject, (size_t)len,
                                                "not_after", not_after)));
            BIO_free(name);
            name = NULL;
        }
        X509_free(x);
        x = NULL;
    }
out:
    ERR_clear_error();
    BIO_free(name);
    X509_free(x);
    BIO_free(in);
    return err;
}

static kbr_err key_lapses(const json_t *key, const char *until, const char *end, json_t *items)
{
    kbr_err err = KBR_OK;
    const json_t *cert = json_object_get(key, "certificate");
    const char *name = str_of(key, "name"), *alg = str_of(key, "algorithm");
    const char *cert_end = str_of(cert, "not_after"), *usable = usable_until(alg);

    if (cert_end != NULL && strcmp(cert_end, end) <= 0)
        KBR_GUARD(add_item(items, json_pack("{s:s,s:s,s:O,s:s,s:O}", "kind", "key-certificate",
                                            "key", name, "purpose", json_object_get(key, "purpose"),
                                            "not_after", cert_end, "fingerprint",
                                            json_object_get(cert, "fingerprint"))));
    if (str_of(cert, "chain_pem") != NULL)
        KBR_GUARD(chain_lapses(name, str_of(cert, "chain_pem"), end, items));
    if (usable != NULL && strcmp(usable, until) < 0)
        KBR_GUARD(add_item(items, json_pack("{s:s,s:s,s:s,s:s,s:s}", "kind", "algorithm", "key",
                                            name, "algorithm", alg, "usable_until", usable,
                                            "source", ALGORITHM_SOURCE)));
out:
    return err;
}

/* The date an item lapses on, to sort by. */
static const char *lapse_of(const json_t *item)
{
    const char *d = str_of(item, "not_after");

    return d != NULL ? d : str_of(item, "usable_until");
}

static int by_lapse(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
    const char *dx = lapse_of(x), *dy = lapse_of(y);
    int c = strcmp(dx != NULL ? dx : "", dy != NULL ? dy : "");

    return c != 0 ? c : strcmp(str_of(x, "kind"), str_of(y, "kind"));
}

kbr_err kbr_store_continuity(kbr_store *st, const char *product, const json_t *keys,
                             const char *support_until, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *items = json_array(), *first = NULL, *list;
    const json_t *key;
    const char *purpose;
    char end[KBR_TIME_LEN];
    int64_t devices = 0;
    size_t i, n;
    json_t **sorted = NULL;

    *out = NULL;
    KBR_ENSURE(items != NULL, KBR_ERR_NOMEM);
    /* the last second of the support period */
    snprintf(end, sizeof(end), "%.10sT23:59:59Z", support_until);
    json_object_foreach((json_t *)keys, purpose, list)
    {
        json_array_foreach(list, i, key)
        {
            KBR_GUARD(key_lapses(key, support_until, end, items));
        }
    }
    KBR_GUARD(st->ops->expiring_devices(st, product, end, 1, &devices, &first));
    if (devices > 0)
        KBR_GUARD(
            add_item(items, json_pack("{s:s,s:I,s:O}", "kind", "device-certificates", "count",
                                      (json_int_t)devices, "not_after",
                                      json_object_get(json_array_get(first, 0), "not_after"))));
    n = json_array_size(items);
    sorted = calloc(n > 0 ? n : 1, sizeof(*sorted));
    KBR_ENSURE(sorted != NULL, KBR_ERR_NOMEM);
    for (i = 0; i < n; i++)
        sorted[i] = json_array_get(items, i);
    qsort(sorted, n, sizeof(*sorted), by_lapse);
    *out = json_array();
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
    for (i = 0; i < n; i++)
        KBR_ENSURE(json_array_append(*out, sorted[i]) == 0, KBR_ERR_NOMEM);
out:
    free(sorted);
    json_decref(first);
    json_decref(items);
    return err;
}

/* ---- incidents: deadlines ---- */

/* The first report of stage, or NULL. Borrowed. */
static const json_t *first_report(const json_t *reports, const char *stage)
{
    const json_t *r;
    size_t i;

    json_array_foreach(reports, i, r)
    {
        if (strcmp(str_of(r, "stage"), stage) == 0)
            return r;
    }
    return NULL;
}

/* {due, status, submitted_at, on_time}: due is from + after seconds, or null without from. */
static kbr_err deadline(const char *from, long after, const json_t *submitted, time_t now,
                        json_t **out)
{
    kbr_err err = KBR_OK;
    const char *at = str_of(submitted, "at");
    char due[KBR_TIME_LEN] = "";
    time_t start = 0, due_t = 0, at_t = 0;
    const char *status = "open";

    *out = NULL;
    if (from != NULL) {
        KBR_ENSURE(kbr_time_parse(from, &start) == KBR_OK, KBR_ERR_STORE);
        due_t = start + after;
        kbr_time_fmt(due_t, due);
    }
    if (at != NULL) {
        KBR_ENSURE(kbr_time_parse(at, &at_t) == KBR_OK, KBR_ERR_STORE);
        status = "submitted";
    } else if (from != NULL && now > due_t) {
        status = "overdue";
    }
    *out = json_pack("{s:s?,s:s,s:s?,s:o}", "due", from != NULL ? due : NULL, "status", status,
                     "submitted_at", at, "on_time",
                     at == NULL ? json_null() : json_boolean(from == NULL || at_t <= due_t));
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    return err;
}

kbr_err kbr_store_incident_deadlines(const char *aware, const char *fix_available_at,
                                     const json_t *reports, time_t now, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *ew = NULL, *nt = NULL, *fr = NULL;

    *out = NULL;
    KBR_GUARD(deadline(aware, 24 * HOUR, first_report(reports, "early-warning"), now, &ew));
    KBR_GUARD(deadline(aware, 72 * HOUR, first_report(reports, "notification"), now, &nt));
    KBR_GUARD(deadline(fix_available_at, 14 * DAY, first_report(reports, "final"), now, &fr));
    *out = json_pack("{s:o,s:o,s:o}", "early_warning", ew, "notification", nt, "final_report", fr);
    ew = nt = fr = NULL;
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    json_decref(ew);
    json_decref(nt);
    json_decref(fr);
    return err;
}

/* ---- incidents: now and over time ---- */

/* The incident's question to View C, without a page of devices. */
static kbr_exposure_query incident_query(const json_t *row)
{
    const json_t *q = json_object_get(row, "query");

    return (kbr_exposure_query){.component = str_of(q, "component"),
                                .purl = str_of(q, "purl"),
                                .versions = json_object_get(q, "versions"),
                                .vers = str_of(q, "vers"),
                                .product = str_of(row, "product"),
                                .fixed_version = str_of(row, "fixed_version"),
                                .limit = -1};
}

static kbr_err now_section(kbr_store *st, const json_t *row, json_t **out)
{
    kbr_err err = KBR_OK;
    kbr_exposure_query q = incident_query(row);
    json_t *raw = NULL;

    *out = NULL;
    KBR_GUARD(kbr_store_exposure_rows(st, &q, &raw));
    *out = json_pack("{s:O,s:O,s:O,s:O*}", "builds", json_object_get(raw, "builds"), "devices",
                     json_object_get(raw, "devices"), "affected", json_object_get(raw, "affected"),
                     "remediation", json_object_get(raw, "remediation"));
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    json_decref(raw);
    return err;
}

/*
 * The series is summed in plain arrays: per batch as the days go (affected, and of those on
 * the fix or later), then each day into its markets, the EU and the total.  A market (or an
 * invalid code) is one row of figures; JSON is made once, at the end.
 */
typedef struct {
    char code[16];
    bool invalid;
    int64_t *affected, *updated; /* one per day */
} market_series;

typedef struct {
    char *batch;
    int64_t affected, updated;
    size_t *markets; /* indexes into markets, each once */
    size_t nmarkets;
    bool in_eu;
} batch_state;

typedef struct {
    kbr_store *st;
    const char *fixed;
    size_t ndays;
    batch_state *batches;
    size_t n, cap;
    market_series *markets; /* [0] the total, [1] the EU, then by code */
    size_t nm, capm;
    json_t *updated_firmware; /* firmware -> true/false, as classified */
} series;

static void series_free(series *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->batches[i].batch);
        free(s->batches[i].markets);
    }
    free(s->batches);
    for (size_t i = 0; i < s->nm; i++) {
        free(s->markets[i].affected);
        free(s->markets[i].updated);
    }
    free(s->markets);
    json_decref(s->updated_firmware);
}

static kbr_err grow_to(void **arr, size_t *cap, size_t n, size_t elem)
{
    void *more;

    if (n < *cap)
        return KBR_OK;
    more = realloc(*arr, (*cap > 0 ? *cap * 2 : 16) * elem);
    if (more == NULL)
        return KBR_ERR_NOMEM;
    *arr = more;
    *cap = *cap > 0 ? *cap * 2 : 16;
    return KBR_OK;
}

/* The row of figures of a market code (or an invalid one), made on first use. */
static kbr_err market_of(series *s, const char *code, bool invalid, size_t *out)
{
    kbr_err err = KBR_OK;
    market_series *m;

    for (size_t i = 2; i < s->nm; i++) {
        if (s->markets[i].invalid == invalid && strcmp(s->markets[i].code, code) == 0) {
            *out = i;
            goto out;
        }
    }
    KBR_GUARD(grow_to((void **)&s->markets, &s->capm, s->nm, sizeof(*s->markets)));
    m = &s->markets[s->nm];
    *m = (market_series){.invalid = invalid};
    snprintf(m->code, sizeof(m->code), "%s", code);
    m->affected = calloc(s->ndays > 0 ? s->ndays : 1, sizeof(int64_t));
    m->updated = calloc(s->ndays > 0 ? s->ndays : 1, sizeof(int64_t));
    KBR_ENSURE(m->affected != NULL && m->updated != NULL, KBR_ERR_NOMEM);
    *out = s->nm++;
out:
    return err;
}

/* A batch with its markets (each once; no ISO code: invalid), made on first use. */
static kbr_err batch_of(series *s, const char *name, batch_state **out)
{
    kbr_err err = KBR_OK;
    json_t *markets = NULL;
    const json_t *m;
    batch_state *b;
    size_t i, k, idx;

    *out = NULL;
    for (i = 0; i < s->n; i++) {
        if (strcmp(s->batches[i].batch, name) == 0) {
            *out = &s->batches[i];
            goto out;
        }
    }
    KBR_GUARD(grow_to((void **)&s->batches, &s->cap, s->n, sizeof(*s->batches)));
    b = &s->batches[s->n];
    *b = (batch_state){.batch = strdup(name)};
    KBR_ENSURE(b->batch != NULL, KBR_ERR_NOMEM);
    s->n++;
    KBR_GUARD(s->st->ops->batch_markets(s->st, name, &markets));
    b->markets = calloc(json_array_size(markets) + 1, sizeof(*b->markets));
    KBR_ENSURE(b->markets != NULL, KBR_ERR_NOMEM);
    json_array_foreach(markets, i, m)
    {
        const char *code = json_string_value(m);
        bool valid = code != NULL && kbr_market_check(code, NULL) == KBR_OK, seen = false;

        if (code == NULL)
            continue;
        KBR_GUARD(market_of(s, code, !valid, &idx));
        for (k = 0; k < b->nmarkets; k++)
            seen = seen || b->markets[k] == idx;
        if (!seen)
            b->markets[b->nmarkets++] = idx;
        b->in_eu = b->in_eu || (valid && kbr_market_is_eu(code));
    }
    *out = b;
out:
    json_decref(markets);
    return err;
}

static bool is_updated(series *s, const char *firmware)
{
    json_t *known = json_object_get(s->updated_firmware, firmware);
    bool yes;

    if (known != NULL)
        return json_is_true(known);
    yes = s->fixed != NULL && kbr_store_version_cmp(firmware, s->fixed) >= 0;
    json_object_set_new(s->updated_firmware, firmware, json_boolean(yes));
    return yes;
}

/* The end of day d: every batch into its markets, the EU and the total. */
static void close_day(series *s, size_t d)
{
    for (size_t i = 0; i < s->n; i++) {
        const batch_state *b = &s->batches[i];

        s->markets[0].affected[d] += b->affected;
        s->markets[0].updated[d] += b->updated;
        if (b->in_eu) {
            s->markets[1].affected[d] += b->affected;
            s->markets[1].updated[d] += b->updated;
        }
        for (size_t k = 0; k < b->nmarkets; k++) {
            s->markets[b->markets[k]].affected[d] += b->affected;
            s->markets[b->markets[k]].updated[d] += b->updated;
        }
    }
}

static json_t *figures_json(const series *s, const market_series *m)
{
    json_t *a = json_array(), *u = json_array(), *p = json_array();

    for (size_t d = 0; a != NULL && u != NULL && p != NULL && d < s->ndays; d++) {
        json_array_append_new(a, json_integer(m->affected[d]));
        json_array_append_new(u, json_integer(m->updated[d]));
        json_array_append_new(p, json_integer(m->affected[d] - m->updated[d]));
    }
    return json_pack("{s:o,s:o,s:o}", "affected", a, "updated", u, "pending", p);
}

static kbr_err series_json(const series *s, const json_t *days, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *by_market = json_object(), *invalid = json_object();

    *out = NULL;
    KBR_ENSURE(by_market != NULL && invalid != NULL, KBR_ERR_NOMEM);
    for (size_t i = 2; i < s->nm; i++)
        KBR_ENSURE(json_object_set_new(s->markets[i].invalid ? invalid : by_market,
                                       s->markets[i].code, figures_json(s, &s->markets[i])) == 0,
                   KBR_ERR_NOMEM);
    *out = json_pack("{s:O,s:o,s:o,s:O,s:O}", "days", days, "total",
                     figures_json(s, &s->markets[0]), "eu", figures_json(s, &s->markets[1]),
                     "by_market", by_market, "invalid_markets", invalid);
    KBR_ENSURE(*out != NULL, KBR_ERR_NOMEM);
out:
    json_decref(by_market);
    json_decref(invalid);
    return err;
}

static kbr_err over_time(kbr_store *st, const json_t *row, json_t **out)
{
    kbr_err err = KBR_OK;
    series s = {.st = st, .fixed = str_of(row, "fixed_version")};
    json_t *rows = NULL, *days = json_array();
    const json_t *r;
    const char *day = NULL;
    batch_state *b;
    size_t i, d = 0;

    *out = NULL;
    s.updated_firmware = json_object();
    KBR_ENSURE(s.updated_firmware != NULL && days != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(st->ops->incident_series(st, str_of(row, "id"), &rows));
    json_array_foreach(rows, i, r)
    {
        if (day == NULL || strcmp(day, str_of(r, "day")) != 0)
            KBR_ENSURE(json_array_append(days, json_object_get(r, "day")) == 0, KBR_ERR_NOMEM);
        day = str_of(r, "day");
    }
    s.ndays = json_array_size(days);
    /* the total and the EU first */
    for (int k = 0; k < 2; k++) {
        KBR_GUARD(grow_to((void **)&s.markets, &s.capm, s.nm, sizeof(*s.markets)));
        s.markets[s.nm] = (market_series){.code = ""};
        s.markets[s.nm].affected = calloc(s.ndays > 0 ? s.ndays : 1, sizeof(int64_t));
        s.markets[s.nm].updated = calloc(s.ndays > 0 ? s.ndays : 1, sizeof(int64_t));
        KBR_ENSURE(s.markets[s.nm].affected != NULL && s.markets[s.nm].updated != NULL,
                   KBR_ERR_NOMEM);
        s.nm++;
    }
    day = NULL;
    json_array_foreach(rows, i, r)
    {
        int64_t delta = json_integer_value(json_object_get(r, "delta"));

        if (day != NULL && strcmp(day, str_of(r, "day")) != 0)
            close_day(&s, d++);
        day = str_of(r, "day");
        KBR_GUARD(batch_of(&s, str_of(r, "batch"), &b));
        b->affected += delta;
        if (is_updated(&s, str_of(r, "firmware")))
            b->updated += delta;
    }
    if (day != NULL)
        close_day(&s, d);
    KBR_GUARD(series_json(&s, days, out));
out:
    json_decref(days);
    json_decref(rows);
    series_free(&s);
    return err;
}

/* ---- incidents: the record ---- */

static kbr_err incident_record(kbr_store *st, json_t *row, time_t now, bool with_now)
{
    kbr_err err = KBR_OK;
    json_t *reports = NULL, *builds = NULL, *dl = NULL, *fix = NULL, *section = NULL;
    const char *id = str_of(row, "id");

    KBR_GUARD(st->ops->incident_reports(st, id, &reports));
    KBR_GUARD(st->ops->incident_builds(st, id, &builds));
    KBR_GUARD(kbr_store_incident_deadlines(str_of(row, "aware_at"), str_of(row, "fix_available_at"),
                                           reports, now, &dl));
    fix =
        str_of(row, "fixed_version") == NULL
            ? json_null()
            : json_pack("{s:O,s:O,s:O,s:O}", "fixed_version", json_object_get(row, "fixed_version"),
                        "available_at", json_object_get(row, "fix_available_at"), "recorded_at",
                        json_object_get(row, "fix_recorded_at"), "audit_seq",
                        json_object_get(row, "fix_seq"));
    KBR_ENSURE(fix != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set(row, "exposure_at_awareness", json_object_get(row, "exposure")) == 0,
               KBR_ERR_NOMEM);
    json_object_del(row, "exposure");
    json_object_del(row, "fixed_version");
    json_object_del(row, "fix_available_at");
    json_object_del(row, "fix_recorded_at");
    json_object_del(row, "fix_seq");
    KBR_ENSURE(json_object_set(row, "fix", fix) == 0 &&
                   json_object_set(row, "deadlines", dl) == 0 &&
                   json_object_set(row, "reports", reports) == 0 &&
                   json_object_set(row, "builds", builds) == 0,
               KBR_ERR_NOMEM);
    if (with_now) {
        /* the fix's figures need the fix's version: take it back for the question */
        json_object_set(row, "fixed_version", json_object_get(fix, "fixed_version"));
        KBR_GUARD(now_section(st, row, &section));
        KBR_ENSURE(json_object_set_new(row, "now", section) == 0, KBR_ERR_NOMEM);
        section = NULL;
        KBR_GUARD(over_time(st, row, &section));
        KBR_ENSURE(json_object_set_new(row, "over_time", section) == 0, KBR_ERR_NOMEM);
        section = NULL;
        json_object_del(row, "fixed_version");
    }
out:
    json_decref(section);
    json_decref(fix);
    json_decref(dl);
    json_decref(builds);
    json_decref(reports);
    return err;
}

kbr_err kbr_store_incident_view(kbr_store *st, const char *id, time_t now, bool with_now,
                                json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *row = NULL;
    bool in_snapshot = false;

    *out = NULL;
    KBR_ENSURE(id != NULL && id[0] != '\0', KBR_ERR_BAD_REQUEST);
    KBR_GUARD(st->ops->snapshot_begin(st, NULL));
    in_snapshot = true;
    KBR_GUARD(st->ops->incident_get(st, id, &row));
    KBR_GUARD(incident_record(st, row, now, with_now));
    *out = row;
    row = NULL;
out:
    if (in_snapshot)
        st->ops->snapshot_end(st);
    json_decref(row);
    return err;
}

kbr_err kbr_store_incident_list(kbr_store *st, time_t now, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *rows = NULL, *row;
    bool in_snapshot = false;
    size_t i;

    *out = NULL;
    KBR_GUARD(st->ops->snapshot_begin(st, NULL));
    in_snapshot = true;
    KBR_GUARD(st->ops->incident_list(st, &rows));
    json_array_foreach(rows, i, row)
    {
        KBR_GUARD(incident_record(st, row, now, false));
    }
    *out = rows;
    rows = NULL;
out:
    if (in_snapshot)
        st->ops->snapshot_end(st);
    json_decref(rows);
    return err;
}

kbr_err kbr_store_firmware_version_exists(kbr_store *st, const char *version, bool *exists)
{
    return st->ops->firmware_version_exists(st, version, exists);
}

kbr_err kbr_store_evidence_incident_seqs(kbr_store *st, const char *id, json_t **seqs)
{
    return st->ops->evidence_incident_seqs(st, id, seqs);
}
