/*
 * request_fuzz.c - the request bodies of every POST endpoint, read the way
 * keybrokerd reads them: json_loadb with duplicate keys refused, then each
 * route's own parser, taken from the route table (routes.c) and linked from
 * libkbrd.a (the daemon's sources but keybrokerd.c), as server.c calls it;
 * then the library calls the stages after it make on what they read: scopes
 * and the grant check, names against scopes, self-signed CA subjects,
 * attached certificates, CSRs, hex, base64 and RFC 3339 times.
 *
 * The library checks take the values they check from the body with the
 * endpoint's field set restated below: for sign, certificates, batches,
 * debug authorization, OTA reports, provisioning and device rotation after
 * their parser.  (The token exchange's parser is in the table too; the ID
 * token its body holds is the jwt target's.)  Keep those in step with
 * broker/daemon/h_*.c.
 *
 * Every body goes through every endpoint: the readers stop at the first bad
 * field, so that costs little, and a seed is just a request body.
 */
#include "../../broker/daemon/kbd.h"
#include "../../broker/daemon/routes.h"

#include <strings.h>

#include <openssl/evp.h>

#include "kbr_ca.h"
#include "kbr_cose.h"

#include "fuzz.h"
#include "fuzz_ca.h"

#define NOW              ((time_t)1800000000)
#define MAX_TOKEN_TTL    (366L * 86400)
#define BODY_LIMIT       1048576
#define BATCH_MAX_QTY    100000000
#define CHALLENGE_MIN    16
#define CHALLENGE_MAX    64
#define PERMISSIONS_MAX  64
#define DEBUG_MESSAGE_MX 4096
#define OTA_MAX_RESULTS  10000

typedef enum { F_STR, F_NAME, F_INT, F_NAMES } field_kind;

typedef struct {
    const char *name;
    field_kind kind;
    bool required;
    int64_t min, max; /* F_INT: bounds; F_STR: max is the length limit */
} field;

typedef struct {
    kbr_scope root;       /* the bootstrap admin: every op, no lists */
    kbr_scope restricted; /* an admin limited to some keys, products, batches, devices */
    EVP_PKEY *ca_key;     /* a device CA's key pair, standing in for one in the HSM */
} fixture;

static fixture fx;

/* ---- field readers, with the promises json.c makes checked on every result ---- */

static kbr_err read_str(const json_t *obj, const field *f, kbr_msg *msg)
{
    const char *s = NULL;
    kbr_err err = kbd_json_str(obj, f->name, f->required, (size_t)f->max, &s, msg);

    if (err == KBR_OK && f->required)
        FUZZ_CHECK(s != NULL && *s != '\0');
    if (err == KBR_OK && s != NULL)
        FUZZ_CHECK(strlen(s) <= (size_t)f->max);
    return err;
}

static kbr_err read_name(const json_t *obj, const field *f, kbr_msg *msg)
{
    const char *s = NULL;
    kbr_err err = kbd_json_name(obj, f->name, f->required, &s, msg);

    if (err == KBR_OK && f->required)
        FUZZ_CHECK(s != NULL);
    if (err == KBR_OK && s != NULL)
        FUZZ_CHECK(kbr_name_valid(s) && strlen(s) <= KBR_NAME_MAX);
    return err;
}

static kbr_err read_int(const json_t *obj, const field *f, kbr_msg *msg)
{
    int64_t n = f->min - 1;
    kbr_err err = kbd_json_int(obj, f->name, f->required, f->min, f->max, &n, msg);
    const json_t *v = json_object_get(obj, f->name);

    if (err == KBR_OK && v != NULL && !json_is_null(v))
        FUZZ_CHECK(n >= f->min && n <= f->max);
    return err;
}

static kbr_err read_names(const json_t *obj, const field *f, kbr_msg *msg)
{
    json_t *list = NULL, *item;
    size_t i;
    kbr_err err = kbd_json_names(obj, f->name, f->required, &list, msg);

    if (err == KBR_OK && f->required)
        FUZZ_CHECK(json_array_size(list) > 0);
    json_array_foreach(list, i, item)
    {
        FUZZ_CHECK(json_is_string(item) && kbr_name_valid(json_string_value(item)));
    }
    FUZZ_CHECK(json_array_size(list) <= 256);
    return err;
}

