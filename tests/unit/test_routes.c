/*
 * test_routes.c - the stages of the routes in the table (routes.c), called as server.c calls
 * them: each parser on request bodies, paths and queries (a refused one names its field), and
 * each authorizer against tokens of different scopes over a registry of keys.  No HTTP, no
 * store, no HSM: parsers and authorizers need none.  Linked from libkbrd.a.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/queue.h>

#include "../../broker/daemon/kbd.h"
#include "../../broker/daemon/routes.h"

#define PEM_DIGEST "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

/* A broker with a registry of keys, and one request at a time on a route of the table. */
typedef struct {
    kbd d;
    kbr_token tok;
    kbd_req r;
    const kbd_route *route;
} fixture;

static void put_key(kbd *d, const char *name, const char *purpose, const char *alg,
                    const char *products, const char *state)
{
    json_error_t jerr;
    json_t *p = json_loads(products, 0, &jerr);
    json_t *key = json_pack("{s:s,s:s,s:s,s:s,s:o,s:s}", "name", name, "purpose", purpose,
                            "algorithm", alg, "hsm_label", name, "products", p, "state", state);

    assert_non_null(key);
    assert_int_equal(kbd_keys_put(d->keys, key), KBR_OK);
    json_decref(key);
}

static void put_batch(kbd *d, const char *name, const char *product, const char *factory)
{
    json_t *b = json_pack("{s:s,s:s,s:s,s:i,s:i}", "batch", name, "product", product, "factory",
                          factory, "quantity", 10, "provisioned", 0);

    assert_non_null(b);
    assert_int_equal(kbd_batches_put(d->batches, b), KBR_OK);
    json_decref(b);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->d.cfg.body_limit = 1048576;
    f->d.cfg.max_token_ttl = 86400;
    assert_int_equal(kbd_keys_new(&f->d.keys), KBR_OK);
    assert_int_equal(kbd_batches_new(&f->d.batches), KBR_OK);
    assert_int_equal(kbr_policy_new("test", &f->d.policy), KBR_OK);
    put_batch(&f->d, "b-a", "prod-a", "factory:one");
    put_batch(&f->d, "b-b", "prod-b", "factory:two");
    put_key(&f->d, "dbg-a", "debug-auth", "ecdsa-p256", "[\"prod-a\"]", "active");
    put_key(&f->d, "dbg-rsa", "debug-auth", "rsa-3072", "[\"prod-a\"]", "active");
    put_key(&f->d, "fw-a", "firmware-signing", "ecdsa-p256", "[\"prod-a\"]", "active");
    put_key(&f->d, "ota-a", "ota-signing", "ed25519", "[\"prod-a\"]", "active");
    put_key(&f->d, "fw-b", "firmware-signing", "ecdsa-p256", "[\"prod-b\"]", "active");
    put_key(&f->d, "fw-ab", "firmware-signing", "rsa-3072", "[\"prod-a\",\"prod-b\"]", "active");
    put_key(&f->d, "fw-old", "firmware-signing", "ecdsa-p256", "[\"prod-a\"]", "retired");
    put_key(&f->d, "ca-a", "device-identity-ca", "ecdsa-p256", "[\"prod-a\"]", "active");
    *state = f;
    return 0;
}

static void req_reset(fixture *f)
{
    kbd_req *r = &f->r;

    if (r->ctx_free != NULL)
        r->ctx_free(r->ctx);
    json_decref(r->body);
    free(r->arg);
    if (r->query_parsed)
        evhttp_clear_headers(&r->query);
    kbr_audit_rec_free(r->rec);
    kbr_scope_cleanup(&f->tok.scope);
    memset(r, 0, sizeof(*r));
    memset(&f->tok, 0, sizeof(f->tok));
}

static int teardown(void **state)
{
    fixture *f = *state;

    req_reset(f);
    kbd_keys_free(f->d.keys);
    kbd_batches_free(f->d.batches);
    kbr_policy_free(f->d.policy);
    free(f);
    return 0;
}

/* A request on method path (its {} segment and query as the server splits them), with body
 * (NULL: none) and a token of scope (JSON). */
static void req(fixture *f, const char *method, const char *path, const char *body,
                const char *scope)
{
    kbd_req *r = &f->r;
    const char *cap = NULL, *q = strchr(path, '?');
    char raw[256];
    size_t caplen = 0;
    bool known = false;
    json_error_t jerr;
    json_t *s = json_loads(scope, 0, &jerr);
    kbr_msg msg = {{0}};

    req_reset(f);
    r->arrived = time(NULL);
    snprintf(raw, sizeof(raw), "%.*s", (int)(q != NULL ? (size_t)(q - path) : strlen(path)), path);
    f->route = kbd_route_match(method, raw, &cap, &caplen, &known);
    assert_non_null(f->route);
    r->d = &f->d;
    r->route = f->route;
    if (cap != NULL)
        r->arg = kbd_segment_decode(cap, caplen);
    TAILQ_INIT(&r->query);
    r->query_parsed = true;
    if (q != NULL)
        assert_int_equal(evhttp_parse_query_str(q + 1, &r->query), 0);
    if (body != NULL) {
        r->body = json_loads(body, JSON_REJECT_DUPLICATES, &jerr);
        assert_non_null(r->body);
    }
    assert_non_null(s);
    assert_int_equal(kbr_scope_from_json(s, &f->tok.scope, &msg), KBR_OK);
    json_decref(s);
    snprintf(f->tok.jti, sizeof(f->tok.jti), "jti-1");
    f->tok.sub = "security:test";
    r->ctx_free = f->route->free_req;
    /* as server.c: a route without a token has no token, and no record */
    if (!f->route->authenticated)
        return;
    r->tok = &f->tok;
    r->sub = f->tok.sub;
    assert_int_equal(kbr_audit_rec_new(NULL, NULL, f->route->audit_op, NULL, &r->rec), KBR_OK);
}

/* The route's parser, then what the entry is about, as server.c calls them. */
static kbr_err parse(fixture *f)
{
    kbd_req *r = &f->r;
    kbr_err err;

    assert_non_null(f->route->parse);
    err = f->route->parse(r, &r->ctx, &r->msg);
    if (f->route->describe != NULL && r->ctx != NULL)
        assert_int_equal(f->route->describe(r, r->ctx), KBR_OK);
    return err;
}

/* Parse, which must take the request, then the route's authorizer. */
static kbr_err authorize(fixture *f)
{
    kbd_req *r = &f->r;
    kbr_err err = parse(f);

    if (err != KBR_OK)
        print_error("parse: %s\n", r->msg.text);
    assert_int_equal(err, KBR_OK);
    return f->route->authorize != NULL ? f->route->authorize(r, r->ctx) : KBR_OK;
}

static void assert_names(const fixture *f, const char *field)
{
    if (strstr(f->r.msg.text, field) == NULL)
        fail_msg("\"%s\" does not name %s", f->r.msg.text, field);
}

/* parse refuses the request with 400, naming field. */
static void refused(fixture *f, const char *field)
{
    assert_int_equal(parse(f), KBR_ERR_BAD_REQUEST);
    assert_names(f, field);
}

#define ADMIN    "{\"ops\":[\"admin\"]}"
#define SIGNER_A "{\"ops\":[\"sign\"],\"products\":[\"prod-a\"]}"
#define SIGNER   "{\"ops\":[\"sign\"]}"
#define SBOM     "{\"format\":\"cyclonedx\",\"components\":[{\"name\":\"zlib\",\"version\":\"1.3\"}]}"
#define FW_BODY                                                                                    \
    "{\"key\":\"fw-a\",\"digest\":\"" PEM_DIGEST "\",\"artifact\":{\"product\":\"prod-a\","        \
    "\"version\":\"1.0.0\"},\"sbom\":" SBOM "}"

