/* test_store_views.c - the custody views over a small ledger built through the ledger's effects. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "entry.h"
#include "kbr_store.h"
#include "tmpdir.h"

typedef struct {
    char dir[64];
    kbr_store *st;
    int64_t seq;
} ledger;

/* Who made an audit record, as the writer stores it. */
typedef struct {
    const char *sub, *jti, *op, *key, *outcome, *error_code;
    bool key_use;
} actor;

static const char *str_at(const json_t *obj, const char *field)
{
    return json_string_value(json_object_get(obj, field));
}

static json_int_t int_at(const json_t *obj, const char *field)
{
    return json_integer_value(json_object_get(obj, field));
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, 0, &jerr);

    if (v == NULL)
        fail_msg("bad test JSON at %d: %s", jerr.position, jerr.text);
    return v;
}

/* One audit record with its effects (consumed; NULL for none), committed as the writer does. */
static int64_t record(ledger *l, const actor *a, const char *time, json_t *effect)
{
    json_t *effects = effect != NULL ? json_pack("[o]", effect) : NULL;
    int64_t seq = ++l->seq;

    assert_int_equal(kbr_store_begin(l->st), KBR_OK);
    assert_int_equal(kbr_store_apply_effects(l->st, effects, seq), KBR_OK);
    assert_int_equal(kbt_entry_insert(l->st, seq,
                                      &(kbt_entry){.sub = a->sub,
                                                   .jti = a->jti,
                                                   .op = a->op,
                                                   .key = a->key,
                                                   .outcome = a->outcome,
                                                   .error_code = a->error_code,
                                                   .time = time,
                                                   .effects = effects,
                                                   .key_use = a->key_use}),
                     KBR_OK);
    assert_int_equal(kbr_store_commit(l->st), KBR_OK);
    json_decref(effects);
    return seq;
}

static const actor admin = {.sub = "security:bootstrap", .jti = "t-admin", .op = "admin"};

static void hex_of(const char *seed, size_t digits, char *out)
{
    char full[65];

    kbr_sha256_hex(seed, strlen(seed), full);
    memcpy(out, full, digits);
    out[digits] = '\0';
}

static json_t *certificate(const char *seed, const char *not_after)
{
    char fp[65], sn[17];

    hex_of(seed, 64, fp);
    hex_of(seed + 1, 16, sn);
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "serial_number", sn, "pem", "PEM", "chain_pem", "",
                     "not_after", not_after, "fingerprint", fp);
}

/* A device's certificate, whose chain is its issuer's; and that issuer's certificate. */
static json_t *device_certificate(const char *seed, const char *not_after)
{
    json_t *c = certificate(seed, not_after);

    json_object_del(c, "chain_pem");
    return c;
}

static const char *dev_ca_fingerprint(void)
{
    static char fp[65];

    hex_of("dev-ca", 64, fp);
    return fp;
}

static void key_create(ledger *l, const char *name, const char *purpose, const char *products)
{
    record(l, &admin, "2026-01-01T00:00:00Z",
           json_pack("{s:s,s:s,s:s,s:s,s:o,s:s,s:s}", "type", "key.create", "name", name, "purpose",
                     purpose, "algorithm", "ecdsa-p256", "products", parse(products), "owner",
                     "team", "created_at", "2026-01-01T00:00:00Z"));
}

static void key_cert(ledger *l, const char *name, const char *issuer, const char *not_after)
{
    json_t *e = certificate(name, not_after);

    json_object_update_new(e, json_pack("{s:s,s:s,s:s,s:s?}", "type", "key.certificate", "name",
                                        name, "at", "2026-01-02T00:00:00Z", "issuer_key", issuer));
    record(l, &admin, "2026-01-02T00:00:00Z", e);
}

static void token(ledger *l, const char *jti, const char *sub, const char *scope,
                  const char *issued_at, const char *expires_at)
{
    record(l, &admin, issued_at,
           json_pack("{s:s,s:s,s:s,s:o,s:s,s:s,s:s,s:s}", "type", "token.issue", "jti", jti, "sub",
                     sub, "scope", parse(scope), "issued_by", "security:bootstrap", "issued_at",
                     issued_at, "not_before", issued_at, "expires_at", expires_at));
}

static void firmware(ledger *l, const actor *by, const char *product, const char *version,
                     const char *components)
{
    char digest[65];

    hex_of(version, 64, digest);
    record(l, by, "2026-02-01T00:00:00Z",
           json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "type", "firmware.sign", "product", product,
                     "version", version, "digest", digest, "key", by->key, "signed_at",
                     "2026-02-01T00:00:00Z", "components", parse(components)));
}

static void batch(ledger *l, const char *name, const char *product, const char *markets)
{
    record(l, &admin, "2026-02-02T00:00:00Z",
           json_pack("{s:s,s:s,s:s,s:s,s:i,s:o,s:s,s:s}", "type", "batch.create", "batch", name,
                     "product", product, "factory", "factory:acme", "quantity", 10, "markets",
                     parse(markets), "created_at", "2026-02-02T00:00:00Z", "created_by",
                     "security:bootstrap"));
}

static const actor factory = {
    .sub = "factory:acme", .jti = "t-fac", .op = "provision", .key = "dev-ca", .key_use = true};

static int64_t provision(ledger *l, const char *product, const char *serial, const char *batch_name,
                         const char *fw, const char *not_after)
{
    char seed[64], csr[65];

    snprintf(seed, sizeof(seed), "%s/%s", product, serial);
    hex_of(seed, 64, csr);
    return record(l, &factory, "2026-03-01T00:00:00Z",
                  json_pack("{s:s,s:s,s:s,s:s,s:s,s:s?,s:s,s:s,s:s,s:s,s:o}", "type",
                            "device.provision", "product", product, "serial", serial, "batch",
                            batch_name, "factory", "factory:acme", "firmware_version", fw,
                            "csr_sha256", csr, "at", "2026-03-01T00:00:00Z", "issuer_key", "dev-ca",
                            "issuer_fingerprint", dev_ca_fingerprint(), "certificate",
                            device_certificate(seed, not_after)));
}

static void rotate(ledger *l, const char *product, const char *serial, const char *not_after)
{
    static const actor ota = {
        .sub = "ota:fleet", .jti = "t-ota", .op = "rotate", .key = "dev-ca", .key_use = true};
    char seed[64], csr[65];

    snprintf(seed, sizeof(seed), "rotated/%s/%s", product, serial);
    hex_of(seed, 64, csr);
    record(l, &ota, "2026-06-01T00:00:00Z",
           json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "type", "device.rotate", "product",
                     product, "serial", serial, "csr_sha256", csr, "at", "2026-06-01T00:00:00Z",
                     "issuer_key", "dev-ca", "issuer_fingerprint", dev_ca_fingerprint(),
                     "certificate", device_certificate(seed, not_after)));
}

static int64_t ota(ledger *l, const char *product, const char *version, const char *results,
                   const char *at)
{
    static const actor by = {.sub = "ota:fleet", .jti = "t-ota", .op = "ota-report"};

    return record(l, &by, at,
                  json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "type", "ota.report", "product",
                            product, "version", version, "campaign", "c1", "reported_by",
                            "ota:fleet", "at", at, "results", parse(results)));
}

static int64_t debug_unlock(ledger *l, const char *product, const char *serial)
{
    static const actor by = {.sub = "factory:rework",
                             .jti = "t-rework",
                             .op = "debug-auth",
                             .key = "dbg",
                             .key_use = true};
    char challenge[65], digest[65];

    hex_of(serial, 64, challenge);
    hex_of("message", 64, digest);
    return record(l, &by, "2026-07-01T00:00:00Z",
                  json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "type",
                            "debug.authorize", "key", "dbg", "product", product, "serial", serial,
                            "challenge_sha256", challenge, "permissions", "0f", "ticket", "RMA-7",
                            "principal", "alice", "message_sha256", digest, "signature_sha256",
                            digest, "at", "2026-07-01T00:00:00Z", "expires_at",
                            "2026-07-01T01:00:00Z"));
}

#define OPENSSL(v)                                                                                 \
    "{\"name\": \"openssl\", \"version\": \"" v "\", \"purl\": \"pkg:generic/openssl@" v "\"}"
#define ZLIB "{\"name\": \"zlib\", \"version\": \"1.3\", \"purl\": \"pkg:generic/zlib@1.3\"}"

