/*
 * effects.c - kbr_store_apply: each ledger effect of one record applied
 * through the back end, all inside one savepoint.  The effects arrive
 * checked and normalized (effect.c); what is left here is the ledger's own
 * rules and the order of each effect's writes.
 */
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "backend.h"

/* Canonical text of a list of strings, as the back end stores products and markets. */
static kbr_err strings_text(kbr_strings l, char **out)
{
    kbr_err err = KBR_OK;
    json_t *arr = json_array();

    *out = NULL;
    KBR_ENSURE(arr != NULL, KBR_ERR_NOMEM);
    for (size_t i = 0; i < l.n; i++)
        KBR_ENSURE(json_array_append_new(arr, json_string(l.items[i])) == 0, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_json_canonical(arr, out));
out:
    json_decref(arr);
    return err;
}

static kbr_err key_create(kbr_store *st, const kbr_fx_key_create *k, int64_t seq)
{
    kbr_err err = KBR_OK;
    char *products = NULL;
    kbr_eff_key row = {
        .name = k->name,
        .purpose = k->purpose,
        .algorithm = k->algorithm,
        .owner = k->owner,
        .hsm_label = k->hsm_label,
        .hsm_id = k->hsm_id,
        .public_key_pem = k->public_key_pem,
        .public_key_sha256 = k->public_key_sha256,
        .created_at = k->created_at,
    };

    KBR_GUARD(strings_text(k->products, &products));
    row.products_json = products;
    KBR_GUARD(st->ops->key_create(st, &row, seq));
out:
    free(products);
    return err;
}

/* The current issuer key's kid (the caller's), or NULL when the ledger has none. */
static kbr_err issuer_current(kbr_store *st, char **kid)
{
    kbr_err err = st->ops->issuer_current(st, kid);

    return err == KBR_ERR_NOT_FOUND ? KBR_OK : err;
}

/*
 * A token names the key that signed it, and that is the current issuer key: a token signed
 * with the key a rotation just replaced, committed after the rotation, is refused, so the log
 * shows one key before the rotation's entry and the other after it.
 */
static kbr_err token_issue(kbr_store *st, const kbr_fx_token_issue *t, int64_t seq)
{
    kbr_err err = KBR_OK;
    char *current = NULL;

    KBR_GUARD(issuer_current(st, &current));
    KBR_ENSURE((current == NULL) == (t->kid == NULL), KBR_ERR_STORE_CONSTRAINT);
    KBR_ENSURE(current == NULL || strcmp(current, t->kid) == 0, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->token_issue(st, t, seq));
out:
    free(current);
    return err;
}

/* The ledger's name of the public key in pem (kbr_store_public_key_sha256). */
static kbr_err pem_public_key_sha256(const char *pem, char hex[65])
{
    kbr_err err = KBR_OK;
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pub = NULL;

    KBR_ENSURE(bio != NULL, KBR_ERR_NOMEM);
    pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    KBR_ENSURE(pub != NULL, KBR_ERR_INTERNAL);
    KBR_GUARD(kbr_store_public_key_sha256(pub, hex));
out:
    ERR_clear_error();
    EVP_PKEY_free(pub);
    BIO_free(bio);
    return err;
}

/*
 * One issuer key is current.  A rotation names the key it replaces, so of two rotations
 * racing from the same key only the first is recorded.  The first key recorded is the one
 * that signed every token recorded without a kid: before keys were recorded there was one.
 */
static kbr_err issuer_rotate(kbr_store *st, const kbr_fx_issuer_rotate *r, int64_t seq)
{
    kbr_err err = KBR_OK;
    char *current = NULL, pk_sha256[65];

    KBR_GUARD(pem_public_key_sha256(r->public_key_pem, pk_sha256));
    KBR_GUARD(issuer_current(st, &current));
    KBR_ENSURE((current == NULL) == (r->replaces == NULL), KBR_ERR_STORE_CONSTRAINT);
    KBR_ENSURE(current == NULL || strcmp(current, r->replaces) == 0, KBR_ERR_STORE_CONSTRAINT);
    if (current != NULL)
        KBR_GUARD(st->ops->issuer_replace(st, current, r->at));
    KBR_GUARD(st->ops->issuer_insert(st, r, pk_sha256, seq));
    if (current == NULL)
        KBR_GUARD(st->ops->tokens_assign_kid(st, r->kid));
out:
    free(current);
    return err;
}