static void test_table(void **state)
{
    const kbd_route *metrics;

    (void)state;
    for (size_t i = 0; i < kbd_route_count(); i++) {
        const kbd_route *route = kbd_route_at(i);
        /* every route is served by its stages: something makes its answer */
        assert_true(route->parse != NULL || route->work != NULL || route->finish != NULL);
        /* admit stands for the token: only a route without one has it, and a route without a
         * token reads a body only past it */
        if (route->admit != NULL)
            assert_false(route->authenticated);
        if (route->open_body_max > 0)
            assert_non_null(route->admit);
        /* a response sent by the route itself follows a durable record */
        if (route->respond != NULL)
            assert_true(route->authenticated && route->finish == NULL);
        /* a typed request is freed by the route that makes it */
        if (route->free_req != NULL)
            assert_non_null(route->parse);
        /* a route that reserves a key use has an authorizer to name the key */
        if (route->reserve_use)
            assert_non_null(route->authorize);
        /* work_inline is a property of a work stage */
        if (route->work_inline)
            assert_non_null(route->work);
        /* a route without a token has no record to describe; its authorizer, if any, reads
         * registries only (a CRL's key) */
        if (!route->authenticated)
            assert_null(route->describe);
        /* a route that waits goes on to work or an answer */
        if (route->wait != NULL)
            assert_true(route->work != NULL || route->finish != NULL);
    }
    /* /metrics: no token, no record, an answer made on the event thread */
    metrics = kbd_route_match("GET", "/metrics", NULL, NULL, &(bool){false});
    assert_non_null(metrics);
    assert_false(metrics->authenticated);
    assert_true(metrics->finish == kbd_metrics_finish && metrics->parse == NULL &&
                metrics->admit == NULL);
    /* the stages of the central routes are in the table */
    assert_non_null(kbd_route_match("POST", "/v1/keys", NULL, NULL, &(bool){false})->parse);
}

static void test_sign_parse(void **state)
{
    fixture *f = *state;

    req(f, "POST", "/v1/sign", FW_BODY, SIGNER);
    assert_int_equal(parse(f), KBR_OK);
    req(f, "POST", "/v1/sign", "{\"digest\":\"" PEM_DIGEST "\"}", SIGNER);
    refused(f, "key: required");
    req(f, "POST", "/v1/sign", "{\"key\":\"fw-a\",\"nonce\":1}", SIGNER);
    refused(f, "nonce");
    req(f, "POST", "/v1/sign", "{\"key\":\"../x\"}", SIGNER);
    refused(f, "key");
    req(f, "POST", "/v1/sign", "{\"key\":\"fw-a\",\"digest\":\"zz\"}", SIGNER);
    refused(f, "digest: not valid hex");
    req(f, "POST", "/v1/sign", "{\"key\":\"fw-a\",\"digest\":\"abcd\"}", SIGNER);
    refused(f, "digest: 2 bytes");
    req(f, "POST", "/v1/sign",
        "{\"key\":\"fw-a\",\"digest\":\"" PEM_DIGEST "\",\"hash\":\"sha384\"}", SIGNER);
    refused(f, "digest: 32 bytes, but a sha384 digest has 48");
    req(f, "POST", "/v1/sign", "{\"key\":\"fw-a\",\"digest\":\"" PEM_DIGEST "\",\"hash\":\"md5\"}",
        SIGNER);
    refused(f, "hash");
    req(f, "POST", "/v1/sign", "{\"key\":\"ota-a\",\"message_b64\":\"***\"}", SIGNER);
    refused(f, "message_b64");
    req(f, "POST", "/v1/sign", "{\"key\":\"fw-a\",\"format\":7}", SIGNER);
    refused(f, "format");
    req(f, "POST", "/v1/sign", "{\"key\":\"fw-a\",\"artifact\":[]}", SIGNER);
    refused(f, "artifact: must be an object");
    req(f, "POST", "/v1/sign", "{\"key\":\"fw-a\",\"artifact\":{\"version\":\"1\"}}", SIGNER);
    refused(f, "artifact.product");
    req(f, "POST", "/v1/sign", "{\"key\":\"fw-a\",\"artifact\":{\"product\":\"p\",\"ver\":\"1\"}}",
        SIGNER);
    refused(f, "\"ver\"");
    req(f, "POST", "/v1/sign",
        "{\"key\":\"fw-a\",\"sbom\":{\"format\":\"cyclonedx\",\"components\":[{}]}}", SIGNER);
    refused(f, "sbom.components[0].name");
    req(f, "POST", "/v1/sign", "{\"key\":\"fw-a\",\"sbom\":{},\"sbom_b64\":\"\"}", SIGNER);
    refused(f, "sbom");
}

static void test_sign_authorize(void **state)
{
    fixture *f = *state;

    req(f, "POST", "/v1/sign", FW_BODY, SIGNER_A);
    assert_int_equal(authorize(f), KBR_OK);
    assert_string_equal(f->r.rec->key, "fw-a");

    /* a token of product prod-a, on prod-b's key for prod-b */
    req(f, "POST", "/v1/sign",
        "{\"key\":\"fw-b\",\"digest\":\"" PEM_DIGEST "\",\"artifact\":{\"product\":\"prod-b\","
        "\"version\":\"1\"},\"sbom\":" SBOM "}",
        SIGNER_A);
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "artifact.product: \"prod-b\" is outside the token's products");
    assert_string_equal(f->r.rec->key, "fw-b"); /* the denial names the key */

    /* the key serves prod-b only: no signing of prod-a's firmware with it */
    req(f, "POST", "/v1/sign",
        "{\"key\":\"fw-b\",\"digest\":\"" PEM_DIGEST "\",\"artifact\":{\"product\":\"prod-a\","
        "\"version\":\"1\"},\"sbom\":" SBOM "}",
        SIGNER);
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "does not serve product");

    req(f, "POST", "/v1/sign", FW_BODY, "{\"ops\":[\"sign\"],\"keys\":[\"ota-*\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "outside the token's keys");

    req(f, "POST", "/v1/sign", "{\"key\":\"nope\",\"digest\":\"" PEM_DIGEST "\"}", SIGNER);
    assert_int_equal(authorize(f), KBR_ERR_NOT_FOUND);
    req(f, "POST", "/v1/sign", "{\"key\":\"fw-old\",\"digest\":\"" PEM_DIGEST "\"}", SIGNER);
    assert_int_equal(authorize(f), KBR_ERR_CONFLICT);
    req(f, "POST", "/v1/sign", "{\"key\":\"ca-a\",\"digest\":\"" PEM_DIGEST "\"}", SIGNER);
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "device-identity-ca");

    /* what the key makes of the body: an ed25519 key signs a message, not a digest */
    req(f, "POST", "/v1/sign", "{\"key\":\"ota-a\",\"digest\":\"" PEM_DIGEST "\"}", SIGNER);
    assert_int_equal(authorize(f), KBR_ERR_BAD_REQUEST);
    assert_names(f, "digest: ed25519 keys sign the message itself");
    req(f, "POST", "/v1/sign", "{\"key\":\"fw-a\",\"message_b64\":\"aGk=\"}", SIGNER);
    assert_int_equal(authorize(f), KBR_ERR_BAD_REQUEST);
    assert_names(f, "message_b64: only ed25519 keys");
    req(f, "POST", "/v1/sign", "{\"key\":\"fw-a\"}", SIGNER);
    assert_int_equal(authorize(f), KBR_ERR_BAD_REQUEST);
    assert_names(f, "digest: required");
    req(f, "POST", "/v1/sign",
        "{\"key\":\"fw-a\",\"digest\":\"" PEM_DIGEST "\",\"padding\":\"pss\"}", SIGNER);
    assert_int_equal(authorize(f), KBR_ERR_BAD_REQUEST);
    assert_names(f, "padding: only RSA keys");
    req(f, "POST", "/v1/sign",
        "{\"key\":\"fw-ab\",\"digest\":\"" PEM_DIGEST "\",\"padding\":\"x\"}", SIGNER);
    assert_int_equal(authorize(f), KBR_ERR_BAD_REQUEST);
    assert_names(f, "padding: must be pss or pkcs1");
    req(f, "POST", "/v1/sign", "{\"key\":\"fw-a\",\"digest\":\"" PEM_DIGEST "\"}", SIGNER);
    assert_int_equal(authorize(f), KBR_ERR_BAD_REQUEST);
    assert_names(f, "artifact: required");
    req(f, "POST", "/v1/sign",
        "{\"key\":\"fw-a\",\"digest\":\"" PEM_DIGEST "\",\"artifact\":{\"product\":\"prod-a\","
        "\"version\":\"1\"}}",
        SIGNER);
    assert_int_equal(authorize(f), KBR_ERR_BAD_REQUEST);
    assert_names(f, "sbom: firmware needs its SBOM");
    req(f, "POST", "/v1/sign",
        "{\"key\":\"ota-a\",\"message_b64\":\"aGk=\",\"artifact\":{\"product\":\"prod-a\","
        "\"version\":\"1\",\"kind\":\"firmware\"}}",
        SIGNER);
    assert_int_equal(authorize(f), KBR_ERR_BAD_REQUEST);
    assert_names(f, "artifact.kind");
}