static void keys_and_tokens(ledger *l)
{
    key_create(l, "root-ca", "device-identity-ca", "[]");
    key_create(l, "dev-ca", "device-identity-ca", "[\"door\", \"lamp\"]");
    key_create(l, "fw-a", "firmware-signing", "[\"door\"]");
    key_create(l, "dbg", "debug-auth", "[\"door\"]");
    key_create(l, "other", "firmware-signing", "[\"lamp\"]");
    key_cert(l, "root-ca", NULL, "2036-01-01T00:00:00Z");
    key_cert(l, "dev-ca", "root-ca", "2027-01-25T00:00:00Z");
    token(l, "t-admin", "security:bootstrap", "{\"ops\": [\"admin\", \"read\"]}",
          "2026-01-01T00:00:00Z", "2027-01-02T00:00:00Z");
    token(l, "t-old", "ci:door", "{\"ops\": [\"sign\"], \"keys\": [\"fw-a\"]}",
          "2026-01-03T00:00:00Z", "2026-06-01T00:00:00Z");
    token(l, "t-rev", "ci:legacy", "{\"ops\": [\"sign\"], \"keys\": [\"fw-*\"]}",
          "2026-01-04T00:00:00Z", "2027-12-01T00:00:00Z");
    token(l, "t-ci", "ci:door", "{\"ops\": [\"sign\"], \"keys\": [\"fw-a\"]}",
          "2026-01-05T00:00:00Z", "2027-01-05T00:00:00Z");
    token(l, "t-fac", "factory:acme",
          "{\"ops\": [\"provision\"], \"keys\": [\"dev-*\"], \"max_uses\": 100}",
          "2026-01-06T00:00:00Z", "2027-06-01T00:00:00Z");
    token(l, "t-lamp", "ci:lamp", "{\"ops\": [\"sign\"], \"keys\": [\"other\"]}",
          "2026-01-07T00:00:00Z", "2027-06-01T00:00:00Z");
    record(l, &admin, "2026-05-01T00:00:00Z",
           json_pack("{s:s,s:[s],s:s,s:s}", "type", "token.revoke", "jtis", "t-rev", "at",
                     "2026-05-01T00:00:00Z", "reason", "left"));
}

static void builds(ledger *l)
{
    static const actor ci = {
        .sub = "ci:door", .jti = "t-ci", .op = "sign", .key = "fw-a", .key_use = true};
    static const actor ci_lamp = {
        .sub = "ci:lamp", .jti = "t-lamp", .op = "sign", .key = "other", .key_use = true};
    static const actor revoked = {.sub = "ci:legacy",
                                  .jti = "t-rev",
                                  .op = "sign",
                                  .key = "fw-a",
                                  .outcome = "denied",
                                  .error_code = "unauthenticated"};
    static const actor stray = {.sub = "ci:lamp",
                                .jti = "t-lamp",
                                .op = "sign",
                                .key = "fw-a",
                                .outcome = "denied",
                                .error_code = "forbidden"};

    firmware(l, &ci, "door", "1.0", "[" OPENSSL("3.0.1") ", " ZLIB "]");
    firmware(l, &ci, "door", "1.1", "[" OPENSSL("3.0.2") ", " ZLIB "]");
    firmware(l, &ci_lamp, "lamp", "2.0", "[" OPENSSL("3.0.1") "]");
    record(l, &revoked, "2026-05-02T00:00:00Z", NULL);
    record(l, &stray, "2026-05-03T00:00:00Z", NULL);
}

/* The fleet: door devices in an EU batch (DE, FR) and a US batch, lamp devices in Greece. */
static void fleet(ledger *l)
{
    batch(l, "b-eu", "door", "[\"DE\", \"FR\"]");
    batch(l, "b-us", "door", "[\"US\"]");
    batch(l, "b-gr", "lamp", "[\"EL\"]");
    provision(l, "door", "D1", "b-eu", "1.0", "2027-01-15T00:00:00Z");
    provision(l, "door", "D2", "b-eu", "1.0", "2027-01-20T12:00:00Z");
    provision(l, "door", "D3", "b-eu", "1.0", "2027-03-01T00:00:00Z");
    provision(l, "door", "D4", "b-eu", "1.1", "2028-05-05T00:00:00Z");
    provision(l, "door", "U1", "b-us", "1.0", "2027-01-10T00:00:00Z");
    provision(l, "door", "U2", "b-us", "1.0", "2030-01-01T00:00:00Z");
    provision(l, "door", "U3", "b-us", "0.9", "2027-02-02T00:00:00Z");
    provision(l, "lamp", "L1", "b-gr", "2.0", "2031-01-01T00:00:00Z");
    provision(l, "lamp", "D3", "b-gr", "2.0", "2031-01-01T00:00:00Z");
    rotate(l, "door", "D1", "2029-06-01T00:00:00Z");
    ota(l, "door", "1.1",
        "[{\"serial\": \"D1\", \"status\": \"installed\", \"at\": \"2026-08-01T00:00:00Z\"},"
        " {\"serial\": \"U1\", \"status\": \"installed\", \"at\": \"2026-08-01T00:00:00Z\"},"
        " {\"serial\": \"D2\", \"status\": \"failed\", \"at\": \"2026-08-01T00:00:00Z\"}]",
        "2026-08-02T00:00:00Z");
    debug_unlock(l, "door", "D2");
}

static int setup(void **state)
{
    ledger *l = calloc(1, sizeof(*l));
    char url[512];
    kbr_msg msg = {{0}};

    if (l == NULL)
        return -1;
    if (kbt_tmpdir(l->dir, sizeof(l->dir), "kbr-views") != 0) {
        free(l);
        return -1;
    }
    if (kbt_store_url(l->dir, "ledger.db", url, sizeof(url)) != 0)
        return -1;
    if (kbr_store_open(url, &l->st, &msg) != KBR_OK)
        return -1;
    *state = l;
    keys_and_tokens(l);
    builds(l);
    fleet(l);
    return 0;
}

static int teardown(void **state)
{
    ledger *l = *state;
    int rc;

    kbr_store_close(l->st);
    rc = kbt_store_drop(l->dir);
    rc |= kbt_rmtree(l->dir);
    free(l);
    return rc;
}

static time_t at(const char *text)
{
    time_t t = 0;

    assert_int_equal(kbr_time_parse(text, &t), KBR_OK);
    return t;
}

/* ---- version order ---- */

static void test_version_order(void **state)
{
    /* the generic order of kbr_cra.h: a release candidate before its release */
    static const char *const ascending[] = {"-",        "0.9",      "1.0",  "1.1", "1.2",   "1.2.1",
                                            "1.10-rc1", "1.10-rc2", "1.10", "2",   "10.0.0"};
    size_t n = sizeof(ascending) / sizeof(ascending[0]);

    (void)state;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            int c = kbr_store_version_cmp(ascending[i], ascending[j]);

            if ((i < j && c >= 0) || (i > j && c <= 0) || (i == j && c != 0))
                fail_msg("%s vs %s gave %d", ascending[i], ascending[j], c);
        }
    }
    /* a device on 1.2 runs the fix 1.2.0 */
    assert_int_equal(kbr_store_version_cmp("01.002", "1.2"), 0);
    assert_int_equal(kbr_store_version_cmp("1.2.0", "1.2"), 0);
    assert_int_equal(kbr_store_version_cmp("1-2", "1.2"), 0);
    assert_true(kbr_store_version_cmp("99999999999999999999.1", "99999999999999999998.9") > 0);
}

/* ---- View A ---- */

static const json_t *key_in(const json_t *view, const char *purpose, const char *name)
{
    const json_t *k;
    size_t i;

    json_array_foreach(json_object_get(json_object_get(view, "keys"), purpose), i, k)
    {
        if (strcmp(str_at(k, "name"), name) == 0)
            return k;
    }
    return NULL;
}

