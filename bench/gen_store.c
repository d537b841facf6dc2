/*
 * gen_store.c - fills a new store with a fleet at realistic scale and times
 * the four custody views on it.
 *
 *   gen_store PATH [DEVICES [AUDIT_ENTRIES]]     (defaults 1000000 and 5000000)
 *   gen_store PATH --views DEVICES               (times the views on a store it filled)
 *   gen_store PATH --append RECORDS              (times the audit writer's signatures on it)
 *
 * Three years of a broker's life, day by day, in time order: 5 products with
 * 40 firmware builds each (SBOMs of 50 to 200 components, openssl 3.0.1 in
 * the first 15), 10 production batches per product (mixed EU and other
 * markets), the devices provisioned by the factory tokens, OTA campaigns
 * (each device installs a run of consecutive campaigns, 5% of attempts fail),
 * certificate rotations, debug unlocks, tokens issued and expiring, and
 * reads, signatures and denials up to AUDIT_ENTRIES audit entries.  Every
 * record goes through kbr_store_apply_effects and kbr_store_audit_insert as
 * the audit writer does it (entries made by kbr_audit_entry_new with their
 * effects, hashed, chained and added to the tree), 20000 records per transaction, so the counters
 * the views read are the ones the broker keeps.  Then each view runs once to warm up and 5 times;
 * the table shows the median.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "kbr_audit.h"
#include "kbr_cra.h"
#include "kbr_store.h"
#include "../store/sqlite.h"

#define PRODUCTS    5
#define BUILDS      40
#define BATCHES     10
#define CAMPAIGNS   10
#define DAYS        1100
#define BUILD_EVERY 27
#define TX_RECORDS  20000
#define BASE_TIME   1672531200 /* 2023-01-01T00:00:00Z */
#define DAY         86400

static const char *const products[PRODUCTS] = {"door", "lock", "cam", "hub", "lamp"};
static const char *const market_sets[BATCHES] = {
    "[\"DE\", \"FR\"]", "[\"US\"]",        "[\"DE\", \"AT\", \"CH\"]", "[\"GR\"]",
    "[\"US\", \"CA\"]", "[\"JP\"]",        "[\"FR\", \"IT\", \"ES\"]", "[\"GB\"]",
    "[\"PL\", \"CZ\"]", "[\"IN\", \"SG\"]"};

typedef struct {
    kbr_store *st;
    int64_t seq, in_tx, target, devices_per_batch, rotations, installs, failures;
    char prev[65];
    time_t now; /* the clock of the record being written */
    char pem[600];
    int *bucket[PRODUCTS][CAMPAIGNS][30];
    int bucket_n[PRODUCTS][CAMPAIGNS][30];
} gen;

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t mix2(uint64_t a, uint64_t b)
{
    return mix(a * 0x100000001b3ULL ^ mix(b));
}

static void die(const char *what, kbr_err err)
{
    fprintf(stderr, "gen_store: %s: %s\n", what, kbr_err_str(err));
    exit(1);
}

static void check(const char *what, kbr_err err)
{
    if (err != KBR_OK)
        die(what, err);
}

/* FNV-1a: a number per name. */
static uint64_t name_id(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (; *name != '\0'; name++)
        h = (h ^ (unsigned char)*name) * 0x100000001b3ULL;
    return h;
}

/* 64 lowercase hex digits, unique per (a, b): the first 16 are a bijection of mix2. */
static void hex64(uint64_t a, uint64_t b, char out[65])
{
    snprintf(out, 65, "%016llx%016llx%016llx%016llx", (unsigned long long)mix2(a, b),
             (unsigned long long)mix(a), (unsigned long long)mix(b),
             (unsigned long long)mix2(b, a));
}

static void version_of(int build, char out[16])
{
    snprintf(out, 16, "1.%d.%d", build / 10, build % 10);
}

static void fmt_time(time_t t, char out[KBR_TIME_LEN])
{
    kbr_time_fmt(t, out);
}

/* ---- records ---- */

typedef struct {
    const char *sub, *jti, *op, *key, *outcome, *error_code;
    bool key_use;
} actor;

static void tx_flush(gen *g)
{
    if (g->in_tx == 0)
        return;
    check("commit", kbr_store_commit(g->st));
    g->in_tx = 0;
}

/* One audit record with its effect (consumed; may be NULL), as the writer commits it: the
 * entry (kbr_audit_entry_new) carries the effect, so --verify-store can rebuild the ledger. */