static void test_key_create(void **state)
{
    fixture *f = *state;
    const kbd_key_create_req *c;

    req(f, "POST", "/v1/keys",
        "{\"name\":\"fw-c\",\"purpose\":\"firmware-signing\",\"algorithm\":\"ed25519\","
        "\"products\":[\"prod-a\"]}",
        ADMIN);
    assert_int_equal(authorize(f), KBR_OK);
    c = f->r.ctx;
    assert_string_equal(c->name, "fw-c");
    assert_int_equal(c->alg, KBR_ALG_ED25519);
    assert_string_equal(c->hsm_label, KBD_KEY_LABEL_PREFIX "fw-c");
    assert_null(c->owner);
    assert_string_equal(f->r.rec->key, "fw-c");

    req(f, "POST", "/v1/keys", "{\"name\":\"k\",\"purpose\":\"x\",\"products\":[\"p\"]}", ADMIN);
    refused(f, "purpose: must be");
    req(f, "POST", "/v1/keys", "{\"name\":\"k\",\"purpose\":\"debug-auth\",\"products\":[\"p\"]}",
        ADMIN);
    refused(f, "algorithm: required");
    req(f, "POST", "/v1/keys",
        "{\"name\":\"k\",\"purpose\":\"ota-encryption\",\"hsm_label\":\"l\",\"products\":[\"p\"]}",
        ADMIN);
    refused(f, "hsm_label: an ota-encryption key");
    req(f, "POST", "/v1/keys",
        "{\"name\":\"k\",\"purpose\":\"debug-auth\",\"algorithm\":\"dsa\",\"products\":[\"p\"]}",
        ADMIN);
    refused(f, "algorithm: must be");
    req(f, "POST", "/v1/keys",
        "{\"name\":\"k\",\"purpose\":\"debug-auth\",\"algorithm\":\"ed25519\"}", ADMIN);
    refused(f, "products");

    /* an admin of prod-a makes no key for prod-b, nor registers an HSM object */
    req(f, "POST", "/v1/keys",
        "{\"name\":\"k\",\"purpose\":\"debug-auth\",\"algorithm\":\"ed25519\",\"products\":"
        "[\"prod-a\",\"prod-b\"]}",
        "{\"ops\":[\"admin\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "products[1]: \"prod-b\"");
    req(f, "POST", "/v1/keys",
        "{\"name\":\"k\",\"purpose\":\"debug-auth\",\"hsm_label\":\"found\",\"products\":"
        "[\"prod-a\"]}",
        "{\"ops\":[\"admin\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "hsm_label");
    req(f, "POST", "/v1/keys",
        "{\"name\":\"k\",\"purpose\":\"debug-auth\",\"hsm_label\":\"kbr/issuer\",\"products\":"
        "[\"prod-a\"]}",
        ADMIN);
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "hsm_label: labels under kbr/");
    req(f, "POST", "/v1/keys",
        "{\"name\":\"k2\",\"purpose\":\"debug-auth\",\"hsm_label\":\"fw-a\",\"products\":"
        "[\"prod-a\"]}",
        ADMIN);
    assert_int_equal(authorize(f), KBR_ERR_CONFLICT);
    assert_names(f, "as key \"fw-a\"");
    req(f, "POST", "/v1/keys",
        "{\"name\":\"fw-a\",\"purpose\":\"debug-auth\",\"algorithm\":\"ed25519\",\"products\":"
        "[\"prod-a\"]}",
        ADMIN);
    assert_int_equal(authorize(f), KBR_ERR_CONFLICT);
    req(f, "POST", "/v1/keys",
        "{\"name\":\"x\",\"purpose\":\"debug-auth\",\"algorithm\":\"ed25519\",\"products\":"
        "[\"prod-a\"]}",
        "{\"ops\":[\"admin\"],\"keys\":[\"fw-*\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "name: \"x\" is outside the token's keys");
}