static void assert_strings(const json_t *arr, const char *const *want, size_t n)
{
    assert_int_equal(json_array_size(arr), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(json_string_value(json_array_get(arr, i)), want[i]);
}

static void test_product_keys(void **state)
{
    ledger *l = *state;
    json_t *view = NULL;
    const json_t *k, *tok, *ca;
    static const char *const dev_ca_roles[] = {"device-certificates", "registered"};
    static const char *const root_roles[] = {"issuer"};

    assert_int_equal(kbr_store_view_product(l->st, "door", at("2026-12-31T00:00:00Z"), -1, &view),
                     KBR_OK);
    assert_string_equal(str_at(view, "product"), "door");
    /* door depends on its own keys and on root-ca, the issuer of dev-ca's certificate. */
    assert_int_equal(json_object_size(json_object_get(view, "keys")), 3);
    ca = json_object_get(json_object_get(view, "keys"), "device-identity-ca");
    assert_int_equal(json_array_size(ca), 2);
    assert_string_equal(str_at(json_array_get(ca, 0), "name"), "dev-ca");
    assert_string_equal(str_at(json_array_get(ca, 1), "name"), "root-ca");
    assert_strings(json_object_get(json_array_get(ca, 0), "relations"), dev_ca_roles, 2);
    assert_strings(json_object_get(json_array_get(ca, 1), "relations"), root_roles, 1);
    assert_string_equal(str_at(json_object_get(json_array_get(ca, 0), "certificate"), "not_after"),
                        "2027-01-25T00:00:00Z");
    assert_null(key_in(view, "firmware-signing", "other"));
    assert_non_null(key_in(view, "debug-auth", "dbg"));

    /* Live tokens: the bootstrap token (no keys list) and t-ci; not expired, revoked or
     * another key's. */
    k = key_in(view, "firmware-signing", "fw-a");
    assert_non_null(k);
    assert_string_equal(str_at(k, "algorithm"), "ecdsa-p256");
    assert_int_equal(json_array_size(json_object_get(k, "live_tokens")), 2);
    tok = json_array_get(json_object_get(k, "live_tokens"), 0);
    assert_string_equal(str_at(tok, "jti"), "t-admin");
    assert_true(json_is_null(json_object_get(tok, "max_uses")));
    tok = json_array_get(json_object_get(k, "live_tokens"), 1);
    assert_string_equal(str_at(tok, "jti"), "t-ci");
    assert_string_equal(str_at(tok, "sub"), "ci:door");
    assert_int_equal(int_at(tok, "uses"), 2);
    tok = json_array_get(json_object_get(json_array_get(ca, 0), "live_tokens"), 1);
    assert_string_equal(str_at(tok, "jti"), "t-fac");
    assert_int_equal(int_at(tok, "max_uses"), 100);
    assert_int_equal(int_at(tok, "uses"), 9);
    assert_null(json_object_get(view, "expiring"));
    json_decref(view);
}

static void test_product_device_certificates(void **state)
{
    ledger *l = *state;
    json_t *view = NULL;
    const json_t *certs, *months;
    static const char *const want_month[] = {"2027-01", "2027-02", "2027-03",
                                             "2028-05", "2029-06", "2030-01"};
    static const json_int_t want_count[] = {2, 1, 1, 1, 1, 1};

    assert_int_equal(kbr_store_view_product(l->st, "door", at("2026-12-31T00:00:00Z"), -1, &view),
                     KBR_OK);
    certs = json_object_get(view, "device_certificates");
    /* Seven door devices; D1's first certificate was superseded by its rotation. */
    assert_int_equal(int_at(certs, "total_current"), 7);
    months = json_object_get(certs, "by_expiry_month");
    assert_int_equal(json_array_size(months), 6);
    for (size_t i = 0; i < 6; i++) {
        assert_string_equal(str_at(json_array_get(months, i), "month"), want_month[i]);
        assert_int_equal(int_at(json_array_get(months, i), "count"), want_count[i]);
    }
    json_decref(view);
}

static void test_product_expiring(void **state)
{
    ledger *l = *state;
    json_t *view = NULL;
    const json_t *exp, *dev, *toks;
    static const char *const admin_keys[] = {"dbg", "dev-ca", "fw-a", "root-ca"};

    assert_int_equal(kbr_store_view_product(l->st, "door", at("2026-12-31T00:00:00Z"), 30, &view),
                     KBR_OK);
    exp = json_object_get(view, "expiring");
    assert_string_equal(str_at(exp, "until"), "2027-01-30T00:00:00Z");
    assert_int_equal(json_array_size(json_object_get(exp, "key_certificates")), 1);
    assert_string_equal(str_at(json_array_get(json_object_get(exp, "key_certificates"), 0), "key"),
                        "dev-ca");
    dev = json_object_get(exp, "device_certificates");
    assert_int_equal(int_at(dev, "count"), 2);
    assert_int_equal(json_array_size(json_object_get(dev, "first")), 2);
    assert_string_equal(str_at(json_array_get(json_object_get(dev, "first"), 0), "serial"), "U1");
    assert_string_equal(str_at(json_array_get(json_object_get(dev, "first"), 1), "serial"), "D2");
    toks = json_object_get(exp, "tokens");
    assert_int_equal(json_array_size(toks), 2);
    assert_string_equal(str_at(json_array_get(toks, 0), "jti"), "t-admin");
    assert_strings(json_object_get(json_array_get(toks, 0), "keys"), admin_keys, 4);
    assert_string_equal(str_at(json_array_get(toks, 1), "jti"), "t-ci");
    json_decref(view);
    view = NULL;

    /* until falls inside D2's expiry day, before its hour: the day is counted row by row. */
    assert_int_equal(kbr_store_view_product(l->st, "door", at("2026-12-31T00:00:00Z"), 20, &view),
                     KBR_OK);
    dev = json_object_get(json_object_get(view, "expiring"), "device_certificates");
    assert_int_equal(int_at(dev, "count"), 1);
    assert_string_equal(str_at(json_array_get(json_object_get(dev, "first"), 0), "serial"), "U1");
    assert_int_equal(json_array_size(json_object_get(json_object_get(view, "expiring"), "tokens")),
                     2);
    json_decref(view);
    view = NULL;

    /* Zero days: only what already expired; the tokens are live, so none of them. */
    assert_int_equal(kbr_store_view_product(l->st, "door", at("2027-01-12T00:00:00Z"), 0, &view),
                     KBR_OK);
    exp = json_object_get(view, "expiring");
    assert_int_equal(int_at(json_object_get(exp, "device_certificates"), "count"), 1);
    assert_int_equal(json_array_size(json_object_get(exp, "tokens")), 0);
    assert_int_equal(json_array_size(json_object_get(exp, "key_certificates")), 0);
    json_decref(view);
}

static void test_product_unknown(void **state)
{
    ledger *l = *state;
    json_t *view = NULL;

    assert_int_equal(
        kbr_store_view_product(l->st, "toaster", at("2026-12-31T00:00:00Z"), -1, &view),
        KBR_ERR_NOT_FOUND);
    assert_null(view);
    assert_int_equal(kbr_store_view_product(l->st, "", 0, -1, &view), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_store_view_product(l->st, "door", 0, 36501, &view), KBR_ERR_BAD_REQUEST);
    /* A product with a batch but no key of its own is known. */
    batch(l, "b-kettle", "kettle", "[\"DE\"]");
    assert_int_equal(kbr_store_view_product(l->st, "kettle", at("2026-12-31T00:00:00Z"), -1, &view),
                     KBR_OK);
    assert_int_equal(json_object_size(json_object_get(view, "keys")), 0);
    assert_int_equal(int_at(json_object_get(view, "device_certificates"), "total_current"), 0);
    json_decref(view);
}

/* ---- View B ---- */

static void test_custody(void **state)
{
    ledger *l = *state;
    json_t *view = NULL;
    const json_t *toks, *ops, *pr, *op;
    static const char *const jtis[] = {"t-admin", "t-old", "t-rev", "t-ci"};

    assert_int_equal(kbr_store_view_custody(l->st, "fw-a", at("2026-12-31T00:00:00Z"), &view),
                     KBR_OK);
    assert_string_equal(str_at(view, "key"), "fw-a");
    toks = json_object_get(view, "tokens");
    assert_int_equal(json_array_size(toks), 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(str_at(json_array_get(toks, i), "jti"), jtis[i]);
    assert_string_equal(str_at(json_array_get(toks, 2), "revoked_at"), "2026-05-01T00:00:00Z");
    assert_int_equal(int_at(json_array_get(toks, 3), "uses"), 2);
    assert_string_equal(str_at(json_array_get(toks, 3), "last_used_at"), "2026-02-01T00:00:00Z");
    assert_string_equal(str_at(json_array_get(toks, 3), "issued_by"), "security:bootstrap");

    ops = json_object_get(view, "operations");
    assert_int_equal(json_array_size(ops), 3);
    op = json_array_get(ops, 0);
    assert_string_equal(str_at(op, "sub"), "ci:door");
    assert_string_equal(str_at(op, "outcome"), "ok");
    assert_int_equal(int_at(op, "count"), 2);
    op = json_array_get(ops, 1);
    assert_string_equal(str_at(op, "sub"), "ci:lamp");
    assert_string_equal(str_at(op, "outcome"), "denied");
    assert_int_equal(int_at(op, "count"), 1);
    assert_string_equal(str_at(op, "last_at"), "2026-05-03T00:00:00Z");
    assert_string_equal(str_at(json_array_get(ops, 2), "sub"), "ci:legacy");

    /* Live grants first (by sub), then the rest. */
    pr = json_object_get(view, "principals");
    assert_int_equal(json_array_size(pr), 4);
    assert_string_equal(str_at(json_array_get(pr, 0), "sub"), "ci:door");
    assert_true(json_is_true(json_object_get(json_array_get(pr, 0), "live_grant")));
    assert_int_equal(int_at(json_array_get(pr, 0), "tokens"), 2);
    assert_int_equal(int_at(json_array_get(pr, 0), "operations"), 2);
    assert_string_equal(str_at(json_array_get(pr, 1), "sub"), "security:bootstrap");
    assert_true(json_is_true(json_object_get(json_array_get(pr, 1), "live_grant")));
    assert_int_equal(int_at(json_array_get(pr, 1), "operations"), 0);
    assert_string_equal(str_at(json_array_get(pr, 2), "sub"), "ci:lamp");
    assert_false(json_is_true(json_object_get(json_array_get(pr, 2), "live_grant")));
    assert_int_equal(int_at(json_array_get(pr, 2), "tokens"), 0);
    assert_string_equal(str_at(json_array_get(pr, 3), "sub"), "ci:legacy");
    assert_false(json_is_true(json_object_get(json_array_get(pr, 3), "live_grant")));
    assert_int_equal(int_at(json_array_get(pr, 3), "tokens"), 1);
    json_decref(view);
    view = NULL;

    /* After t-ci expires, ci:door holds no live grant any more. */
    assert_int_equal(kbr_store_view_custody(l->st, "fw-a", at("2027-01-05T00:00:00Z"), &view),
                     KBR_OK);
    pr = json_object_get(view, "principals");
    assert_string_equal(str_at(json_array_get(pr, 0), "sub"), "ci:door");
    assert_false(json_is_true(json_object_get(json_array_get(pr, 0), "live_grant")));
    json_decref(view);
    view = NULL;

    assert_int_equal(kbr_store_view_custody(l->st, "nope", 0, &view), KBR_ERR_NOT_FOUND);
    assert_null(view);
}

static void test_custody_prefix_scope(void **state)
{
    ledger *l = *state;
    json_t *view = NULL, *list = NULL;
    const json_t *toks;

    /* dev-* reaches dev-ca; it is what the token list with a key filter shows too. */
    assert_int_equal(kbr_store_view_custody(l->st, "dev-ca", at("2026-12-31T00:00:00Z"), &view),
                     KBR_OK);
    toks = json_object_get(view, "tokens");
    assert_int_equal(kbr_store_token_list(l->st, NULL, "dev-ca", false, 0, &list), KBR_OK);
    assert_int_equal(json_array_size(toks), 2);
    assert_true(json_equal(toks, list));
    assert_string_equal(str_at(json_array_get(toks, 1), "jti"), "t-fac");
    /* Provisioning and the rotation used dev-ca. */
    assert_int_equal(json_array_size(json_object_get(view, "operations")), 2);
    assert_int_equal(int_at(json_array_get(json_object_get(view, "operations"), 0), "count"), 9);
    json_decref(list);
    json_decref(view);
}

/* ---- View C ---- */

static json_t *exposure(ledger *l, const kbr_exposure_query *q)
{
    json_t *view = NULL;

    assert_int_equal(kbr_store_view_exposure(l->st, q, &view), KBR_OK);
    return view;
}

static void test_exposure_builds_and_markets(void **state)
{
    ledger *l = *state;
    json_t *versions = parse("[\"3.0.1\"]");
    kbr_exposure_query q = {.component = "openssl", .versions = versions};
    json_t *view = exposure(l, &q);
    const json_t *b, *dev, *markets;

    b = json_object_get(view, "builds");
    assert_int_equal(json_array_size(b), 2);
    assert_string_equal(str_at(json_array_get(b, 0), "product"), "door");
    assert_string_equal(str_at(json_array_get(b, 0), "version"), "1.0");
    assert_string_equal(str_at(json_array_get(b, 0), "key"), "fw-a");
    assert_int_equal(json_array_size(json_object_get(json_array_get(b, 0), "components")), 1);
    assert_string_equal(
        str_at(json_array_get(json_object_get(json_array_get(b, 0), "components"), 0), "purl"),
        "pkg:generic/openssl@3.0.1");
    assert_string_equal(str_at(json_array_get(b, 1), "product"), "lamp");
    /* Current: D2 (failed its update), D3 and U2 on door 1.0; L1 and lamp's D3 on lamp 2.0. */
    dev = json_object_get(view, "devices");
    assert_int_equal(int_at(dev, "current"), 5);
    markets = json_object_get(dev, "by_market");
    assert_int_equal(json_object_size(markets), 3);
    assert_int_equal(int_at(markets, "DE"), 2);
    assert_int_equal(int_at(markets, "FR"), 2);
    assert_int_equal(int_at(markets, "US"), 1);
    /* The DE+FR batch counts once in the EU total.  "EL" (the EU's own code for Greece, which
     * an older broker accepted) is no ISO 3166-1 code: its devices are in no country and not
     * in the EU, and said so. */
    assert_int_equal(int_at(dev, "eu"), 2);
    assert_int_equal(json_object_size(json_object_get(dev, "invalid_markets")), 1);
    assert_int_equal(int_at(json_object_get(dev, "invalid_markets"), "EL"), 2);
    assert_int_equal(json_array_size(json_object_get(dev, "by_batch")), 3);
    assert_string_equal(str_at(json_object_get(view, "query"), "component"), "openssl");
    assert_null(json_object_get(view, "remediation"));
    assert_null(json_object_get(view, "pending_devices"));
    json_decref(view);

    /* One product only. */
    q.product = "door";
    view = exposure(l, &q);
    assert_int_equal(json_array_size(json_object_get(view, "builds")), 1);
    assert_int_equal(int_at(json_object_get(view, "devices"), "current"), 3);
    assert_int_equal(int_at(json_object_get(view, "devices"), "eu"), 2);
    json_decref(view);
    json_decref(versions);
}

static void test_exposure_purl(void **state)
{
    ledger *l = *state;
    kbr_exposure_query q = {.purl = "pkg:generic/openssl@3.0.1"};
    json_t *view = exposure(l, &q);

    /* a version in the purl is compared exactly */
    assert_int_equal(json_array_size(json_object_get(view, "builds")), 2);
    json_decref(view);
    q.purl = "pkg:generic/openssl";
    view = exposure(l, &q);
    /* door 1.0 and 1.1 (in version order), then lamp 2.0. */
    assert_int_equal(json_array_size(json_object_get(view, "builds")), 3);
    assert_string_equal(str_at(json_array_get(json_object_get(view, "builds"), 1), "version"),
                        "1.1");
    /* D1, U1 and D4 run door 1.1 now. */
    assert_int_equal(int_at(json_object_get(view, "devices"), "current"), 8);
    json_decref(view);
    /* a prefix is no package: "pkg:generic/openss" names nothing, and 3.0 is not 3.0.1 */
    q.purl = "pkg:generic/openss";
    view = exposure(l, &q);
    assert_int_equal(json_array_size(json_object_get(view, "builds")), 0);
    json_decref(view);
    q.purl = "pkg:generic/openssl@3.0";
    view = exposure(l, &q);
    assert_int_equal(json_array_size(json_object_get(view, "builds")), 0);
    assert_int_equal(int_at(json_object_get(view, "devices"), "current"), 0);
    json_decref(view);
}

static void assert_serials(const json_t *page, const char *const *want, size_t n)
{
    const json_t *items = json_object_get(page, "items");

    assert_int_equal(json_array_size(items), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(str_at(json_array_get(items, i), "serial"), want[i]);
}

static void test_exposure_remediation(void **state)
{
    ledger *l = *state;
    json_t *versions = parse("[\"3.0.1\"]");
    kbr_exposure_query q = {
        .component = "openssl", .versions = versions, .product = "door", .fixed_version = "1.1"};
    json_t *view;
    const json_t *r, *page;
    static const char *const pending[] = {"D2", "D3", "U2"};

    /* Ever ran door 1.0: D1, D2, D3, U1, U2; D1 and U1 installed 1.1, D4 never ran 1.0. */
    for (int limit = 0; limit <= 1000; limit += 1000) {
        q.limit = limit;
        view = exposure(l, &q);
        r = json_object_get(view, "remediation");
        assert_int_equal(int_at(r, "affected"), 5);
        assert_int_equal(int_at(r, "updated"), 2);
        assert_int_equal(int_at(r, "pending"), 3);
        page = json_object_get(view, "pending_devices");
        assert_serials(page, pending, 3);
        assert_string_equal(
            str_at(json_array_get(json_object_get(page, "items"), 0), "current_firmware"), "1.0");
        assert_string_equal(str_at(json_array_get(json_object_get(page, "items"), 2), "batch"),
                            "b-us");
        assert_true(json_is_null(json_object_get(page, "next_after")));
        json_decref(view);
    }

    /* Pages of two. */
    q.limit = 2;
    view = exposure(l, &q);
    page = json_object_get(view, "pending_devices");
    assert_serials(page, pending, 2);
    assert_string_equal(str_at(page, "next_after"), "D3");
    json_decref(view);
    q.after = "D3";
    view = exposure(l, &q);
    page = json_object_get(view, "pending_devices");
    assert_serials(page, pending + 2, 1);
    assert_true(json_is_null(json_object_get(page, "next_after")));
    json_decref(view);
    json_decref(versions);
}

static void test_exposure_later_install(void **state)
{
    ledger *l = *state;
    kbr_exposure_query q = {.component = "zlib", .product = "door", .fixed_version = "1.1"};
    json_t *view;
    const json_t *r;

    /* zlib is in 1.0 and 1.1: every device that ran either is affected, 1.1 counts as fixed. */
    view = exposure(l, &q);
    r = json_object_get(view, "remediation");
    assert_int_equal(int_at(r, "affected"), 6);
    assert_int_equal(int_at(r, "updated"), 3);
    json_decref(view);

    /* U2 installs 1.1; a report arriving late for an earlier install does not move it back. */
    ota(l, "door", "1.1",
        "[{\"serial\": \"U2\", \"status\": \"installed\", \"at\": \"2026-09-01T00:00:00Z\"}]",
        "2026-09-02T00:00:00Z");
    ota(l, "door", "1.0",
        "[{\"serial\": \"U2\", \"status\": \"installed\", \"at\": \"2026-08-15T00:00:00Z\"}]",
        "2026-09-03T00:00:00Z");
    view = exposure(l, &q);
    r = json_object_get(view, "remediation");
    assert_int_equal(int_at(r, "affected"), 6);
    assert_int_equal(int_at(r, "updated"), 4);
    assert_int_equal(int_at(r, "pending"), 2);
    assert_int_equal(int_at(json_object_get(view, "devices"), "current"), 6);
    json_decref(view);
}

/* The OTA platform sends a report again: the ledger and the counters hold each install once. */
static void test_exposure_repeated_report(void **state)
{
    ledger *l = *state;
    kbr_exposure_query q = {.component = "zlib", .product = "door", .fixed_version = "1.1"};
    static const char *const installed =
        "[{\"serial\": \"U2\", \"status\": \"installed\", \"at\": \"2026-09-01T00:00:00Z\"},"
        " {\"serial\": \"D2\", \"status\": \"failed\", \"at\": \"2026-08-01T00:00:00Z\"}]";
    json_t *view = NULL;
    const json_t *r, *fw, *events;
    int64_t first;

    first = ota(l, "door", "1.1", installed, "2026-09-02T00:00:00Z");
    ota(l, "door", "1.1", installed, "2026-09-02T00:00:00Z");
    /* Sent again later: the report is new, the facts it carries are not. */
    ota(l, "door", "1.1", installed, "2026-09-05T00:00:00Z");

    view = exposure(l, &q);
    r = json_object_get(view, "remediation");
    assert_int_equal(int_at(r, "affected"), 6);
    assert_int_equal(int_at(r, "updated"), 4);
    assert_int_equal(int_at(r, "pending"), 2);
    assert_int_equal(int_at(json_object_get(view, "devices"), "current"), 6);
    json_decref(view);
    view = NULL;

    assert_int_equal(kbr_store_view_device(l->st, "door", "U2", &view), KBR_OK);
    fw = json_object_get(view, "firmware");
    assert_int_equal(json_array_size(fw), 2);
    assert_string_equal(str_at(json_array_get(fw, 1), "status"), "installed");
    assert_int_equal(int_at(json_array_get(fw, 1), "audit_seq"), first);
    events = json_object_get(view, "events");
    assert_int_equal(json_array_size(events), 2);
    assert_string_equal(str_at(json_array_get(events, 1), "kind"), "ota-installed");
    assert_int_equal(int_at(json_array_get(events, 1), "audit_seq"), first);
    json_decref(view);
    view = NULL;

    /* D2's failure was in the fleet's first report already: nothing new on its record. */
    assert_int_equal(kbr_store_view_device(l->st, "door", "D2", &view), KBR_OK);
    assert_int_equal(json_array_size(json_object_get(view, "firmware")), 2);
    assert_true(int_at(json_array_get(json_object_get(view, "firmware"), 1), "audit_seq") < first);
    assert_int_equal(json_array_size(json_object_get(view, "events")), 3);
    json_decref(view);
}

static void test_exposure_paging_across_products(void **state)
{
    ledger *l = *state;
    kbr_exposure_query q = {.component = "openssl", .fixed_version = "3.0", .limit = 3};
    json_t *view;
    const json_t *page, *items;
    static const char *const first[] = {"D1", "D2", "D3", "D3"};
    static const char *const second[] = {"D4", "L1", "U1"};
    static const char *const last[] = {"U2"};

    view = exposure(l, &q);
    assert_int_equal(int_at(json_object_get(view, "remediation"), "affected"), 8);
    assert_int_equal(int_at(json_object_get(view, "remediation"), "pending"), 8);
    page = json_object_get(view, "pending_devices");
    /* Every build with openssl, fixed only by 3.0: all that ran them are pending.  A page
     * never splits a serial: door's and lamp's D3 come together. */
    assert_serials(page, first, 4);
    items = json_object_get(page, "items");
    assert_string_equal(str_at(json_array_get(items, 2), "product"), "door");
    assert_string_equal(str_at(json_array_get(items, 3), "product"), "lamp");
    assert_string_equal(str_at(page, "next_after"), "D3");
    json_decref(view);
    q.after = "D3";
    view = exposure(l, &q);
    page = json_object_get(view, "pending_devices");
    assert_serials(page, second, 3);
    assert_string_equal(str_at(page, "next_after"), "U1");
    json_decref(view);
    q.after = "U1";
    view = exposure(l, &q);
    page = json_object_get(view, "pending_devices");
    assert_serials(page, last, 1);
    assert_true(json_is_null(json_object_get(page, "next_after")));
    json_decref(view);
}

/*
 * Packages named as SBOMs name them, with the types' own rules: a longer npm name, a scoped
 * one, Debian versions with "~", qualifiers, pypi's case and "_", a version Debian's order
 * cannot read, and a component the SBOM gives no version.
 */
static void packages(ledger *l)
{
    static const actor ci = {
        .sub = "ci:door", .jti = "t-ci", .op = "sign", .key = "fw-a", .key_use = true};

    firmware(
        l, &ci, "door", "3.0",
        "[{\"name\": \"lodash\", \"version\": \"4.17.20\", \"purl\": \"pkg:npm/lodash@4.17.20\"},"
        " {\"name\": \"openssl\", \"version\": \"3.0.11-1~deb12u1\","
        "  \"purl\": \"pkg:deb/debian/openssl@3.0.11-1~deb12u1?arch=arm64\"},"
        " {\"name\": \"Django_Rest\", \"version\": \"1.0\", \"purl\": "
        "\"pkg:pypi/Django_Rest@1.0\"}]");
    firmware(l, &ci, "door", "3.1",
             "[{\"name\": \"lodash.merge\", \"version\": \"4.6.2\","
             "  \"purl\": \"pkg:npm/lodash.merge@4.6.2\"},"
             " {\"name\": \"@types/lodash\", \"version\": \"4.14.0\","
             "  \"purl\": \"pkg:npm/%40types/lodash@4.14.0\"},"
             " {\"name\": \"openssl\", \"version\": \"3.0.11-1~deb12u2\","
             "  \"purl\": \"pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64\"}]");
    firmware(l, &ci, "door", "3.2",
             "[{\"name\": \"openssl\", \"version\": \"custom\","
             "  \"purl\": \"pkg:deb/debian/openssl@custom\"},"
             " {\"name\": \"openssl\", \"purl\": \"pkg:generic/openssl\"}]");
}

/* The versions of the builds a view found, "3.0,3.1". */
static void assert_builds(const json_t *view, const char *want)
{
    char got[256] = "";
    const json_t *b;
    size_t i;

    json_array_foreach(json_object_get(view, "builds"), i, b)
    {
        strncat(got, i > 0 ? "," : "", sizeof(got) - strlen(got) - 1);
        strncat(got, str_at(b, "version"), sizeof(got) - strlen(got) - 1);
    }
    assert_string_equal(got, want);
}

static json_t *ask(ledger *l, const char *purl, const char *vers, const char *versions)
{
    json_t *list = versions != NULL ? parse(versions) : NULL;
    kbr_exposure_query q = {.purl = purl, .vers = vers, .versions = list, .product = "door"};
    json_t *view = exposure(l, &q);

    json_decref(list);
    return view;
}

static void test_exposure_packages(void **state)
{
    ledger *l = *state;
    json_t *view;
    const json_t *u;

    packages(l);
    /* the package itself, never a longer or a scoped name */
    view = ask(l, "pkg:npm/lodash", NULL, NULL);
    assert_builds(view, "3.0");
    json_decref(view);
    view = ask(l, "pkg:npm/%40types/lodash", NULL, NULL);
    assert_builds(view, "3.1");
    json_decref(view);
    /* normalized as the types say: Debian names and namespaces lowercase, pypi's "_" is "-" */
    view = ask(l, "pkg:DEB/Debian/OpenSSL", NULL, NULL);
    assert_builds(view, "3.0,3.1,3.2");
    json_decref(view);
    view = ask(l, "pkg:pypi/django-rest", NULL, NULL);
    assert_builds(view, "3.0");
    json_decref(view);
    /* qualifiers count when the question gives them */
    view = ask(l, "pkg:deb/debian/openssl?arch=amd64", NULL, NULL);
    assert_builds(view, "3.1");
    json_decref(view);
    /* a list holds any purl version, Debian's "~" included */
    view = ask(l, "pkg:deb/debian/openssl", NULL, "[\"3.0.11-1~deb12u2\"]");
    assert_builds(view, "3.1");
    json_decref(view);
    /* by Debian's order "~deb12u1" is before "~deb12u2"; "custom" is no Debian version */
    view = ask(l, "pkg:deb/debian/openssl", "vers:deb/<3.0.11-1~deb12u2", NULL);
    assert_builds(view, "3.0");
    u = json_object_get(view, "undecided");
    assert_int_equal(json_array_size(u), 1);
    assert_string_equal(str_at(json_array_get(u, 0), "version"), "3.2");
    assert_string_equal(str_at(json_object_get(json_array_get(u, 0), "component"), "version"),
                        "custom");
    assert_non_null(strstr(str_at(json_array_get(u, 0), "reason"), "scheme"));
    json_decref(view);
    /* by name: the component without a version cannot be told in or out of a list */
    {
        json_t *list = parse("[\"3.0.11-1~deb12u1\"]");
        kbr_exposure_query q = {.component = "openssl", .versions = list, .product = "door"};

        view = exposure(l, &q);
        assert_builds(view, "3.0");
        u = json_object_get(view, "undecided");
        assert_int_equal(json_array_size(u), 1);
        assert_non_null(strstr(str_at(json_array_get(u, 0), "reason"), "no version"));
        json_decref(view);
        json_decref(list);
    }
}

static void test_exposure_bad_packages(void **state)
{
    ledger *l = *state;
    kbr_msg msg = {{0}};
    json_t *empty = parse("[]"), *list = parse("[\"1.0\"]");
    kbr_exposure_query q = {.purl = "pkg:npm"};

    (void)l;
    assert_int_equal(kbr_store_exposure_check(&q, &msg), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "purl:"));
    q = (kbr_exposure_query){.purl = "pkg:deb/openssl"}; /* deb needs a namespace */
    assert_int_equal(kbr_store_exposure_check(&q, &msg), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "purl:"));
    q = (kbr_exposure_query){.purl = "pkg:deb/debian/openssl", .vers = "vers:deb/>=1.0|>=2.0"};
    assert_int_equal(kbr_store_exposure_check(&q, &msg), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "vers:"));
    q = (kbr_exposure_query){.component = "openssl", .vers = "vers:maven/1.0"};
    assert_int_equal(kbr_store_exposure_check(&q, &msg), KBR_ERR_BAD_REQUEST);
    q = (kbr_exposure_query){.component = "openssl", .vers = "vers:deb/1.0", .versions = list};
    assert_int_equal(kbr_store_exposure_check(&q, &msg), KBR_ERR_BAD_REQUEST);
    q = (kbr_exposure_query){.component = "openssl", .versions = empty};
    assert_int_equal(kbr_store_exposure_check(&q, &msg), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "versions"));
    json_decref(empty);
    json_decref(list);
}