static kbr_err read_field(const json_t *obj, const field *f, kbr_msg *msg)
{
    kbr_err err;

    switch (f->kind) {
    case F_STR:
        err = read_str(obj, f, msg);
        break;
    case F_NAME:
        err = read_name(obj, f, msg);
        break;
    case F_INT:
        err = read_int(obj, f, msg);
        break;
    default:
        err = read_names(obj, f, msg);
        break;
    }
    /* A CI log must show which field to fix. */
    if (err != KBR_OK)
        FUZZ_CHECK(err == KBR_ERR_BAD_REQUEST && strstr(msg->text, f->name) != NULL);
    return err;
}

/* kbd_json_only, then each field in order, stopping at the first refusal as the handlers do. */
static kbr_err read_object(const json_t *obj, const char *const *allowed, const field *fields,
                           kbr_msg *msg)
{
    kbr_err err = kbd_json_only(obj, allowed, msg);

    if (err != KBR_OK) {
        FUZZ_CHECK(err == KBR_ERR_BAD_REQUEST);
        return err;
    }
    for (size_t i = 0; fields[i].name != NULL && err == KBR_OK; i++)
        err = read_field(obj, &fields[i], msg);
    return err;
}

static const char *str_of(const json_t *obj, const char *name)
{
    return json_string_value(json_object_get(obj, name));
}

/* ---- encoders the handlers decode with ---- */

static kbr_err hex_bytes(const char *hex, size_t min, size_t max, unsigned char **out,
                         size_t *outlen)
{
    char *again = NULL;
    kbr_err err = kbr_hex_decode(hex, out, outlen);

    if (err != KBR_OK)
        return err;
    /* decode accepts either case; encode writes lowercase */
    FUZZ_CHECK(kbr_hex_encode(*out, *outlen, &again) == KBR_OK);
    FUZZ_CHECK(strlen(again) == strlen(hex) && strncasecmp(again, hex, strlen(hex)) == 0);
    free(again);
    return *outlen >= min && *outlen <= max ? KBR_OK : KBR_ERR_BAD_REQUEST;
}

static kbr_err b64_bytes(const char *b64, unsigned char **out, size_t *outlen)
{
    char *again = NULL;
    unsigned char *raw2 = NULL;
    size_t len2 = 0;
    kbr_err err = kbr_b64_decode(b64, out, outlen);

    if (err != KBR_OK)
        return err;
    FUZZ_CHECK(kbr_b64_encode(*out, *outlen, &again) == KBR_OK);
    FUZZ_CHECK(kbr_b64_decode(again, &raw2, &len2) == KBR_OK);
    FUZZ_CHECK(len2 == *outlen && (len2 == 0 || memcmp(raw2, *out, len2) == 0));
    free(again);
    free(raw2);
    return KBR_OK;
}

/* ---- POST /v1/tokens ---- */

static json_t *scope_canonical_json(const kbr_scope *s)
{
    json_t *j = kbr_scope_to_json(s);

    FUZZ_CHECK(j != NULL);
    return j;
}

/* What kbr_scope_from_json accepts comes back the same through to_json and kbd_scope_copy. */
static void scope_round_trip(const kbr_scope *s)
{
    kbr_scope copy;
    json_t *a = scope_canonical_json(s), *b;

    FUZZ_CHECK(kbd_scope_copy(s, &copy) == KBR_OK);
    b = scope_canonical_json(&copy);
    FUZZ_CHECK(json_equal(a, b));
    FUZZ_CHECK(copy.ops == s->ops && copy.max_uses == s->max_uses);
    json_decref(a);
    json_decref(b);
    kbr_scope_cleanup(&copy);
}

static void scope_grants(const kbr_scope *s)
{
    kbr_msg msg = {{0}};
    kbr_err err;

    /* an admin without lists can grant any scope that parses */
    FUZZ_CHECK(kbr_scope_grantable(&fx.root, s, &msg) == KBR_OK);
    err = kbr_scope_grantable(&fx.restricted, s, &msg);
    FUZZ_CHECK(err == KBR_OK || err == KBR_ERR_FORBIDDEN);
    /* an admin scope covers itself */
    if ((s->ops & KBR_OP_ADMIN) != 0)
        FUZZ_CHECK(kbr_scope_grantable(s, s, &msg) == KBR_OK);
}