static void emit(gen *g, const actor *a, json_t *detail, json_t *effect)
{
    json_t *effects = effect != NULL ? json_pack("[o]", effect) : NULL, *entry = NULL;
    char when[KBR_TIME_LEN], hash[65], *canonical = NULL;
    kbr_audit_rec *rec = NULL;

    if (g->in_tx == 0)
        check("begin", kbr_store_begin(g->st));
    g->seq++;
    g->now++;
    fmt_time(g->now, when);
    check("effects", kbr_store_apply_effects(g->st, effects, g->seq));
    check("record", kbr_audit_rec_new(a->sub, a->jti, a->op, a->key, &rec));
    check("outcome",
          kbr_audit_rec_set_outcome(rec, a->outcome != NULL ? a->outcome : "ok", a->error_code));
    rec->key_use = a->key_use;
    if (detail != NULL) {
        json_decref(rec->detail);
        rec->detail = detail;
    }
    check("entry", kbr_audit_entry_new(rec, g->seq, when, g->prev, &entry));
    if (effects != NULL && json_object_set(entry, "effects", effects) != 0)
        die("entry", KBR_ERR_NOMEM);
    check("canonical", kbr_json_canonical(entry, &canonical));
    check("hash", kbr_audit_leaf_hash(canonical, strlen(canonical), hash));
    check("audit insert",
          kbr_store_audit_insert(g->st, &(kbr_store_audit_row){g->seq, canonical, hash}));
    check("merkle", kbr_store_merkle_append(g->st, g->seq, hash));
    memcpy(g->prev, hash, sizeof(hash));
    free(canonical);
    json_decref(entry);
    kbr_audit_rec_free(rec);
    json_decref(effects);
    if (++g->in_tx >= TX_RECORDS)
        tx_flush(g);
}

static const actor bootstrap = {.sub = "security:bootstrap", .jti = "jti-admin", .op = "admin"};

static json_t *path_detail(const char *path)
{
    return json_pack("{s:s}", "path", path);
}

static json_t *cert_of(gen *g, uint64_t id, uint64_t salt, time_t not_after)
{
    char fp[65], sn[33], na[KBR_TIME_LEN];

    hex64(id, salt, fp);
    memcpy(sn, fp, 32);
    sn[32] = '\0';
    fmt_time(not_after, na);
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "serial_number", sn, "pem", g->pem, "chain_pem", "",
                     "not_after", na, "fingerprint", fp);
}

/* A device's certificate: its chain is its issuer's, named by fingerprint. */
static json_t *device_cert_of(gen *g, uint64_t id, uint64_t salt, time_t not_after)
{
    json_t *c = cert_of(g, id, salt, not_after);

    json_object_del(c, "chain_pem");
    return c;
}

/* The fingerprint of key_cert's certificate of the key name. */
static void issuer_fingerprint(const char *name, char out[65])
{
    hex64(name_id(name), 7, out);
}

/* ---- keys and tokens ---- */

static void key_create(gen *g, const char *name, const char *purpose, const char *product)
{
    char at[KBR_TIME_LEN], pk[65], id[17];

    fmt_time(g->now, at);
    /* the ledger holds one key per HSM object and per public key */
    snprintf(pk, sizeof(pk), "%064llx", (unsigned long long)g->seq + 1);
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)g->seq + 1);
    emit(g, &bootstrap, path_detail("/v1/keys"),
         json_pack("{s:s,s:s,s:s,s:s,s:o,s:s,s:s,s:s,s:s,s:s,s:s}", "type", "key.create", "name",
                   name, "purpose", purpose, "algorithm", "ecdsa-p256", "products",
                   product != NULL ? json_pack("[s]", product) : json_array(), "owner", "security",
                   "hsm_label", name, "hsm_id", id, "public_key_pem", "PEM", "public_key_sha256",
                   pk, "created_at", at));
}

static void key_cert(gen *g, const char *name, const char *issuer, time_t not_after)
{
    json_t *e = cert_of(g, name_id(name), 7, not_after);
    char at[KBR_TIME_LEN];

    fmt_time(g->now, at);
    json_object_update_new(e, json_pack("{s:s,s:s,s:s,s:s?}", "type", "key.certificate", "name",
                                        name, "at", at, "issuer_key", issuer));
    emit(g, &bootstrap, path_detail("/v1/keys/certificate"), e);
}

static void setup_keys(gen *g)
{
    char name[32];

    key_create(g, "root-ca", "device-identity-ca", NULL);
    key_cert(g, "root-ca", NULL, BASE_TIME + 20L * 365 * DAY);
    for (int p = 0; p < PRODUCTS; p++) {
        snprintf(name, sizeof(name), "fw-%s", products[p]);
        key_create(g, name, "firmware-signing", products[p]);
        snprintf(name, sizeof(name), "dbg-%s", products[p]);
        key_create(g, name, "debug-auth", products[p]);
        snprintf(name, sizeof(name), "ca-%s", products[p]);
        key_create(g, name, "device-identity-ca", products[p]);
        /* Two device CAs expire in the first months of the benchmark's "now". */
        key_cert(g, name, "root-ca", BASE_TIME + (DAYS + (p < 2 ? 30L + 20 * p : 3 * 365L)) * DAY);
    }
}

static void token(gen *g, const char *jti, const char *sub, json_t *scope, long ttl_days)
{
    char at[KBR_TIME_LEN], exp[KBR_TIME_LEN];

    fmt_time(g->now, at);
    fmt_time(g->now + ttl_days * DAY, exp);
    emit(g, &bootstrap, path_detail("/v1/tokens"),
         json_pack("{s:s,s:s,s:s,s:o,s:s,s:s,s:s,s:s}", "type", "token.issue", "jti", jti, "sub",
                   sub, "scope", scope, "issued_by", "security:bootstrap", "issued_at", at,
                   "not_before", at, "expires_at", exp));
}