static void test_exposure_remediation_by_market(void **state)
{
    ledger *l = *state;
    json_t *versions = parse("[\"3.0.1\"]");
    kbr_exposure_query q = {.component = "openssl", .versions = versions, .fixed_version = "1.1"};
    json_t *view = exposure(l, &q);
    const json_t *a, *r, *m;

    /* ever ran door 1.0 (D1, D2, D3 in DE+FR; U1, U2 in US) or lamp 2.0 (L1, D3 in "EL") */
    a = json_object_get(view, "affected");
    assert_int_equal(int_at(a, "total"), 7);
    assert_int_equal(int_at(json_object_get(a, "by_market"), "DE"), 3);
    assert_int_equal(int_at(json_object_get(a, "by_market"), "US"), 2);
    assert_int_equal(int_at(a, "eu"), 3);
    assert_int_equal(int_at(json_object_get(a, "invalid_markets"), "EL"), 2);
    r = json_object_get(view, "remediation");
    /* D1 and U1 installed door 1.1; lamp's 2.0 is "1.1 or later" too (one version for every
     * product asked about) */
    assert_int_equal(int_at(r, "affected"), 7);
    assert_int_equal(int_at(r, "updated"), 4);
    assert_int_equal(int_at(r, "pending"), 3);
    m = json_object_get(json_object_get(r, "by_market"), "FR");
    assert_int_equal(int_at(m, "affected"), 3);
    assert_int_equal(int_at(m, "updated"), 1);
    assert_int_equal(int_at(m, "pending"), 2);
    m = json_object_get(json_object_get(r, "by_market"), "US");
    assert_int_equal(int_at(m, "updated"), 1);
    assert_int_equal(int_at(m, "pending"), 1);
    m = json_object_get(r, "eu");
    assert_int_equal(int_at(m, "affected"), 3);
    assert_int_equal(int_at(m, "updated"), 1);
    assert_int_equal(int_at(m, "pending"), 2);
    /* and in no member state */
    assert_int_equal(
        int_at(json_object_get(json_object_get(r, "invalid_markets"), "EL"), "updated"), 2);
    json_decref(view);
    json_decref(versions);
}