static kbr_err token_revoke(kbr_store *st, const kbr_fx_token_revoke *r)
{
    kbr_err err = KBR_OK;

    for (size_t i = 0; i < r->jtis.n; i++)
        KBR_GUARD(st->ops->token_revoke(st, r->jtis.items[i], r->at, r->reason));
out:
    return err;
}

/* An effect names a document this record or an earlier one stored. */
static kbr_err document_known(kbr_store *st, const char *sha256)
{
    kbr_err err = KBR_OK;
    bool exists = false;

    KBR_GUARD(st->ops->document_exists(st, sha256, &exists));
    KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
out:
    return err;
}

/*
 * A build signed after an incident was recorded joins it when its SBOM carries what the
 * incident asks about (match.c), so its devices count in the incident's fleet from the day
 * they run it.  Components are compared only when their name or package is the one asked
 * about.
 */
static kbr_err incident_component(const kbr_match *m, const kbr_effect_component *c,
                                  const char *purl_key, bool *yes)
{
    const char *want = kbr_match_component_name(m), *why = NULL;

    *yes = false;
    if (want != NULL ? strcmp(want, c->name) != 0
                     : purl_key == NULL || strcmp(purl_key, kbr_match_purl_key(m)) != 0)
        return KBR_OK;
    *yes = kbr_match_component(m, c->name, c->version, c->purl, &why) == KBR_MATCH_YES;
    return KBR_OK;
}

static kbr_err build_joins(const json_t *incident, const kbr_fx_firmware_sign *f, bool *yes)
{
    kbr_err err = KBR_OK;
    const json_t *q = json_object_get(incident, "query");
    const char *product = json_string_value(json_object_get(incident, "product"));
    kbr_match *m = NULL;
    char *purl_key = NULL;

    *yes = false;
    if (product != NULL && strcmp(product, f->product) != 0)
        goto out;
    KBR_GUARD(kbr_match_new(json_string_value(json_object_get(q, "component")),
                            json_string_value(json_object_get(q, "purl")),
                            json_object_get(q, "versions"),
                            json_string_value(json_object_get(q, "vers")), &m, NULL));
    for (size_t i = 0; i < f->ncomponents && !*yes; i++) {
        KBR_GUARD(kbr_store_purl_key(f->components[i].purl, &purl_key));
        KBR_GUARD(incident_component(m, &f->components[i], purl_key, yes));
        free(purl_key);
        purl_key = NULL;
    }
out:
    free(purl_key);
    kbr_match_free(m);
    /* an incident.create effect was checked as a question View C answers */
    return err == KBR_ERR_BAD_REQUEST ? KBR_ERR_STORE : err;
}

static kbr_err incidents_of_build(kbr_store *st, const kbr_fx_firmware_sign *f, int64_t seq)
{
    kbr_err err = KBR_OK;
    json_t *list = NULL;
    const json_t *inc;
    bool yes = false;
    size_t i;

    KBR_GUARD(st->ops->incident_queries(st, &list));
    json_array_foreach(list, i, inc)
    {
        KBR_GUARD(build_joins(inc, f, &yes));
        if (yes)
            KBR_GUARD(st->ops->incident_build_insert(
                st, json_string_value(json_object_get(inc, "id")), f->product, f->version, seq));
    }
out:
    json_decref(list);
    return err;
}

/*
 * A firmware version names one build: the same digest again is a CI retry
 * and changes nothing; another digest would make the SBOM and the
 * signature disagree, so it is refused as a uniqueness conflict.
 */