static void jti_of(const char *kind, int a, int b, char out[48])
{
    snprintf(out, 48, "%s-%d-%d", kind, a, b);
}

static void daily_tokens(gen *g, int day)
{
    char jti[48], sub[48], key[48];

    jti_of("read", day, 0, jti);
    token(g, jti, "security:analyst", json_pack("{s:[s]}", "ops", "read"), 1);
    if (day % 30 == 0) {
        for (int p = 0; p < PRODUCTS; p++) {
            jti_of("ci", p, day, jti);
            snprintf(sub, sizeof(sub), "ci:%s", products[p]);
            snprintf(key, sizeof(key), "fw-%s", products[p]);
            token(g, jti, sub, json_pack("{s:[s],s:[s]}", "ops", "sign", "keys", key), 31);
        }
    }
    if (day % 365 == 0) {
        for (int p = 0; p < PRODUCTS; p++) {
            jti_of("ota", p, day / 365, jti);
            snprintf(sub, sizeof(sub), "ota:%s", products[p]);
            snprintf(key, sizeof(key), "ca-%s", products[p]);
            token(g, jti, sub,
                  json_pack("{s:[s,s],s:[s]}", "ops", "rotate", "ota-report", "keys", key), 400);
        }
        jti_of("rework", 0, day / 365, jti);
        token(g, jti, "factory:rework",
              json_pack("{s:[s],s:[s]}", "ops", "debug-auth", "keys", "dbg-*"), 400);
    }
}

/* ---- builds ---- */

static json_t *components_of(int p, int build)
{
    json_t *list = json_array();
    int n = 50 + (int)(mix2((uint64_t)p, (uint64_t)build) % 151);
    int start = (int)(mix((uint64_t)p) % 500);
    char name[32], version[32], purl[96];

    json_array_append_new(list,
                          json_pack("{s:s,s:s,s:s}", "name", "openssl", "version",
                                    build < 15 ? "3.0.1" : (build < 30 ? "3.0.7" : "3.1.2"), "purl",
                                    build < 15 ? "pkg:generic/openssl@3.0.1"
                                               : (build < 30 ? "pkg:generic/openssl@3.0.7"
                                                             : "pkg:generic/openssl@3.1.2")));
    json_array_append_new(
        list, json_pack("{s:s,s:s,s:s}", "name", "zlib", "version", build < 20 ? "1.2.13" : "1.3",
                        "purl", build < 20 ? "pkg:generic/zlib@1.2.13" : "pkg:generic/zlib@1.3"));
    for (int k = 2; k < n; k++) {
        int lib = (start + k * 7) % 500;
        uint64_t h = mix2((uint64_t)lib, (uint64_t)(build / 10));

        snprintf(name, sizeof(name), "lib%03d", lib);
        snprintf(version, sizeof(version), "%d.%d", (int)(h % 5), (int)(h / 5 % 20));
        snprintf(purl, sizeof(purl), "pkg:generic/%s@%s", name, version);
        json_array_append_new(
            list, json_pack("{s:s,s:s,s:s}", "name", name, "version", version, "purl", purl));
    }
    return list;
}

static void sign_build(gen *g, int p, int build)
{
    char version[16], digest[65], key[32], jti[48], sub[32], at[KBR_TIME_LEN];
    actor ci = {.op = "sign", .key = key, .jti = jti, .sub = sub, .key_use = true};

    version_of(build, version);
    hex64((uint64_t)p, (uint64_t)build + 1000, digest);
    snprintf(key, sizeof(key), "fw-%s", products[p]);
    snprintf(sub, sizeof(sub), "ci:%s", products[p]);
    jti_of("ci", p, (int)((g->now - BASE_TIME) / DAY) / 30 * 30, jti);
    fmt_time(g->now, at);
    emit(g, &ci,
         json_pack("{s:s,s:s,s:s}", "path", "/v1/sign", "digest", digest, "version", version),
         json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "type", "firmware.sign", "product",
                   products[p], "version", version, "digest", digest, "hash", "sha256", "key", key,
                   "name", "firmware.bin", "signed_at", at, "components", components_of(p, build)));
}

/* ---- production ---- */

static int device_id(const gen *g, int p, int batch, int j)
{
    return (int)(((int64_t)p * BATCHES + batch) * g->devices_per_batch + j);
}

static void serial_of(int id, char out[16])
{
    snprintf(out, 16, "SN%08d", id);
}

static void batch_name(int p, int b, char out[48])
{
    snprintf(out, 48, "%s-b%02d", products[p], b);
}