static void test_exposure_affected_devices(void **state)
{
    ledger *l = *state;
    json_t *versions = parse("[\"3.0.1\"]");
    kbr_exposure_query q = {.component = "openssl",
                            .versions = versions,
                            .product = "door",
                            .fixed_version = "1.1",
                            .devices = true,
                            .limit = 3};
    static const char *const first[] = {"D1", "D2", "D3"}, *const second[] = {"U1", "U2"};
    json_t *view;
    const json_t *page;

    view = exposure(l, &q);
    assert_null(json_object_get(view, "pending_devices"));
    page = json_object_get(view, "affected_devices");
    assert_serials(page, first, 3);
    assert_string_equal(str_at(json_array_get(json_object_get(page, "items"), 0), "status"),
                        "updated");
    assert_string_equal(str_at(json_array_get(json_object_get(page, "items"), 1), "status"),
                        "pending");
    assert_string_equal(str_at(page, "next_after"), "D3");
    json_decref(view);
    q.after = "D3";
    view = exposure(l, &q);
    page = json_object_get(view, "affected_devices");
    assert_serials(page, second, 2);
    assert_string_equal(str_at(json_array_get(json_object_get(page, "items"), 0), "status"),
                        "updated");
    assert_true(json_is_null(json_object_get(page, "next_after")));
    json_decref(view);
    /* without a fix: the same devices, no status */
    q.fixed_version = NULL;
    q.after = NULL;
    q.limit = 10;
    view = exposure(l, &q);
    page = json_object_get(view, "affected_devices");
    assert_int_equal(json_array_size(json_object_get(page, "items")), 5);
    assert_null(json_object_get(json_array_get(json_object_get(page, "items"), 0), "status"));
    assert_null(json_object_get(view, "remediation"));
    json_decref(view);
    json_decref(versions);
}