static kbr_err firmware_sign(kbr_store *st, const kbr_fx_firmware_sign *f, int64_t seq)
{
    kbr_err err = KBR_OK;
    char *known = NULL, *purl_key = NULL;
    kbr_err lookup = st->ops->firmware_digest(st, f->product, f->version, &known);

    if (lookup == KBR_OK) {
        KBR_ENSURE(strcasecmp(known, f->digest) == 0, KBR_ERR_STORE_CONSTRAINT);
        goto out;
    }
    KBR_ENSURE(lookup == KBR_ERR_NOT_FOUND, lookup);
    if (f->sbom_sha256 != NULL)
        KBR_GUARD(document_known(st, f->sbom_sha256));
    KBR_GUARD(st->ops->firmware_insert(st, f, seq));
    for (size_t i = 0; i < f->ncomponents; i++) {
        KBR_GUARD(kbr_store_purl_key(f->components[i].purl, &purl_key));
        KBR_GUARD(
            st->ops->component_insert(st, f->product, f->version, &f->components[i], purl_key));
        free(purl_key);
        purl_key = NULL;
    }
    KBR_GUARD(incidents_of_build(st, f, seq));
out:
    free(purl_key);
    free(known);
    return err;
}

static kbr_eff_cert cert_row(const kbr_effect_cert *c, kbr_eff_owner owner, const char *at,
                             const char *issuer_key)
{
    return (kbr_eff_cert){.owner = owner,
                          .serial_number = c->serial_number,
                          .fingerprint = c->fingerprint,
                          .pem = c->pem,
                          .chain_pem = c->chain_pem,
                          .not_after = c->not_after,
                          .issued_at = at,
                          .issuer_key = issuer_key};
}

/* A key has one current certificate: the new one supersedes whatever it had. */
static kbr_err key_certificate(kbr_store *st, const kbr_fx_key_certificate *k, int64_t seq)
{
    kbr_err err = KBR_OK;
    kbr_eff_cert c = cert_row(&k->cert, (kbr_eff_owner){.kind = "key", .key_name = k->name}, k->at,
                              k->issuer_key);
    json_t *superseded = NULL;
    bool exists = false;

    KBR_GUARD(st->ops->key_exists(st, k->name, &exists));
    KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->cert_supersede(st, &c.owner, k->at, &superseded));
    KBR_GUARD(st->ops->cert_insert(st, &c, seq));
out:
    json_decref(superseded);
    return err;
}

static kbr_err batch_create(kbr_store *st, const kbr_fx_batch_create *b, int64_t seq)
{
    kbr_err err = KBR_OK;
    char *markets = NULL;
    kbr_eff_batch row = {
        .batch = b->batch,
        .product = b->product,
        .factory = b->factory,
        .created_at = b->created_at,
        .created_by = b->created_by,
        .quantity = b->quantity,
    };

    KBR_GUARD(strings_text(b->markets, &markets));
    row.markets_json = markets;
    KBR_GUARD(st->ops->batch_create(st, &row, seq));
out:
    free(markets);
    return err;
}

/* Canonical text of detail, which this call consumes (NULL: json_pack ran out of memory). */
static kbr_err detail_take(json_t *detail, char **out)
{
    kbr_err err = KBR_OK;

    *out = NULL;
    KBR_ENSURE(detail != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_json_canonical(detail, out));
out:
    json_decref(detail);
    return err;
}

/* The image a device left the factory with opens its firmware history. */
static kbr_err factory_image(kbr_store *st, const kbr_eff_device *d, int64_t seq)
{
    const kbr_eff_device_firmware row = {.product = d->product,
                                         .serial = d->serial,
                                         .version = d->firmware_version,
                                         .status = "factory",
                                         .at = d->at};
    bool added = false;

    if (d->firmware_version == NULL)
        return KBR_OK;
    return st->ops->device_firmware_insert(st, &row, seq, &added);
}

/*
 * A device certificate's chain is the issuer's certificate that signed it, then that one's
 * chain, as the issuer had them: the log names the issuer certificate by its fingerprint, and
 * carries each CA chain once, in the issuer's key.certificate entry.
 */
static kbr_err device_chain(kbr_store *st, const char *issuer_key, const char *fingerprint,
                            char **chain)
{
    kbr_err err = st->ops->issuer_chain(st, issuer_key, fingerprint, chain);

    return err == KBR_ERR_NOT_FOUND ? KBR_ERR_STORE_CONSTRAINT : err;
}