/* A batch's markets as POST /v1/batches takes them: ISO 3166-1 codes (kbr_market_check). */
static json_t *markets_of(int set)
{
    json_t *m = json_loads(market_sets[set], 0, NULL), *v;
    kbr_msg msg = {{0}};
    size_t i;

    if (m == NULL)
        die("market set", KBR_ERR_INTERNAL);
    json_array_foreach(m, i, v)
    {
        if (kbr_market_check(json_string_value(v), &msg) != KBR_OK)
            die(msg.text, KBR_ERR_BAD_REQUEST);
    }
    return m;
}

static void create_batch(gen *g, int p, int b)
{
    char name[48], at[KBR_TIME_LEN];

    batch_name(p, b, name);
    fmt_time(g->now, at);
    emit(g, &bootstrap, path_detail("/v1/batches"),
         json_pack("{s:s,s:s,s:s,s:s,s:I,s:o,s:s,s:s}", "type", "batch.create", "batch", name,
                   "product", products[p], "factory", "factory:acme", "quantity",
                   (json_int_t)g->devices_per_batch, "markets", markets_of((b + p) % BATCHES),
                   "created_at", at, "created_by", "security:bootstrap"));
    jti_of("factory", p, b, name);
    token(g, name, "factory:acme",
          json_pack("{s:[s],s:[s+],s:I}", "ops", "provision", "keys", "ca-", products[p],
                    "max_uses", (json_int_t)g->devices_per_batch),
          60);
}

static void provision(gen *g, int p, int b, int j)
{
    int id = device_id(g, p, b, j);
    char serial[16], batch[48], key[32], jti[48], csr[65], fw[16], at[KBR_TIME_LEN];
    actor station = {
        .sub = "factory:acme", .jti = jti, .op = "provision", .key = key, .key_use = true};
    /* 3% of the devices got 3-year certificates: they come due around the benchmark's now. */
    long years = mix2((uint64_t)id, 3) % 100 < 3 ? 3 : 10;
    json_t *cert = device_cert_of(g, (uint64_t)id, 1, g->now + years * 365 * DAY);
    char issuer[65];

    serial_of(id, serial);
    batch_name(p, b, batch);
    snprintf(key, sizeof(key), "ca-%s", products[p]);
    issuer_fingerprint(key, issuer);
    jti_of("factory", p, b, jti);
    hex64((uint64_t)id, 2, csr);
    version_of(4 * b, fw);
    fmt_time(g->now, at);
    emit(g, &station,
         json_pack("{s:s,s:s,s:s,s:O}", "path", "/v1/provision", "device", serial, "csr_sha256",
                   csr, "fingerprint", json_object_get(cert, "fingerprint")),
         json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "type", "device.provision",
                   "product", products[p], "serial", serial, "batch", batch, "factory",
                   "factory:acme", "firmware_version", fw, "csr_sha256", csr, "at", at,
                   "issuer_key", key, "issuer_fingerprint", issuer, "certificate", cert));
}

static void rotate(gen *g, int p, int id, int n)
{
    char serial[16], key[32], jti[48], csr[65], at[KBR_TIME_LEN], sub[32], issuer[65];
    actor ota = {.sub = sub, .jti = jti, .op = "rotate", .key = key, .key_use = true};

    snprintf(sub, sizeof(sub), "ota:%s", products[p]);
    serial_of(id, serial);
    snprintf(key, sizeof(key), "ca-%s", products[p]);
    issuer_fingerprint(key, issuer);
    jti_of("ota", p, (int)((g->now - BASE_TIME) / DAY / 365), jti);
    hex64((uint64_t)id, 100 + (uint64_t)n, csr);
    fmt_time(g->now, at);
    emit(g, &ota, json_pack("{s:s,s:s}", "path", "/v1/devices/certificates", "device", serial),
         json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "type", "device.rotate", "product",
                   products[p], "serial", serial, "csr_sha256", csr, "at", at, "issuer_key", key,
                   "issuer_fingerprint", issuer, "certificate",
                   device_cert_of(g, (uint64_t)id, 1000 + (uint64_t)n, g->now + 10L * 365 * DAY)));
    g->rotations++;
}

static void debug_unlock(gen *g, int p, int id, int n)
{
    char serial[16], key[32], challenge[65], digest[65], at[KBR_TIME_LEN], exp[KBR_TIME_LEN];
    actor rework = {
        .sub = "factory:rework", .jti = "rework", .op = "debug-auth", .key = key, .key_use = true};
    char jti[48];

    jti_of("rework", 0, (int)((g->now - BASE_TIME) / DAY / 365), jti);
    rework.jti = jti;
    serial_of(id, serial);
    snprintf(key, sizeof(key), "dbg-%s", products[p]);
    hex64((uint64_t)n, 77, challenge);
    hex64((uint64_t)n, 78, digest);
    fmt_time(g->now, at);
    fmt_time(g->now + 3600, exp);
    emit(g, &rework, json_pack("{s:s,s:s}", "path", "/v1/debug-auth", "device", serial),
         json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "type", "debug.authorize",
                   "key", key, "product", products[p], "serial", serial, "challenge_sha256",
                   challenge, "permissions", "0f", "ticket", "RMA", "principal", "tech",
                   "message_sha256", digest, "signature_sha256", digest, "at", at, "expires_at",
                   exp));
}

