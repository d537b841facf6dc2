/*
 * h_certs.c - POST /v1/keys/{name}/certificate: a certificate for a key,
 * either issued elsewhere (kbr_ca_cert_for_key checks it entirely, with the
 * chain that follows it in pem or comes in chain_pem) or a self-signed CA
 * certificate made and signed inside the HSM.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "routes.h"
#include "kbr_ca.h"

typedef kbd_key_certificate_req cert_ctx;

void kbd_key_certificate_free(void *p)
{
    cert_ctx *c = p;

    if (c == NULL)
        return;
    free(c->name);
    free(c->label);
    free(c->pem);
    free(c->subject);
    free(c);
}

static kbr_err parse_self_signed(cert_ctx *c, const json_t *ss, kbr_msg *msg)
{
    static const char *const allowed[] = {"subject", "days", NULL};
    const char *subject = NULL;
    int64_t days = 0;

    if (!json_is_object(ss))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "self_signed: must be an object");
    if (kbd_json_only(ss, allowed, msg) != KBR_OK ||
        kbd_json_str(ss, "subject", true, 512, &subject, msg) != KBR_OK ||
        kbd_json_int(ss, "days", true, 1, 36500, &days, msg) != KBR_OK)
        return kbd_msg_prefix(msg, "self_signed", KBR_ERR_BAD_REQUEST);
    c->subject = strdup(subject);
    c->days = (long)days;
    return c->subject == NULL ? KBR_ERR_NOMEM : KBR_OK;
}

/*
 * The certificate, then its issuers: a chain given apart in chain_pem is read exactly as if it
 * followed the certificate in pem, so both spellings meet the same checks.
 */
static kbr_err attach_pem(const char *pem, const char *chain, char **out, kbr_msg *msg)
{
    *out = NULL;
    if (chain == NULL || chain[0] == '\0') {
        *out = strdup(pem);
        return *out == NULL ? KBR_ERR_NOMEM : KBR_OK;
    }
    if (strlen(pem) + 1 + strlen(chain) > KBR_CA_CHAIN_MAX)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "pem and chain_pem: longer than %d characters together", KBR_CA_CHAIN_MAX);
    return asprintf(out, "%s\n%s", pem, chain) < 0 ? KBR_ERR_NOMEM : KBR_OK;
}

kbr_err kbd_key_certificate_parse(const kbd_req *r, void **out, kbr_msg *msg)
{
    static const char *const allowed[] = {"pem", "chain_pem", "self_signed", NULL};
    const json_t *ss = json_object_get(r->body, "self_signed");
    const char *pem = NULL, *chain = NULL;
    cert_ctx *c = calloc(1, sizeof(*c));
    kbr_err err = KBR_OK;

    *out = c;
    KBR_ENSURE(c != NULL, KBR_ERR_NOMEM);
    KBR_ENSURE(kbr_name_valid(r->arg),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "key name in the path is not valid"));
    KBR_GUARD(kbd_json_only(r->body, allowed, msg));
    KBR_GUARD(kbd_json_str(r->body, "pem", false, KBR_CA_CHAIN_MAX, &pem, msg));
    KBR_GUARD(kbd_json_str(r->body, "chain_pem", false, KBR_CA_CHAIN_MAX, &chain, msg));
    KBR_ENSURE((pem == NULL) != (ss == NULL),
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "give exactly one of pem or self_signed"));
    KBR_ENSURE(chain == NULL || pem != NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "chain_pem: only with pem"));
    if (ss != NULL)
        KBR_GUARD(parse_self_signed(c, ss, msg));
    else
        KBR_GUARD(attach_pem(pem, chain, &c->pem, msg));
out:
    return err;
}

/* The key of the path, held by the token, active; a self-signed certificate is a CA's. */
kbr_err kbd_key_certificate_authorize(kbd_req *r, void *req)
{
    cert_ctx *c = req;
    const kbd_key *k = NULL;
    kbr_err err = KBR_OK;

    KBR_GUARD(kbd_req_path_key(r, &k));
    KBR_ENSURE(!k->retired, kbr_fail(&r->msg, KBR_ERR_CONFLICT, "key \"%s\" is retired", k->name));
    c->ca_key = strcmp(k->purpose, "device-identity-ca") == 0;
    KBR_ENSURE(c->pem != NULL || c->ca_key,
               kbr_fail(&r->msg, KBR_ERR_BAD_REQUEST,
                        "self_signed: only device-identity-ca keys get a self-signed CA "
                        "certificate; attach a certificate issued elsewhere with pem"));
    c->name = strdup(k->name);
    c->label = strdup(k->hsm_label);
    c->alg = k->alg;
    KBR_ENSURE(c->name != NULL && c->label != NULL, KBR_ERR_NOMEM);
out:
    return err;
}