/*
 * The batch is claimed here as well as in the daemon's counters, and the identity key is
 * recorded here as well as checked before issuing: the store is the last place that can
 * refuse a device past the production order's quantity or a key pair that is already another
 * device.
 */
static kbr_err device_provision(kbr_store *st, const kbr_fx_device_provision *p, int64_t seq)
{
    kbr_err err = KBR_OK;
    const kbr_eff_device d = {.product = p->product,
                              .serial = p->serial,
                              .batch = p->batch,
                              .factory = p->factory,
                              .firmware_version = p->firmware_version,
                              .csr_sha256 = p->csr_sha256,
                              .at = p->at,
                              .public_key_sha256 = p->public_key_sha256};
    kbr_eff_cert c = cert_row(
        &p->cert, (kbr_eff_owner){.kind = "device", .product = p->product, .serial = p->serial},
        p->at, p->issuer_key);
    char *detail = NULL, *chain = NULL;

    KBR_GUARD(device_chain(st, p->issuer_key, p->issuer_fingerprint, &chain));
    c.chain_pem = chain;
    KBR_GUARD(st->ops->device_insert(st, &d, seq));
    KBR_GUARD(factory_image(st, &d, seq));
    KBR_GUARD(st->ops->batch_claim(st, d.batch, d.product, d.factory));
    KBR_GUARD(st->ops->cert_insert(st, &c, seq));
    KBR_GUARD(detail_take(json_pack("{s:s,s:s,s:s?,s:s,s:s}", "batch", d.batch, "factory",
                                    d.factory, "firmware_version", d.firmware_version,
                                    "fingerprint", c.fingerprint, "serial_number", c.serial_number),
                          &detail));
    KBR_GUARD(
        st->ops->device_event_insert(st, d.product, d.serial, "provisioned", d.at, detail, seq));
out:
    free(chain);
    free(detail);
    return err;
}

static kbr_err device_rotate(kbr_store *st, const kbr_fx_device_rotate *r, int64_t seq)
{
    kbr_err err = KBR_OK;
    kbr_eff_cert c = cert_row(
        &r->cert, (kbr_eff_owner){.kind = "device", .product = r->product, .serial = r->serial},
        r->at, r->issuer_key);
    json_t *old = NULL;
    char *detail = NULL, *chain = NULL;
    bool exists = false, revoked = false;

    KBR_GUARD(st->ops->device_exists(st, r->product, r->serial, &exists));
    KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
    /* a revoked device gets no new certificate: that would undo its revocation */
    KBR_GUARD(st->ops->device_revoked(st, r->product, r->serial, &revoked));
    KBR_ENSURE(!revoked, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(device_chain(st, r->issuer_key, r->issuer_fingerprint, &chain));
    c.chain_pem = chain;
    if (r->public_key_sha256 != NULL)
        KBR_GUARD(st->ops->device_key_set(st, r->product, r->serial, r->public_key_sha256));
    KBR_GUARD(st->ops->cert_supersede(st, &c.owner, r->at, &old));
    KBR_GUARD(st->ops->cert_insert(st, &c, seq));
    KBR_GUARD(detail_take(json_pack("{s:O,s:s,s:s,s:s}", "old", old, "new", c.fingerprint,
                                    "serial_number", c.serial_number, "csr_sha256", r->csr_sha256),
                          &detail));
    KBR_GUARD(
        st->ops->device_event_insert(st, r->product, r->serial, "rotated", r->at, detail, seq));
out:
    free(chain);
    free(detail);
    json_decref(old);
    return err;
}

/*
 * A debug unlock is for a device the ledger knows and has not revoked, and a device's challenge
 * is answered once: the recorded challenge is what refuses a replayed debug session, also after
 * a restart.
 */
static kbr_err debug_authorize(kbr_store *st, const kbr_fx_debug_authorize *d, int64_t seq)
{
    kbr_err err = KBR_OK;
    char *detail = NULL;
    bool exists = false, revoked = false;

    KBR_GUARD(st->ops->device_exists(st, d->product, d->serial, &exists));
    KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->device_revoked(st, d->product, d->serial, &revoked));
    KBR_ENSURE(!revoked, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->debug_challenge_insert(st, d, seq));
    KBR_GUARD(detail_take(json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "key", d->key, "ticket",
                                    d->ticket, "principal", d->principal, "permissions",
                                    d->permissions, "challenge_sha256", d->challenge_sha256,
                                    "message_sha256", d->message_sha256, "signature_sha256",
                                    d->signature_sha256, "expires_at", d->expires_at),
                          &detail));
    KBR_GUARD(
        st->ops->device_event_insert(st, d->product, d->serial, "debug-auth", d->at, detail, seq));