/* ---- OTA campaigns ---- */

static int campaign_build(int c)
{
    return 2 + 4 * c;
}

static int build_day(int build)
{
    return 5 + build * BUILD_EVERY;
}

/*
 * Which devices take campaign c, and on which of its 30 days: a device installs a run of
 * consecutive campaigns after its factory image, starting with the first, second or third
 * (70/20/10%) and continuing each time with probability 3/4.
 */
static void plan_campaign(gen *g, int p, int c)
{
    int64_t per_product = BATCHES * g->devices_per_batch;

    for (int b = 0; b < BATCHES; b++) {
        int first = b; /* the first campaign after factory build 4b is campaign b */
        if (c < first)
            continue;
        for (int j = 0; j < g->devices_per_batch; j++) {
            int id = device_id(g, p, b, j), pos = c - first, start, len = 1;
            uint64_t h = mix2((uint64_t)id, 11);
            int r;

            start = h % 10 < 7 ? 0 : (h % 10 < 9 ? 1 : 2);
            while (len < CAMPAIGNS && mix2((uint64_t)id, 20 + (uint64_t)len) % 4 != 0)
                len++;
            if (pos < start || pos >= start + len)
                continue;
            r = (int)(mix2((uint64_t)id, 40 + (uint64_t)c) % 30);
            if (g->bucket[p][c][r] == NULL)
                g->bucket[p][c][r] = malloc(sizeof(int) * (size_t)per_product);
            g->bucket[p][c][r][g->bucket_n[p][c][r]++] = id;
        }
    }
}

static void ota_report(gen *g, int p, int c, const int *ids, int n)
{
    char version[16], at[KBR_TIME_LEN], serial[16], jti[48], campaign[32], sub[32];
    actor ota = {.sub = sub, .jti = jti, .op = "ota-report"};
    json_t *results = json_array();

    snprintf(sub, sizeof(sub), "ota:%s", products[p]);
    version_of(campaign_build(c), version);
    snprintf(campaign, sizeof(campaign), "%s-%s", products[p], version);
    jti_of("ota", p, (int)((g->now - BASE_TIME) / DAY / 365), jti);
    fmt_time(g->now + 1, at);
    for (int i = 0; i < n; i++) {
        bool failed = mix2((uint64_t)ids[i], 60 + (uint64_t)c) % 100 < 5;

        serial_of(ids[i], serial);
        json_array_append_new(results, json_pack("{s:s,s:s,s:s}", "serial", serial, "status",
                                                 failed ? "failed" : "installed", "at", at));
        g->installs += !failed;
        g->failures += failed;
    }
    emit(
        g, &ota,
        json_pack("{s:s,s:s,s:i}", "path", "/v1/ota/deployments", "version", version, "results", n),
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "type", "ota.report", "product", products[p],
                  "version", version, "campaign", campaign, "reported_by", sub, "at", at, "results",
                  results));
}

static void campaign_day(gen *g, int p, int c, int r)
{
    int *ids = g->bucket[p][c][r];
    int n = g->bucket_n[p][c][r];

    for (int i = 0; i < n; i += 1000)
        ota_report(g, p, c, ids + i, n - i < 1000 ? n - i : 1000);
    free(ids);
    g->bucket[p][c][r] = NULL;
}

/* ---- everything else in the log ---- */

static void filler(gen *g, int day, int64_t n)
{
    char key[32], jti[48], sub[32];

    for (int64_t i = 0; i < n; i++) {
        uint64_t h = mix2((uint64_t)day, (uint64_t)i);
        int p = (int)(h % PRODUCTS);
        actor a = {.sub = sub, .jti = jti, .key = key};

        snprintf(key, sizeof(key), "fw-%s", products[p]);
        if (h % 10 < 6) { /* a read by the security team's daily token */
            jti_of("read", day, 0, jti);
            snprintf(sub, sizeof(sub), "security:analyst");
            a.op = "audit.read";
            a.key = NULL;
        } else if (h % 10 < 9) { /* a CI signature (an OTA manifest or a retried build) */
            jti_of("ci", p, day / 30 * 30, jti);
            snprintf(sub, sizeof(sub), "ci:%s", products[p]);
            a.op = "sign";
            a.key_use = true;
        } else { /* a denial: a token out of scope */
            jti_of("ci", (p + 1) % PRODUCTS, day / 30 * 30, jti);
            snprintf(sub, sizeof(sub), "ci:%s", products[(p + 1) % PRODUCTS]);
            a.op = "sign";
            a.outcome = "denied";
            a.error_code = "forbidden";
        }
        emit(g, &a, path_detail(a.key_use ? "/v1/sign" : "/v1/audit"), NULL);
    }
}

/* ---- an incident: openssl 3.0.1 (builds 0-14 of every product), fixed in 1.3.0 ---- */

#define INCIDENT_DAY 400
#define FIX_BUILD    30

