/*
 * test_tenancy.c - custody boundaries, tried as an attacker holding a product team's admin
 * token would: two product teams (acme and globex) on one broker, one SoftHSM2 token, real
 * HTTP.  Each test is an attack that worked before the rule it checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static kbt_env *env;
static char *acme_admin, *globex_admin, *acme_reader;

#define ACME_ADMIN                                                                                 \
    "{\"sub\":\"security:acme\",\"ops\":[\"admin\",\"read\"],\"products\":[\"acme\"],"             \
    "\"ttl\":7200}"
#define GLOBEX_ADMIN                                                                               \
    "{\"sub\":\"security:globex\",\"ops\":[\"admin\",\"read\"],\"products\":[\"globex\"],"         \
    "\"ttl\":7200}"

/* A key pair made in the token outside the broker, as a security team does for a CA. */
static void hsm_keypair(const char *label, const char *id)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd),
             "pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --token-label keybroker "
             "--login --pin " KBT_PIN " --keypairgen --key-type EC:prime256v1 --label %s --id %s "
             "--sensitive >/dev/null 2>&1",
             label, id);
    assert_int_equal(kbt_sh(env, cmd, NULL), 0);
}

/* One private key written to the token twice, under two labels (an HSM backup restored
 * beside the original looks like this). */
static void hsm_same_key_twice(void)
{
    assert_int_equal(kbt_sh(env,
                            "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
                            "-outform DER -out dup.der 2>/dev/null && "
                            "openssl pkey -inform DER -in dup.der -pubout -outform DER "
                            "-out dup.pub 2>/dev/null && "
                            "for l in dup-a:aa01 dup-b:aa02; do for t in privkey:dup.der "
                            "pubkey:dup.pub; do "
                            "pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --token-label "
                            "keybroker --login --pin " KBT_PIN " --write-object ${t#*:} "
                            "--type ${t%%:*} --sensitive --label ${l%%:*} --id ${l#*:} "
                            ">/dev/null 2>&1 || exit 1; done; done",
                            NULL),
                     0);
}

static int group_setup(void **state)
{
    (void)state;
    env = kbt_start(NULL);
    kbt_key(env, "acme-fw", "firmware-signing", "ecdsa-p256", "acme");
    kbt_key(env, "globex-fw", "firmware-signing", "ecdsa-p256", "globex");
    kbt_key(env, "globex-ca", "device-identity-ca", "ecdsa-p256", "globex");
    /* SoftHSM2 is not safe for two writers: the broker steps aside while the token is written */
    kbt_stop(env);
    hsm_keypair("globex-root", "77");
    hsm_same_key_twice();
    assert_int_equal(kbt_spawn_daemon(env), 0);
    acme_admin = kbt_token(env, ACME_ADMIN);
    globex_admin = kbt_token(env, GLOBEX_ADMIN);
    acme_reader = kbt_token(env, "{\"sub\":\"security:acme-audit\",\"ops\":[\"read\"],"
                                 "\"products\":[\"acme\"],\"ttl\":7200}");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(acme_admin);
    free(globex_admin);
    free(acme_reader);
    kbt_free(env);
    return 0;
}

static void expect(kbt_resp *r, long status, const char *code, const char *msg_part)
{
    if (r->status != status || strcmp(kbt_err_code(r), code) != 0 ||
        (msg_part != NULL && strstr(kbt_err_message(r), msg_part) == NULL))
        fail_msg("expected %ld %s (\"%s\"), got %ld %s", status, code,
                 msg_part != NULL ? msg_part : "", r->status, r->body);
    kbt_resp_free(r);
}

static kbt_resp register_label(const char *token, const char *name, const char *purpose,
                               const char *label, const char *product)
{
    char body[512];

    snprintf(body, sizeof(body),
             "{\"name\":\"%s\",\"purpose\":\"%s\",\"hsm_label\":\"%s\",\"products\":[\"%s\"]}",
             name, purpose, label, product);
    return kbt_call(env, "POST", "/v1/keys", token, body);
}