out:
    free(detail);
    return err;
}

/*
 * Only an install moves the current firmware, and only forward in time.  A fact the history
 * holds already (the platform sent its report again) adds nothing: not even the current
 * firmware moves, since an equal `at` would otherwise hand it back to the repeated report.
 */
static kbr_err ota_apply(kbr_store *st, const kbr_eff_device_firmware *row, const char *detail,
                         int64_t seq)
{
    kbr_err err = KBR_OK;
    bool added = false, installed = strcmp(row->status, "installed") == 0;

    /* a device the ledger does not know is refused by the history's reference to it */
    KBR_GUARD(st->ops->device_firmware_insert(st, row, seq, &added));
    if (!added)
        goto out;
    KBR_GUARD(st->ops->device_event_insert(st, row->product, row->serial,
                                           installed ? "ota-installed" : "ota-failed", row->at,
                                           detail, seq));
    if (installed)
        KBR_GUARD(
            st->ops->device_firmware_current(st, row->product, row->serial, row->version, row->at));
out:
    return err;
}

/* A report names a build this broker signed; the daemon leaves out devices it does not know. */
static kbr_err ota_report(kbr_store *st, const kbr_fx_ota_report *o, int64_t seq)
{
    kbr_err err = KBR_OK;
    char *digest = NULL, *detail = NULL;
    kbr_err lookup = st->ops->firmware_digest(st, o->product, o->version, &digest);

    KBR_ENSURE(lookup != KBR_ERR_NOT_FOUND, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(lookup);
    KBR_GUARD(detail_take(json_pack("{s:s,s:s?,s:s}", "version", o->version, "campaign",
                                    o->campaign, "reported_by", o->reported_by),
                          &detail));
    for (size_t i = 0; i < o->nresults; i++) {
        const kbr_eff_device_firmware row = {.product = o->product,
                                             .serial = o->results[i].serial,
                                             .version = o->version,
                                             .status = o->results[i].status,
                                             .at = o->results[i].at,
                                             .campaign = o->campaign};
        KBR_GUARD(ota_apply(st, &row, detail, seq));
    }
out:
    free(detail);
    free(digest);
    return err;
}

/*
 * The key a checkpoint hands on: the next key it names, or the one that signed it.  NULL for
 * a checkpoint of an older broker, which names no key.
 */
static const char *key_after(const json_t *cp)
{
    const char *next = json_string_value(json_object_get(cp, "next_key_pem"));

    return next != NULL ? next : json_string_value(json_object_get(cp, "public_key_pem"));
}

/*
 * A tree head is only recorded if it is the store's own: a root the log does not have would
 * be a signature over a history that never was.  Heads only grow, and each is signed by the
 * key the one before hands on, so the checkpoints are one chain of audit keys.
 */
static kbr_err checkpoint(kbr_store *st, const kbr_fx_checkpoint *c, int64_t seq)
{
    kbr_err err = KBR_OK;
    char want[2 * 32 + 1];
    unsigned char root[32];
    json_t *latest = NULL;
    const char *key;

    KBR_ENSURE(c->size < seq, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(kbr_store_merkle_root(st, c->size, root));
    kbr_hex_encode_buf(root, sizeof(root), want);
    KBR_ENSURE(strcmp(want, c->root_hash) == 0, KBR_ERR_STORE_CONSTRAINT);
    err = st->ops->checkpoint_latest(st, &latest);
    if (err == KBR_OK) {
        KBR_ENSURE(json_integer_value(json_object_get(latest, "size")) <= c->size,
                   KBR_ERR_STORE_CONSTRAINT);
        key = key_after(latest);
        KBR_ENSURE(key == NULL ||
                       (c->public_key_pem != NULL && strcmp(key, c->public_key_pem) == 0),
                   KBR_ERR_STORE_CONSTRAINT);
    } else {
        KBR_ENSURE(err == KBR_ERR_NOT_FOUND, err);
        err = KBR_OK;
    }
    KBR_GUARD(st->ops->checkpoint_insert(st, c, seq));
out:
    json_decref(latest);
    return err;
}

/*
 * A device is revoked once, with every certificate the ledger holds for it: the effect names
 * them all, so a rotation that committed after the list was read makes the revocation a
 * conflict rather than leave the new certificate out of the issuer's CRL.
 */
static kbr_err device_revoke(kbr_store *st, const kbr_fx_device_revoke *d, int64_t seq)
{
    kbr_err err = KBR_OK;
    json_t *held = NULL;
    bool exists = false, revoked = false;

    KBR_GUARD(st->ops->device_exists(st, d->product, d->serial, &exists));
    KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->device_revoked(st, d->product, d->serial, &revoked));
    KBR_ENSURE(!revoked, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->device_certificates(st, d->product, d->serial, &held));
    KBR_ENSURE(json_array_size(held) == d->ncertificates, KBR_ERR_STORE_CONSTRAINT);
    for (size_t i = 0; i < d->ncertificates; i++) {
        const json_t *row = json_array_get(held, i);
        const char *issuer = json_string_value(json_object_get(row, "issuer_key"));
        const kbr_effect_revoked_cert *c = &d->certificates[i];
        KBR_ENSURE(strcmp(json_string_value(json_object_get(row, "fingerprint")), c->fingerprint) ==
                           0 &&
                       strcmp(json_string_value(json_object_get(row, "serial_number")),
                              c->serial_number) == 0 &&
                       issuer != NULL && strcmp(issuer, c->issuer_key) == 0,
                   KBR_ERR_STORE_CONSTRAINT);
    }
    KBR_GUARD(st->ops->device_revoke(st, d, seq));
out:
    json_decref(held);
    return err;
}

/* An issuer's CRL numbers go 1, 2, 3, ...: RFC 5280 5.2.3 asks them to increase. */
static kbr_err crl_issue(kbr_store *st, const kbr_fx_crl_issue *l, int64_t seq)
{
    kbr_err err = KBR_OK;
    char *chain = NULL;
    int64_t last = 0;
    bool exists = false;

    KBR_GUARD(st->ops->key_exists(st, l->issuer_key, &exists));
    KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(device_chain(st, l->issuer_key, l->issuer_fingerprint, &chain));
    KBR_GUARD(st->ops->crl_last_number(st, l->issuer_key, &last));
    KBR_ENSURE(l->number == last + 1, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->crl_insert(st, l, seq));
out:
    free(chain);
    return err;
}

/* The COSE_Encrypt is kept whole, as a document of this record or an earlier one. */
static kbr_err key_deliver(kbr_store *st, const kbr_fx_key_deliver *d, int64_t seq)
{
    kbr_err err = KBR_OK;
    bool exists = false;

    KBR_GUARD(st->ops->document_exists(st, d->cose_sha256, &exists));
    KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->key_delivery_insert(st, d, seq));
out:
    return err;
}

