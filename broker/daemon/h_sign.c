/*
 * h_sign.c - POST /v1/sign: firmware and OTA-manifest signatures.
 *
 * The event thread checks everything that needs no I/O (fields, scope, key
 * state, quota reservation); the worker checks the firmware ledger, asks
 * the HSM, and builds the audit record whose ledger effect records the
 * build and its SBOM.  The signature leaves only with a durable record.
 */
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "routes.h"
#include "kbr_cose.h"

/* The typed request: what parse reads from the body, then what authorize learns of the key. */
struct kbd_sign_req {
    /* parse */
    char *key_name;
    const char *format_name, *hash_name; /* static strings */
    kbr_hash hash;
    const char *padding; /* "pss", "pkcs1" or NULL */
    bool padding_given, digest_given, message_given, hash_given;
    unsigned char *digest, *message; /* the bytes of those given */
    size_t digest_len, message_len;
    bool cose;                 /* format cose_sign1: the input is the detached payload */
    const json_t *artifact_in; /* the body's artifact, checked; NULL: none */
    bool sbom_given;
    kbd_sbom sbom;
    /* authorize: the key and what it makes of the input */
    char *key, *label, *purpose;
    kbr_alg alg;
    kbr_sig_format fmt;
    bool is_message;
    const unsigned char *input; /* the digest or the message, as the key signs */
    size_t inlen;
    char digest_hex[97]; /* what the build record names: the digest, or SHA-256 of the message */
    kbr_cose_alg cose_alg;
    bool firmware;
    json_t *artifact; /* {product, version, name, kind, build_id} */
    /* work: the signature, for the answer finish writes */
    char *sig_b64;
};
typedef struct kbd_sign_req sign_ctx;

void kbd_sign_free(void *p)
{
    sign_ctx *c = p;

    if (c == NULL)
        return;
    free(c->key_name);
    free(c->key);
    free(c->label);
    free(c->purpose);
    free(c->digest);
    free(c->message);
    json_decref(c->artifact);
    kbd_sbom_free(&c->sbom);
    free(c->sig_b64);
    free(c);
}

static bool given(const json_t *body, const char *field)
{
    return json_object_get(body, field) != NULL;
}

/* A field given (not null) is read as required: an empty one is refused, as a missing one is
 * once the key says it is needed. */
static kbr_err read_given(const json_t *body, const char *field, size_t maxlen, const char **out,
                          kbr_msg *msg)
{
    const json_t *v = json_object_get(body, field);

    *out = NULL;
    return v == NULL || json_is_null(v) ? KBR_OK
                                        : kbd_json_str(body, field, true, maxlen, out, msg);
}

static kbr_err parse_hash(const json_t *body, sign_ctx *c, kbr_msg *msg)
{
    const char *h = NULL;
    kbr_err err = KBR_OK;

    KBR_GUARD(kbd_json_str(body, "hash", false, 16, &h, msg));
    c->hash_given = h != NULL;
    if (h == NULL || strcmp(h, "sha256") == 0) {
        c->hash = KBR_HASH_SHA256;
        c->hash_name = "sha256";
    } else if (strcmp(h, "sha384") == 0) {
        c->hash = KBR_HASH_SHA384;
        c->hash_name = "sha384";
    } else {
        err = kbr_fail(msg, KBR_ERR_BAD_REQUEST, "hash: must be sha256 or sha384");
    }
out:
    return err;
}

static kbr_err parse_digest(const json_t *body, sign_ctx *c, kbr_msg *msg)
{
    const char *hex = NULL;
    size_t want;
    kbr_err err = KBR_OK;

    KBR_GUARD(read_given(body, "digest", 256, &hex, msg));
    KBR_GUARD(parse_hash(body, c, msg));
    if (hex == NULL)
        goto out;
    KBR_ENSURE(kbr_hex_decode(hex, &c->digest, &c->digest_len) == KBR_OK,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "digest: not valid hex"));
    want = c->hash == KBR_HASH_SHA256 ? 32 : 48;
    KBR_ENSURE(c->digest_len == want,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "digest: %zu bytes, but a %s digest has %zu",
                        c->digest_len, c->hash_name, want));
    c->digest_given = true;
out:
    return err;
}