/* Finding 1: acme's admin registered globex's HSM key as an acme firmware key. */
static void test_hsm_object_registered_once(void **state)
{
    kbt_resp r;

    (void)state;
    r = register_label(acme_admin, "acme-stolen", "firmware-signing", "globex-root", "acme");
    expect(&r, 403, "forbidden", "registered only by an admin token limited to no products");
    r = register_label(env->admin, "globex-root-ca", "device-identity-ca", "globex-root", "globex");
    if (r.status != 201)
        fail_msg("registering globex-root: %ld %s", r.status, r.body);
    assert_int_equal(strlen(json_string_value(json_object_get(r.json, "public_key_sha256"))), 64);
    kbt_resp_free(&r);
    /* the same object again, under another name and purpose, even by the security team */
    r = register_label(env->admin, "acme-fw-2", "firmware-signing", "globex-root", "acme");
    expect(&r, 409, "conflict", "registered already, as key \"globex-root-ca\"");
    /* the same private key under another label: one public key, one registry entry */
    r = register_label(env->admin, "dup-a", "firmware-signing", "dup-a", "globex");
    if (r.status != 201)
        fail_msg("registering dup-a: %ld %s", r.status, r.body);
    kbt_resp_free(&r);
    r = register_label(env->admin, "dup-b", "firmware-signing", "dup-b", "acme");
    expect(&r, 409, "conflict", "registered already, as key \"dup-a\"");
    /* nor are the broker's own keys, nor anything under its prefix */
    r = register_label(env->admin, "issuer", "firmware-signing", "kbr/issuer", "acme");
    expect(&r, 403, "forbidden", "kbr/");
    r = register_label(env->admin, "gen", "firmware-signing", "kbr/key/globex-fw", "acme");
    expect(&r, 403, "forbidden", "kbr/");
}