static void token_binding(const json_t *body)
{
    const char *hex = str_of(body, "bind_cert_sha256");
    unsigned char *raw = NULL;
    size_t n = 0;
    char *x5t = NULL;

    if (hex != NULL && hex_bytes(hex, 32, 32, &raw, &n) == KBR_OK) {
        FUZZ_CHECK(kbr_b64url_encode(raw, n, &x5t) == KBR_OK && strlen(x5t) == 43);
        free(x5t);
    }
    free(raw);
}

/* The scope reader, which POST /v1/tokens' parser calls, on every body: what it takes comes
 * back the same and is grantable as the grant check says. */
static void token_scope(const json_t *body)
{
    kbr_msg msg = {{0}};
    kbr_scope scope;
    kbr_err err;

    /* the scope reader runs on claims too; give it every body */
    memset(&scope, 0, sizeof(scope));
    err = kbr_scope_from_json(body, &scope, &msg);
    FUZZ_CHECK(err == KBR_OK || err == KBR_ERR_BAD_REQUEST || !json_is_object(body));
    if (err == KBR_OK) {
        FUZZ_CHECK(scope.ops != 0 && (scope.max_uses == -1 || scope.max_uses > 0));
        scope_round_trip(&scope);
        scope_grants(&scope);
    }
    kbr_scope_cleanup(&scope);
    token_binding(body);
}

/* ---- POST /v1/sign ---- */

static kbr_err sign_digest(const json_t *body)
{
    const char *hex = str_of(body, "digest"), *hash = str_of(body, "hash");
    size_t want = hash != NULL && strcmp(hash, "sha384") == 0 ? 48 : 32;
    unsigned char *raw = NULL;
    size_t n = 0;
    kbr_err err;

    if (json_object_get(body, "message_b64") != NULL || hex == NULL || strlen(hex) > 256)
        return KBR_ERR_BAD_REQUEST;
    if (hash != NULL && strcmp(hash, "sha256") != 0 && strcmp(hash, "sha384") != 0)
        return KBR_ERR_BAD_REQUEST;
    err = hex_bytes(hex, want, want, &raw, &n);
    free(raw);
    return err;
}

static kbr_err sign_message(const json_t *body)
{
    const char *b64 = str_of(body, "message_b64");
    unsigned char *raw = NULL;
    size_t n = 0;
    char digest_hex[65];
    kbr_err err;

    if (json_object_get(body, "digest") != NULL || json_object_get(body, "hash") != NULL ||
        b64 == NULL || strlen(b64) > BODY_LIMIT)
        return KBR_ERR_BAD_REQUEST;
    err = b64_bytes(b64, &raw, &n);
    if (err == KBR_OK)
        kbr_sha256_hex(raw, n, digest_hex);
    free(raw);
    return err;
}

static kbr_err sign_format(const json_t *body, kbr_alg alg, bool cose)
{
    const char *f = str_of(body, "format"), *padding = str_of(body, "padding");
    bool rsa = alg == KBR_ALG_RSA_3072 || alg == KBR_ALG_RSA_4096;
    bool ecdsa = alg == KBR_ALG_ECDSA_P256 || alg == KBR_ALG_ECDSA_P384;
    kbr_cose_alg ca;
    kbr_msg msg = {{0}};
    kbr_err err;

    if (cose) {
        err = kbr_cose_alg_for(alg, &ca, &msg);
        FUZZ_CHECK(err == (rsa ? KBR_ERR_BAD_REQUEST : KBR_OK));
        if (err == KBR_OK)
            FUZZ_CHECK(kbr_cose_sig_len(ca) == (alg == KBR_ALG_ECDSA_P384 ? 96u : 64u));
        return padding != NULL ? KBR_ERR_BAD_REQUEST : err;
    }
    if (f != NULL && strcmp(f, "raw") != 0 && !(ecdsa && strcmp(f, "der") == 0))
        return KBR_ERR_BAD_REQUEST;
    if (padding != NULL && (!rsa || (strcmp(padding, "pss") != 0 && strcmp(padding, "pkcs1") != 0)))
        return KBR_ERR_BAD_REQUEST;
    return KBR_OK;
}