static kbr_err parse_message(const kbd_req *r, sign_ctx *c, kbr_msg *msg)
{
    const char *b64 = NULL;
    kbr_err err = KBR_OK;

    KBR_GUARD(read_given(r->body, "message_b64", r->d->cfg.body_limit, &b64, msg));
    if (b64 == NULL)
        goto out;
    KBR_ENSURE(kbr_b64_decode(b64, &c->message, &c->message_len) == KBR_OK,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "message_b64: not valid base64"));
    c->message_given = true;
out:
    return err;
}

static kbr_err parse_artifact(const json_t *body, sign_ctx *c, kbr_msg *msg)
{
    static const char *const allowed[] = {"product", "version", "name", "kind", "build_id", NULL};
    const json_t *a = json_object_get(body, "artifact");
    const char *product, *version, *name, *kind, *build_id;
    kbr_err err = KBR_OK;

    if (a == NULL)
        goto out;
    KBR_ENSURE(json_is_object(a),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "artifact: must be an object"));
    if (kbd_json_only(a, allowed, msg) != KBR_OK ||
        kbd_json_name(a, "product", true, &product, msg) != KBR_OK ||
        kbd_json_name(a, "version", true, &version, msg) != KBR_OK ||
        kbd_json_str(a, "name", false, 256, &name, msg) != KBR_OK ||
        kbd_json_str(a, "kind", false, 32, &kind, msg) != KBR_OK ||
        kbd_json_str(a, "build_id", false, 256, &build_id, msg) != KBR_OK)
        return kbd_msg_prefix(msg, "artifact", KBR_ERR_BAD_REQUEST);
    c->artifact_in = a;
out:
    return err;
}

kbr_err kbd_sign_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"key",     "digest",   "hash", "message_b64", "format",
                                          "padding", "artifact", "sbom", "sbom_b64",    NULL};
    const char *name = NULL, *f = NULL, *padding = NULL;
    sign_ctx *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbd_json_only(r->body, allowed, msg));
    KBR_GUARD(kbd_json_name(r->body, "key", true, &name, msg));
    KBR_ENSURE((c->key_name = strdup(name)) != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbd_json_str(r->body, "format", false, 16, &f, msg));
    KBR_GUARD(kbd_json_str(r->body, "padding", false, 16, &padding, msg));
    c->format_name = f == NULL                      ? "raw"
                     : strcmp(f, "raw") == 0        ? "raw"
                     : strcmp(f, "der") == 0        ? "der"
                     : strcmp(f, "cose_sign1") == 0 ? "cose_sign1"
                                                    : NULL;
    c->cose = f != NULL && strcmp(f, "cose_sign1") == 0;
    c->padding_given = padding != NULL;
    c->padding = padding == NULL                 ? NULL
                 : strcmp(padding, "pss") == 0   ? "pss"
                 : strcmp(padding, "pkcs1") == 0 ? "pkcs1"
                                                 : "";
    KBR_GUARD(parse_digest(r->body, c, msg));
    KBR_GUARD(parse_message(r, c, msg));
    KBR_GUARD(parse_artifact(r->body, c, msg));
    c->sbom_given = given(r->body, "sbom") || given(r->body, "sbom_b64");
    if (c->sbom_given)
        KBR_GUARD(kbd_sbom_parse(r->body, &c->sbom, msg));
out:
    return err;
}

/* The entry names the key the request names. */
kbr_err kbd_sign_describe(kbd_req *r, const void *req)
{
    const sign_ctx *c = req;

    if (c->key_name == NULL)
        return KBR_OK;
    free(r->rec->key);
    r->rec->key = strdup(c->key_name);
    return r->rec->key != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

/* The input the key signs: a message (ed25519, cose_sign1) or a digest of the given hash. */
static kbr_err bind_input(kbd_req *r, sign_ctx *c)
{
    kbr_err err = KBR_OK;

    c->is_message = c->alg == KBR_ALG_ED25519 || c->cose;
    if (c->is_message) {
        KBR_ENSURE(!given(r->body, "digest") && !given(r->body, "hash"),
                   kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                            c->cose ? "digest: cose_sign1 signs the payload itself; send "
                                      "message_b64"
                                    : "digest: ed25519 keys sign the message itself; send "
                                      "message_b64"));
        KBR_ENSURE(c->message_given,
                   kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "message_b64: required"));
        c->hash = KBR_HASH_NONE;
        c->hash_name = "sha256";
        c->input = c->message;
        c->inlen = c->message_len;
        kbr_sha256_hex(c->input, c->inlen, c->digest_hex);
    } else {
        KBR_ENSURE(!given(r->body, "message_b64"),
                   kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                            "message_b64: only ed25519 keys sign a message; send digest"));
        KBR_ENSURE(c->digest_given, kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "digest: required"));
        c->input = c->digest;
        c->inlen = c->digest_len;
        kbr_hex_encode_buf(c->input, c->inlen, c->digest_hex);
    }