/* ---- the CRA ---- */

/* A support period is registered once, and afterwards only extended. */
static kbr_err product_register(kbr_store *st, const kbr_fx_product_register *p, int64_t seq)
{
    kbr_err err = KBR_OK;
    json_t *have = NULL;
    kbr_err found = st->ops->product_get(st, p->product, &have);
    const char *placed, *until;

    if (found == KBR_ERR_NOT_FOUND) {
        KBR_GUARD(st->ops->product_put(st, p, false, seq));
        goto out;
    }
    KBR_GUARD(found);
    placed = json_string_value(json_object_get(have, "placed_on_market"));
    until = json_string_value(json_object_get(have, "support_until"));
    KBR_ENSURE(placed != NULL && until != NULL, KBR_ERR_STORE);
    KBR_ENSURE(strcmp(placed, p->placed_on_market) == 0, KBR_ERR_STORE_CONSTRAINT);
    KBR_ENSURE(strcmp(until, p->support_until) <= 0, KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->product_put(st, p, true, seq));
out:
    json_decref(have);
    return err;
}

static kbr_err incident_create(kbr_store *st, const kbr_fx_incident_create *i, int64_t seq)
{
    kbr_err err = KBR_OK;
    char day[11];

    KBR_GUARD(st->ops->incident_insert(st, i, seq));
    for (size_t k = 0; k < i->nbuilds; k++)
        KBR_GUARD(st->ops->incident_build_insert(st, i->id, i->builds[k].product,
                                                 i->builds[k].version, seq));
    snprintf(day, sizeof(day), "%.10s", i->created_at);
    KBR_GUARD(st->ops->incident_fleet_load(st, i->id, day));
out:
    return err;
}