static kbr_err sign_artifact(const json_t *body, bool firmware)
{
    static const char *const allowed[] = {"product", "version", "name", "kind", "build_id", NULL};
    static const field fields[] = {
        {"product", F_NAME, true, 0, 0},    {"version", F_NAME, true, 0, 0},
        {"name", F_STR, false, 0, 256},     {"kind", F_STR, false, 0, 32},
        {"build_id", F_STR, false, 0, 256}, {NULL, F_STR, false, 0, 0}};
    const json_t *a = json_object_get(body, "artifact");
    const char *kind;
    kbr_msg msg = {{0}};

    if (!json_is_object(a))
        return KBR_ERR_BAD_REQUEST;
    if (read_object(a, allowed, fields, &msg) != KBR_OK) {
        /* nested fields are reported with their parent */
        FUZZ_CHECK(kbd_msg_prefix(&msg, "artifact", KBR_ERR_BAD_REQUEST) == KBR_ERR_BAD_REQUEST);
        FUZZ_CHECK(strncmp(msg.text, "artifact.", 9) == 0);
        return KBR_ERR_BAD_REQUEST;
    }
    kind = str_of(a, "kind");
    if (kind != NULL && strcmp(kind, firmware ? "firmware" : "ota-manifest") != 0)
        return KBR_ERR_BAD_REQUEST;
    (void)kbr_namelist_match(&fx.restricted.products, str_of(a, "product"));
    return KBR_OK;
}

/* The components kbd_sbom_parse keeps are what the audit record and the ledger store; the
 * document kept is the bytes sent, or the inline list's canonical JSON. */
static void sign_sbom(const json_t *body)
{
    kbd_sbom sbom = {0};
    const json_t *c;
    kbr_msg msg = {{0}};
    size_t i;
    kbr_err err = kbd_sbom_parse(body, &sbom, &msg);

    if (err != KBR_OK) {
        FUZZ_CHECK(err == KBR_ERR_BAD_REQUEST && sbom.components == NULL && sbom.document == NULL &&
                   msg.text[0] != '\0');
        return;
    }
    FUZZ_CHECK(sbom.document != NULL && sbom.len > 0);
    FUZZ_CHECK(json_array_size(sbom.components) <= KBD_SBOM_MAX_COMPONENTS);
    json_array_foreach(sbom.components, i, c)
    {
        const char *purl = str_of(c, "purl");
        FUZZ_CHECK(str_of(c, "name") != NULL && *str_of(c, "name") != '\0');
        FUZZ_CHECK(purl == NULL || strncmp(purl, "pkg:", 4) == 0);
    }
    kbd_sbom_free(&sbom);
}

static void sign(const json_t *body)
{
    static const char *const allowed[] = {"key",     "digest",   "hash", "message_b64", "format",
                                          "padding", "artifact", "sbom", "sbom_b64",    NULL};
    static const field fields[] = {
        {"key", F_NAME, true, 0, 0},     {"digest", F_STR, false, 0, 256},
        {"hash", F_STR, false, 0, 16},   {"message_b64", F_STR, false, 0, BODY_LIMIT},
        {"format", F_STR, false, 0, 16}, {"padding", F_STR, false, 0, 16},
        {NULL, F_STR, false, 0, 0}};
    static const kbr_alg algs[] = {KBR_ALG_ECDSA_P256, KBR_ALG_ECDSA_P384, KBR_ALG_ED25519,
                                   KBR_ALG_RSA_3072};
    kbr_msg msg = {{0}};
    const char *format;
    bool cose, any = false;

    sign_sbom(body);
    if (read_object(body, allowed, fields, &msg) != KBR_OK)
        return;
    format = str_of(body, "format");
    cose = format != NULL && strcmp(format, "cose_sign1") == 0;
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        kbr_err err = algs[i] == KBR_ALG_ED25519 || cose ? sign_message(body) : sign_digest(body);
        if (err == KBR_OK)
            err = sign_format(body, algs[i], cose);
        any |= err == KBR_OK;
    }
    if (any) {
        (void)sign_artifact(body, true);
        (void)sign_artifact(body, false);
    }
}

/* ---- POST /v1/keys/{name}/certificate ---- */