/* Finding 2: acme's admin retired, and replaced the CA certificate of, globex's keys. */
static void test_key_paths_check_products(void **state)
{
    kbt_resp r;

    (void)state;
    r = kbt_call(env, "POST", "/v1/keys/globex-fw/retire", acme_admin, "{}");
    expect(&r, 403, "forbidden", "globex-fw");
    r = kbt_call(env, "POST", "/v1/keys/globex-ca/certificate", acme_admin,
                 "{\"self_signed\":{\"subject\":\"CN=Evil CA\",\"days\":30}}");
    expect(&r, 403, "forbidden", "globex-ca");
    r = kbt_call(env, "GET", "/v1/keys/globex-ca", acme_admin, NULL);
    expect(&r, 403, "forbidden", "globex-ca");
    /* its own key it manages */
    r = kbt_call(env, "GET", "/v1/keys/acme-fw", acme_admin, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/keys/globex-fw", env->admin, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_object_get(r.json, "state")), "active");
    kbt_resp_free(&r);
}

/* A key shared by two products is both teams': either may read it, neither may change it. */
static void test_shared_key(void **state)
{
    json_t *body = json_pack("{s:s,s:s,s:s,s:[s,s]}", "name", "shared-dbg", "purpose", "debug-auth",
                             "algorithm", "ecdsa-p256", "products", "acme", "globex");
    kbt_resp r = kbt_callj(env, "POST", "/v1/keys", env->admin, body);

    (void)state;
    json_decref(body);
    assert_int_equal(r.status, 201);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/keys/shared-dbg", acme_reader, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
    r = kbt_call(env, "POST", "/v1/keys/shared-dbg/retire", acme_admin, "{}");
    expect(&r, 403, "forbidden", "also serves products outside");
    r = kbt_call(env, "GET", "/v1/views/keys/shared-dbg/custody", acme_reader, NULL);
    expect(&r, 403, "forbidden", "also serves products outside");
}

static bool names_only(const json_t *arr, const char *field, const char *const *allowed)
{
    size_t i;
    const json_t *v;

    json_array_foreach(arr, i, v)
    {
        const char *name = json_string_value(json_object_get(v, field));
        bool ok = false;
        for (size_t k = 0; allowed[k] != NULL; k++)
            ok = ok || (name != NULL && strcmp(name, allowed[k]) == 0);
        if (!ok)
            return false;
    }
    return true;
}

/* Every entry a product-limited reader gets is about its product. */
static void check_audit_pages(const char *token, const char *product, size_t *seen)
{
    long after = 0;

    *seen = 0;
    for (;;) {
        char path[96];
        kbt_resp r;
        json_t *entries;
        size_t i, n;
        const json_t *e;

        snprintf(path, sizeof(path), "/v1/audit?after=%ld&limit=50", after);
        r = kbt_call(env, "GET", path, token, NULL);
        assert_int_equal(r.status, 200);
        entries = json_object_get(r.json, "entries");
        n = json_array_size(entries);
        json_array_foreach(entries, i, e)
        {
            const json_t *products = json_object_get(e, "products");
            bool about = false;
            for (size_t k = 0; k < json_array_size(products); k++)
                about =
                    about || strcmp(json_string_value(json_array_get(products, k)), product) == 0;
            if (!about)
                fail_msg("entry %lld is not about %s: %s",
                         (long long)json_integer_value(json_object_get(e, "seq")), product,
                         json_dumps(e, JSON_COMPACT));
            after = (long)json_integer_value(json_object_get(e, "seq"));
        }
        *seen += n;
        kbt_resp_free(&r);
        if (n < 50)
            break;
    }
}

static long first_entry_of(const char *op, const char *product)
{
    json_t *all = kbt_audit_all(env);
    size_t i;
    const json_t *e;
    long seq = 0;

    json_array_foreach(all, i, e)
    {
        const json_t *p = json_array_get(json_object_get(e, "products"), 0);
        if (strcmp(json_string_value(json_object_get(e, "op")), op) == 0 && p != NULL &&
            strcmp(json_string_value(p), product) == 0) {
            seq = (long)json_integer_value(json_object_get(e, "seq"));
            break;
        }
    }
    json_decref(all);
    return seq;
}

/* Finding 3: a token limited to acme listed and read every product's objects and entries. */
static void test_reads_bounded_by_products(void **state)
{
    static const char *const acme_keys[] = {"acme-fw", "shared-dbg", NULL};
    char path[128];
    size_t seen = 0;
    long seq;
    kbt_resp r;

    (void)state;
    r = kbt_call(env, "GET", "/v1/keys", acme_reader, NULL);
    assert_int_equal(r.status, 200);
    assert_true(names_only(json_object_get(r.json, "keys"), "name", acme_keys));
    assert_true(json_array_size(json_object_get(r.json, "keys")) >= 1);
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/tokens", acme_admin, NULL);
    assert_int_equal(r.status, 200);
    {
        const json_t *t;
        size_t i;
        json_array_foreach(json_object_get(r.json, "tokens"), i, t)
        {
            const json_t *products = json_object_get(json_object_get(t, "scope"), "products");
            if (json_array_size(products) != 1 ||
                strcmp(json_string_value(json_array_get(products, 0)), "acme") != 0)
                fail_msg("acme's admin listed a token outside acme: %s", json_dumps(t, 0));
        }
        assert_true(json_array_size(json_object_get(r.json, "tokens")) >= 2);
    }
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/views/keys/globex-fw/custody", acme_reader, NULL);
    expect(&r, 403, "forbidden", "globex-fw");
    r = kbt_call(env, "GET", "/v1/views/products/globex", acme_reader, NULL);
    expect(&r, 403, "forbidden", "globex");
    /* HSM objects no key names belong to no product: only a reader of every product sees them */
    r = kbt_call(env, "GET", "/v1/views/products/acme", acme_reader, NULL);
    assert_int_equal(r.status, 200);
    assert_null(json_object_get(r.json, "unregistered_hsm_objects"));
    kbt_resp_free(&r);
    r = kbt_call(env, "GET", "/v1/views/products/acme", env->admin, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(json_object_get(r.json, "unregistered_hsm_objects"));
    kbt_resp_free(&r);
    check_audit_pages(acme_reader, "acme", &seen);
    assert_true(seen >= 3);
    /* an inclusion proof names its entry: only for entries the reader may read */
    seq = first_entry_of("key.create", "globex");
    assert_true(seq > 0);
    snprintf(path, sizeof(path), "/v1/audit/proof?seq=%ld&size=%ld", seq, seq);
    r = kbt_call(env, "GET", path, acme_reader, NULL);
    expect(&r, 403, "forbidden", "outside the token's");
    r = kbt_call(env, "GET", path, env->admin, NULL);
    assert_int_equal(r.status, 200);
    kbt_resp_free(&r);
}

/* The names of keys View A shows, in every section, each once ("" when none). */
static void view_a_key_names(const json_t *view, char *out, size_t n)
{
    const json_t *list, *v, *w, *expiring = json_object_get(view, "expiring");
    const char *purpose;
    size_t i, j;

    out[0] = '\0';
#define ADD_NAME(s)                                                                                \
    do {                                                                                           \
        const char *s_ = (s);                                                                      \
        char quoted_[160];                                                                         \
        snprintf(quoted_, sizeof(quoted_), " %s ", s_ != NULL ? s_ : "(none)");                    \
        if (strstr(out, quoted_) == NULL)                                                          \
            snprintf(out + strlen(out), n - strlen(out), "%s", quoted_);                           \
    } while (0)
    json_object_foreach((json_t *)json_object_get(view, "keys"), purpose, list)
    {
        json_array_foreach(list, i, v) ADD_NAME(json_string_value(json_object_get(v, "name")));
    }
    json_array_foreach(json_object_get(expiring, "key_certificates"), i, v)
        ADD_NAME(json_string_value(json_object_get(v, "key")));
    json_array_foreach(json_object_get(expiring, "tokens"), i, v)
    {
        json_array_foreach(json_object_get(v, "keys"), j, w) ADD_NAME(json_string_value(w));
    }
    json_array_foreach(json_object_get(view, "continuity"), i, v)
    {
        if (json_object_get(v, "key") != NULL)
            ADD_NAME(json_string_value(json_object_get(v, "key")));
    }
#undef ADD_NAME
}

/* A reader limited to one key of a product read every key of it in View A (public keys, HSM
 * labels, the live tokens of the others), and, with no products limit, the HSM's unregistered
 * objects. */
static void test_product_view_bounded_by_keys(void **state)
{
    char *one_key, *one_key_any_product, names[1024];
    kbt_resp r;

    (void)state;
    kbt_key(env, "acme-dbg", "debug-auth", "ecdsa-p256", "acme");
    one_key = kbt_token(env, "{\"sub\":\"security:acme-fw-audit\",\"ops\":[\"read\"],"
                             "\"products\":[\"acme\"],\"keys\":[\"acme-fw\"],\"ttl\":7200}");
    one_key_any_product = kbt_token(env, "{\"sub\":\"security:fw-audit\",\"ops\":[\"read\"],"
                                         "\"keys\":[\"acme-fw\"],\"ttl\":7200}");
    /* the product's whole view, for a reader of every key */
    r = kbt_call(env, "GET", "/v1/views/products/acme?expiring_within_days=36500", env->admin,
                 NULL);
    assert_int_equal(r.status, 200);
    view_a_key_names(r.json, names, sizeof(names));
    if (strstr(names, " acme-fw ") == NULL || strstr(names, " acme-dbg ") == NULL)
        fail_msg("View A for an unrestricted reader names %s", names);
    kbt_resp_free(&r);
    for (int i = 0; i < 2; i++) {
        r = kbt_call(env, "GET", "/v1/views/products/acme?expiring_within_days=36500",
                     i == 0 ? one_key : one_key_any_product, NULL);
        assert_int_equal(r.status, 200);
        view_a_key_names(r.json, names, sizeof(names));
        if (strcmp(names, " acme-fw ") != 0)
            fail_msg("View A for a reader of acme-fw alone names%s", names);
        assert_null(json_object_get(r.json, "unregistered_hsm_objects"));
        assert_non_null(json_object_get(r.json, "device_certificates"));
        kbt_resp_free(&r);
    }
    free(one_key);
    free(one_key_any_product);
}

/* An admin limited to some keys (or batches) but to no products rotated the audit key and the
 * token issuer key, which every product depends on, and could register an HSM object no key
 * names: each is for an admin of everything, as a backup is. */
static void test_broker_wide_needs_admin_of_everything(void **state)
{
    const char *specs[] = {
        "{\"sub\":\"security:fw-team\",\"ops\":[\"admin\"],\"keys\":[\"acme-*\"],\"ttl\":600}",
        "{\"sub\":\"security:line-1\",\"ops\":[\"admin\"],\"batches\":[\"b-1\"],\"ttl\":600}",
        "{\"sub\":\"security:fleet-1\",\"ops\":[\"admin\"],\"devices\":[\"SN-1\"],\"ttl\":600}",
    };
    kbt_resp r;

    (void)state;
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        char *tok = kbt_token(env, specs[i]);

        r = kbt_call(env, "POST", "/v1/audit/key/rotate", tok, "{\"reason\":\"mine now\"}");
        expect(&r, 403, "forbidden", "limited to no products, keys, batches or devices");
        r = kbt_call(env, "POST", "/v1/tokens/issuer/rotate", tok, "{}");
        expect(&r, 403, "forbidden", "limited to no products, keys, batches or devices");
        r = register_label(tok, "acme-dup", "firmware-signing", "dup-a", "acme");
        expect(&r, 403, "forbidden", "limited to no products, keys, batches or devices");
        r = kbt_call(env, "GET", "/v1/backup", tok, NULL);
        expect(&r, 403, "forbidden", "limited to no products, keys, batches or devices");
        free(tok);
    }
    /* nothing was registered under that name */
    r = kbt_call(env, "GET", "/v1/keys/acme-dup", env->admin, NULL);
    expect(&r, 404, "not_found", NULL);
}

/* Finding 5: acme's admin minted tokens named after globex's factory. */
static void test_principals_belong_to_products(void **state)
{
    char *fab = kbt_token(env, "{\"sub\":\"factory:globex-fab\",\"ops\":[\"provision\"],"
                               "\"products\":[\"globex\"],\"ttl\":600}");
    kbt_resp r;

    (void)state;
    r = kbt_call(env, "POST", "/v1/tokens", acme_admin,
                 "{\"sub\":\"factory:globex-fab\",\"ops\":[\"read\"],\"products\":[\"acme\"],"
                 "\"ttl\":600}");
    expect(&r, 403, "forbidden", "principal factory:globex-fab belongs to product \"globex\"");
    r = kbt_call(env, "POST", "/v1/tokens", acme_admin,
                 "{\"sub\":\"ci:acme-release\",\"ops\":[\"sign\"],\"products\":[\"acme\"],"
                 "\"ttl\":600}");
    assert_int_equal(r.status, 201);
    kbt_resp_free(&r);
    r = kbt_call(env, "POST", "/v1/tokens", globex_admin,
                 "{\"sub\":\"ci:acme-release\",\"ops\":[\"sign\"],\"products\":[\"globex\"],"
                 "\"ttl\":600}");
    expect(&r, 403, "forbidden", "ci:acme-release");
    /* the security team may still issue for either */
    r = kbt_call(env, "POST", "/v1/tokens", env->admin,
                 "{\"sub\":\"ci:acme-release\",\"ops\":[\"read\"],\"products\":[\"acme\"],"
                 "\"ttl\":600}");
    assert_int_equal(r.status, 201);
    kbt_resp_free(&r);
    free(fab);
}

/* Finding 6: a ttl=1 token worked for 30 s. */
static void test_own_tokens_end_at_exp(void **state)
{
    char *tok = kbt_token(env, "{\"sub\":\"ci:short\",\"ops\":[\"read\"],\"ttl\":1}");
    kbt_resp r;

    (void)state;
    sleep(2);
    r = kbt_call(env, "GET", "/v1/keys", tok, NULL);
    expect(&r, 401, "unauthenticated", "token expired");
    free(tok);
}

static long long time_of(const char *rfc3339)
{
    time_t t = 0;

    assert_int_equal(kbr_time_parse(rfc3339, &t), KBR_OK);
    return (long long)t;
}

/* Finding 7: the 24 h bootstrap minted a year-long admin that outlived it; nothing cascaded. */
static void test_token_tree(void **state)
{
    kbt_resp r;
    char *team, *ci, *lead, *fab;
    long long team_exp;

    (void)state;
    team = kbt_token(env, "{\"sub\":\"security:acme-team\",\"ops\":[\"admin\"],"
                          "\"products\":[\"acme\"],\"ttl\":3600}");
    r = kbt_call(env, "POST", "/v1/tokens", team,
                 "{\"sub\":\"ci:acme-nightly\",\"ops\":[\"sign\"],\"products\":[\"acme\"],"
                 "\"ttl\":31536000}");
    assert_int_equal(r.status, 201);
    ci = strdup(json_string_value(json_object_get(r.json, "token")));
    team_exp = time_of("2000-01-01T00:00:00Z");
    {
        kbt_resp t = kbt_call(env, "GET", "/v1/tokens?sub=security:acme-team", env->admin, NULL);
        team_exp = time_of(json_string_value(
            json_object_get(json_array_get(json_object_get(t.json, "tokens"), 0), "expires_at")));
        kbt_resp_free(&t);
    }
    /* a child never outlives its parent */
    assert_true(time_of(json_string_value(json_object_get(r.json, "expires_at"))) <= team_exp);
    assert_false(json_is_true(json_object_get(r.json, "orphan")));
    kbt_resp_free(&r);
    r = kbt_call(env, "POST", "/v1/tokens", team,
                 "{\"sub\":\"ci:acme-forever\",\"ops\":[\"sign\"],\"products\":[\"acme\"],"
                 "\"ttl\":600,\"orphan\":true}");
    expect(&r, 403, "forbidden", "orphan");
    /* an orphan from the security team outlives the 24 h bootstrap and its revocation */
    r = kbt_call(env, "POST", "/v1/tokens", env->admin,
                 "{\"sub\":\"security:acme-lead\",\"ops\":[\"admin\"],\"products\":[\"acme\"],"
                 "\"ttl\":2592000,\"orphan\":true}");
    assert_int_equal(r.status, 201);
    assert_true(time_of(json_string_value(json_object_get(r.json, "expires_at"))) >
                (long long)time(NULL) + 25 * 3600);
    lead = strdup(json_string_value(json_object_get(r.json, "token")));
    kbt_resp_free(&r);
    r = kbt_call(env, "POST", "/v1/tokens", lead,
                 "{\"sub\":\"factory:acme-fab\",\"ops\":[\"provision\"],\"products\":[\"acme\"],"
                 "\"ttl\":600}");
    assert_int_equal(r.status, 201);
    fab = strdup(json_string_value(json_object_get(r.json, "token")));
    kbt_resp_free(&r);
    /* the CLI asks for an orphan the same way */
    {
        char cmd[1024], *out = NULL;
        snprintf(cmd, sizeof(cmd),
                 "KEYBROKER_URL='%s' KEYBROKER_TOKEN='%s' '%s/keybroker' --json token issue "
                 "--sub security:acme-deputy --op admin --product acme --ttl 90000 --orphan",
                 env->url, env->admin, env->bin_dir);
        json_t *issued;
        assert_int_equal(kbt_sh(env, cmd, &out), 0);
        issued = json_loads(out, 0, NULL);
        if (!json_is_true(json_object_get(issued, "orphan")))
            fail_msg("keybroker token issue --orphan: %s", out);
        json_decref(issued);
        free(out);
    }
    /* revoking the team admin takes its CI token with it, before the call returns */
    {
        char path[96];
        kbt_resp t = kbt_call(env, "GET", "/v1/tokens?sub=security:acme-team", env->admin, NULL);
        snprintf(path, sizeof(path), "/v1/tokens/%s/revoke",
                 json_string_value(
                     json_object_get(json_array_get(json_object_get(t.json, "tokens"), 0), "jti")));
        kbt_resp_free(&t);
        r = kbt_call(env, "POST", path, env->admin, "{\"reason\":\"team laptop lost\"}");
        assert_int_equal(r.status, 200);
        assert_int_equal(json_array_size(json_object_get(r.json, "revoked")), 2);
        kbt_resp_free(&r);
    }
    r = kbt_call(env, "GET", "/v1/keys/acme-fw", ci, NULL);
    expect(&r, 401, "unauthenticated", "revoked");
    r = kbt_call(env, "GET", "/v1/keys", fab, NULL);
    expect(&r, 403, "forbidden", "read"); /* alive: only its scope refuses the read */
    /* the bootstrap replaced by --init: its tree goes, the orphan's stays, after a restart too */
    kbt_stop(env);
    {
        char *out = NULL, *fresh = NULL;
        assert_int_equal(kbt_run_daemon(env, "-c keybroker.conf --init", &out), 0);
        free(out);
        assert_int_equal(kbt_spawn_daemon(env), 0);
        r = kbt_call(env, "GET", "/v1/keys", acme_admin, NULL);
        expect(&r, 401, "unauthenticated", "revoked");
        r = kbt_call(env, "GET", "/v1/keys", lead, NULL);
        assert_int_equal(r.status, 200);
        kbt_resp_free(&r);
        r = kbt_call(env, "GET", "/v1/keys", fab, NULL);
        expect(&r, 403, "forbidden", "read");
        assert_int_equal(kbt_sh(env, "cat bootstrap.token", &fresh), 0);
        free(env->admin);
        env->admin = fresh;
    }
    free(team);
    free(ci);
    free(lead);
    free(fab);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hsm_object_registered_once),
        cmocka_unit_test(test_key_paths_check_products),
        cmocka_unit_test(test_shared_key),
        cmocka_unit_test(test_reads_bounded_by_products),
        cmocka_unit_test(test_product_view_bounded_by_keys),
        cmocka_unit_test(test_broker_wide_needs_admin_of_everything),
        cmocka_unit_test(test_principals_belong_to_products),
        cmocka_unit_test(test_own_tokens_end_at_exp),
        cmocka_unit_test(test_token_tree),
    };

    return cmocka_run_group_tests_name("custody boundaries", tests, group_setup, group_teardown);
}