static void test_exposure_bad_queries(void **state)
{
    ledger *l = *state;
    json_t *view = NULL, *bad = parse("[1]");
    kbr_exposure_query none = {0};
    kbr_exposure_query both = {.component = "openssl", .purl = "pkg:generic/openssl"};
    kbr_exposure_query empty = {.component = ""};
    kbr_exposure_query versions = {.component = "openssl", .versions = bad};
    kbr_exposure_query limit = {.component = "openssl", .limit = 1001};

    assert_int_equal(kbr_store_view_exposure(l->st, &none, &view), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_store_view_exposure(l->st, &both, &view), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_store_view_exposure(l->st, &empty, &view), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_store_view_exposure(l->st, &versions, &view), KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_store_view_exposure(l->st, &limit, &view), KBR_ERR_BAD_REQUEST);
    assert_null(view);
    json_decref(bad);
}

/* ---- the CRA: support periods and incidents ---- */

static kbr_err product_register(ledger *l, const char *placed, const char *until)
{
    json_t *fx = json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s}]", "type", "product.register", "product",
                           "door", "placed_on_market", placed, "support_until", until, "at",
                           "2026-09-01T00:00:00Z", "by", "security:bootstrap");
    kbr_err err;

    assert_int_equal(kbr_store_begin(l->st), KBR_OK);
    err = kbr_store_apply_effects(l->st, fx, ++l->seq);
    if (err == KBR_OK)
        assert_int_equal(
            kbt_entry_insert(
                l->st, l->seq,
                &(kbt_entry){.sub = "security:bootstrap", .op = "product.register", .effects = fx}),
            KBR_OK);
    assert_int_equal(kbr_store_commit(l->st), KBR_OK);
    json_decref(fx);
    return err;
}

static const json_t *item_of(const json_t *items, const char *kind, const char *key)
{
    const json_t *it;
    size_t i;

    json_array_foreach(items, i, it)
    {
        if (strcmp(str_at(it, "kind"), kind) == 0 &&
            (key == NULL || (str_at(it, "key") != NULL && strcmp(str_at(it, "key"), key) == 0)))
            return it;
    }
    return NULL;
}