static void self_signed(const json_t *ss)
{
    static const char *const allowed[] = {"subject", "days", NULL};
    static const field fields[] = {{"subject", F_STR, true, 0, 512},
                                   {"days", F_INT, true, 1, KBR_CA_DAYS_MAX},
                                   {NULL, F_STR, false, 0, 0}};
    kbr_ca_signer signer = fuzz_soft_signer(fx.ca_key);
    kbr_ca_cert *cert = NULL, *again = NULL;
    char *chain = NULL;
    kbr_msg msg = {{0}};
    kbr_err err;

    if (!json_is_object(ss) || read_object(ss, allowed, fields, &msg) != KBR_OK)
        return;
    err = kbr_ca_self_signed(&signer, fx.ca_key, str_of(ss, "subject"),
                             (long)json_integer_value(json_object_get(ss, "days")), NOW, NULL,
                             &cert, &msg);
    if (err != KBR_OK) {
        FUZZ_CHECK(err == KBR_ERR_BAD_REQUEST && cert == NULL);
        FUZZ_CHECK(strncmp(msg.text, "self_signed.", 12) == 0);
        return;
    }
    /* what the broker makes, it can read back, and attach as a CA key's certificate */
    FUZZ_CHECK(kbr_ca_cert_parse(kbr_ca_cert_pem(cert), &again, &msg) == KBR_OK);
    FUZZ_CHECK(strcmp(kbr_ca_cert_fingerprint(cert), kbr_ca_cert_fingerprint(again)) == 0);
    FUZZ_CHECK(kbr_ca_cert_not_after(cert) > NOW);
    kbr_ca_cert_free(again);
    again = NULL;
    FUZZ_CHECK(kbr_ca_cert_for_key(kbr_ca_cert_pem(cert), fx.ca_key, true, NOW, &again, &chain,
                                   &msg) == KBR_OK);
    FUZZ_CHECK(strcmp(kbr_ca_cert_fingerprint(cert), kbr_ca_cert_fingerprint(again)) == 0);
    free(chain);
    kbr_ca_cert_free(again);
    kbr_ca_cert_free(cert);
}

/* Whatever is attached is within what the ledger takes: a positive serial number of at most
 * 20 octets, in lowercase hex, and an expiry after now. */
static void attached_ok(const kbr_ca_cert *leaf)
{
    const char *sn = kbr_ca_cert_serial_hex(leaf);
    size_t n = strlen(sn);

    FUZZ_CHECK(n >= 2 && n <= 2 * 20 && strspn(sn, "0123456789abcdef") == n);
    FUZZ_CHECK(strspn(sn, "0") < n);
    FUZZ_CHECK(kbr_ca_cert_not_after(leaf) > NOW);
}

static void attached_pem(const char *pem, bool ca_key)
{
    kbr_ca_cert *leaf = NULL;
    char *chain = NULL;
    kbr_msg msg = {{0}};
    kbr_err err = kbr_ca_cert_for_key(pem, fx.ca_key, ca_key, NOW, &leaf, &chain, &msg);

    FUZZ_CHECK(err == KBR_OK || (err == KBR_ERR_BAD_REQUEST && strncmp(msg.text, "pem: ", 5) == 0));
    FUZZ_CHECK((err == KBR_OK) == (leaf != NULL && chain != NULL));
    if (leaf != NULL)
        attached_ok(leaf);
    kbr_ca_cert_free(leaf);
    free(chain);
}

/* As the broker does: chain_pem is read as if it followed the certificate in pem. */
static void attached(const char *pem, const char *chain)
{
    char *both = NULL;

    if (chain == NULL || chain[0] == '\0') {
        attached_pem(pem, true);
        attached_pem(pem, false);
        return;
    }
    if (strlen(pem) + 1 + strlen(chain) > KBR_CA_CHAIN_MAX ||
        asprintf(&both, "%s\n%s", pem, chain) < 0)
        return;
    attached_pem(both, true);
    attached_pem(both, false);
    free(both);
}