static void test_key_show_and_retire(void **state)
{
    fixture *f = *state;

    req(f, "GET", "/v1/keys/fw-a", NULL, "{\"ops\":[\"read\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_OK);
    /* a reader of prod-a does not see prod-b's key */
    req(f, "GET", "/v1/keys/fw-b", NULL, "{\"ops\":[\"read\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    /* a signer sees the key it uses; an ota-report token sees none */
    req(f, "GET", "/v1/keys/fw-a", NULL, SIGNER_A);
    assert_int_equal(authorize(f), KBR_OK);
    req(f, "GET", "/v1/keys/fw-a", NULL, "{\"ops\":[\"ota-report\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "read");
    req(f, "GET", "/v1/keys/nope", NULL, ADMIN);
    assert_int_equal(authorize(f), KBR_ERR_NOT_FOUND);
    req(f, "GET", "/v1/keys/a%20b", NULL, ADMIN);
    refused(f, "key name in the path");

    req(f, "POST", "/v1/keys/fw-a/retire", "{\"reason\":\"rotated\"}", ADMIN);
    assert_int_equal(authorize(f), KBR_OK);
    assert_string_equal(((kbd_key_retire_req *)f->r.ctx)->reason, "rotated");
    req(f, "POST", "/v1/keys/fw-a/retire", "{\"reason\":5}", ADMIN);
    refused(f, "reason");
    assert_string_equal(f->r.rec->key, "fw-a"); /* the refusal's entry names the key */
    req(f, "POST", "/v1/keys/fw-a/retire", "{\"why\":\"x\"}", ADMIN);
    refused(f, "why");
    req(f, "POST", "/v1/keys/fw-old/retire", "{}", ADMIN);
    assert_int_equal(authorize(f), KBR_ERR_CONFLICT);
    /* prod-a's admin holds fw-a, not fw-ab, which prod-b shares */
    req(f, "POST", "/v1/keys/fw-ab/retire", "{}",
        "{\"ops\":[\"admin\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "also serves products outside");
    req(f, "POST", "/v1/keys/fw-a/retire", "{}", "{\"ops\":[\"admin\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_OK);
}

static void test_lists(void **state)
{
    fixture *f = *state;
    const kbd_audit_page_req *c;

    req(f, "GET", "/v1/keys", NULL, "{\"ops\":[\"read\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_OK);
    /* the worker filters by the token's scope, copied */
    assert_true(((kbd_scoped_req *)f->r.ctx)->scope.products.present);

    req(f, "GET", "/v1/audit?after=5&limit=10", NULL, "{\"ops\":[\"read\"],\"keys\":[\"fw-*\"]}");
    assert_int_equal(authorize(f), KBR_OK);
    c = f->r.ctx;
    assert_int_equal(c->after, 5);
    assert_int_equal(c->limit, 10);
    assert_true(c->scope.keys.present);
    req(f, "GET", "/v1/audit", NULL, ADMIN);
    assert_int_equal(parse(f), KBR_OK);
    assert_int_equal(((kbd_audit_page_req *)f->r.ctx)->limit, 100);
    req(f, "GET", "/v1/audit?limit=0", NULL, ADMIN);
    refused(f, "limit");
    req(f, "GET", "/v1/audit?limit=1001", NULL, ADMIN);
    refused(f, "limit");
    req(f, "GET", "/v1/audit?after=-1", NULL, ADMIN);
    refused(f, "after");
    req(f, "GET", "/v1/audit?after=1x", NULL, ADMIN);
    refused(f, "after");
}

#define HEX32 "00112233445566778899aabbccddeeff"

static void test_tokens(void **state)
{
    fixture *f = *state;
    const kbd_token_issue_req *c;

    req(f, "POST", "/v1/tokens",
        "{\"sub\":\"ci:fw\",\"ops\":[\"sign\"],\"products\":[\"prod-a\"],\"ttl\":600}", ADMIN);
    assert_int_equal(authorize(f), KBR_OK);
    c = f->r.ctx;
    assert_string_equal(c->sub, "ci:fw");
    assert_string_equal(c->parent_jti, "jti-1");
    assert_int_equal(c->ttl, 600);
    req(f, "POST", "/v1/tokens", "{\"ops\":[\"sign\"],\"ttl\":600}", ADMIN);
    refused(f, "sub: required");
    req(f, "POST", "/v1/tokens", "{\"sub\":\"nobody\",\"ops\":[\"sign\"],\"ttl\":600}", ADMIN);
    refused(f, "sub: must be <kind>:<name>");
    req(f, "POST", "/v1/tokens", "{\"sub\":\"ci:fw\",\"ops\":[\"sign\"],\"ttl\":86401}", ADMIN);
    refused(f, "ttl");
    req(f, "POST", "/v1/tokens", "{\"sub\":\"ci:fw\",\"ops\":[\"sign\"],\"ttl\":6,\"orphan\":1}",
        ADMIN);
    refused(f, "orphan");
    req(f, "POST", "/v1/tokens",
        "{\"sub\":\"ci:fw\",\"ops\":[\"sign\"],\"ttl\":6,\"bind_cert_sha256\":\"zz\"}", ADMIN);
    refused(f, "bind_cert_sha256");
    req(f, "POST", "/v1/tokens", "{\"sub\":\"ci:fw\",\"ops\":[\"fly\"],\"ttl\":6}", ADMIN);
    refused(f, "ops");
    /* an admin of prod-a grants nothing of prod-b, and no orphan */
    req(f, "POST", "/v1/tokens",
        "{\"sub\":\"ci:fw\",\"ops\":[\"sign\"],\"products\":[\"prod-b\"],\"ttl\":6}",
        "{\"ops\":[\"admin\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "prod-b");
    req(f, "POST", "/v1/tokens",
        "{\"sub\":\"ci:fw2\",\"ops\":[\"sign\"],\"products\":[\"prod-a\"],\"ttl\":6,\"orphan\":"
        "true}",
        "{\"ops\":[\"admin\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "orphan");

    req(f, "GET", "/v1/tokens?sub=ci:fw&key=fw-a&active=true", NULL, ADMIN);
    assert_int_equal(authorize(f), KBR_OK);
    assert_true(((kbd_token_list_req *)f->r.ctx)->active);
    req(f, "GET", "/v1/tokens?sub=nobody", NULL, ADMIN);
    refused(f, "sub");
    req(f, "GET", "/v1/tokens?key=a/b", NULL, ADMIN);
    refused(f, "key");
    req(f, "GET", "/v1/tokens?active=yes", NULL, ADMIN);
    refused(f, "active");

    req(f, "POST", "/v1/tokens/" HEX32 "/revoke", "{\"reason\":7}", ADMIN);
    refused(f, "reason");
    req(f, "POST", "/v1/tokens/" HEX32 "/revoke", "{\"reason\":\"leaked\"}", ADMIN);
    assert_int_equal(authorize(f), KBR_ERR_NOT_FOUND);

    req(f, "POST", "/v1/revocations", "{\"sub\":\"ci:fw\",\"key\":\"fw-a\"}", ADMIN);
    refused(f, "exactly one of sub or key");
    req(f, "POST", "/v1/revocations", "{\"reason\":\"x\"}", ADMIN);
    refused(f, "exactly one of sub or key");
    req(f, "POST", "/v1/revocations", "{\"sub\":\"x\"}", ADMIN);
    refused(f, "sub: must be a principal");
    req(f, "POST", "/v1/revocations", "{\"key\":\"fw-a\"}", ADMIN);
    assert_int_equal(authorize(f), KBR_OK);
    req(f, "POST", "/v1/revocations", "{\"key\":\"fw-a\"}",
        "{\"ops\":[\"admin\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
}

#define BATCH(extra)                                                                               \
    "{\"batch\":\"b-new\",\"product\":\"prod-a\",\"factory\":\"factory:one\",\"quantity\":5" extra \
    "}"

static void test_batches(void **state)
{
    fixture *f = *state;

    req(f, "POST", "/v1/batches", BATCH(",\"market\":[\"DE\",\"FR\"]"), ADMIN);
    assert_int_equal(authorize(f), KBR_OK);
    assert_int_equal(((kbd_batch_create_req *)f->r.ctx)->quantity, 5);
    req(f, "POST", "/v1/batches", BATCH(""), ADMIN);
    refused(f, "market: required");
    req(f, "POST", "/v1/batches", BATCH(",\"market\":[\"DE\",\"DE\"]"), ADMIN);
    refused(f, "market[1]");
    req(f, "POST", "/v1/batches", BATCH(",\"market\":[\"EU\"]"), ADMIN);
    refused(f, "market[0]");
    req(f, "POST", "/v1/batches",
        "{\"batch\":\"b\",\"product\":\"p\",\"factory\":\"ci:x\",\"quantity\":5,\"market\":[\"DE\"]"
        "}",
        ADMIN);
    refused(f, "factory");
    req(f, "POST", "/v1/batches",
        "{\"batch\":\"b\",\"product\":\"p\",\"factory\":\"factory:x\",\"quantity\":0}", ADMIN);
    refused(f, "quantity");
    req(f, "POST", "/v1/batches", BATCH(",\"market\":[\"DE\"]"),
        "{\"ops\":[\"admin\"],\"products\":[\"prod-b\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "product");
    req(f, "POST", "/v1/batches",
        "{\"batch\":\"b-a\",\"product\":\"prod-a\",\"factory\":\"factory:one\",\"quantity\":5,"
        "\"market\":[\"DE\"]}",
        ADMIN);
    assert_int_equal(authorize(f), KBR_ERR_CONFLICT);

    req(f, "GET", "/v1/batches/b-a", NULL, "{\"ops\":[\"read\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_OK);
    req(f, "GET", "/v1/batches/b-b", NULL, "{\"ops\":[\"read\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    /* a factory reads the batches ordered from it, and no other */
    req(f, "GET", "/v1/batches/b-b", NULL, "{\"ops\":[\"provision\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "not ordered from");
    req(f, "GET", "/v1/batches/b-a", NULL, "{\"ops\":[\"sign\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    req(f, "GET", "/v1/batches/nope", NULL, ADMIN);
    assert_int_equal(authorize(f), KBR_ERR_NOT_FOUND);
    req(f, "GET", "/v1/batches/a%20b", NULL, ADMIN);
    refused(f, "batch name in the path");
}

#define DEBUG_BODY(key, device)                                                                    \
    "{\"key\":\"" key "\",\"device\":\"" device "\",\"product\":\"prod-a\",\"ticket\":\"RMA-1\","  \
    "\"challenge\":\"" HEX32                                                                       \
    "\",\"permissions\":\"01\",\"message_b64\":\"ABEiM0RVZneImaq7zN3u/w==\"}"

static void test_devices_and_debug(void **state)
{
    fixture *f = *state;

    req(f, "POST", "/v1/devices/SN1/revoke",
        "{\"product\":\"prod-a\",\"reason\":\"keyCompromise\"}", ADMIN);
    assert_int_equal(authorize(f), KBR_OK);
    assert_int_equal(((kbd_device_revoke_req *)f->r.ctx)->reason_code, 1);
    req(f, "POST", "/v1/devices/SN1/revoke", "{\"product\":\"prod-a\",\"reason\":\"bored\"}",
        ADMIN);
    refused(f, "reason: \"bored\"");
    req(f, "POST", "/v1/devices/SN1/revoke", "{\"reason\":\"superseded\"}", ADMIN);
    refused(f, "product: required");
    req(f, "POST", "/v1/devices/SN1/revoke", "{\"product\":\"prod-a\",\"reason\":\"superseded\"}",
        "{\"ops\":[\"admin\"],\"devices\":[\"SN2\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "device \"SN1\"");

    req(f, "POST", "/v1/debug-auth", DEBUG_BODY("dbg-a", "SN1"),
        "{\"ops\":[\"debug-auth\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_OK);
    req(f, "POST", "/v1/debug-auth", DEBUG_BODY("dbg-a", "SN1"),
        "{\"ops\":[\"debug-auth\"],\"devices\":[\"SN9\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "device");
    req(f, "POST", "/v1/debug-auth", DEBUG_BODY("fw-a", "SN1"), "{\"ops\":[\"debug-auth\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "debug-auth key");
    req(f, "POST", "/v1/debug-auth", DEBUG_BODY("dbg-rsa", "SN1"), "{\"ops\":[\"debug-auth\"]}");
    assert_int_equal(authorize(f), KBR_ERR_BAD_REQUEST);
    req(f, "POST", "/v1/debug-auth",
        "{\"key\":\"dbg-a\",\"device\":\"SN1\",\"product\":\"prod-a\",\"challenge\":\"" HEX32 "\"}",
        "{\"ops\":[\"debug-auth\"]}");
    refused(f, "ticket: required");
    req(f, "POST", "/v1/debug-auth",
        "{\"key\":\"dbg-a\",\"device\":\"SN1\",\"product\":\"prod-a\",\"ticket\":\"t\","
        "\"challenge\":\"0011\"}",
        "{\"ops\":[\"debug-auth\"]}");
    refused(f, "challenge");
    req(f, "POST", "/v1/debug-auth",
        "{\"key\":\"dbg-a\",\"device\":\"SN1\",\"product\":\"prod-a\",\"ticket\":\"t\","
        "\"challenge\":\"" HEX32 "\",\"permissions\":\"01\",\"message_b64\":\"aGVsbG8=\"}",
        "{\"ops\":[\"debug-auth\"]}");
    refused(f, "message_b64: does not contain the challenge");
}

static void test_rotate(void **state)
{
    fixture *f = *state;

    req(f, "POST", "/v1/devices/SN1/certificates",
        "{\"key\":\"ca-a\",\"product\":\"prod-a\",\"csr_pem\":\"x\"}",
        "{\"ops\":[\"rotate\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_OK);
    assert_true(json_is_object(json_object_get(f->r.rec->detail, "device")));
    req(f, "POST", "/v1/devices/SN1/certificates", "{\"key\":\"ca-a\",\"product\":\"prod-a\"}",
        "{\"ops\":[\"rotate\"]}");
    refused(f, "csr_pem: required");
    req(f, "POST", "/v1/devices/SN1/certificates", "{\"product\":\"prod-a\",\"csr_pem\":\"x\"}",
        "{\"ops\":[\"rotate\"]}");
    refused(f, "key: required");
    req(f, "POST", "/v1/devices/a%20b/certificates",
        "{\"key\":\"ca-a\",\"product\":\"prod-a\",\"csr_pem\":\"x\"}", "{\"ops\":[\"rotate\"]}");
    refused(f, "device serial in the path");
    /* a signing key makes no device certificate; a CA key of prod-a none of prod-b */
    req(f, "POST", "/v1/devices/SN1/certificates",
        "{\"key\":\"fw-a\",\"product\":\"prod-a\",\"csr_pem\":\"x\"}", "{\"ops\":[\"rotate\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "device-identity-ca");
    req(f, "POST", "/v1/devices/SN1/certificates",
        "{\"key\":\"ca-a\",\"product\":\"prod-b\",\"csr_pem\":\"x\"}", "{\"ops\":[\"rotate\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "does not serve product");
    req(f, "POST", "/v1/devices/SN1/certificates",
        "{\"key\":\"ca-a\",\"product\":\"prod-a\",\"csr_pem\":\"x\"}",
        "{\"ops\":[\"rotate\"],\"devices\":[\"SN2\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "device \"SN1\"");
}

static void test_ota_and_products(void **state)
{
    fixture *f = *state;

    req(f, "POST", "/v1/ota/deployments",
        "{\"product\":\"prod-a\",\"version\":\"1.0\",\"campaign\":\"c\",\"results\":[{\"device\":"
        "\"SN1\",\"status\":\"installed\",\"at\":\"2026-01-01T00:00:00Z\"}]}",
        "{\"ops\":[\"ota-report\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_OK);
    req(f, "POST", "/v1/ota/deployments",
        "{\"product\":\"prod-a\",\"version\":\"1.0\",\"campaign\":\"c\",\"results\":[{\"device\":"
        "\"SN1\",\"status\":\"installed\",\"at\":\"2026-01-01T00:00:00Z\"}]}",
        "{\"ops\":[\"ota-report\"],\"devices\":[\"SN2\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "results[0].device");
    req(f, "POST", "/v1/ota/deployments",
        "{\"product\":\"prod-a\",\"version\":\"1.0\",\"campaign\":\"c\",\"results\":[]}",
        "{\"ops\":[\"ota-report\"]}");
    refused(f, "results: required");
    req(f, "POST", "/v1/ota/deployments",
        "{\"product\":\"prod-a\",\"version\":\"1.0\",\"campaign\":\"c\",\"results\":[{\"device\":"
        "\"SN1\",\"status\":\"done\",\"at\":\"2026-01-01T00:00:00Z\"}]}",
        "{\"ops\":[\"ota-report\"]}");
    refused(f, "results[0].status");
    req(f, "POST", "/v1/ota/deployments",
        "{\"product\":\"prod-a\",\"version\":\"1.0\",\"campaign\":\"c\",\"results\":[{\"device\":"
        "\"SN1\",\"status\":\"failed\",\"at\":\"2999-01-01T00:00:00Z\"}]}",
        "{\"ops\":[\"ota-report\"]}");
    refused(f, "results[0].at");
    /* "the future" is after the request arrived, not after the clock at parse time */
    req(f, "POST", "/v1/ota/deployments",
        "{\"product\":\"prod-a\",\"version\":\"1.0\",\"campaign\":\"c\",\"results\":[{\"device\":"
        "\"SN1\",\"status\":\"installed\",\"at\":\"2026-01-01T00:10:00Z\"}]}",
        "{\"ops\":[\"ota-report\"]}");
    f->r.arrived = 1767225600; /* 2026-01-01T00:00:00Z */
    refused(f, "results[0].at: 2026-01-01T00:10:00Z is in the future");
    req(f, "POST", "/v1/ota/deployments",
        "{\"product\":\"prod-a\",\"version\":\"1.0\",\"campaign\":\"c\",\"results\":[{\"device\":"
        "\"SN1\",\"status\":\"installed\",\"at\":\"2026-01-01T00:04:00Z\"}]}",
        "{\"ops\":[\"ota-report\"]}");
    f->r.arrived = 1767225600;
    assert_int_equal(parse(f), KBR_OK); /* within the clock skew allowed */

    req(f, "POST", "/v1/products",
        "{\"product\":\"prod-a\",\"placed_on_market\":\"2026-01-01\",\"support_until\":"
        "\"2031-01-01\"}",
        ADMIN);
    assert_int_equal(authorize(f), KBR_OK);
    req(f, "POST", "/v1/products",
        "{\"product\":\"prod-a\",\"placed_on_market\":\"2026-01-01\",\"support_until\":"
        "\"2025-01-01\"}",
        ADMIN);
    refused(f, "support_until");
    req(f, "POST", "/v1/products",
        "{\"product\":\"prod-a\",\"placed_on_market\":\"2026-02-30\",\"support_until\":"
        "\"2031-01-01\"}",
        ADMIN);
    refused(f, "placed_on_market");
    req(f, "POST", "/v1/products",
        "{\"product\":\"prod-b\",\"placed_on_market\":\"2026-01-01\",\"support_until\":"
        "\"2031-01-01\"}",
        "{\"ops\":[\"admin\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    req(f, "GET", "/v1/products/prod-b", NULL, "{\"ops\":[\"read\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    req(f, "GET", "/v1/products/prod-a", NULL, "{\"ops\":[\"read\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_OK);
}

#define INCIDENT(extra)                                                                            \
    "{\"id\":\"INC-1\",\"title\":\"t\",\"component\":\"zlib\",\"aware_at\":"                       \
    "\"2026-01-01T00:00:00Z\"" extra "}"

static void test_incidents(void **state)
{
    fixture *f = *state;

    req(f, "POST", "/v1/incidents",
        INCIDENT(",\"actively_exploited\":false,\"severity\":\"high\",\"product\":\"prod-a\""),
        "{\"ops\":[\"admin\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_OK);
    req(f, "POST", "/v1/incidents", INCIDENT(",\"actively_exploited\":false,\"severity\":\"high\""),
        "{\"ops\":[\"admin\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "product");
    req(f, "POST", "/v1/incidents", INCIDENT(",\"severity\":\"high\""), ADMIN);
    refused(f, "actively_exploited");
    req(f, "POST", "/v1/incidents", INCIDENT(",\"actively_exploited\":true,\"severity\":\"dire\""),
        ADMIN);
    refused(f, "severity");
    req(f, "POST", "/v1/incidents",
        INCIDENT(",\"actively_exploited\":true,\"severity\":\"low\",\"cve\":\"CVE-1\""), ADMIN);
    refused(f, "cve");
    req(f, "POST", "/v1/incidents/INC-1/fix", "{\"fixed_version\":\"1.1\"}", ADMIN);
    assert_int_equal(authorize(f), KBR_OK);
    req(f, "POST", "/v1/incidents/INC-1/fix", "{\"fixed_version\":\"1.1\",\"available_at\":\"x\"}",
        ADMIN);
    refused(f, "available_at");
    req(f, "POST", "/v1/incidents/INC-1/reports", "{\"stage\":\"late\"}", ADMIN);
    refused(f, "stage");
    req(f, "GET", "/v1/incidents/INC-1/reports/final?format=csaf", NULL, ADMIN);
    assert_int_equal(authorize(f), KBR_OK);
    assert_string_equal(((kbd_incident_req *)f->r.ctx)->stage, "final");
    assert_true(((kbd_incident_req *)f->r.ctx)->csaf);
    req(f, "GET", "/v1/incidents/INC-1/reports/notification?format=xml", NULL, ADMIN);
    refused(f, "format");
}

static void test_certificates_and_audit(void **state)
{
    fixture *f = *state;

    req(f, "POST", "/v1/keys/ca-a/certificate",
        "{\"self_signed\":{\"subject\":\"CN=Device CA\",\"days\":365}}", ADMIN);
    assert_int_equal(authorize(f), KBR_OK);
    assert_true(((kbd_key_certificate_req *)f->r.ctx)->ca_key);
    req(f, "POST", "/v1/keys/fw-a/certificate",
        "{\"self_signed\":{\"subject\":\"CN=x\",\"days\":365}}", ADMIN);
    assert_int_equal(authorize(f), KBR_ERR_BAD_REQUEST);
    assert_names(f, "self_signed: only device-identity-ca");
    req(f, "POST", "/v1/keys/ca-a/certificate",
        "{\"self_signed\":{\"subject\":\"CN=x\",\"days\":0}}", ADMIN);
    refused(f, "self_signed.days");
    req(f, "POST", "/v1/keys/ca-a/certificate", "{\"pem\":\"x\",\"self_signed\":{}}", ADMIN);
    refused(f, "exactly one of pem or self_signed");
    req(f, "POST", "/v1/keys/ca-a/certificate",
        "{\"chain_pem\":\"x\",\"self_signed\":{\"subject\":\"CN=x\",\"days\":1}}", ADMIN);
    refused(f, "chain_pem: only with pem");
    req(f, "POST", "/v1/keys/fw-old/certificate", "{\"pem\":\"x\"}", ADMIN);
    assert_int_equal(authorize(f), KBR_ERR_CONFLICT);

    req(f, "GET", "/v1/audit/proof?seq=3", NULL, "{\"ops\":[\"read\"]}");
    assert_int_equal(authorize(f), KBR_OK);
    assert_int_equal(((kbd_audit_proof_req *)f->r.ctx)->size, 0);
    req(f, "GET", "/v1/audit/proof?size=3", NULL, "{\"ops\":[\"read\"]}");
    refused(f, "seq: required");
    req(f, "GET", "/v1/audit/consistency?first=1&second=x", NULL, "{\"ops\":[\"read\"]}");
    refused(f, "second");
    req(f, "POST", "/v1/audit/key/rotate", "{\"reason\":\"yearly\"}",
        "{\"ops\":[\"admin\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    req(f, "POST", "/v1/audit/key/rotate", "{\"why\":\"yearly\"}", ADMIN);
    refused(f, "why");
    req(f, "POST", "/v1/tokens/issuer/rotate", "{}", "{\"ops\":[\"admin\"],\"products\":[\"p\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_false(f->d.issuer_rotating);
}

#define READER   "{\"ops\":[\"read\"]}"
#define READER_A "{\"ops\":[\"read\"],\"products\":[\"prod-a\"]}"
#define SIGNER_R "{\"ops\":[\"sign\"]}"

/* The route needs op read, which a token of scope lacks: server.c refuses it before parse. */
static void needs_read(fixture *f)
{
    assert_int_equal(f->route->op, KBR_OP_READ);
    assert_false(kbr_policy_allows_op(&f->tok, KBR_OP_READ));
}

/* Authorize refuses the request with 403, naming what. */
static void forbidden(fixture *f, const char *what)
{
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, what);
}

static void test_views(void **state)
{
    fixture *f = *state;

    /* A: a product's view */
    req(f, "GET", "/v1/views/products/prod-a?expiring_within_days=30", NULL, READER_A);
    assert_int_equal(authorize(f), KBR_OK);
    assert_non_null(json_object_get(f->r.rec->detail, "product"));
    req(f, "GET", "/v1/views/products/prod-b", NULL, READER_A);
    forbidden(f, "prod-b");
    assert_null(json_object_get(f->r.rec->detail, "product"));
    req(f, "GET", "/v1/views/products/a%20b", NULL, READER);
    refused(f, "product name in the path");
    req(f, "GET", "/v1/views/products/prod-a?expiring_within_days=x", NULL, READER);
    refused(f, "expiring_within_days");
    req(f, "GET", "/v1/views/products/prod-a?expiring_within_days=36501", NULL, READER);
    refused(f, "expiring_within_days");
    req(f, "GET", "/v1/views/products/prod-a", NULL, SIGNER_R);
    needs_read(f);

    /* B: a key's custody */
    req(f, "GET", "/v1/views/keys/fw-a/custody", NULL, READER_A);
    assert_int_equal(authorize(f), KBR_OK);
    assert_string_equal(f->r.rec->key, "fw-a");
    req(f, "GET", "/v1/views/keys/fw-b/custody", NULL, READER_A);
    forbidden(f, "fw-b");
    req(f, "GET", "/v1/views/keys/fw-ab/custody", NULL, READER_A);
    forbidden(f, "outside the token's products");
    req(f, "GET", "/v1/views/keys/fw-a/custody", NULL, "{\"ops\":[\"read\"],\"keys\":[\"ota-*\"]}");
    forbidden(f, "outside the token's keys");
    req(f, "GET", "/v1/views/keys/nope/custody", NULL, READER);
    assert_int_equal(authorize(f), KBR_ERR_NOT_FOUND);
    req(f, "GET", "/v1/views/keys/a%20b/custody", NULL, READER);
    refused(f, "key name in the path");
    req(f, "GET", "/v1/views/keys/fw-a/custody", NULL, SIGNER_R);
    needs_read(f);

    /* C: exposure */
    req(f, "GET", "/v1/views/exposure?component=zlib&product=prod-a&devices=true&limit=10", NULL,
        READER_A);
    assert_int_equal(authorize(f), KBR_OK);
    assert_non_null(json_object_get(f->r.rec->detail, "query"));
    req(f, "GET", "/v1/views/exposure?component=zlib", NULL, READER_A);
    forbidden(f, "product");
    req(f, "GET", "/v1/views/exposure?component=zlib&product=prod-b", NULL, READER_A);
    forbidden(f, "product");
    req(f, "GET", "/v1/views/exposure?component=zlib", NULL, READER);
    assert_int_equal(authorize(f), KBR_OK);
    req(f, "GET", "/v1/views/exposure?component=", NULL, READER);
    refused(f, "component");
    req(f, "GET", "/v1/views/exposure?component=a%01b", NULL, READER);
    refused(f, "component");
    req(f, "GET", "/v1/views/exposure?component=zlib&devices=yes", NULL, READER);
    refused(f, "devices");
    req(f, "GET", "/v1/views/exposure?component=zlib&versions=1.0,,1.1", NULL, READER);
    refused(f, "versions");
    req(f, "GET", "/v1/views/exposure?component=zlib&product=a%20b", NULL, READER);
    refused(f, "product");
    req(f, "GET", "/v1/views/exposure?component=zlib&fixed_version=a%20b", NULL, READER);
    refused(f, "fixed_version");
    req(f, "GET", "/v1/views/exposure?component=zlib&after=a%20b", NULL, READER);
    refused(f, "after");
    req(f, "GET", "/v1/views/exposure?component=zlib&limit=1001", NULL, READER);
    refused(f, "limit");
    req(f, "GET", "/v1/views/exposure?component=zlib&limit=0", NULL, READER);
    refused(f, "limit");
    req(f, "GET", "/v1/views/exposure?component=zlib", NULL, SIGNER_R);
    needs_read(f);

    /* D: a device */
    req(f, "GET", "/v1/views/devices/SN-1?product=prod-a", NULL, READER_A);
    assert_int_equal(authorize(f), KBR_OK);
    assert_non_null(json_object_get(f->r.rec->detail, "device"));
    req(f, "GET", "/v1/views/devices/SN-1", NULL, READER_A);
    assert_int_equal(authorize(f), KBR_OK);
    req(f, "GET", "/v1/views/devices/SN-1?product=prod-b", NULL, READER_A);
    forbidden(f, "prod-b");
    req(f, "GET", "/v1/views/devices/SN-1", NULL, "{\"ops\":[\"read\"],\"devices\":[\"SN-2\"]}");
    forbidden(f, "SN-1");
    req(f, "GET", "/v1/views/devices/a%20b", NULL, READER);
    refused(f, "device serial in the path");
    req(f, "GET", "/v1/views/devices/SN-1?product=a%20b", NULL, READER);
    refused(f, "product");
    req(f, "GET", "/v1/views/devices/SN-1", NULL, SIGNER_R);
    needs_read(f);
}

static void test_evidence(void **state)
{
    fixture *f = *state;

    req(f, "GET", "/v1/evidence/devices/SN-1?product=prod-a", NULL, READER_A);
    assert_int_equal(authorize(f), KBR_OK);
    assert_non_null(json_object_get(f->r.rec->detail, "device"));
    req(f, "GET", "/v1/evidence/devices/SN-1?product=prod-b", NULL, READER_A);
    forbidden(f, "prod-b");
    req(f, "GET", "/v1/evidence/devices/SN-1", NULL, "{\"ops\":[\"read\"],\"devices\":[\"SN-2\"]}");
    forbidden(f, "SN-1");
    req(f, "GET", "/v1/evidence/devices/a%20b", NULL, READER);
    refused(f, "device serial in the path");
    req(f, "GET", "/v1/evidence/devices/SN-1?product=a%20b", NULL, READER);
    refused(f, "product");
    req(f, "GET", "/v1/evidence/devices/SN-1", NULL, SIGNER_R);
    needs_read(f);

    req(f, "GET", "/v1/evidence/products/prod-a", NULL, READER_A);
    assert_int_equal(authorize(f), KBR_OK);
    assert_non_null(json_object_get(f->r.rec->detail, "product"));
    req(f, "GET", "/v1/evidence/products/prod-b", NULL, READER_A);
    forbidden(f, "prod-b");
    req(f, "GET", "/v1/evidence/products/a%20b", NULL, READER);
    refused(f, "product name in the path");
    req(f, "GET", "/v1/evidence/products/prod-a", NULL, SIGNER_R);
    needs_read(f);

    /* an incident's product is the ledger's: the worker checks it */
    req(f, "GET", "/v1/evidence/incidents/INC-1", NULL, READER_A);
    assert_int_equal(authorize(f), KBR_OK);
    assert_non_null(json_object_get(f->r.rec->detail, "incident"));
    req(f, "GET", "/v1/evidence/incidents/a%20b", NULL, READER);
    refused(f, "incident id in the path");
    req(f, "GET", "/v1/evidence/incidents/INC-1", NULL, SIGNER_R);
    needs_read(f);
}

static void test_crl(void **state)
{
    fixture *f = *state;

    /* a CRL is public: req() gives the route no token, whatever the scope */
    req(f, "GET", "/v1/cas/ca-a/crl", NULL, READER);
    assert_int_equal(authorize(f), KBR_OK);
    req(f, "GET", "/v1/cas/fw-a/crl", NULL, READER);
    assert_int_equal(authorize(f), KBR_ERR_NOT_FOUND);
    assert_names(f, "fw-a");
    req(f, "GET", "/v1/cas/nope/crl", NULL, READER);
    assert_int_equal(authorize(f), KBR_ERR_NOT_FOUND);
    req(f, "GET", "/v1/cas/a%20b/crl", NULL, READER);
    refused(f, "CA key name in the path");
    assert_non_null(f->route->wait);
    assert_false(f->route->authenticated);
}

#define PROVISIONER       "{\"ops\":[\"provision\"],\"products\":[\"prod-a\"]}"
#define DEVICE_A          "\"device\":{\"serial\":\"SN1\",\"product\":\"prod-a\",\"batch\":\"b-a\"}"
#define PROVISION(fields) "{\"key\":\"ca-a\",\"csr_pem\":\"x\"," fields "}"

/* A provisioning request by the factory batch b-a is ordered from. */
static void provision_req(fixture *f, const char *body, const char *scope)
{
    req(f, "POST", "/v1/provision", body, scope);
    f->r.sub = "factory:one";
}

static void test_provision(void **state)
{
    fixture *f = *state;
    kbd_prov_req *granted;

    put_key(&f->d, "enc-a", "ota-encryption", "ecdh-p256", "[\"prod-a\"]", "active");
    put_key(&f->d, "enc-old", "ota-encryption", "ecdh-p256", "[\"prod-a\"]", "retired");
    provision_req(f, PROVISION(DEVICE_A), PROVISIONER);
    assert_int_equal(authorize(f), KBR_OK);
    assert_string_equal(f->r.rec->key, "ca-a");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(f->r.rec->detail, "device"), "batch")),
        "b-a");
    assert_null(json_object_get(f->r.rec->detail, "deliver"));
    assert_non_null(f->route->wait);
    assert_false(f->route->reserve_use); /* its wait reserves, once it is the device's turn */
    granted = f->r.ctx;
    assert_non_null(granted);

    /* parse: each field, by name */
    provision_req(f, "{\"key\":\"ca-a\",\"csr_pem\":\"x\"}", PROVISIONER);
    refused(f, "device: required");
    provision_req(f, PROVISION("\"device\":{\"serial\":\"SN1\",\"product\":\"prod-a\"}"),
                  PROVISIONER);
    refused(f, "device.batch");
    assert_null(json_object_get(f->r.rec->detail, "device"));
    provision_req(f,
                  PROVISION("\"device\":{\"serial\":\"a b\",\"product\":\"prod-a\","
                            "\"batch\":\"b-a\"}"),
                  PROVISIONER);
    refused(f, "device.serial");
    provision_req(f, PROVISION(DEVICE_A ",\"color\":\"red\""), PROVISIONER);
    refused(f, "color");
    provision_req(f, "{\"key\":\"ca-a\"," DEVICE_A "}", PROVISIONER);
    refused(f, "csr_pem: required");
    /* a refusal after the device is read names it in the entry */
    assert_true(json_is_object(json_object_get(f->r.rec->detail, "device")));
    provision_req(f, "{\"csr_pem\":\"x\"," DEVICE_A "}", PROVISIONER);
    refused(f, "key: required");
    provision_req(f, PROVISION(DEVICE_A ",\"deliver\":\"enc-a\""), PROVISIONER);
    refused(f, "deliver: must be an array");
    provision_req(f, PROVISION(DEVICE_A ",\"deliver\":[]"), PROVISIONER);
    refused(f, "deliver: must be an array");
    provision_req(f, PROVISION(DEVICE_A ",\"deliver\":[\"enc-a\",\"enc-a\"]"), PROVISIONER);
    refused(f, "deliver[1]");
    provision_req(f, PROVISION(DEVICE_A ",\"deliver\":[\"a b\"]"), PROVISIONER);
    refused(f, "deliver[0]");

    /* authorize: the CA key, the device, the batch, then each key to deliver */
    provision_req(f, "{\"key\":\"fw-a\",\"csr_pem\":\"x\"," DEVICE_A "}", PROVISIONER);
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "device-identity-ca");
    provision_req(f, PROVISION(DEVICE_A),
                  "{\"ops\":[\"provision\"],\"products\":[\"prod-a\"],\"devices\":[\"SN2\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "device.serial");
    provision_req(f, PROVISION(DEVICE_A),
                  "{\"ops\":[\"provision\"],\"products\":[\"prod-a\"],\"batches\":[\"b-b\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "device.batch");
    provision_req(f,
                  PROVISION("\"device\":{\"serial\":\"SN1\",\"product\":\"prod-a\","
                            "\"batch\":\"b-none\"}"),
                  PROVISIONER);
    assert_int_equal(authorize(f), KBR_ERR_NOT_FOUND);
    assert_names(f, "device.batch");
    provision_req(f,
                  PROVISION("\"device\":{\"serial\":\"SN1\",\"product\":\"prod-a\","
                            "\"batch\":\"b-b\"}"),
                  PROVISIONER);
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "device.batch");
    /* another factory's station */
    req(f, "POST", "/v1/provision", PROVISION(DEVICE_A), PROVISIONER);
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "factory:one");

    provision_req(f, PROVISION(DEVICE_A ",\"deliver\":[\"enc-a\"]"), PROVISIONER);
    assert_int_equal(authorize(f), KBR_OK);
    assert_string_equal(f->r.rec->key, "ca-a");
    assert_true(json_is_array(json_object_get(f->r.rec->detail, "deliver")));
    provision_req(f, PROVISION(DEVICE_A ",\"deliver\":[\"enc-a\",\"enc-none\"]"), PROVISIONER);
    assert_int_equal(authorize(f), KBR_ERR_NOT_FOUND);
    assert_names(f, "deliver[1]");
    /* the refusal names the key refused */
    assert_string_equal(f->r.rec->key, "enc-none");
    provision_req(f, PROVISION(DEVICE_A ",\"deliver\":[\"fw-a\"]"), PROVISIONER);
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "deliver[0]");
    provision_req(f, PROVISION(DEVICE_A ",\"deliver\":[\"enc-old\"]"), PROVISIONER);
    assert_int_equal(authorize(f), KBR_ERR_CONFLICT);
    assert_names(f, "deliver[0]");
    provision_req(f, PROVISION(DEVICE_A ",\"deliver\":[\"enc-a\"]"),
                  "{\"ops\":[\"provision\"],\"keys\":[\"ca-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "deliver[0]");
}

static void test_backup(void **state)
{
    fixture *f = *state;

    f->d.cfg.store = "sqlite:/nonexistent/kb.db";
    req(f, "GET", "/v1/backup", NULL, ADMIN);
    assert_int_equal(authorize(f), KBR_OK);
    assert_non_null(f->route->wait);
    assert_non_null(f->route->respond);
    /* a backup holds every product's records */
    req(f, "GET", "/v1/backup", NULL, "{\"ops\":[\"admin\"],\"products\":[\"prod-a\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    assert_names(f, "every product");
    req(f, "GET", "/v1/backup", NULL, "{\"ops\":[\"admin\"],\"devices\":[\"SN1\"]}");
    assert_int_equal(authorize(f), KBR_ERR_FORBIDDEN);
    /* one at a time */
    req(f, "GET", "/v1/backup", NULL, ADMIN);
    assert_int_equal(parse(f), KBR_OK);
    f->d.backup = f->r.ctx;
    assert_int_equal(f->route->authorize(&f->r, f->r.ctx), KBR_ERR_CONFLICT);
    assert_names(f, "a backup is being made");
    f->d.backup = NULL;
    /* a store brokers share is copied by its own tools */
    f->d.cfg.store = "postgresql://db.example/kb";
    req(f, "GET", "/v1/backup", NULL, ADMIN);
    assert_int_equal(authorize(f), KBR_ERR_CONFLICT);
    assert_names(f, "pg_dump");
    f->d.cfg.store = NULL;
}

/* Unsigned ID tokens ({"alg":"ES256","kid":"k1"}, an iss): authorize reads them unverified. */
#define ID_TOKEN_CI                                                                                \
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwczovL2NpLmV4YW1wbGUifQ.c2ln"
#define ID_TOKEN_OTHER                                                                             \
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwczovL290aGVyLmV4YW1wbGUifQ.c2ln"

/* An exchange request as admit leaves it: its record opened. */
static void exchange_req(fixture *f, const char *body)
{
    req(f, "POST", "/v1/tokens/exchange", body, READER);
    assert_int_equal(kbr_audit_rec_new(NULL, NULL, f->route->audit_op, NULL, &f->r.rec), KBR_OK);
}

static void test_exchange(void **state)
{
    fixture *f = *state;
    kbd_oidc_issuer issuer = {.name = "ci", .issuer = "https://ci.example"};

    /* no issuers configured: not served, and nothing recorded */
    req(f, "POST", "/v1/tokens/exchange", "{\"id_token\":\"" ID_TOKEN_CI "\"}", READER);
    assert_non_null(f->route->admit);
    assert_false(f->route->authenticated);
    assert_int_equal(f->route->open_body_max, KBD_EXCHANGE_BODY_MAX);
    assert_int_equal(f->route->admit(&f->r), KBR_ERR_NOT_FOUND);
    assert_names(f, "oidc_issuers");
    assert_null(f->r.rec);

    exchange_req(f, "{}");
    refused(f, "id_token: required");
    exchange_req(f, "{\"id_token\":5}");
    refused(f, "id_token");
    exchange_req(f, "{\"id_token\":\"" ID_TOKEN_CI "\",\"audience\":\"x\"}");
    refused(f, "audience");

    f->d.cfg.oidc.issuers = &issuer;
    f->d.cfg.oidc.nissuers = 1;
    exchange_req(f, "{\"id_token\":\"" ID_TOKEN_CI "\"}");
    assert_int_equal(authorize(f), KBR_OK);
    assert_string_equal(json_string_value(json_object_get(f->r.rec->detail, "issuer")), "ci");
    assert_string_equal(json_string_value(json_object_get(f->r.rec->detail, "id_token_kid")), "k1");
    /* the body held the ID token: authorize lets it go */
    assert_null(f->r.body);
    exchange_req(f, "{\"id_token\":\"" ID_TOKEN_OTHER "\"}");
    assert_int_equal(authorize(f), KBR_ERR_UNAUTHENTICATED);
    assert_names(f, "https://other.example");
    exchange_req(f, "{\"id_token\":\"not-a-jwt\"}");
    assert_int_equal(authorize(f), KBR_ERR_UNAUTHENTICATED);
    assert_names(f, "id_token");
    f->d.cfg.oidc.issuers = NULL;
    f->d.cfg.oidc.nissuers = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test_setup_teardown(test_sign_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_authorize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_show_and_retire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices_and_debug, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ota_and_products, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incidents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_certificates_and_audit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_views, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evidence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exchange, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