/* The incident's row, KBR_ERR_STORE_CONSTRAINT when there is none. */
static kbr_err incident_row(kbr_store *st, const char *id, json_t **row)
{
    kbr_err err = st->ops->incident_get(st, id, row);

    return err == KBR_ERR_NOT_FOUND ? KBR_ERR_STORE_CONSTRAINT : err;
}

/* The fix is a build of each product whose builds the incident names. */
static kbr_err fix_is_built(kbr_store *st, const json_t *row, const char *version)
{
    kbr_err err = KBR_OK;
    json_t *builds = NULL;
    const json_t *b;
    const char *product = json_string_value(json_object_get(row, "product"));
    char *digest = NULL;
    bool exists = false;
    size_t i;

    KBR_GUARD(st->ops->incident_builds(st, json_string_value(json_object_get(row, "id")), &builds));
    if (json_array_size(builds) == 0 && product == NULL) {
        KBR_GUARD(st->ops->firmware_version_exists(st, version, &exists));
        KBR_ENSURE(exists, KBR_ERR_STORE_CONSTRAINT);
        goto out;
    }
    if (json_array_size(builds) == 0)
        KBR_ENSURE(json_array_append_new(builds, json_pack("{s:s}", "product", product)) == 0,
                   KBR_ERR_NOMEM);
    json_array_foreach(builds, i, b)
    {
        kbr_err found = st->ops->firmware_digest(
            st, json_string_value(json_object_get(b, "product")), version, &digest);
        free(digest);
        digest = NULL;
        KBR_ENSURE(found != KBR_ERR_NOT_FOUND, KBR_ERR_STORE_CONSTRAINT);
        KBR_GUARD(found);
    }
out:
    json_decref(builds);
    return err;
}