static void incident_create(gen *g)
{
    char at[KBR_TIME_LEN], aware[KBR_TIME_LEN], version[16];
    json_t *builds = json_array();

    for (int p = 0; p < PRODUCTS; p++)
        for (int b = 0; b < 15; b++) {
            version_of(b, version);
            json_array_append_new(
                builds, json_pack("{s:s,s:s}", "product", products[p], "version", version));
        }
    fmt_time(g->now, at);
    fmt_time(g->now - 6 * 3600, aware);
    emit(g, &bootstrap, path_detail("/v1/incidents"),
         json_pack("{s:s,s:s,s:s,s:n,s:s,s:{s:s,s:[s]},s:s,s:b,s:s,s:n,s:s,s:s,s:{s:s,s:O},s:o}",
                   "type", "incident.create", "id", "INC-1", "title", "openssl 3.0.1", "product",
                   "component", "openssl", "query", "component", "openssl", "versions", "3.0.1",
                   "aware_at", aware, "actively_exploited", 1, "severity", "high", "cve",
                   "created_at", at, "created_by", "security:bootstrap", "exposure", "as_of", at,
                   "builds", builds, "builds", builds));
}

static void incident_fix(gen *g)
{
    char at[KBR_TIME_LEN], version[16];

    version_of(FIX_BUILD, version);
    fmt_time(g->now, at);
    emit(g, &bootstrap, path_detail("/v1/incidents/INC-1/fix"),
         json_pack("{s:s,s:s,s:s,s:s,s:s}", "type", "incident.fix", "id", "INC-1", "fixed_version",
                   version, "available_at", at, "at", at));
}

static void one_day(gen *g, int day, int64_t filler_per_day)
{
    int64_t per_product = BATCHES * g->devices_per_batch;

    g->now = BASE_TIME + (time_t)day * DAY;
    daily_tokens(g, day);
    for (int p = 0; p < PRODUCTS; p++) {
        for (int b = 0; b < BUILDS; b++) {
            if (build_day(b) == day)
                sign_build(g, p, b);
        }
        for (int b = 0; b < BATCHES; b++) {
            int start = build_day(4 * b) + 1;
            int per_day = (int)((g->devices_per_batch + 19) / 20);

            if (day == start)
                create_batch(g, p, b);
            for (int j = (day - start) * per_day;
                 day >= start && j < (day - start + 1) * per_day && j < g->devices_per_batch; j++)
                provision(g, p, b, j);
        }
        for (int c = 0; c < CAMPAIGNS; c++) {
            int first = build_day(campaign_build(c)) + 7;

            if (day == first)
                plan_campaign(g, p, c);
            if (day >= first && day < first + 30)
                campaign_day(g, p, c, day - first);
        }
        /* Rotations and unlocks among devices provisioned by now. */
        for (int b = 0; b < BATCHES; b++) {
            if (build_day(4 * b) + 21 > day)
                continue;
            for (int k = 0; k < (int)(per_product / 20000 > 0 ? per_product / 20000 : 1); k++) {
                uint64_t h = mix2((uint64_t)day * 131 + (uint64_t)p, (uint64_t)(b * 7 + k));

                if (h % 100 < 15)
                    rotate(g, p,
                           device_id(g, p, b, (int)(h / 100 % (uint64_t)g->devices_per_batch)),
                           day * 64 + k);
                if (h % 1000 < 20)
                    debug_unlock(
                        g, p, device_id(g, p, b, (int)(h / 1000 % (uint64_t)g->devices_per_batch)),
                        day * 1000 + p * 100 + b * 10 + k);
            }
        }
    }
    if (day == INCIDENT_DAY)
        incident_create(g);
    if (day == build_day(FIX_BUILD) + 1)
        incident_fix(g);
    filler(g, day, filler_per_day);
}

/* ---- timing ---- */

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static int by_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

typedef kbr_err (*view_fn)(kbr_store *st, const void *arg, json_t **out);

static void time_view(kbr_store *st, const char *label, view_fn fn, const void *arg,
                      const char *summary_field)
{
    double runs[5];
    json_t *out = NULL;
    char *summary = NULL;
    struct timespec t0;

    check(label, fn(st, arg, &out));
    if (summary_field != NULL)
        summary = json_dumps(json_object_get(out, summary_field), JSON_COMPACT);
    json_decref(out);
    for (int i = 0; i < 5; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        check(label, fn(st, arg, &out));
        runs[i] = ms_since(&t0);
        json_decref(out);
    }
    qsort(runs, 5, sizeof(runs[0]), by_double);
    printf("| %-44s | %8.2f | %8.2f | %s\n", label, runs[2], runs[4],
           summary != NULL ? summary : "");
    free(summary);
}

typedef struct {
    const char *product;
    long days;
} product_arg;

static time_t view_now(void)
{
    return BASE_TIME + (time_t)DAYS * DAY;
}

static kbr_err run_product(kbr_store *st, const void *arg, json_t **out)
{
    const product_arg *a = arg;

    return kbr_store_view_product(st, a->product, view_now(), a->days, out);
}

static kbr_err run_custody(kbr_store *st, const void *arg, json_t **out)
{
    return kbr_store_view_custody(st, arg, view_now(), out);
}