out:
    return err;
}

/* The signature format the key makes of the request's format and padding. */
static kbr_err bind_format(kbd_req *r, sign_ctx *c)
{
    bool rsa = c->alg == KBR_ALG_RSA_3072 || c->alg == KBR_ALG_RSA_4096;
    bool ecdsa = c->alg == KBR_ALG_ECDSA_P256 || c->alg == KBR_ALG_ECDSA_P384;
    kbr_err err = KBR_OK;

    if (c->cose) {
        KBR_ENSURE(!c->padding_given,
                   kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "padding: not with cose_sign1"));
        KBR_GUARD(kbr_cose_alg_for(c->alg, &c->cose_alg, &r->msg));
        goto out;
    }
    KBR_ENSURE(c->format_name != NULL && (strcmp(c->format_name, "raw") == 0 ||
                                          (ecdsa && strcmp(c->format_name, "der") == 0)),
               kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "format: must be raw%s%s for a %s key",
                        ecdsa ? ", der" : "", rsa ? "" : " or cose_sign1", kbr_alg_name(c->alg)));
    KBR_ENSURE(!c->padding_given || rsa,
               kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "padding: only RSA keys take a padding"));
    if (ecdsa)
        c->fmt = strcmp(c->format_name, "der") == 0 ? KBR_SIG_ECDSA_DER : KBR_SIG_ECDSA_RAW;
    else if (!rsa)
        c->fmt = KBR_SIG_EDDSA;
    else if (c->padding == NULL || strcmp(c->padding, "pss") == 0)
        c->fmt = KBR_SIG_RSA_PSS;
    else if (strcmp(c->padding, "pkcs1") == 0)
        c->fmt = KBR_SIG_RSA_PKCS1;
    else
        err = kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "padding: must be pss or pkcs1");
out:
    return err;
}

/* The artifact the key's purpose asks for, of a product the token and the key both serve. */
static kbr_err bind_artifact(kbd_req *r, sign_ctx *c, const kbd_key *key)
{
    const char *want = c->firmware ? "firmware" : "ota-manifest";
    const json_t *a = c->artifact_in;
    const char *kind = json_string_value(json_object_get(a, "kind"));
    const char *product = json_string_value(json_object_get(a, "product"));
    kbr_err err = KBR_OK;

    KBR_ENSURE(a != NULL,
               kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "artifact: required for a %s key (product, version)", key->purpose));
    KBR_ENSURE(kind == NULL || strcmp(kind, want) == 0,
               kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "artifact.kind: a %s key signs only kind \"%s\"", key->purpose, want));
    KBR_ENSURE(kbd_req_key_product(r, key, "artifact.product", product) == KBR_OK,
               KBR_ERR_FORBIDDEN);
    c->artifact = json_object();
    KBR_ENSURE(c->artifact != NULL && kbd_json_set_str(c->artifact, "product", product, false) &&
                   kbd_json_set_str(c->artifact, "version",
                                    json_string_value(json_object_get(a, "version")), false) &&
                   kbd_json_set_str(c->artifact, "name",
                                    json_string_value(json_object_get(a, "name")), true) &&
                   kbd_json_set_str(c->artifact, "kind", want, false) &&
                   kbd_json_set_str(c->artifact, "build_id",
                                    json_string_value(json_object_get(a, "build_id")), true),
               KBR_ERR_NOMEM);
out:
    return err;
}

/*
 * The key named: one the token may use, registered and active, of a signing purpose; then
 * what that key makes of the request (message or digest, format, artifact kind) and the
 * artifact's product, which the token and the key must both serve.
 */