static void test_product_support(void **state)
{
    ledger *l = *state;
    json_t *p = NULL, *view = NULL;
    const json_t *period, *cont, *it;

    assert_int_equal(kbr_store_product_get(l->st, "door", &p), KBR_ERR_NOT_FOUND);
    assert_int_equal(kbr_store_view_product(l->st, "door", at("2026-09-01T00:00:00Z"), -1, &view),
                     KBR_OK);
    assert_true(json_is_null(json_object_get(view, "support")));
    json_decref(view);
    /* four years and a half: flagged */
    assert_int_equal(product_register(l, "2026-01-01", "2030-06-30"), KBR_OK);
    assert_int_equal(kbr_store_product_get(l->st, "door", &p), KBR_OK);
    period = json_object_get(p, "support_period");
    assert_int_equal(int_at(period, "years"), 4);
    assert_int_equal(int_at(period, "days"), 1642);
    assert_true(json_is_true(json_object_get(period, "under_five_years")));
    json_decref(p);
    /* never shortened, never moved: the ledger refuses */
    assert_int_equal(product_register(l, "2026-01-01", "2030-06-29"), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(product_register(l, "2026-01-02", "2031-01-01"), KBR_ERR_STORE_CONSTRAINT);
    /* five years exactly: 2026-01-01 to 2030-12-31 */
    assert_int_equal(product_register(l, "2026-01-01", "2030-12-31"), KBR_OK);
    assert_int_equal(kbr_store_product_get(l->st, "door", &p), KBR_OK);
    assert_int_equal(int_at(json_object_get(p, "support_period"), "years"), 5);
    assert_true(
        json_is_false(json_object_get(json_object_get(p, "support_period"), "under_five_years")));
    json_decref(p);
    /* View A: the certificates that end within the period, the CA's first */
    assert_int_equal(kbr_store_view_product(l->st, "door", at("2026-09-01T00:00:00Z"), -1, &view),
                     KBR_OK);
    assert_string_equal(str_at(json_object_get(view, "support"), "support_until"), "2030-12-31");
    /* in the order they lapse: the first device certificate (U1's), then the CA's */
    cont = json_object_get(view, "continuity");
    it = json_array_get(cont, 0);
    assert_string_equal(str_at(it, "kind"), "device-certificates");
    assert_int_equal(int_at(it, "count"), 7); /* every current door device certificate */
    assert_string_equal(str_at(it, "not_after"), "2027-01-10T00:00:00Z");
    it = json_array_get(cont, 1);
    assert_string_equal(str_at(it, "kind"), "key-certificate");
    assert_string_equal(str_at(it, "key"), "dev-ca");
    assert_string_equal(str_at(it, "not_after"), "2027-01-25T00:00:00Z");
    assert_int_equal(json_array_size(cont), 2);
    /* the root CA lasts, and no algorithm lapses by 2030 */
    assert_null(item_of(cont, "key-certificate", "root-ca"));
    assert_null(item_of(cont, "algorithm", NULL));
    json_decref(view);
    /* extended to 2036: the root's certificate (2036-01-01) and every algorithm lapse too */
    assert_int_equal(product_register(l, "2026-01-01", "2036-06-30"), KBR_OK);
    assert_int_equal(kbr_store_view_product(l->st, "door", at("2026-09-01T00:00:00Z"), -1, &view),
                     KBR_OK);
    cont = json_object_get(view, "continuity");
    assert_non_null(item_of(cont, "key-certificate", "root-ca"));
    it = item_of(cont, "algorithm", "fw-a");
    assert_non_null(it);
    assert_string_equal(str_at(it, "usable_until"), "2035-12-31");
    assert_non_null(strstr(str_at(it, "source"), "NIST IR 8547"));
    json_decref(view);
}

static void test_dates(void **state)
{
    time_t t;

    (void)state;
    assert_true(kbr_store_date_valid("2028-02-29"));
    assert_false(kbr_store_date_valid("2027-02-29"));
    assert_false(kbr_store_date_valid("2027-13-01"));
    assert_false(kbr_store_date_valid("2027-1-01"));
    assert_false(kbr_store_date_valid("2027-01-01T00:00:00Z"));
    assert_false(kbr_store_date_valid("1969-12-31"));
    assert_false(kbr_store_date_valid(""));
    assert_int_equal(kbr_store_date_time("2026-11-28", &t), KBR_OK);
    assert_int_equal(t, at("2026-11-28T00:00:00Z"));
    assert_int_equal(kbr_store_date_time("2100-03-01", &t), KBR_OK);
    assert_int_equal(t, at("2100-03-01T00:00:00Z"));
}

/* One record of effects (JSON, consumed) and documents (NULL-terminated texts). */
static kbr_err record_fx(ledger *l, const char *time, json_t *fx, const char *const *docs)
{
    kbr_effects *effects = NULL;
    char sha[65];
    kbr_err err;

    assert_int_equal(kbr_effects_from_json(fx, &effects), KBR_OK);
    for (size_t i = 0; docs != NULL && docs[i] != NULL; i++)
        assert_int_equal(kbr_effects_add_document(effects, docs[i], strlen(docs[i]), sha), KBR_OK);
    assert_int_equal(kbr_store_begin(l->st), KBR_OK);
    err = kbr_store_apply(l->st, effects, ++l->seq);
    if (err == KBR_OK)
        assert_int_equal(kbt_entry_insert(l->st, l->seq,
                                          &(kbt_entry){.sub = "security:psirt",
                                                       .op = "incident",
                                                       .time = time,
                                                       .effects = fx}),
                         KBR_OK);
    assert_int_equal(kbr_store_commit(l->st), KBR_OK);
    kbr_effects_free(effects);
    json_decref(fx);
    return err;
}

static kbr_err incident_create(ledger *l, const char *id, const char *builds)
{
    return record_fx(
        l, "2026-08-10T09:00:00Z",
        json_pack("[{s:s,s:s,s:s,s:s,s:s,s:{s:s,s:[s]},s:s,s:b,s:s,s:n,s:s,s:s,s:{},s:o}]", "type",
                  "incident.create", "id", id, "title", "openssl in door", "product", "door",
                  "component", "openssl", "query", "component", "openssl", "versions", "3.0.1",
                  "aware_at", "2026-08-10T07:30:00Z", "actively_exploited", 1, "severity", "high",
                  "cve", "created_at", "2026-08-10T09:00:00Z", "created_by", "security:psirt",
                  "exposure", "builds", parse(builds)),
        NULL);
}

static kbr_err incident_fix(ledger *l, const char *id, const char *version)
{
    return record_fx(l, "2026-08-20T12:00:00Z",
                     json_pack("[{s:s,s:s,s:s,s:s,s:s}]", "type", "incident.fix", "id", id,
                               "fixed_version", version, "available_at", "2026-08-20T10:00:00Z",
                               "at", "2026-08-20T12:00:00Z"),
                     NULL);
}

static kbr_err incident_report(ledger *l, const char *id, const char *stage, const char *at_time)
{
    static const char *const doc[] = {"{\"report\":1}", NULL};
    char sha[65];

    kbr_sha256_hex(doc[0], strlen(doc[0]), sha);
    return record_fx(l, at_time,
                     json_pack("[{s:s,s:s,s:s,s:s,s:s,s:s}]", "type", "incident.report", "id", id,
                               "stage", stage, "sha256", sha, "at", at_time, "by",
                               "security:psirt"),
                     doc);
}

static json_t *incident(ledger *l, const char *id, const char *now)
{
    json_t *v = NULL;

    assert_int_equal(kbr_store_incident_view(l->st, id, at(now), true, &v), KBR_OK);
    return v;
}

static const char *status_of(const json_t *v, const char *stage)
{
    return str_at(json_object_get(json_object_get(v, "deadlines"), stage), "status");
}

static json_int_t day_figure(const json_t *series, const char *field, size_t day)
{
    return json_integer_value(json_array_get(json_object_get(series, field), day));
}

static void test_incident(void **state)
{
    ledger *l = *state;
    json_t *v;
    const json_t *ot, *dl;

    /* a build the ledger does not have, or an id taken, changes nothing */
    assert_int_equal(incident_create(l, "INC-1", "[{\"product\":\"door\",\"version\":\"9.9\"}]"),
                     KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(incident_create(l, "INC-1", "[{\"product\":\"door\",\"version\":\"1.0\"}]"),
                     KBR_OK);
    assert_int_equal(incident_create(l, "INC-1", "[]"), KBR_ERR_STORE_CONSTRAINT);
    /* the clocks: 24 and 72 hours from awareness; no final report before a fix */
    v = incident(l, "INC-1", "2026-08-10T20:00:00Z");
    dl = json_object_get(v, "deadlines");
    assert_string_equal(str_at(json_object_get(dl, "early_warning"), "due"),
                        "2026-08-11T07:30:00Z");
    assert_string_equal(str_at(json_object_get(dl, "notification"), "due"), "2026-08-13T07:30:00Z");
    assert_true(json_is_null(json_object_get(json_object_get(dl, "final_report"), "due")));
    assert_string_equal(status_of(v, "early_warning"), "open");
    /* ever ran door 1.0: D1 D2 D3 U1 U2, of which D1 and U1 moved to 1.1 on 2026-08-01 */
    assert_int_equal(int_at(json_object_get(json_object_get(v, "now"), "affected"), "total"), 5);
    ot = json_object_get(v, "over_time");
    assert_int_equal(json_array_size(json_object_get(ot, "days")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(ot, "days"), 0)),
                        "2026-08-10");
    assert_int_equal(day_figure(json_object_get(ot, "total"), "affected", 0), 5);
    assert_int_equal(day_figure(json_object_get(ot, "total"), "pending", 0), 5);
    assert_int_equal(
        day_figure(json_object_get(json_object_get(ot, "by_market"), "US"), "affected", 0), 2);
    json_decref(v);
    v = incident(l, "INC-1", "2026-08-11T08:00:00Z");
    assert_string_equal(status_of(v, "early_warning"), "overdue");
    json_decref(v);
    assert_int_equal(incident_report(l, "INC-1", "early-warning", "2026-08-11T09:00:00Z"), KBR_OK);
    assert_int_equal(incident_report(l, "INC-1", "final", "2026-08-11T09:00:00Z"),
                     KBR_ERR_STORE_CONSTRAINT);
    /* the fix is a door build the broker signed, once */
    assert_int_equal(incident_fix(l, "INC-1", "7.7"), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(incident_fix(l, "NOPE", "1.1"), KBR_ERR_STORE_CONSTRAINT);
    assert_int_equal(incident_fix(l, "INC-1", "1.1"), KBR_OK);
    assert_int_equal(incident_fix(l, "INC-1", "1.1"), KBR_ERR_STORE_CONSTRAINT);
    /* U2 installs the fix on 2026-08-25; a build signed later with openssl 3.0.1 joins */
    ota(l, "door", "1.1",
        "[{\"serial\": \"U2\", \"status\": \"installed\", \"at\": \"2026-08-25T06:00:00Z\"}]",
        "2026-08-25T07:00:00Z");
    firmware(
        l, &(actor){.sub = "ci:door", .jti = "t-ci", .op = "sign", .key = "fw-a", .key_use = true},
        "door", "0.9.1", "[" OPENSSL("3.0.1") "]");
    v = incident(l, "INC-1", "2026-08-26T00:00:00Z");
    assert_string_equal(status_of(v, "early_warning"), "submitted");
    assert_true(json_is_false(json_object_get(
        json_object_get(json_object_get(v, "deadlines"), "early_warning"), "on_time")));
    assert_string_equal(status_of(v, "notification"), "overdue");
    assert_string_equal(
        str_at(json_object_get(json_object_get(v, "deadlines"), "final_report"), "due"),
        "2026-09-03T10:00:00Z");
    assert_string_equal(str_at(json_object_get(v, "fix"), "fixed_version"), "1.1");
    assert_int_equal(json_array_size(json_object_get(v, "builds")), 2);
    /* the day before, and the day of U2's install */
    ot = json_object_get(v, "over_time");
    assert_int_equal(json_array_size(json_object_get(ot, "days")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(ot, "days"), 1)),
                        "2026-08-25");
    assert_int_equal(day_figure(json_object_get(ot, "total"), "updated", 0), 2);
    assert_int_equal(day_figure(json_object_get(ot, "total"), "updated", 1), 3);
    assert_int_equal(day_figure(json_object_get(ot, "total"), "pending", 1), 2);
    assert_int_equal(
        day_figure(json_object_get(json_object_get(ot, "by_market"), "US"), "pending", 1), 0);
    assert_int_equal(day_figure(json_object_get(ot, "eu"), "pending", 1), 2);
    /* the last day of the series is View C now */
    assert_int_equal(int_at(json_object_get(json_object_get(v, "now"), "remediation"), "updated"),
                     3);
    assert_int_equal(int_at(json_object_get(json_object_get(v, "now"), "remediation"), "pending"),
                     2);
    json_decref(v);
    assert_int_equal(incident_report(l, "INC-1", "final", "2026-08-30T09:00:00Z"), KBR_OK);
    v = incident(l, "INC-1", "2026-08-31T00:00:00Z");
    assert_string_equal(status_of(v, "final_report"), "submitted");
    assert_int_equal(json_array_size(json_object_get(v, "reports")), 2);
    json_decref(v);
    assert_int_equal(kbr_store_incident_view(l->st, "NOPE", 0, false, &v), KBR_ERR_NOT_FOUND);
}

/* ---- View D ---- */

static void test_device(void **state)
{
    ledger *l = *state;
    json_t *view = NULL;
    const json_t *certs, *fw, *events;

    assert_int_equal(kbr_store_view_device(l->st, NULL, "D1", &view), KBR_OK);
    assert_string_equal(str_at(view, "product"), "door");
    assert_string_equal(str_at(view, "batch"), "b-eu");
    assert_string_equal(str_at(view, "factory"), "factory:acme");
    assert_int_equal(json_array_size(json_object_get(view, "markets")), 2);
    assert_string_equal(str_at(view, "current_firmware"), "1.1");
    certs = json_object_get(view, "certificates");
    assert_int_equal(json_array_size(certs), 2);
    assert_string_equal(str_at(json_array_get(certs, 0), "superseded_at"), "2026-06-01T00:00:00Z");
    assert_true(json_is_null(json_object_get(json_array_get(certs, 1), "superseded_at")));
    assert_null(json_object_get(json_array_get(certs, 0), "pem"));
    fw = json_object_get(view, "firmware");
    assert_int_equal(json_array_size(fw), 2);
    assert_string_equal(str_at(json_array_get(fw, 0), "status"), "factory");
    assert_string_equal(str_at(json_array_get(fw, 1), "status"), "installed");
    assert_string_equal(str_at(json_array_get(fw, 1), "campaign"), "c1");
    /* Every fact names the audit entry that recorded it. */
    assert_int_equal(int_at(view, "audit_seq"), int_at(json_array_get(certs, 0), "audit_seq"));
    assert_int_equal(int_at(json_array_get(fw, 0), "audit_seq"), int_at(view, "audit_seq"));
    assert_true(int_at(json_array_get(certs, 1), "audit_seq") > int_at(view, "audit_seq"));
    events = json_object_get(view, "events");
    assert_int_equal(json_array_size(events), 3);
    assert_string_equal(str_at(json_array_get(events, 0), "kind"), "provisioned");
    assert_string_equal(str_at(json_array_get(events, 1), "kind"), "rotated");
    assert_string_equal(str_at(json_array_get(events, 2), "kind"), "ota-installed");
    assert_int_equal(int_at(json_array_get(events, 1), "audit_seq"),
                     int_at(json_array_get(certs, 1), "audit_seq"));
    assert_int_equal(json_array_size(json_object_get(view, "debug_auth")), 0);
    json_decref(view);
}

static void test_device_debug_auth(void **state)
{
    ledger *l = *state;
    json_t *view = NULL;
    const json_t *dbg, *events;
    int64_t seq = debug_unlock(l, "door", "D4");

    assert_int_equal(kbr_store_view_device(l->st, "door", "D4", &view), KBR_OK);
    dbg = json_object_get(view, "debug_auth");
    assert_int_equal(json_array_size(dbg), 1);
    assert_string_equal(str_at(json_array_get(dbg, 0), "key"), "dbg");
    assert_string_equal(str_at(json_array_get(dbg, 0), "ticket"), "RMA-7");
    assert_string_equal(str_at(json_array_get(dbg, 0), "principal"), "alice");
    assert_string_equal(str_at(json_array_get(dbg, 0), "permissions"), "0f");
    assert_string_equal(str_at(json_array_get(dbg, 0), "expires_at"), "2026-07-01T01:00:00Z");
    assert_int_equal(int_at(json_array_get(dbg, 0), "audit_seq"), seq);
    json_decref(view);
    view = NULL;

    /* D2: its failed install is history, not its current firmware. */
    assert_int_equal(kbr_store_view_device(l->st, "door", "D2", &view), KBR_OK);
    assert_string_equal(str_at(view, "current_firmware"), "1.0");
    assert_string_equal(str_at(json_array_get(json_object_get(view, "firmware"), 1), "status"),
                        "failed");
    events = json_object_get(view, "events");
    assert_int_equal(json_array_size(events), 3);
    assert_string_equal(str_at(json_array_get(events, 1), "kind"), "ota-failed");
    assert_string_equal(str_at(json_array_get(events, 2), "kind"), "debug-auth");
    assert_int_equal(json_array_size(json_object_get(view, "debug_auth")), 1);
    json_decref(view);
}

static void test_device_lookup(void **state)
{
    ledger *l = *state;
    json_t *view = NULL;

    assert_int_equal(kbr_store_view_device(l->st, NULL, "D3", &view), KBR_ERR_CONFLICT);
    assert_null(view);
    assert_int_equal(kbr_store_view_device(l->st, "lamp", "D3", &view), KBR_OK);
    assert_string_equal(str_at(view, "batch"), "b-gr");
    assert_string_equal(json_string_value(json_array_get(json_object_get(view, "markets"), 0)),
                        "EL");
    json_decref(view);
    view = NULL;
    assert_int_equal(kbr_store_view_device(l->st, NULL, "X9", &view), KBR_ERR_NOT_FOUND);
    assert_int_equal(kbr_store_view_device(l->st, "lamp", "D1", &view), KBR_ERR_NOT_FOUND);
    assert_int_equal(kbr_store_view_device(l->st, NULL, "", &view), KBR_ERR_BAD_REQUEST);
    assert_null(view);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_order),
        cmocka_unit_test_setup_teardown(test_product_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_product_device_certificates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_product_expiring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_product_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custody, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custody_prefix_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exposure_builds_and_markets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exposure_purl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exposure_packages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exposure_bad_packages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exposure_remediation_by_market, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exposure_affected_devices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_product_support, setup, teardown),
        cmocka_unit_test(test_dates),
        cmocka_unit_test_setup_teardown(test_incident, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exposure_remediation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exposure_later_install, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exposure_repeated_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exposure_paging_across_products, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exposure_bad_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_debug_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_device_lookup, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