static kbr_err run_exposure(kbr_store *st, const void *arg, json_t **out)
{
    return kbr_store_view_exposure(st, arg, out);
}

static kbr_err run_device(kbr_store *st, const void *arg, json_t **out)
{
    return kbr_store_view_device(st, NULL, arg, out);
}

static kbr_err run_incident(kbr_store *st, const void *arg, json_t **out)
{
    return kbr_store_incident_view(st, arg, view_now(), true, out);
}

static kbr_err run_incident_list(kbr_store *st, const void *arg, json_t **out)
{
    (void)arg;
    return kbr_store_incident_list(st, view_now(), out);
}

/* The incident's figures as the bench table shows them: now and the series' length. */
static kbr_err run_incident_summary(kbr_store *st, const void *arg, json_t **out)
{
    json_t *v = NULL;
    kbr_err err = run_incident(st, arg, &v);

    *out = NULL;
    if (err != KBR_OK)
        return err;
    *out = json_pack(
        "{s:O,s:I}", "remediation", json_object_get(json_object_get(v, "now"), "remediation"),
        "days",
        (json_int_t)json_array_size(json_object_get(json_object_get(v, "over_time"), "days")));
    json_decref(v);
    return *out != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

static void bench(kbr_store *st, int64_t devices)
{
    char early[16], late[16];
    static const product_arg door = {"door", -1}, door90 = {"door", 90};
    json_t *vuln = json_pack("[s]", "3.0.1"), *first = NULL;
    kbr_exposure_query q1 = {.component = "openssl", .versions = vuln, .fixed_version = "1.3.0"};
    kbr_exposure_query q2 = {.purl = "pkg:generic/openssl",
                             .vers = "vers:generic/>=3.0|<3.1",
                             .product = "door",
                             .fixed_version = "1.3.0"};
    kbr_exposure_query q3 = {.component = "zlib", .fixed_version = "1.3.8", .limit = 1000};
    kbr_exposure_query q4 = {.component = "openssl", .versions = vuln, .fixed_version = "1.3.8"};
    kbr_exposure_query q5 = q1;
    kbr_exposure_query q6 = {.component = "openssl", .versions = vuln, .fixed_version = "1.0.1"};

    serial_of(42, early);
    serial_of((int)(devices * 2 / 3 + 1), late);
    check("page", kbr_store_view_exposure(st, &q1, &first));
    q5.after =
        json_string_value(json_object_get(json_object_get(first, "pending_devices"), "next_after"));
    printf("| %-44s | %8s | %8s | %s\n", "view", "median", "max", "result");
    printf("|----------------------------------------------|----------|----------|------\n");
    time_view(st, "A product door", run_product, &door, "device_certificates");
    time_view(st, "A product door, expiring within 90 days", run_product, &door90, NULL);
    time_view(st, "B custody ca-door (provisioning CA)", run_custody, "ca-door", "principals");
    time_view(st, "B custody fw-door", run_custody, "fw-door", NULL);
    time_view(st, "C openssl 3.0.1, fixed 1.3.0, all products", run_exposure, &q1, "remediation");
    time_view(st, "C same, second page", run_exposure, &q5, NULL);
    time_view(st, "C purl openssl >=3.0|<3.1, door, fixed 1.3.0", run_exposure, &q2, "remediation");
    time_view(st, "C zlib (every build), fixed 1.3.8, limit 1000", run_exposure, &q3,
              "remediation");
    time_view(st, "C openssl 3.0.1, fixed 1.3.8 (few updated)", run_exposure, &q4, "remediation");
    time_view(st, "C openssl 3.0.1, fixed 1.0.1 (few pending)", run_exposure, &q6, "remediation");
    time_view(st, "incident INC-1 (openssl 3.0.1, every product)", run_incident, "INC-1", NULL);
    time_view(st, "incident INC-1: its figures", run_incident_summary, "INC-1", "remediation");
    time_view(st, "incident list", run_incident_list, NULL, NULL);
    time_view(st, "D device, early batch (no product given)", run_device, early, NULL);
    time_view(st, "D device, late batch (no product given)", run_device, late, NULL);
    json_decref(first);
    json_decref(vuln);
}

/* ---- main ---- */

/* The generator's own connection trades durability for speed; the content is the same. */
static void fast_connection(kbr_store *st)
{
    sqlite3 *db = ((kbr_sqlite *)st)->db;

    if (sqlite3_exec(db, "PRAGMA synchronous=OFF; PRAGMA cache_size=-4000000", NULL, NULL, NULL) !=
        SQLITE_OK)
        die("pragma", KBR_ERR_STORE);
}

/*
 * --append: the audit writer's part of a signature, timed on the store as it is.  Each record is
 * a new firmware build of "door" with the bench's two-component SBOM, applied, entered, hashed,
 * chained and added to the tree as emit() does, ten to a transaction (the writer's mean group
 * under make bench's load) and committed with the store's own settings (synchronous=FULL).  Run
 * it on a fresh store and on make views-bench's: the difference is what the store's size costs
 * the writer.
 */
#define APPEND_GROUP 10

static double cpu_now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double wall_now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void append(gen *g, int64_t records)
{
    char version[32], digest[65], at[KBR_TIME_LEN];
    actor ci = {
        .op = "sign", .key = "fw-door", .jti = "jti-append", .sub = "ci:door", .key_use = true};
    double w0, c0, w, c;

    check("tail", kbr_store_audit_tail(g->st, &g->seq, g->prev));
    g->now = time(NULL);
    w0 = wall_now();
    c0 = cpu_now();
    for (int64_t i = 0; i < records; i++) {
        snprintf(version, sizeof(version), "append-%lld", (long long)(g->seq + 1));
        hex64((uint64_t)g->seq, 77, digest);
        fmt_time(g->now, at);
        emit(g, &ci,
             json_pack("{s:s,s:s,s:s}", "path", "/v1/sign", "digest", digest, "version", version),
             json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:[{s:s,s:s,s:s},{s:s,s:s,s:s}]}", "type",
                       "firmware.sign", "product", "door", "version", version, "digest", digest,
                       "hash", "sha256", "key", "fw-door", "name", "firmware.bin", "signed_at", at,
                       "components", "name", "openssl", "version", "3.0.13", "purl",
                       "pkg:generic/openssl@3.0.13", "name", "zlib", "version", "1.3.1", "purl",
                       "pkg:generic/zlib@1.3.1"));
        if (g->in_tx >= APPEND_GROUP)
            tx_flush(g);
    }
    tx_flush(g);
    w = wall_now() - w0;
    c = cpu_now() - c0;
    printf("appended %lld signatures after seq %lld: %.1f per second, %.3f ms wall and %.3f ms "
           "CPU per signature, %d per transaction\n",
           (long long)records, (long long)(g->seq - records), (double)records / w,
           w / (double)records * 1e3, c / (double)records * 1e3, APPEND_GROUP);
}

