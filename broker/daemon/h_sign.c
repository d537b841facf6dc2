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
#include "kbr_cose.h"

typedef struct {
    char *key, *label, *purpose;
    kbr_alg alg;
    kbr_hash hash;
    kbr_sig_format fmt;
    const char *format_name, *hash_name;
    unsigned char *input;
    size_t inlen;
    bool is_message;
    bool cose; /* format cose_sign1: the input is the detached payload */
    kbr_cose_alg cose_alg;
    char digest_hex[97]; /* what the build record names: the digest, or SHA-256 of the message */
    json_t *artifact;    /* {product, version, name, kind, build_id} */
    kbd_sbom sbom;       /* firmware only */
    bool firmware;
} sign_ctx;

static void sign_ctx_free(void *p)
{
    sign_ctx *c = p;

    if (c == NULL)
        return;
    free(c->key);
    free(c->label);
    free(c->purpose);
    free(c->input);
    json_decref(c->artifact);
    kbd_sbom_free(&c->sbom);
    free(c);
}

static kbr_err parse_hash(kbd_req *r, sign_ctx *c)
{
    const char *h = NULL;

    if (kbd_json_str(r->body, "hash", false, 16, &h, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (h == NULL || strcmp(h, "sha256") == 0) {
        c->hash = KBR_HASH_SHA256;
        c->hash_name = "sha256";
    } else if (strcmp(h, "sha384") == 0) {
        c->hash = KBR_HASH_SHA384;
        c->hash_name = "sha384";
    } else {
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "hash: must be sha256 or sha384");
    }
    return KBR_OK;
}

static kbr_err parse_digest(kbd_req *r, sign_ctx *c)
{
    const char *hex = NULL;
    size_t want;

    if (json_object_get(r->body, "message_b64") != NULL)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "message_b64: only ed25519 keys sign a message; send digest");
    if (kbd_json_str(r->body, "digest", true, 256, &hex, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (parse_hash(r, c) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (kbr_hex_decode(hex, &c->input, &c->inlen) != KBR_OK)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "digest: not valid hex");
    want = c->hash == KBR_HASH_SHA256 ? 32 : 48;
    if (c->inlen != want)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "digest: %zu bytes, but a %s digest has %zu",
                        c->inlen, c->hash_name, want);
    kbr_hex_encode_buf(c->input, c->inlen, c->digest_hex);
    return KBR_OK;
}

static kbr_err parse_message(kbd_req *r, sign_ctx *c)
{
    const char *b64 = NULL;

    if (json_object_get(r->body, "digest") != NULL || json_object_get(r->body, "hash") != NULL)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        c->cose ? "digest: cose_sign1 signs the payload itself; send message_b64"
                                : "digest: ed25519 keys sign the message itself; send "
                                  "message_b64");
    if (kbd_json_str(r->body, "message_b64", true, r->d->cfg.body_limit, &b64, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (kbr_b64_decode(b64, &c->input, &c->inlen) != KBR_OK)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "message_b64: not valid base64");
    c->is_message = true;
    c->hash = KBR_HASH_NONE;
    c->hash_name = "sha256";
    kbr_sha256_hex(c->input, c->inlen, c->digest_hex);
    return KBR_OK;
}

static kbr_err parse_format(kbd_req *r, sign_ctx *c)
{
    const char *f = NULL, *padding = NULL;
    bool rsa = c->alg == KBR_ALG_RSA_3072 || c->alg == KBR_ALG_RSA_4096;
    bool ecdsa = c->alg == KBR_ALG_ECDSA_P256 || c->alg == KBR_ALG_ECDSA_P384;

    if (kbd_json_str(r->body, "format", false, 16, &f, &r->msg) != KBR_OK ||
        kbd_json_str(r->body, "padding", false, 16, &padding, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    c->format_name = f != NULL ? f : "raw";
    if (c->cose) {
        if (padding != NULL)
            return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "padding: not with cose_sign1");
        return kbr_cose_alg_for(c->alg, &c->cose_alg, &r->msg);
    }
    if (strcmp(c->format_name, "raw") != 0 && !(ecdsa && strcmp(c->format_name, "der") == 0))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "format: must be raw%s%s for a %s key",
                        ecdsa ? ", der" : "", rsa ? "" : " or cose_sign1", kbr_alg_name(c->alg));
    if (padding != NULL && !rsa)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "padding: only RSA keys take a padding");
    if (ecdsa)
        c->fmt = strcmp(c->format_name, "der") == 0 ? KBR_SIG_ECDSA_DER : KBR_SIG_ECDSA_RAW;
    else if (!rsa)
        c->fmt = KBR_SIG_EDDSA;
    else if (padding == NULL || strcmp(padding, "pss") == 0)
        c->fmt = KBR_SIG_RSA_PSS;
    else if (strcmp(padding, "pkcs1") == 0)
        c->fmt = KBR_SIG_RSA_PKCS1;
    else
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "padding: must be pss or pkcs1");
    return KBR_OK;
}