kbr_err kbd_sign_authorize(kbd_req *r, void *req)
{
    sign_ctx *c = req;
    const kbd_key *k = NULL;
    kbr_err err = KBR_OK;

    KBR_GUARD(kbd_req_use_key(r, c->key_name, &k));
    KBR_ENSURE(strcmp(k->purpose, "firmware-signing") == 0 ||
                   strcmp(k->purpose, "ota-signing") == 0,
               kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "key: \"%s\" is a %s key; /v1/sign takes firmware-signing and "
                        "ota-signing keys",
                        c->key_name, k->purpose));
    c->alg = k->alg;
    c->firmware = strcmp(k->purpose, "firmware-signing") == 0;
    KBR_GUARD(bind_input(r, c));
    KBR_GUARD(bind_format(r, c));
    KBR_GUARD(bind_artifact(r, c, k));
    if (c->firmware && !c->sbom_given)
        KBR_GUARD(kbd_sbom_parse(r->body, &c->sbom, &r->msg)); /* names what is missing */
    KBR_ENSURE(c->firmware || !c->sbom_given,
               kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "sbom: an OTA manifest carries no SBOM; the firmware it names has one"));
    c->key = strdup(k->name);
    c->label = strdup(k->hsm_label);
    c->purpose = strdup(k->purpose);
    KBR_ENSURE(c->key != NULL && c->label != NULL && c->purpose != NULL, KBR_ERR_NOMEM);
out:
    return err;
}

/* The ledger's view of this product/version, checked before the HSM is asked. */
static kbr_err check_ledger(kbd_req *r, kbd_worker *w, sign_ctx *c)
{
    const char *product = json_string_value(json_object_get(c->artifact, "product"));
    const char *version = json_string_value(json_object_get(c->artifact, "version"));
    json_t *build = NULL;
    kbr_err err = kbr_store_firmware_get(w->store, product, version, &build);
    const char *signed_digest;

    if (err != KBR_OK && err != KBR_ERR_NOT_FOUND) {
        kbd_req_error(r, KBR_ERR_AUDIT, "the firmware ledger could not be read");
        return KBR_ERR_AUDIT;
    }
    snprintf(r->msg.text, sizeof(r->msg.text),
             "artifact.version: firmware %s %s was already signed with another digest", product,
             version);
    if (!c->firmware && err == KBR_ERR_NOT_FOUND) {
        kbd_req_error(r, KBR_ERR_NOT_FOUND,
                      "artifact.version: this broker never signed firmware %s %s; an OTA "
                      "manifest can only name signed firmware",
                      product, version);
        return KBR_ERR_NOT_FOUND;
    }
    signed_digest = json_string_value(json_object_get(build, "digest"));
    if (c->firmware && err == KBR_OK && strcmp(signed_digest, c->digest_hex) != 0)
        kbd_req_error(r, err = KBR_ERR_CONFLICT, NULL);
    else
        err = KBR_OK;
    json_decref(build);
    return err;
}

/* The build and its SBOM components, recorded with the signature. */
static kbr_err firmware_effect(kbd_req *r, const sign_ctx *c)
{
    char now[KBR_TIME_LEN];
    const json_t *a = c->artifact, *comp;
    size_t i, n = json_array_size(c->sbom.components);
    kbr_effect_component *comps = calloc(n + 1, sizeof(*comps));
    char sbom_sha256[65];
    kbr_err err;

    if (comps == NULL)
        return KBR_ERR_NOMEM;
    err = kbd_req_document(r, c->sbom.document, c->sbom.len, sbom_sha256);
    if (err != KBR_OK) {
        free(comps);
        return err;
    }
    json_array_foreach(c->sbom.components, i, comp)
    {
        comps[i] =
            (kbr_effect_component){.name = json_string_value(json_object_get(comp, "name")),
                                   .version = json_string_value(json_object_get(comp, "version")),
                                   .purl = json_string_value(json_object_get(comp, "purl"))};
    }
    kbr_time_fmt(time(NULL), now);
    err = kbd_req_effect(
        r, &(kbr_effect){
               .type = KBR_EFFECT_FIRMWARE_SIGN,
               .u.firmware_sign = {.product = json_string_value(json_object_get(a, "product")),
                                   .version = json_string_value(json_object_get(a, "version")),
                                   .digest = c->digest_hex,
                                   .hash = c->hash_name,
                                   .key = c->key,
                                   .name = json_string_value(json_object_get(a, "name")),
                                   .build_id = json_string_value(json_object_get(a, "build_id")),
                                   .signed_at = now,
                                   .sbom_sha256 = sbom_sha256,
                                   .components = comps,
                                   .ncomponents = n}});
    free(comps);
    return err;
}