static kbr_err incident_fix(kbr_store *st, const kbr_fx_incident_fix *f, int64_t seq)
{
    kbr_err err = KBR_OK;
    json_t *row = NULL;

    KBR_GUARD(incident_row(st, f->id, &row));
    KBR_ENSURE(json_is_null(json_object_get(row, "fixed_version")), KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(fix_is_built(st, row, f->fixed_version));
    KBR_GUARD(st->ops->incident_fix(st, f, seq));
out:
    json_decref(row);
    return err;
}

static kbr_err incident_report(kbr_store *st, const kbr_fx_incident_report *r, int64_t seq)
{
    kbr_err err = KBR_OK;
    json_t *row = NULL;

    KBR_GUARD(incident_row(st, r->id, &row));
    KBR_GUARD(document_known(st, r->sha256));
    KBR_ENSURE(strcmp(r->stage, "final") != 0 ||
                   !json_is_null(json_object_get(row, "fixed_version")),
               KBR_ERR_STORE_CONSTRAINT);
    KBR_GUARD(st->ops->incident_report_insert(st, r, seq));
out:
    json_decref(row);
    return err;
}

static kbr_err apply_one(kbr_store *st, const kbr_effect *e, int64_t seq)
{
    switch (e->type) {
    case KBR_EFFECT_KEY_CREATE:
        return key_create(st, &e->u.key_create, seq);
    case KBR_EFFECT_KEY_RETIRE:
        return st->ops->key_retire(st, e->u.key_retire.name, e->u.key_retire.at);
    case KBR_EFFECT_KEY_CERTIFICATE:
        return key_certificate(st, &e->u.key_certificate, seq);
    case KBR_EFFECT_TOKEN_ISSUE:
        return token_issue(st, &e->u.token_issue, seq);
    case KBR_EFFECT_TOKEN_REVOKE:
        return token_revoke(st, &e->u.token_revoke);
    case KBR_EFFECT_FIRMWARE_SIGN:
        return firmware_sign(st, &e->u.firmware_sign, seq);
    case KBR_EFFECT_BATCH_CREATE:
        return batch_create(st, &e->u.batch_create, seq);
    case KBR_EFFECT_DEVICE_PROVISION:
        return device_provision(st, &e->u.device_provision, seq);
    case KBR_EFFECT_DEVICE_ROTATE:
        return device_rotate(st, &e->u.device_rotate, seq);
    case KBR_EFFECT_DEBUG_AUTHORIZE:
        return debug_authorize(st, &e->u.debug_authorize, seq);
    case KBR_EFFECT_OTA_REPORT:
        return ota_report(st, &e->u.ota_report, seq);
    case KBR_EFFECT_CHECKPOINT:
        return checkpoint(st, &e->u.checkpoint, seq);
    case KBR_EFFECT_TOKEN_REVOKE_ALL:
        return st->ops->token_revoke_all(st, e->u.token_revoke_all.at,
                                         e->u.token_revoke_all.reason);
    case KBR_EFFECT_ISSUER_ROTATE:
        return issuer_rotate(st, &e->u.issuer_rotate, seq);
    case KBR_EFFECT_DEVICE_REVOKE:
        return device_revoke(st, &e->u.device_revoke, seq);
    case KBR_EFFECT_CRL_ISSUE:
        return crl_issue(st, &e->u.crl_issue, seq);
    case KBR_EFFECT_KEY_DELIVER:
        return key_deliver(st, &e->u.key_deliver, seq);
    case KBR_EFFECT_PRODUCT_REGISTER:
        return product_register(st, &e->u.product_register, seq);
    case KBR_EFFECT_INCIDENT_CREATE:
        return incident_create(st, &e->u.incident_create, seq);
    case KBR_EFFECT_INCIDENT_FIX:
        return incident_fix(st, &e->u.incident_fix, seq);
    case KBR_EFFECT_INCIDENT_REPORT:
        return incident_report(st, &e->u.incident_report, seq);
    }
    return KBR_ERR_INTERNAL;
}

kbr_err kbr_store_apply(kbr_store *st, const kbr_effects *effects, int64_t seq)
{
    kbr_err err = KBR_OK;
    bool in_savepoint = false;

    if (kbr_effects_count(effects) == 0 && kbr_effects_document_count(effects) == 0)
        goto out;
    KBR_GUARD(st->ops->savepoint(st));
    in_savepoint = true;
    for (size_t i = 0; i < kbr_effects_document_count(effects); i++)
        KBR_GUARD(st->ops->document_put(st, kbr_effects_document(effects, i), seq));
    for (size_t i = 0; i < kbr_effects_count(effects); i++)
        KBR_GUARD(apply_one(st, kbr_effects_get(effects, i), seq));
    KBR_GUARD(st->ops->release(st));
    in_savepoint = false;
out:
    if (in_savepoint)
        st->ops->rollback_to(st);
    return err;
}

kbr_err kbr_store_apply_effects(kbr_store *st, const json_t *effects, int64_t seq)
{
    kbr_err err = KBR_OK;
    kbr_effects *fx = NULL;

    if (effects == NULL)
        goto out;
    KBR_GUARD(kbr_effects_from_json(effects, &fx));
    KBR_GUARD(kbr_store_apply(st, fx, seq));
out:
    kbr_effects_free(fx);
    return err;
}