static void key_certificate(const json_t *body)
{
    static const char *const allowed[] = {"pem", "chain_pem", "self_signed", NULL};
    static const field fields[] = {{"pem", F_STR, false, 0, KBR_CA_CHAIN_MAX},
                                   {"chain_pem", F_STR, false, 0, KBR_CA_CHAIN_MAX},
                                   {NULL, F_STR, false, 0, 0}};
    kbr_msg msg = {{0}};
    const char *pem, *chain;
    const json_t *ss;

    if (read_object(body, allowed, fields, &msg) != KBR_OK)
        return;
    pem = str_of(body, "pem");
    chain = str_of(body, "chain_pem");
    ss = json_object_get(body, "self_signed");
    if ((pem == NULL) == (ss == NULL) || (chain != NULL && pem == NULL))
        return;
    if (ss != NULL)
        self_signed(ss);
    else
        attached(pem, chain);
}

/* ---- POST /v1/batches ---- */

static void batch_create(const json_t *body)
{
    static const char *const allowed[] = {"batch",    "product", "factory",
                                          "quantity", "market",  NULL};
    static const field fields[] = {{"batch", F_NAME, true, 0, 0},
                                   {"product", F_NAME, true, 0, 0},
                                   {"factory", F_STR, true, 0, 128},
                                   {"quantity", F_INT, true, 1, BATCH_MAX_QTY},
                                   {NULL, F_STR, false, 0, 0}};
    kbr_msg msg = {{0}};
    const json_t *m = json_object_get(body, "market"), *v;
    const char *factory;
    size_t i;

    if (read_object(body, allowed, fields, &msg) != KBR_OK || !json_is_array(m))
        return;
    json_array_foreach(m, i, v)
    {
        const char *c = json_string_value(v);
        if (c == NULL || strlen(c) != 2)
            return;
    }
    factory = str_of(body, "factory");
    if (strncmp(factory, "factory:", 8) == 0 && kbr_policy_sub_valid(factory))
        (void)kbr_namelist_match(&fx.restricted.batches, str_of(body, "batch"));
}

/* ---- POST /v1/provision, POST /v1/devices/{serial}/certificates ---- */

static void csr_field(const json_t *body)
{
    const char *pem = str_of(body, "csr_pem");
    kbr_ca_csr *csr = NULL;
    kbr_msg msg = {{0}};
    kbr_err err;

    if (pem == NULL)
        return;
    err = kbr_ca_csr_parse(pem, &csr, &msg);
    FUZZ_CHECK(err == KBR_OK ||
               (err == KBR_ERR_BAD_REQUEST && strncmp(msg.text, "csr_pem: ", 9) == 0));
    if (err == KBR_OK)
        FUZZ_CHECK(kbr_ca_csr_pubkey_peek(csr) != NULL &&
                   strlen(kbr_ca_csr_sha256_hex(csr)) == 64 && kbr_ca_csr_subject(csr) != NULL);
    kbr_ca_csr_free(csr);
}

/* "deliver": 1 to 4 distinct names, each matched against the token's keys. */
static void deliver_field(const json_t *body)
{
    const json_t *v = json_object_get(body, "deliver"), *item;
    size_t i;

    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 4)
        return;
    json_array_foreach(v, i, item)
    {
        if (!json_is_string(item) || !kbr_name_valid(json_string_value(item)))
            return;
        (void)kbr_namelist_match(&fx.restricted.keys, json_string_value(item));
    }
}

static void provision(const json_t *body)
{
    static const char *const allowed[] = {"key", "csr_pem", "device", "deliver", NULL};
    static const char *const dev_allowed[] = {"serial", "product", "batch", "firmware_version",
                                              NULL};
    static const field dev_fields[] = {{"serial", F_NAME, true, 0, 0},
                                       {"product", F_NAME, true, 0, 0},
                                       {"batch", F_NAME, true, 0, 0},
                                       {"firmware_version", F_NAME, false, 0, 0},
                                       {NULL, F_STR, false, 0, 0}};
    static const field fields[] = {{"csr_pem", F_STR, true, 0, KBR_CA_CSR_MAX},
                                   {"key", F_NAME, true, 0, 0},
                                   {NULL, F_STR, false, 0, 0}};
    static const field none[] = {{NULL, F_STR, false, 0, 0}};
    const json_t *d = json_object_get(body, "device");
    kbr_msg msg = {{0}};

    if (read_object(body, allowed, none, &msg) != KBR_OK || !json_is_object(d))
        return;
    if (read_object(d, dev_allowed, dev_fields, &msg) != KBR_OK) {
        FUZZ_CHECK(kbd_msg_prefix(&msg, "device", KBR_ERR_BAD_REQUEST) == KBR_ERR_BAD_REQUEST);
        return;
    }
    if (read_object(body, allowed, fields, &msg) != KBR_OK)
        return;
    (void)kbr_namelist_match(&fx.restricted.devices, str_of(d, "serial"));
    deliver_field(body);
    csr_field(body);
}