static void generate(gen *g)
{
    int64_t devices = PRODUCTS * BATCHES * g->devices_per_batch;
    /* Everything but the filler: provisioning, ~2.5 reports per 1000 devices, rotations,
     * unlocks, tokens, builds and keys. */
    int64_t other = devices + devices * 5 / 1000 + devices / 20 + 3000;
    int64_t filler_per_day = g->target > other ? (g->target - other) / DAYS : 0;
    struct timespec t0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(g->prev, '0', 64);
    g->now = BASE_TIME - DAY;
    setup_keys(g);
    for (int day = 0; day < DAYS; day++) {
        one_day(g, day, filler_per_day);
        if (day % 100 == 99)
            fprintf(stderr, "day %d: %lld entries, %.0f s\n", day + 1, (long long)g->seq,
                    ms_since(&t0) / 1e3);
    }
    if (g->seq < g->target)
        filler(g, DAYS, g->target - g->seq);
    tx_flush(g);
    printf("generated %lld audit entries, %lld devices, %lld rotations, %lld OTA installs, "
           "%lld failed, in %.0f s\n",
           (long long)g->seq, (long long)devices, (long long)g->rotations, (long long)g->installs,
           (long long)g->failures, ms_since(&t0) / 1e3);
}

int main(int argc, char **argv)
{
    gen *g = calloc(1, sizeof(*g));
    char url[4096];
    kbr_msg msg = {{0}};
    bool views_only = argc > 2 && strcmp(argv[2], "--views") == 0;
    bool appending = argc > 3 && strcmp(argv[2], "--append") == 0;
    int64_t devices = argc > 2 + views_only ? atoll(argv[2 + views_only]) : 1000000;

    if (appending && g != NULL && atoll(argv[3]) > 0) {
        snprintf(url, sizeof(url), "sqlite:%s", argv[1]);
        check(msg.text, kbr_store_open(url, &g->st, &msg));
        append(g, atoll(argv[3]));
        kbr_store_close(g->st);
        free(g);
        return 0;
    }
    if (argc < 2 || g == NULL || devices < PRODUCTS * BATCHES) {
        fprintf(stderr, "usage: gen_store PATH [DEVICES [AUDIT_ENTRIES]]\n"
                        "       gen_store PATH --views DEVICES\n"
                        "       gen_store PATH --append RECORDS\n");
        return 2;
    }
    g->target = argc > 3 ? atoll(argv[3]) : 5000000;
    g->devices_per_batch = devices / (PRODUCTS * BATCHES);
    memset(g->pem, 'A', sizeof(g->pem) - 1);
    memcpy(g->pem, "-----BEGIN CERTIFICATE-----\n", 28);
    snprintf(url, sizeof(url), "sqlite:%s", argv[1]);
    check(msg.text, kbr_store_open(url, &g->st, &msg));
    if (!views_only) {
        fast_connection(g->st);
        generate(g);
        kbr_store_close(g->st);
        check(msg.text, kbr_store_open(url, &g->st, &msg));
    }
    bench(g->st, PRODUCTS * BATCHES * g->devices_per_batch);
    kbr_store_close(g->st);
    free(g);
    return 0;
}