static kbr_err parse_artifact(kbd_req *r, sign_ctx *c, const kbd_key *key)
{
    static const char *const allowed[] = {"product", "version", "name", "kind", "build_id", NULL};
    const json_t *a = json_object_get(r->body, "artifact");
    const char *product, *version, *name, *kind, *build_id;
    const char *want = c->firmware ? "firmware" : "ota-manifest";

    if (a == NULL)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "artifact: required for a %s key (product, version)", key->purpose);
    if (!json_is_object(a))
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST, "artifact: must be an object");
    if (kbd_json_only(a, allowed, &r->msg) != KBR_OK ||
        kbd_json_name(a, "product", true, &product, &r->msg) != KBR_OK ||
        kbd_json_name(a, "version", true, &version, &r->msg) != KBR_OK ||
        kbd_json_str(a, "name", false, 256, &name, &r->msg) != KBR_OK ||
        kbd_json_str(a, "kind", false, 32, &kind, &r->msg) != KBR_OK ||
        kbd_json_str(a, "build_id", false, 256, &build_id, &r->msg) != KBR_OK)
        return kbd_msg_prefix(&r->msg, "artifact", KBR_ERR_BAD_REQUEST);
    if (kind != NULL && strcmp(kind, want) != 0)
        return kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "artifact.kind: a %s key signs only kind \"%s\"", key->purpose, want);
    if (kbd_req_key_product(r, key, "artifact.product", product) != KBR_OK)
        return KBR_ERR_FORBIDDEN;
    c->artifact = json_pack("{s:s,s:s,s:s?,s:s,s:s?}", "product", product, "version", version,
                            "name", name, "kind", want, "build_id", build_id);
    return c->artifact == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

static kbr_err check_key(kbd_req *r, const kbd_key **out)
{
    const char *name = NULL;
    const kbd_key *k;

    kbr_err err;

    if (kbd_json_name(r->body, "key", true, &name, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    err = kbd_req_use_key(r, name, &k);
    if (err != KBR_OK)
        return err;
    if (strcmp(k->purpose, "firmware-signing") != 0 && strcmp(k->purpose, "ota-signing") != 0)
        return kbr_fail(&r->msg, KBR_ERR_FORBIDDEN,
                        "key: \"%s\" is a %s key; /v1/sign takes firmware-signing and "
                        "ota-signing keys",
                        name, k->purpose);
    *out = k;
    return KBR_OK;
}

static kbr_err sign_parse(kbd_req *r, sign_ctx *c)
{
    static const char *const allowed[] = {"key",     "digest",   "hash", "message_b64", "format",
                                          "padding", "artifact", "sbom", "sbom_b64",    NULL};
    const kbd_key *k = NULL;
    kbr_err err;

    if (kbd_json_only(r->body, allowed, &r->msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    err = check_key(r, &k);
    if (err != KBR_OK)
        return err;
    c->alg = k->alg;
    c->firmware = strcmp(k->purpose, "firmware-signing") == 0;
    c->cose = json_is_string(json_object_get(r->body, "format")) &&
              strcmp(json_string_value(json_object_get(r->body, "format")), "cose_sign1") == 0;
    err = c->alg == KBR_ALG_ED25519 || c->cose ? parse_message(r, c) : parse_digest(r, c);
    if (err == KBR_OK)
        err = parse_format(r, c);
    if (err == KBR_OK)
        err = parse_artifact(r, c, k);
    if (err == KBR_OK && c->firmware)
        err = kbd_sbom_parse(r->body, &c->sbom, &r->msg);
    if (err == KBR_OK && !c->firmware &&
        (json_object_get(r->body, "sbom") != NULL || json_object_get(r->body, "sbom_b64") != NULL))
        err = kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                       "sbom: an OTA manifest carries no SBOM; the firmware it names has one");
    if (err != KBR_OK)
        return err;
    c->key = strdup(k->name);
    c->label = strdup(k->hsm_label);
    c->purpose = strdup(k->purpose);
    return c->key == NULL || c->label == NULL || c->purpose == NULL ? KBR_ERR_NOMEM : KBR_OK;
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

static void sign_work(kbd_req *r, kbd_worker *w)
{
    sign_ctx *c = r->ctx;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    char *sig_b64 = NULL;
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
    if (kbr_b64_encode(sig, siglen, &sig_b64) != KBR_OK) {
        kbd_req_error(r, KBR_ERR_NOMEM, "out of memory");
        free(sig);
        return;
    }
    record_signature(r, c, sig, siglen);
    r->resp = json_pack("{s:s,s:s,s:s,s:s,s:{s:O,s:O,s:s}}", "signature_b64", sig_b64, "key",
                        c->key, "algorithm", kbr_alg_name(c->alg), "format", c->format_name,
                        "build", "product", json_object_get(c->artifact, "product"), "version",
                        json_object_get(c->artifact, "version"), "digest", c->digest_hex);
    r->add_audit_seq_to_resp = true;
    free(sig);
    free(sig_b64);
}

static void sign_finish(kbd_req *r)
{
    r->d->stats.signatures++;
}

kbr_err kbd_h_sign(kbd_req *r)
{
    sign_ctx *c = calloc(1, sizeof(*c));
    kbr_err err;

    if (c == NULL)
        return KBR_ERR_NOMEM;
    r->ctx = c;
    r->ctx_free = sign_ctx_free;
    err = sign_parse(r, c);
    if (err != KBR_OK)
        return err;
    err = kbd_req_reserve_use(r);
    if (err != KBR_OK)
        return err;
    r->work = sign_work;
    r->finish = sign_finish;
    kbd_req_dispatch(r);
    return KBR_OK;
}