/* A self-signed CA certificate points to the CRL its key signs, when crl_url is set. */
static kbr_err make_cert(kbd_req *r, kbd_worker *w, cert_ctx *c, EVP_PKEY *pub, kbr_ca_cert **leaf,
                         char **chain)
{
    kbr_ca_hsm_ctx hctx;
    kbr_ca_signer signer;
    char *crl_url = NULL;
    kbr_err err;

    if (c->pem != NULL)
        return kbr_ca_cert_for_key(c->pem, pub, c->ca_key, time(NULL), leaf, chain, &r->msg);
    crl_url = kbd_crl_url_for(&r->d->cfg, c->name, &err);
    if (err == KBR_OK)
        err = kbr_ca_hsm_signer(w->hsm, c->label, c->alg, &hctx, &signer);
    if (err == KBR_OK)
        err = kbr_ca_self_signed(&signer, pub, c->subject, c->days, time(NULL), crl_url, leaf,
                                 &r->msg);
    kbd_note_hsm(r->d, err);
    if (err == KBR_OK)
        *chain = strdup("");
    free(crl_url);
    return err;
}

static json_t *cert_json(const kbr_ca_cert *leaf, const char *chain)
{
    char not_after[KBR_TIME_LEN];

    kbr_ca_cert_not_after_str(leaf, not_after);
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "pem", kbr_ca_cert_pem(leaf), "chain_pem", chain,
                     "not_after", not_after, "serial_number", kbr_ca_cert_serial_hex(leaf),
                     "fingerprint", kbr_ca_cert_fingerprint(leaf));
}

/* Event thread, once the certificate is durable: a CRL carries its CA certificate's name and key
 * identifier, so none signed before it is served again. */
void kbd_key_certificate_finish(kbd_req *r)
{
    kbd_crls_changed(r->d);
}

static void record(kbd_req *r, cert_ctx *c, const kbr_ca_cert *leaf, const char *chain)
{
    json_t *cert = cert_json(leaf, chain);
    char now[KBR_TIME_LEN], not_after[KBR_TIME_LEN];

    kbr_time_fmt(time(NULL), now);
    kbr_ca_cert_not_after_str(leaf, not_after);
    /* a certificate made here is signed by the key itself; one issued elsewhere names none */
    if (kbd_req_effect(
            r,
            &(kbr_effect){.type = KBR_EFFECT_KEY_CERTIFICATE,
                          .u.key_certificate = {
                              .name = c->name,
                              .at = now,
                              .issuer_key = c->pem == NULL ? c->name : NULL,
                              .cert = {.serial_number = kbr_ca_cert_serial_hex(leaf),
                                       .pem = kbr_ca_cert_pem(leaf),
                                       .chain_pem = chain,
                                       .not_after = not_after,
                                       .fingerprint = kbr_ca_cert_fingerprint(leaf)}}}) != KBR_OK) {
        json_decref(cert);
        kbd_req_error(r, KBR_ERR_NOMEM, "the certificate could not be recorded");
        return;
    }
    json_object_set_new(
        r->rec->detail, "certificate",
        json_pack("{s:O,s:O,s:O,s:b}", "serial_number", json_object_get(cert, "serial_number"),
                  "fingerprint", json_object_get(cert, "fingerprint"), "not_after",
                  json_object_get(cert, "not_after"), "self_signed", c->pem == NULL));
    if (c->subject != NULL)
        json_object_set_new(r->rec->detail, "subject", json_string(c->subject));
    r->resp = json_pack("{s:s,s:o}", "name", c->name, "certificate", cert);
    r->status = 201;
}

void kbd_key_certificate_work(kbd_req *r, kbd_worker *w)
{
    cert_ctx *c = r->ctx;
    EVP_PKEY *pub = NULL;
    kbr_ca_cert *leaf = NULL;
    char *chain = NULL;
    kbr_err err = kbr_hsm_public_key(w->hsm, c->label, &pub);

    kbd_note_hsm(r->d, err);
    if (err != KBR_OK) {
        kbd_req_error(r, err, "the HSM did not give the key's public key");
        return;
    }
    err = make_cert(r, w, c, pub, &leaf, &chain);
    if (err == KBR_OK && chain != NULL)
        record(r, c, leaf, chain);
    else
        kbd_req_error(r, err == KBR_OK ? KBR_ERR_NOMEM : err, NULL);
    kbr_ca_cert_free(leaf);
    free(chain);
    EVP_PKEY_free(pub);
}