static void rotate(const json_t *body)
{
    static const char *const allowed[] = {"key", "csr_pem", "product", NULL};
    static const field fields[] = {{"product", F_NAME, true, 0, 0},
                                   {"csr_pem", F_STR, true, 0, KBR_CA_CSR_MAX},
                                   {"key", F_NAME, true, 0, 0},
                                   {NULL, F_STR, false, 0, 0}};
    kbr_msg msg = {{0}};

    if (read_object(body, allowed, fields, &msg) == KBR_OK)
        csr_field(body);
}

/* ---- POST /v1/debug-auth ---- */

static void debug_auth(const json_t *body)
{
    static const char *const allowed[] = {"key",         "device", "product",     "challenge",
                                          "permissions", "ticket", "message_b64", NULL};
    static const field fields[] = {{"key", F_NAME, true, 0, 0},
                                   {"device", F_NAME, true, 0, 0},
                                   {"product", F_NAME, true, 0, 0},
                                   {"ticket", F_STR, true, 0, 128},
                                   {"challenge", F_STR, true, 0, 2 * CHALLENGE_MAX},
                                   {"permissions", F_STR, true, 0, 2 * PERMISSIONS_MAX},
                                   {"message_b64", F_STR, true, 0, 4 * DEBUG_MESSAGE_MX / 3 + 4},
                                   {NULL, F_STR, false, 0, 0}};
    unsigned char *challenge = NULL, *perm = NULL, *message = NULL;
    size_t clen = 0, plen = 0, mlen = 0;
    kbr_msg msg = {{0}};

    if (read_object(body, allowed, fields, &msg) == KBR_OK &&
        hex_bytes(str_of(body, "challenge"), CHALLENGE_MIN, CHALLENGE_MAX, &challenge, &clen) ==
            KBR_OK &&
        hex_bytes(str_of(body, "permissions"), 1, PERMISSIONS_MAX, &perm, &plen) == KBR_OK &&
        b64_bytes(str_of(body, "message_b64"), &message, &mlen) == KBR_OK &&
        mlen <= DEBUG_MESSAGE_MX) {
        const unsigned char *at = memmem(message, mlen, challenge, clen);
        FUZZ_CHECK(at == NULL || (at >= message && at + clen <= message + mlen));
    }
    free(challenge);
    free(perm);
    free(message);
}

/* ---- POST /v1/ota/deployments ---- */

static void ota_time(const char *at)
{
    time_t t, again;
    char norm[KBR_TIME_LEN];

    if (kbr_time_parse(at, &t) != KBR_OK)
        return;
    /* the normalized form is what the ledger keeps; it must read back as the same instant */
    kbr_time_fmt(t, norm);
    FUZZ_CHECK(strlen(norm) == KBR_TIME_LEN - 1);
    FUZZ_CHECK(kbr_time_parse(norm, &again) == KBR_OK && again == t);
}

static void ota_report(const json_t *body)
{
    static const char *const allowed[] = {"product", "version", "campaign", "results", NULL};
    static const field fields[] = {{"product", F_NAME, true, 0, 0},
                                   {"version", F_NAME, true, 0, 0},
                                   {"campaign", F_STR, true, 0, 128},
                                   {NULL, F_STR, false, 0, 0}};
    static const char *const item_allowed[] = {"device", "status", "at", NULL};
    static const field item_fields[] = {{"device", F_NAME, true, 0, 0},
                                        {"status", F_STR, true, 0, 16},
                                        {"at", F_STR, true, 0, 40},
                                        {NULL, F_STR, false, 0, 0}};
    const json_t *results = json_object_get(body, "results"), *item;
    kbr_msg msg = {{0}};
    size_t i;

    if (read_object(body, allowed, fields, &msg) != KBR_OK || !json_is_array(results) ||
        json_array_size(results) == 0 || json_array_size(results) > OTA_MAX_RESULTS)
        return;
    json_array_foreach(results, i, item)
    {
        if (!json_is_object(item) || read_object(item, item_allowed, item_fields, &msg) != KBR_OK)
            return;
        ota_time(str_of(item, "at"));
        (void)kbr_namelist_match(&fx.restricted.devices, str_of(item, "device"));
    }
}

