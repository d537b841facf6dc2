/* sign_body.c - what `keybroker sign` sends: local digests, SBOMs, the request body. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cli.h"

static const EVP_MD *hash_md(const char *hash)
{
    if (strcmp(hash, "sha256") == 0)
        return EVP_sha256();
    if (strcmp(hash, "sha384") == 0)
        return EVP_sha384();
    return NULL;
}

static kbr_err hash_stream(FILE *f, EVP_MD_CTX *ctx, unsigned char *chunk)
{
    size_t n;

    while ((n = fread(chunk, 1, CLI_HASH_CHUNK, f)) > 0)
        if (EVP_DigestUpdate(ctx, chunk, n) != 1)
            return KBR_ERR_CRYPTO;
    return ferror(f) ? KBR_ERR_IO : KBR_OK;
}

kbr_err cli_digest_file(const char *path, const char *hash, char **hex, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const EVP_MD *md = hash_md(hash);
    EVP_MD_CTX *ctx = NULL;
    unsigned char *chunk = NULL, out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    FILE *f = NULL;

    *hex = NULL;
    KBR_ENSURE(md != NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--hash must be sha256 or sha384"));
    f = fopen(path, "rb");
    KBR_ENSURE(f != NULL, kbr_fail(msg, KBR_ERR_IO, "%s: %s", path, strerror(errno)));
    ctx = EVP_MD_CTX_new();
    chunk = malloc(CLI_HASH_CHUNK);
    KBR_ENSURE(ctx != NULL && chunk != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(EVP_DigestInit_ex(ctx, md, NULL) == 1, KBR_ERR_CRYPTO);
    err = hash_stream(f, ctx, chunk);
    KBR_ENSURE(err != KBR_ERR_IO, kbr_fail(msg, KBR_ERR_IO, "%s: read error", path));
    KBR_GUARD(err);
    KBR_ENSURE(EVP_DigestFinal_ex(ctx, out, &outlen) == 1, KBR_ERR_CRYPTO);
    KBR_GUARD(kbr_hex_encode(out, outlen, hex));
out:
    if (f != NULL)
        fclose(f);
    EVP_MD_CTX_free(ctx);
    free(chunk);
    return err;
}

kbr_err cli_digest_normalize(const char *hex, const char *hash, char **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const EVP_MD *md = hash_md(hash);
    size_t len = strlen(hex);
    char *s = NULL;

    *out = NULL;
    KBR_ENSURE(md != NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--hash must be sha256 or sha384"));
    KBR_ENSURE(len == 2 * (size_t)EVP_MD_get_size(md),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--digest must be %d hex digits for %s",
                        2 * EVP_MD_get_size(md), hash));
    KBR_ENSURE(strspn(hex, "0123456789abcdefABCDEF") == len,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--digest is not hex"));
    s = strdup(hex);
    KBR_ENSURE(s != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < len; i++)
        s[i] = (char)tolower((unsigned char)s[i]);
    *out = s;
out:
    return err;
}

static kbr_err read_limited(const char *path, size_t max, char **raw, size_t *len, kbr_msg *msg)
{
    kbr_err err = kbr_file_read(path, max, raw, len);

    if (err == KBR_ERR_TOO_LARGE)
        return kbr_fail(msg, err, "%s is larger than %zu bytes", path, max);
    if (err == KBR_ERR_IO)
        return kbr_fail(msg, err, "%s: cannot read", path);
    return err;
}

kbr_err cli_file_b64(const char *path, size_t max, char **b64, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char *raw = NULL;
    size_t len = 0;

    *b64 = NULL;
    KBR_GUARD(read_limited(path, max, &raw, &len, msg));
    KBR_GUARD(kbr_b64_encode((const unsigned char *)raw, len, b64));
out:
    free(raw);
    return err;
}

static kbr_err check_cyclonedx(const char *path, const char *raw, size_t len, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_error_t jerr;
    /* the broker refuses a member given twice; found out here, before a request */
    json_t *doc = json_loadb(raw, len, JSON_REJECT_DUPLICATES, &jerr);
    const char *format = NULL;

    KBR_ENSURE(doc != NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--sbom %s is not JSON: line %d: %s",
                                     path, jerr.line, jerr.text));
    format = json_string_value(json_object_get(doc, "bomFormat"));
    KBR_ENSURE(format != NULL && strcmp(format, "CycloneDX") == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--sbom %s is not a CycloneDX document (bomFormat)", path));
out:
    json_decref(doc);
    return err;
}

kbr_err cli_sbom_b64_from_file(const char *path, char **b64, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char *raw = NULL;
    size_t len = 0;

    *b64 = NULL;
    KBR_GUARD(read_limited(path, CLI_SBOM_MAX, &raw, &len, msg));
    KBR_GUARD(check_cyclonedx(path, raw, len, msg));
    /* The document goes as-is: the broker records exactly what CI produced. */
    KBR_GUARD(kbr_b64_encode((const unsigned char *)raw, len, b64));
out:
    free(raw);
    return err;
}

static kbr_err component_object(const char *name, size_t nlen, const char *version, size_t vlen,
                                const char *purl, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *c = json_object();

    *out = NULL;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set_new(c, "name", json_stringn(name, nlen)) == 0, KBR_ERR_NOMEM);
    KBR_ENSURE(json_object_set_new(c, "version", json_stringn(version, vlen)) == 0, KBR_ERR_NOMEM);
    if (purl != NULL)
        KBR_ENSURE(json_object_set_new(c, "purl", json_string(purl)) == 0, KBR_ERR_NOMEM);
    *out = c;
    c = NULL;