static void record_signature(kbd_req *r, sign_ctx *c, const unsigned char *sig, size_t siglen)
{
    char sig_sha[65];
    json_t *d = r->rec->detail;

    kbr_sha256_hex(sig, siglen, sig_sha);
    r->rec->key_use = true;
    json_object_set_new(d, "digest", json_string(c->digest_hex));
    json_object_set_new(d, "hash", json_string(c->hash_name));
    if (c->is_message)
        json_object_set_new(d, "message_sha256", json_string(c->digest_hex));
    json_object_set_new(d, "algorithm", json_string(kbr_alg_name(c->alg)));
    json_object_set_new(d, "format", json_string(c->format_name));
    json_object_set(d, "artifact", c->artifact);
    json_object_set_new(d, "signature_sha256", json_string(sig_sha));
    if (c->firmware) {
        json_object_set_new(d, "sbom_components",
                            json_integer((json_int_t)json_array_size(c->sbom.components)));
        if (firmware_effect(r, c) != KBR_OK)
            kbd_req_error(r, KBR_ERR_NOMEM, "the build could not be recorded");
    }
}

typedef struct {
    kbr_hsm_session *hsm;
    const char *label;
} hsm_signer;

static kbr_err cose_hsm_sign(void *arg, kbr_sig_format fmt, kbr_hash hash, const unsigned char *in,
                             size_t inlen, unsigned char **sig, size_t *siglen)
{
    hsm_signer *s = arg;

    return kbr_hsm_sign(s->hsm, s->label, fmt, hash, in, inlen, sig, siglen);
}

/* raw/der/PSS/PKCS#1: one HSM call; cose_sign1: the COSE_Sign1 around one HSM call. */
static kbr_err make_signature(kbd_worker *w, sign_ctx *c, unsigned char **sig, size_t *siglen)
{
    hsm_signer s = {w->hsm, c->label};

    if (!c->cose)
        return kbr_hsm_sign(w->hsm, c->label, c->fmt, c->hash, c->input, c->inlen, sig, siglen);
    return kbr_cose_sign1_make(c->cose_alg, (const unsigned char *)c->key, strlen(c->key), NULL, 0,
                               c->input, c->inlen, true, cose_hsm_sign, &s, sig, siglen);
}

void kbd_sign_work(kbd_req *r, kbd_worker *w)
{
    sign_ctx *c = r->ctx;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    kbr_err err;

    if (check_ledger(r, w, c) != KBR_OK)
        return;
    err = make_signature(w, c, &sig, &siglen);
    kbd_note_hsm(r->d, err);
    if (err != KBR_OK) {
        kbd_req_error(r, err,
                      err == KBR_ERR_BAD_REQUEST ? "digest: the key cannot sign this input"
                                                 : "the HSM could not sign: %s",
                      kbr_err_str(err));
        return;
    }
    if (kbr_b64_encode(sig, siglen, &c->sig_b64) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
        free(sig);
        return;
    }
    record_signature(r, c, sig, siglen);
    free(sig);
}

/*
 * The answer, once the record is durable: its text written straight from what the request
 * holds, members in RFC 8785 order, rather than built as a tree and serialized (a tenth of the
 * event loop's work per signature).
 */
void kbd_sign_finish(kbd_req *r)
{
    sign_ctx *c = r->ctx;
    kbr_jcs w = {0};
    size_t len;

    r->d->stats.signatures++;
    kbr_jcs_object(&w);
    kbr_jcs_member_str(&w, "algorithm", kbr_alg_name(c->alg));
    kbr_jcs_member_int(&w, "audit_seq", r->rec->seq);
    kbr_jcs_key(&w, "build");
    kbr_jcs_object(&w);
    kbr_jcs_member_str(&w, "digest", c->digest_hex);
    kbr_jcs_member_str(&w, "product", json_string_value(json_object_get(c->artifact, "product")));
    kbr_jcs_member_str(&w, "version", json_string_value(json_object_get(c->artifact, "version")));
    kbr_jcs_end(&w);
    kbr_jcs_member_str(&w, "format", c->format_name);
    kbr_jcs_member_str(&w, "key", c->key);
    kbr_jcs_member_str(&w, "signature_b64", c->sig_b64);
    kbr_jcs_end(&w);
    if (kbr_jcs_finish(&w, &r->resp_text, &len) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "the answer could not be written");
        return;
    }
    r->resp_type = "application/json";
}