/* ---- the body as the audit record carries it ---- */

/* ---- every POST route's parser, from the route table ---- */

/*
 * What server.c promises a parser and what a parser promises it: a body of any shape (an
 * object, as read_body() checks) is taken or refused with 400 and a message, never anything
 * else but running out of memory; a typed request, taken or not, is released by
 * the route's free_req; and the same body is read the same way twice.
 */
static void route_parsers(const json_t *body)
{
    static kbd d;
    char arg[] = "fw-1";

    d.cfg.body_limit = BODY_LIMIT;
    d.cfg.max_token_ttl = MAX_TOKEN_TTL;
    for (size_t i = 0; i < kbd_route_count(); i++) {
        const kbd_route *route = kbd_route_at(i);
        /* a fixed "now", so an input parses the same way on every run */
        kbd_req r = {
            .d = &d, .route = route, .arg = arg, .body = (json_t *)body, .arrived = 1800000000};
        void *typed = NULL, *again = NULL;
        kbr_msg msg = {{0}}, msg2 = {{0}};
        kbr_err err, err2;

        if (route->parse == NULL || strcmp(route->method, "POST") != 0)
            continue;
        err = route->parse(&r, &typed, &msg);
        FUZZ_CHECK(err == KBR_OK || err == KBR_ERR_BAD_REQUEST || err == KBR_ERR_NOMEM);
        /* a refusal says what to fix */
        if (err == KBR_ERR_BAD_REQUEST)
            FUZZ_CHECK(msg.text[0] != '\0');
        err2 = route->parse(&r, &again, &msg2);
        FUZZ_CHECK(err2 == err && strcmp(msg.text, msg2.text) == 0);
        if (route->free_req != NULL) {
            route->free_req(typed);
            route->free_req(again);
        }
    }
}

/*
 * The canonical text reads back to itself.  RFC 8785 writes every number as an IEEE double
 * the way ECMAScript does, so 1.5555555551555556e19 comes out as the digits
 * 15555555551555555000, which jansson would read as an integer too big for json_int_t: the
 * text is read back with its numbers as doubles, as JCS means them.
 */
static void canonical_stable(const json_t *body)
{
    char *a = NULL, *b = NULL;
    json_t *again;

    FUZZ_CHECK(kbr_json_canonical(body, &a) == KBR_OK);
    again = json_loads(a, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(kbr_json_canonical(again, &b) == KBR_OK);
    FUZZ_CHECK(strcmp(a, b) == 0);
    json_decref(again);
    free(a);
    free(b);
}

static void scope_from_text(const char *text, kbr_scope *out)
{
    json_t *j = json_loads(text, 0, NULL);

    FUZZ_CHECK(j != NULL && kbr_scope_from_json(j, out, NULL) == KBR_OK);
    json_decref(j);
}

static void fixture_init(void)
{
    scope_from_text("{\"ops\": [\"admin\"]}", &fx.root);
    scope_from_text("{\"ops\": [\"admin\", \"sign\"], \"keys\": [\"fw-*\", \"ca-gateway\"], "
                    "\"products\": [\"gateway\", \"cam-*\"], \"batches\": [\"b-2026-*\"], "
                    "\"devices\": [\"GW*\"]}",
                    &fx.restricted);
    fx.ca_key = EVP_EC_gen("P-256");
    FUZZ_CHECK(fx.ca_key != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    json_error_t jerr;
    json_t *body;

    if (!ready) {
        fixture_init();
        ready = true;
    }
    body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL)
        return 0;
    canonical_stable(body);
    token_scope(body);
    if (json_is_object(body)) {
        route_parsers(body);
        sign(body);
        key_certificate(body);
        batch_create(body);
        provision(body);
        rotate(body);
        debug_auth(body);
        ota_report(body);
    }
    json_decref(body);
    return 0;
}