out:
    json_decref(c);
    return err;
}

kbr_err cli_component_parse(const char *spec, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    /* Search from the second character: npm scopes start names with '@'. */
    const char *at1 = spec[0] != '\0' ? strchr(spec + 1, '@') : NULL;
    const char *version = at1 != NULL ? at1 + 1 : NULL, *at2 = NULL, *purl = NULL;
    size_t vlen;

    *out = NULL;
    KBR_ENSURE(
        version != NULL && *version != '\0' && *version != '@',
        kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--component '%s' is not name@version[@purl]", spec));
    /* The purl keeps its own '@' (pkg:generic/zlib@1.3). */
    at2 = strchr(version, '@');
    vlen = at2 != NULL ? (size_t)(at2 - version) : strlen(version);
    purl = at2 != NULL ? at2 + 1 : NULL;
    KBR_ENSURE(
        purl == NULL || strncmp(purl, "pkg:", 4) == 0,
        kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--component '%s': purl must start with pkg:", spec));
    KBR_GUARD(component_object(spec, (size_t)(at1 - spec), version, vlen, purl, out));
out:
    return err;
}

static kbr_err set_str(json_t *obj, const char *name, const char *value)
{
    json_t *v = NULL;

    if (value == NULL)
        return KBR_OK;
    /* json_string() refuses invalid UTF-8, which here is the user's input. */
    v = json_string(value);
    if (v == NULL)
        return KBR_ERR_BAD_REQUEST;
    return json_object_set_new(obj, name, v) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

static bool has_artifact(const cli_sign_req *r)
{
    return r->product != NULL || r->version != NULL || r->name != NULL || r->build_id != NULL ||
           r->kind != NULL;
}

static bool is_cose(const char *format)
{
    return format != NULL && strcmp(format, "cose_sign1") == 0;
}

kbr_err cli_sign_format_check(const char *format, kbr_msg *msg)
{
    if (format == NULL || strcmp(format, "raw") == 0 || strcmp(format, "der") == 0 ||
        is_cose(format))
        return KBR_OK;
    return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--format must be raw, der or cose_sign1");
}

bool cli_sign_sends_message(const char *alg, const char *format)
{
    return is_cose(format) || (alg != NULL && strcmp(alg, "ed25519") == 0);
}

static kbr_err check_request(const cli_sign_req *r, kbr_msg *msg)
{
    if (r->key == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "missing required option --key");
    if ((r->digest == NULL) == (r->message_b64 == NULL))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "give exactly one of --file, --digest, --message");
    if (cli_sign_format_check(r->format, msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    /* A COSE_Sign1 signature covers the payload inside its Sig_structure, not a digest of it. */
    if (is_cose(r->format) && r->digest != NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--format cose_sign1 signs the payload itself: give --file or "
                        "--message, not --digest");
    if (r->sbom_b64 != NULL && r->components != NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--sbom and --component exclude each other");
    if (has_artifact(r) && (r->product == NULL || r->version == NULL))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "the artifact needs both --product and --version");
    if ((r->sbom_b64 != NULL || r->components != NULL) && !has_artifact(r))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "an SBOM needs the artifact's --product and --version");
    return KBR_OK;
}

static kbr_err artifact_object(const cli_sign_req *r, json_t **out)
{
    kbr_err err = KBR_OK;
    json_t *a = json_object();

    *out = NULL;
    KBR_ENSURE(a != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(set_str(a, "product", r->product));
    KBR_GUARD(set_str(a, "version", r->version));
    KBR_GUARD(set_str(a, "name", r->name));
    KBR_GUARD(set_str(a, "kind", r->kind));
    KBR_GUARD(set_str(a, "build_id", r->build_id));
    *out = a;
    a = NULL;
out:
    json_decref(a);
    return err;
}

static kbr_err inline_sbom(const json_t *components, json_t **out)
{
    *out = json_pack("{s:s, s:O}", "format", "cyclonedx", "components", components);
    return *out != NULL ? KBR_OK : KBR_ERR_NOMEM;
}

static kbr_err add_sbom(json_t *body, const cli_sign_req *r)
{
    kbr_err err = KBR_OK;
    json_t *sbom = NULL;

    if (r->components == NULL)
        return set_str(body, "sbom_b64", r->sbom_b64);
    KBR_GUARD(inline_sbom(r->components, &sbom));
    KBR_ENSURE(json_object_set_new(body, "sbom", sbom) == 0, KBR_ERR_NOMEM);
out:
    return err;
}

kbr_err cli_sign_body(const cli_sign_req *r, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL, *artifact = NULL;

    *out = NULL;
    KBR_GUARD(check_request(r, msg));
    body = json_object();
    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(set_str(body, "key", r->key));
    KBR_GUARD(set_str(body, "digest", r->digest));
    KBR_GUARD(set_str(body, "hash", r->digest != NULL ? r->hash : NULL));
    KBR_GUARD(set_str(body, "message_b64", r->message_b64));
    KBR_GUARD(set_str(body, "format", r->format));
    if (has_artifact(r)) {
        KBR_GUARD(artifact_object(r, &artifact));
        KBR_ENSURE(json_object_set_new(body, "artifact", artifact) == 0, KBR_ERR_NOMEM);
    }
    KBR_GUARD(add_sbom(body, r));
    *out = body;
    body = NULL;
out:
    json_decref(body);
    return err;
}
