/*
 * kbr_store.h - the persistent store: audit log and ledger.
 *
 * One interface, several back ends; "sqlite:PATH" is the embedded one
 * (WAL, synchronous=FULL), and a PostgreSQL back end can follow behind the
 * same calls.  A kbr_store is one connection: every thread that reads or
 * writes opens its own.  The audit writer thread is the only writer of the
 * audit table; workers only read.
 *
 * Writes happen only inside kbr_store_begin()/kbr_store_commit(): the writer
 * applies each record's ledger effects and inserts its audit row in the same
 * transaction, so the ledger never holds a fact the log does not.
 *
 * Ledger effects are typed values (kbr_effect, below): a handler builds them
 * and the writer applies them, without a JSON round trip.  Each has a JSON
 * form, the same fields under the same names with a "type"
 * (kbr_effects_to_json, kbr_effects_from_json), for the log and for tests:
 *   key.create    {name, purpose, algorithm, products[], owner, hsm_label, hsm_id,
 *                  public_key_pem, public_key_sha256 (optional), created_at}
 *                 KBR_ERR_STORE_CONSTRAINT when a registry entry, retired or not, already
 *                 has the name, hsm_label, a non-empty hsm_id or public_key_sha256: an HSM
 *                 object is registered once.
 *   key.retire    {name, at}
 *   token.issue   {jti, sub, scope{}, issued_by, issued_at, not_before, expires_at,
 *                  cnf_x5t (string or null), parent_jti (optional: the issuing token),
 *                  orphan (optional boolean), kid (optional: the issuer key that signed it)}
 *                 kid must be the current issuer key's (absent only while the ledger has
 *                 none): KBR_ERR_STORE_CONSTRAINT otherwise, so every token recorded after an
 *                 issuer.rotate names the new key.
 *   issuer.rotate {kid, hsm_label, public_key_pem, at, replaces (string or null)}
 *                 the key becomes the token issuer's current key at `at`; the key it
 *                 replaces stays in issuer_keys with replaced_at = at (the tokens it signed
 *                 verify with it until they expire).  kid is an RFC 7638 thumbprint (43
 *                 base64url characters), hsm_label "kbr/issuer" or "kbr/issuer/..." (the
 *                 broker's own labels: no product key is ever an issuer key).
 *                 KBR_ERR_STORE_CONSTRAINT unless replaces is the current key's kid (null
 *                 when there is none), or when the kid, label or public key was an issuer
 *                 key already; KBR_ERR_INTERNAL when public_key_pem holds no public key.  The
 *                 first issuer key becomes the kid of every token recorded without one: it
 *                 signed them (a log an older broker wrote has one issuer key, unrecorded).
 *   token.revoke  {jtis[], at, reason}
 *   firmware.sign {product, version, digest, hash, key, name, build_id, signed_at,
 *                  components[{name, version, purl}], sbom_sha256 (optional)}
 *                 same (product, version) with the same digest: nothing to do (a CI
 *                 retry); with another digest: KBR_ERR_STORE_CONSTRAINT.  sbom_sha256 names
 *                 the SBOM as it was sent, a document (below) of this record or an earlier
 *                 one; a document the store does not have is KBR_ERR_STORE_CONSTRAINT.
 *   key.certificate {name, pem, chain_pem, serial_number, not_after, fingerprint, at,
 *                  issuer_key (string or null; optional)}
 *                 becomes the key's certificate, issued at `at`; the key's earlier
 *                 certificate stays in the history with superseded_at = at.  Unknown key
 *                 or issuer_key: KBR_ERR_STORE_CONSTRAINT.
 *   batch.create  {batch, product, factory, quantity (integer >= 1), markets[] (>= 1),
 *                  created_at, created_by}
 *                 a batch name already taken: KBR_ERR_STORE_CONSTRAINT.
 *   device.provision {product, serial, batch, factory, firmware_version (string or null),
 *                  csr_sha256, public_key_sha256 (optional), at, issuer_key,
 *                  issuer_fingerprint, certificate{} (without chain_pem)}
 *                 records the device, its certificate (its chain: the certificate of
 *                 issuer_key whose fingerprint is issuer_fingerprint, then that one's chain)
 *                 and a "provisioned" event with
 *                 detail {batch, factory, firmware_version, fingerprint, serial_number}.
 *                 A firmware_version becomes the device's current firmware as of `at` and
 *                 opens its firmware history with a "factory" entry (campaign null).
 *                 public_key_sha256 (kbr_store_public_key_sha256) becomes the device's
 *                 identity key.  KBR_ERR_STORE_CONSTRAINT when (product, serial) is already
 *                 provisioned, issuer_fingerprint is no certificate issuer_key ever had,
 * public_key_sha256 is or was the identity key of another device (of any product), the batch is
 * unknown, of another product or factory, or already holds `quantity` devices, or issuer_key is not
 * a registry key. device.rotate {product, serial, at, csr_sha256, public_key_sha256 (optional),
 * issuer_key, issuer_fingerprint, certificate{} (without chain_pem)} every current certificate of
 * the device gets superseded_at = at, the new one is recorded, and a "rotated" event with detail
 * {old[] (fingerprints of the superseded), new (fingerprint), serial_number, csr_sha256}; a
 *                 public_key_sha256 becomes the device's identity key (the same key again
 *                 is a renewal); its earlier keys stay its own, as its earlier certificates
 *                 are valid until they expire.  The chain is taken as for device.provision.
 *                 Unknown or revoked device, unknown issuer certificate, or
 *                 public_key_sha256 is or was the identity key of another device:
 *                 KBR_ERR_STORE_CONSTRAINT.
 *   debug.authorize {key, product, serial, challenge_sha256, permissions, ticket, principal,
 *                  message_sha256, signature_sha256, at, expires_at}
 *                 records the answered challenge and a "debug-auth" event at `at` with detail
 *                 {key, ticket, principal, permissions, challenge_sha256, message_sha256,
 *                 signature_sha256, expires_at}.  challenge_sha256, message_sha256 and
 *                 signature_sha256 are 64 hex digits, permissions any non-empty hex.
 *                 KBR_ERR_STORE_CONSTRAINT when the device is unknown, key is not a registry
 *                 key, or this challenge of the device was answered already, with any key
 *                 (durably: also after a restart).
 *   ota.report    {product, version, campaign (string or null), reported_by, at,
 *                  results[{serial, status ("installed" or "failed"), at}] (may be empty)}
 *                 for each result, a firmware history entry {version, status, at, campaign} and
 *                 an "ota-installed" or "ota-failed" event at the result's `at` with detail
 *                 {version, campaign, reported_by}.  "installed" makes version the device's
 *                 current firmware unless the current one was installed at a later `at`
 *                 (reports arrive out of order; an equal `at` goes to the later report);
 *                 "failed" leaves it.  A result whose fact (product, serial, version, status,
 *                 at) the history already holds changes nothing: no entry, no event, no move
 *                 of the current firmware, so a report sent twice counts once.
 *                 KBR_ERR_STORE_CONSTRAINT, keeping nothing of the
 *                 report, when (product, version) is not a build this broker signed or any
 *                 result names a device the ledger does not know (see
 *                 kbr_store_devices_known).
 *   token.revoke_all {at, reason}
 *                 every token not revoked yet is revoked at `at` (keybrokerd --recover: a
 *                 revocation in a lost part of the log cannot come back, so no token issued
 *                 before it stands).
 *   checkpoint    {size, root_hash, time, signature_b64, origin, note, key_id, key_label,
 *                  public_key_pem, next_key_id, next_key_label, next_key_pem (all optional)}
 *                 records a signed tree head of the audit log (kbr_audit.h); size is at most
 *                 the seq of the entry that carries it minus one.  note is the same head as a
 *                 C2SP signed note whose first line is origin; key_id (8 hex digits, the note
 *                 key ID), key_label (its HSM label) and public_key_pem name the audit key that
 *                 signed, together with note and origin or not at all (checkpoints of an older
 *                 broker have none).  next_key_id, next_key_label and next_key_pem, all or
 *                 none, make it a rotation: the key names the audit key that signs after it.
 *                 KBR_ERR_STORE_CONSTRAINT when root_hash is not the root of the first size
 *                 entries, size is smaller than the latest checkpoint's, the signature was
 *                 recorded before, or the latest checkpoint names its signer and this one is
 *                 signed by another key than the one that checkpoint hands on (its next key,
 *                 or its own).
 *   device.revoke {product, serial, at, reason, reason_code, revoked_by,
 *                  certificates[{fingerprint, serial_number, issuer_key}] (>= 1)}
 *                 the device is revoked for good at `at`, and with it every certificate the
 *                 ledger holds for it, superseded ones included (they are valid until they
 *                 expire otherwise); certificates lists exactly those, in issue order, so the
 *                 log says which certificates each CRL of their issuers must name.  reason is
 *                 an RFC 5280 CRLReason name (kbr_store_revocation_reason_code) and
 *                 reason_code its number.  KBR_ERR_STORE_CONSTRAINT when the device is
 *                 unknown or already revoked, or certificates is not exactly the device's
 *                 certificates (a rotation committed since the list was read).
 *   crl.issue     {issuer_key, issuer_fingerprint, number, this_update, next_update,
 *                  entries, sha256}
 *                 records a CRL that issuer_key signed: its CRL number (1 for an issuer's
 *                 first, then one more than the issuer's last), thisUpdate and nextUpdate
 *                 (later than this_update), the number of revoked certificates it lists, the
 *                 SHA-256 of its DER (64 hex digits) and the CA certificate whose name and
 *                 key identifier it carries.  KBR_ERR_STORE_CONSTRAINT when issuer_key is not
 *                 a registry key, issuer_fingerprint is no certificate issuer_key ever had,
 *                 or number is not one more than the issuer's last.
 *   key.deliver   {key, product, serial, recipient_public_key_sha256, cose_sha256, delivered_by,
 *                  at}
 *                 the private key of key (an ota-encryption key) sealed to the device's
 *                 identity key recipient_public_key_sha256, as the COSE_Encrypt the document
 *                 cose_sha256 holds (of this record or an earlier one), made by the request
 *                 of principal delivered_by.  KBR_ERR_STORE_CONSTRAINT when the device is
 *                 unknown or its identity key is not recipient_public_key_sha256, key is not
 *                 an ota-encryption registry key, the store has no such document, or the
 *                 device had the key delivered already: a device receives a key once.
 *   product.register {product, placed_on_market, support_until, at, by}
 *                 the product's CRA support period (dates "YYYY-MM-DD", support_until after
 *                 placed_on_market).  Registered again: placed_on_market must be the same and
 *                 support_until not earlier (a support period is extended, never shortened);
 *                 otherwise KBR_ERR_STORE_CONSTRAINT.
 *   incident.create {id, title, product (string or null: every product), component,
 *                  query{component | purl, versions[] | vers (optional)}, aware_at,
 *                  actively_exploited, severity ("low", "medium", "high", "critical"), cve
 *                  (string or null), created_at, created_by, exposure{} (the exposure as the
 *                  broker computed it, kept as it is), builds[{product, version}] (the builds
 *                  whose SBOM carries the component, each a build this broker signed)}
 *                 the query must be one View C answers (kbr_store_exposure_check).  An id
 *                 taken, or a build the ledger does not have: KBR_ERR_STORE_CONSTRAINT.  The
 *                 devices that ran one of the builds count in the incident's fleet from the
 *                 day of created_at; a build signed later whose SBOM the query names (of the
 *                 incident's product, if it has one) joins the incident.
 *   incident.fix  {id, fixed_version, available_at, at}
 *                 the corrective measure: fixed_version is a build this broker signed of every
 *                 product the incident's builds are of (of its product, or of any product,
 *                 when it has no builds), available since available_at.  Unknown incident, one
 *                 fixed already, or a build missing: KBR_ERR_STORE_CONSTRAINT.
 *   incident.report {id, stage ("early-warning", "notification", "final"), sha256, at, by}
 *                 a report of the incident made at `at`, kept as the document sha256 (of this
 *                 record or an earlier one).  Unknown incident or document, or a final report
 *                 of an incident without a fix: KBR_ERR_STORE_CONSTRAINT.
 * where certificate{} is {serial_number, pem, chain_pem, not_after, fingerprint}.
 * chain_pem is a string and may be "" (a device's certificate has none: the store takes it
 * from the issuer's certificate, so the log carries each CA chain once); serial_number is hex,
 * fingerprint the SHA-256 of the DER in hex (64 digits), csr_sha256 and public_key_sha256 likewise;
 * hex is stored lowercase.  A fingerprint recorded before (for any owner), or a device certificate
 * reusing its issuer_key's serial_number (RFC 5280): KBR_ERR_STORE_CONSTRAINT, so attaching the
 * same certificate twice conflicts.  Times are RFC 3339 UTC, stored as "YYYY-MM-DDTHH:MM:SSZ".
 * Unknown types, and missing or mistyped fields, are KBR_ERR_INTERNAL, whether an effect is
 * added to a list (kbr_effects_add) or read from JSON.
 */
#ifndef KBR_STORE_H
#define KBR_STORE_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kbr_common.h"

typedef struct kbr_store kbr_store;

/* ---- ledger effects ---- */

typedef enum {
    KBR_EFFECT_KEY_CREATE = 1,
    KBR_EFFECT_KEY_RETIRE,
    KBR_EFFECT_KEY_CERTIFICATE,
    KBR_EFFECT_TOKEN_ISSUE,
    KBR_EFFECT_TOKEN_REVOKE,
    KBR_EFFECT_FIRMWARE_SIGN,
    KBR_EFFECT_BATCH_CREATE,
    KBR_EFFECT_DEVICE_PROVISION,
    KBR_EFFECT_DEVICE_ROTATE,
    KBR_EFFECT_DEBUG_AUTHORIZE,
    KBR_EFFECT_OTA_REPORT,
    KBR_EFFECT_CHECKPOINT,
    KBR_EFFECT_TOKEN_REVOKE_ALL,
    KBR_EFFECT_ISSUER_ROTATE,
    KBR_EFFECT_DEVICE_REVOKE,
    KBR_EFFECT_CRL_ISSUE,
    KBR_EFFECT_KEY_DELIVER,
    KBR_EFFECT_PRODUCT_REGISTER,
    KBR_EFFECT_INCIDENT_CREATE,
    KBR_EFFECT_INCIDENT_FIX,
    KBR_EFFECT_INCIDENT_REPORT,
} kbr_effect_type;

/* "key.create", ...; NULL for a value outside the enum. */
const char *kbr_effect_type_name(kbr_effect_type type);

/*
 * RFC 5280 5.3.1 CRLReason: the names a device revocation takes, and their codes.  A
 * revocation here is for good, so certificateHold (6) and removeFromCRL (8) are not among
 * them, nor aACompromise (10, for attribute certificates); 7 is not a code.  -1 for any other
 * name (or NULL).
 */
int kbr_store_revocation_reason_code(const char *name);
/* The name of a code kbr_store_revocation_reason_code gives, or NULL. */
const char *kbr_store_revocation_reason_name(int64_t code);

typedef struct {
    const char *const *items;
    size_t n;
} kbr_strings;

/* A certificate as the ledger records it (see "certificate{}" above). */
typedef struct {
    const char *serial_number, *pem, *chain_pem, *not_after, *fingerprint;
} kbr_effect_cert;

typedef struct {
    const char *name, *version, *purl; /* version and purl may be NULL */
} kbr_effect_component;

typedef struct {
    const char *serial, *status, *at;
} kbr_effect_ota_result;

/*
 * One effect.  Strings may be NULL where the JSON form above allows null or absence; the
 * rest are required.  A value built by a caller borrows its strings; kbr_effects_add copies
 * them (normalized: hex lowercase, times as "YYYY-MM-DDTHH:MM:SSZ").
 */
typedef struct {
    const char *name, *purpose, *algorithm, *owner, *hsm_label, *hsm_id, *public_key_pem,
        *public_key_sha256, *created_at;
    kbr_strings products;
} kbr_fx_key_create;

typedef struct {
    const char *name, *at;
} kbr_fx_key_retire;

typedef struct {
    const char *name, *at, *issuer_key;
    kbr_effect_cert cert;
} kbr_fx_key_certificate;

typedef struct {
    const char *jti, *sub, *issued_by, *issued_at, *not_before, *expires_at, *cnf_x5t, *parent_jti;
    const char *scope_json; /* the scope object's canonical JSON */
    bool orphan;
    const char *kid; /* the issuer key that signed it; NULL in entries of an older broker */
} kbr_fx_token_issue;

typedef struct {
    const char *kid, *hsm_label, *public_key_pem, *at, *replaces;
} kbr_fx_issuer_rotate;

typedef struct {
    kbr_strings jtis;
    const char *at, *reason;
} kbr_fx_token_revoke;

typedef struct {
    const char *product, *version, *digest, *hash, *key, *name, *build_id, *signed_at, *sbom_sha256;
    const kbr_effect_component *components;
    size_t ncomponents;
} kbr_fx_firmware_sign;

typedef struct {
    const char *batch, *product, *factory, *created_at, *created_by;
    int64_t quantity;
    kbr_strings markets;
} kbr_fx_batch_create;

typedef struct {
    const char *product, *serial, *batch, *factory, *firmware_version, *csr_sha256,
        *public_key_sha256, *at, *issuer_key, *issuer_fingerprint;
    kbr_effect_cert cert; /* chain_pem NULL */
} kbr_fx_device_provision;

typedef struct {
    const char *product, *serial, *at, *csr_sha256, *public_key_sha256, *issuer_key,
        *issuer_fingerprint;
    kbr_effect_cert cert; /* chain_pem NULL */
} kbr_fx_device_rotate;

typedef struct {
    const char *key, *product, *serial, *challenge_sha256, *permissions, *ticket, *principal,
        *message_sha256, *signature_sha256, *at, *expires_at;
} kbr_fx_debug_authorize;

typedef struct {
    const char *product, *version, *campaign, *reported_by, *at;
    const kbr_effect_ota_result *results;
    size_t nresults;
} kbr_fx_ota_report;

typedef struct {
    int64_t size;
    const char *root_hash, *time, *signature_b64;
    const char *origin, *note, *key_id, *key_label, *public_key_pem;
    const char *next_key_id, *next_key_label, *next_key_pem;
} kbr_fx_checkpoint;

/* A certificate a device.revoke names. */
typedef struct {
    const char *fingerprint, *serial_number, *issuer_key;
} kbr_effect_revoked_cert;

typedef struct {
    const char *product, *serial, *at, *reason, *revoked_by;
    int64_t reason_code;
    const kbr_effect_revoked_cert *certificates;
    size_t ncertificates;
} kbr_fx_device_revoke;

typedef struct {
    const char *issuer_key, *issuer_fingerprint, *this_update, *next_update, *sha256;
    int64_t number, entries;
} kbr_fx_crl_issue;
/* Dates are "YYYY-MM-DD" (a day, UTC). */
typedef struct {
    const char *product, *placed_on_market, *support_until, *at, *by;
} kbr_fx_product_register;

typedef struct {
    const char *product, *version;
} kbr_effect_build;

typedef struct {
    const char *id, *title, *product, *component, *aware_at, *severity, *cve, *created_at,
        *created_by;
    const char *query_json;    /* canonical JSON {component | purl, versions | vers} */
    const char *exposure_json; /* canonical JSON: the exposure as it stood (any object) */
    bool actively_exploited;
    const kbr_effect_build *builds;
    size_t nbuilds;
} kbr_fx_incident_create;

typedef struct {
    const char *id, *fixed_version, *available_at, *at;
} kbr_fx_incident_fix;

typedef struct {
    const char *id, *stage, *sha256, *at, *by;
} kbr_fx_incident_report;

typedef struct {
    const char *key, *product, *serial, *recipient_public_key_sha256, *cose_sha256, *delivered_by,
        *at;
} kbr_fx_key_deliver;

typedef struct {
    const char *at, *reason;
} kbr_fx_token_revoke_all;

typedef struct {
    kbr_effect_type type;
    union {
        kbr_fx_key_create key_create;
        kbr_fx_key_retire key_retire;
        kbr_fx_key_certificate key_certificate;
        kbr_fx_token_issue token_issue;
        kbr_fx_token_revoke token_revoke;
        kbr_fx_firmware_sign firmware_sign;
        kbr_fx_batch_create batch_create;
        kbr_fx_device_provision device_provision;
        kbr_fx_device_rotate device_rotate;
        kbr_fx_debug_authorize debug_authorize;
        kbr_fx_ota_report ota_report;
        kbr_fx_checkpoint checkpoint;
        kbr_fx_token_revoke_all token_revoke_all;
        kbr_fx_issuer_rotate issuer_rotate;
        kbr_fx_device_revoke device_revoke;
        kbr_fx_crl_issue crl_issue;
        kbr_fx_key_deliver key_deliver;
        kbr_fx_product_register product_register;
        kbr_fx_incident_create incident_create;
        kbr_fx_incident_fix incident_fix;
        kbr_fx_incident_report incident_report;
    } u;
} kbr_effect;

/* The effects of one record, in order, each owned by the list. */
typedef struct kbr_effects kbr_effects;
KBR_WUR kbr_err kbr_effects_new(kbr_effects **out);
void kbr_effects_free(kbr_effects *fx); /* accepts NULL */
/* Checks e as the JSON form's rules say (KBR_ERR_INTERNAL naming nothing: a handler's bug)
 * and appends a normalized copy. */
KBR_WUR kbr_err kbr_effects_add(kbr_effects *fx, const kbr_effect *e);
size_t kbr_effects_count(const kbr_effects *fx); /* 0 for NULL */
/* The i-th effect, borrowed from the list. */
const kbr_effect *kbr_effects_get(const kbr_effects *fx, size_t i);
/* The JSON form: an array of objects with "type".  New ref. */
KBR_WUR kbr_err kbr_effects_to_json(const kbr_effects *fx, json_t **out);
/* The same array's canonical text (RFC 8785), written into w (kbr_common.h). */
void kbr_effects_write(const kbr_effects *fx, kbr_jcs *w);
/* Reads the JSON form (an array): KBR_ERR_INTERNAL for anything the rules refuse. */
KBR_WUR kbr_err kbr_effects_from_json(const json_t *arr, kbr_effects **out);

/*
 * Documents: what a record keeps whole beside its effects (an SBOM as it was sent), addressed
 * by the SHA-256 of its bytes.  An effect names a document by that hash, the audit entry lists
 * the record's documents under "documents", and the store keeps each once, with the first
 * entry that named it (kbr_store_document_get).  Adding copies body; sha256 receives the
 * address (64 lowercase hex digits).  The same bytes twice are one document.
 */
typedef struct {
    const char *sha256;
    const unsigned char *body;
    size_t len;
} kbr_document;

#define KBR_DOCUMENTS_MAX 8
KBR_WUR kbr_err kbr_effects_add_document(kbr_effects *fx, const void *body, size_t len,
                                         char sha256[65]);
size_t kbr_effects_document_count(const kbr_effects *fx); /* 0 for NULL */
const kbr_document *kbr_effects_document(const kbr_effects *fx, size_t i);

/*
 * Opens a connection and creates or migrates the schema.  url is
 * "sqlite:PATH" or "sqlite:PATH?max_pages=N" (a size quota: writes that
 * would grow the database past N pages fail like a full disk).
 * KBR_ERR_CONFIG for an unknown scheme or option, KBR_ERR_STORE when
 * the database cannot be opened or written; msg names the cause.  Caller
 * closes with kbr_store_close.
 */
KBR_WUR kbr_err kbr_store_open(const char *url, kbr_store **out, kbr_msg *msg);
/*
 * kbr_store_open of a store that is there already, as kbr_store_exists tells: KBR_ERR_NOT_FOUND
 * naming it otherwise, and nothing made.  A SQLite file is opened without being created, so a
 * store moved away while this runs is not made again empty either.  Every open of a deployment's
 * store but --init's, which alone creates one.
 */
KBR_WUR kbr_err kbr_store_open_existing(const char *url, kbr_store **out, kbr_msg *msg);
void kbr_store_close(kbr_store *st); /* accepts NULL */

/*
 * One keybrokerd serves a store at a time, and --init runs only when none does: a daemon
 * keeps its registries in memory, so a second process beside it would serve from state it
 * cannot see change.  For sqlite:PATH the lock is an flock(2) on PATH.lock, which holds the
 * holder's pid and goes with the process, however it ends.  KBR_ERR_CONFLICT with msg naming
 * the holding pid when another process has it; KBR_ERR_STORE when the lock file cannot be
 * made.  *fd is the lock (-1 on failure); kbr_store_unlock releases it and accepts -1.
 */
KBR_WUR kbr_err kbr_store_lock(const char *url, int *fd, kbr_msg *msg);
void kbr_store_unlock(int fd);
/* Whether several brokers may serve the store at url at once (PostgreSQL): then each
 * follows what the others commit (broker/daemon/follow.c).  SQLite stores are one
 * broker's. */
bool kbr_store_shared(const char *url);
/*
 * The key uses token jti has left under its max_uses, as the ledger counts them (its audit
 * entries with key_use and outcome ok, this transaction's included): *left is -1 when the
 * token has no max_uses or the ledger does not know it.  The writer asks before it records a
 * key use, under the store's write lock, so max_uses holds across brokers sharing a store.
 */
KBR_WUR kbr_err kbr_store_token_uses_left(kbr_store *st, const char *jti, int64_t *left);
/*
 * Whether this connection may make the periodic checkpoints: of brokers sharing a store one
 * at a time does (PostgreSQL: a session advisory lock, free again when its holder's
 * connection ends); a SQLite store's one broker always may.
 */
KBR_WUR kbr_err kbr_store_checkpoint_lease(kbr_store *st, bool *held);

/*
 * Whether the store exists: KBR_OK, or KBR_ERR_NOT_FOUND with msg naming it.  Only --init
 * creates a store (kbr_store_open does, for any caller); a daemon refuses to start on one
 * that is not there, so a mistyped `store` never starts an empty deployment.
 */
KBR_WUR kbr_err kbr_store_exists(const char *url, kbr_msg *msg);

/* ---- looking at a store without changing it (keybrokerd --check) ---- */
typedef struct {
    int schema_version;  /* the store's; 0 when it has none */
    int current_version; /* this broker's: a lower one is migrated by the next start or --init */
    long served_by;      /* pid of the keybrokerd holding the store's lock, or 0 */
} kbr_store_info;
/*
 * Opens an existing store to read it and changes nothing: no schema is created or migrated,
 * no lock taken, no file written or created (for SQLite, a store at rest is read as an
 * immutable file; one a daemon serves through its WAL files, which exist).  The reads work on
 * it only when info->schema_version is info->current_version.  KBR_ERR_NOT_FOUND for a store
 * that does not exist, KBR_ERR_STORE for one that cannot be read; msg names the cause.
 */
KBR_WUR kbr_err kbr_store_open_readonly(const char *url, kbr_store **out, kbr_store_info *info,
                                        kbr_msg *msg);

/* ---- online copies (GET /v1/backup) ---- */
/*
 * A consistent copy of the whole store as one reader of st sees it at one instant, made while
 * writers go on: *fd is open on a file that holds it (for SQLite, the VACUUM INTO of the
 * store, made beside it and already unlinked, so nothing is left behind however the process
 * ends).  The caller closes *fd.  KBR_ERR_STORE with msg naming the cause (no room, an
 * interruption by kbr_store_interrupt).  info describes the copy as read from the copy.
 */
typedef struct {
    int64_t last_seq;   /* the copy's last audit entry (0: none) */
    char last_hash[65]; /* and its hash (64 zeros: none) */
    int schema_version;
} kbr_store_backup_info;
KBR_WUR kbr_err kbr_store_backup(kbr_store *st, int *fd, kbr_store_backup_info *info, kbr_msg *msg);
/*
 * The whole store as one reader of st sees it at one instant, copied page by page into a new
 * file at path (it must not exist; created 0600), with no SQL run on st: it works on a store
 * opened by kbr_store_open_readonly, which is never written.  SQLite only.  KBR_ERR_STORE with
 * msg naming the cause; a file it made is removed.
 */
KBR_WUR kbr_err kbr_store_copy_to(kbr_store *st, const char *path, kbr_msg *msg);
/* Unlinks the SQLite file at path and those SQLite keeps beside it (-wal, -shm, -journal);
 * any of them may be missing.  For files a command made itself (a copy, a scratch store). */
void kbr_store_remove_files(const char *path);
/*
 * The file of a sqlite: store URL (without its options) by the name SQLite and the store's lock
 * go by: symbolic links followed, as SQLite follows them to the file it opens and keeps its
 * -wal, -shm and -journal beside.  *path is the caller's to free; NULL for any other URL.
 */
KBR_WUR kbr_err kbr_store_file(const char *url, char **path, kbr_msg *msg);
/* The store as messages name it: a sqlite: store's file as kbr_store_file names it, a
 * PostgreSQL URI without its password.  The caller's to free; NULL only without memory. */
char *kbr_store_shown(const char *url);
/* The refusal of a store that holds no keybroker schema (an empty file, another program's
 * database), named as shown: KBR_ERR_STORE, with the one message every command gives. */
kbr_err kbr_store_no_schema(const char *shown, kbr_msg *msg);
/* url with a sqlite: store's file named as kbr_store_file names it, its options kept; any other
 * URL as it is.  *out is the caller's to free.  A name SQLite cannot follow: KBR_ERR_STORE. */
KBR_WUR kbr_err kbr_store_resolved_url(const char *url, char **out, kbr_msg *msg);
/* What a store file at rest needs before it reads as it last committed. */
typedef enum {
    KBR_STORE_AT_REST,       /* nothing */
    KBR_STORE_UNINDEXED_LOG, /* its -wal holds frames and has no -shm, which SQLite makes
                              * beside it to read the log (immutable, it would miss them) */
    KBR_STORE_HOT_JOURNAL,   /* its -journal holds a change that was interrupted, which SQLite
                              * rolls back into it (immutable, it would read it half made) */
} kbr_store_pending;
/* A store file at path that needs either: the file and those of its -wal and -journal there
 * copied to dest (new files of mode 0600), an interrupted change rolled back in the copy (the
 * journal's case where both apply, as SQLite rolls back first), and *what set.
 * Any other store: nothing made, *what KBR_STORE_AT_REST.  KBR_ERR_CONFLICT when a keybrokerd
 * serves the store or starts to while it is copied. */
KBR_WUR kbr_err kbr_store_copy_pending(const char *path, const char *dest, kbr_store_pending *what,
                                       kbr_msg *msg);
/* From any thread: a kbr_store_backup in progress on st stops with KBR_ERR_STORE. */
void kbr_store_interrupt(kbr_store *st);

/* ---- the writer's transaction ---- */
/*
 * This connection is the single writer: it leaves log housekeeping (for
 * SQLite, WAL checkpoints) to kbr_store_maintain() on another connection, so
 * a commit never waits for it.
 */
KBR_WUR kbr_err kbr_store_writer_mode(kbr_store *st);
/*
 * The writer, between groups and outside a transaction: what must not wait for
 * the checkpointer (SQLite: once the WAL is long, copying the frames it has not, so
 * that the next transaction starts the WAL over instead of lengthening it).  *copied
 * says whether it did so; no commit can happen meanwhile.
 */
KBR_WUR kbr_err kbr_store_writer_between(kbr_store *st, bool *copied);
/* Housekeeping that runs beside the writer (SQLite: a passive WAL checkpoint). */
KBR_WUR kbr_err kbr_store_maintain(kbr_store *st);

KBR_WUR kbr_err kbr_store_begin(kbr_store *st);
KBR_WUR kbr_err kbr_store_commit(kbr_store *st); /* durable on KBR_OK */
void kbr_store_rollback(kbr_store *st);
/* Whether the transaction kbr_store_begin opened is still open: after some failures (a full
 * disk, an I/O error) the store may have rolled it back by itself. */
bool kbr_store_in_transaction(kbr_store *st);

/*
 * Applies effects (may be NULL or empty) for the record with sequence number seq, inside a
 * savepoint: on any failure the savepoint is rolled back and nothing of this record's
 * effects stays, while what the transaction held before is untouched (unless the store
 * itself failed and ended it).
 * KBR_ERR_STORE_CONSTRAINT when a rule of the ledger is hit (a uniqueness rule, an unknown
 * key, device or batch, a full batch: the writer records a 409 conflict),
 * KBR_ERR_INTERNAL for a malformed effect (the writer records an error without the effects),
 * KBR_ERR_STORE or KBR_ERR_NOMEM when the store or memory failed (the writer fails the group).
 */
KBR_WUR kbr_err kbr_store_apply(kbr_store *st, const kbr_effects *effects, int64_t seq);
/* kbr_store_apply of the JSON form (an array, may be NULL): a malformed one changes nothing
 * and is KBR_ERR_INTERNAL. */
KBR_WUR kbr_err kbr_store_apply_effects(kbr_store *st, const json_t *effects, int64_t seq);

/*
 * An audit entry as committed: its canonical text without "hash" (kbr_audit.h), and the hash.
 * The store derives everything else it keeps about the entry (time, sub, op, key, outcome,
 * the products it is about, whether it counts as a key use) from that text and nowhere else,
 * so no column can say what the hashed entry does not.  The entry's "seq" must be seq.
 */
typedef struct {
    int64_t seq;
    const char *entry_json;
    const char *hash; /* 64 hex chars */
} kbr_store_audit_row;

KBR_WUR kbr_err kbr_store_audit_insert(kbr_store *st, const kbr_store_audit_row *row);
/* The audit tree's perfect subtrees completed by appending entry seq with hash_hex (64 hex
 * digits), stored inside the writer's transaction; after kbr_store_audit_insert. */
KBR_WUR kbr_err kbr_store_merkle_append(kbr_store *st, int64_t seq, const char *hash_hex);

/* ---- evidence (API "Evidence"): the entries behind the facts about a subject ---- */

/*
 * The seqs (ascending, each once) of the entries behind every fact the ledger keeps about
 * device (product, serial), or about product when serial is NULL.  A device: its
 * provisioning, certificates, events, firmware history and debug unlocks, its batch (its
 * markets), the builds it ran (with their SBOM documents), and what those entries lean on:
 * the keys they name (registration and certificates, so every certificate chain is covered)
 * and the tokens that made them.  A product: the keys it depends on (registration,
 * certificates, retirement), its batches and its builds, and what those lean on likewise.
 * The facts of a product's devices are in each device's own evidence.  An unknown subject
 * gives an empty list.  New ref.
 */
KBR_WUR kbr_err kbr_store_evidence_seqs(kbr_store *st, const char *product, const char *serial,
                                        json_t **seqs);
/* The seqs (ascending, each once) of the entries behind an incident: its record, its fix,
 * its reports (which name their documents), the entries that made builds join it and those
 * builds' signing (with their SBOMs), its fix's builds, and what those entries lean on (the
 * keys they name, the tokens that made them).  An unknown incident gives an empty list.
 * New ref. */
KBR_WUR kbr_err kbr_store_evidence_incident_seqs(kbr_store *st, const char *id, json_t **seqs);
/* The entries seqs names (an array of integers), as GET /v1/audit shows them.
 * KBR_ERR_NOT_FOUND when one is not in the log.  New ref. */
KBR_WUR kbr_err kbr_store_audit_entries(kbr_store *st, const json_t *seqs, json_t **entries);

/* ---- checking a store against its log (keybrokerd --verify-store, kbr_audit.h) ---- */

/* Reads until kbr_store_read_end see one snapshot of the store, whatever a writer commits.
 * A failure is named in msg (a PostgreSQL store opened read-only: a table it could not hold). */
KBR_WUR kbr_err kbr_store_read_begin(kbr_store *st, kbr_msg *msg);
void kbr_store_read_end(kbr_store *st);
/* A connection for a bulk job (checking a store, rebuilding one to throw away): a large cache
 * and memory-mapped reads, and its commits are not made durable. */
KBR_WUR kbr_err kbr_store_bulk_mode(kbr_store *st);
/* A store rebuilt only to be compared and thrown away, by this connection alone: no journal,
 * so a failed statement leaves it as it is (a replay stops at the first failure anyway). */
KBR_WUR kbr_err kbr_store_scratch_mode(kbr_store *st);
/* The first seq whose entry carries its ledger effects: 1, unless entries before it were
 * written by a broker that did not record effects in its entries. */
KBR_WUR kbr_err kbr_store_effects_from(kbr_store *st, int64_t *seq);
/* The store's own consistency below its tables (SQLite: every index matches its table):
 * KBR_ERR_CONFLICT with msg naming the first problem. */
KBR_WUR kbr_err kbr_store_integrity(kbr_store *st, kbr_msg *msg);
/*
 * st against rebuilt, a SQLite store rebuilt from st's log: the schema (a SQLite store's
 * tables, indexes and triggers; a PostgreSQL store's tables and columns), then every table
 * row by row in key order.  KBR_ERR_CONFLICT with msg
 * naming the first difference: the table, the row by its key (and the audit entry that
 * recorded it), the column and both values.  Generated columns are not compared: they follow
 * from the columns that are.
 */
typedef struct {
    int64_t tables, rows;
} kbr_store_compare_stats;
KBR_WUR kbr_err kbr_store_compare(kbr_store *st, kbr_store *rebuilt, kbr_store_compare_stats *stats,
                                  kbr_msg *msg);

/* ---- reads ---- */

/* A document (kbr_effects_add_document) by its address: *body (NUL-terminated beyond *len,
 * caller frees) and the entry that first named it (audit_seq may be NULL).
 * KBR_ERR_NOT_FOUND when the store has none. */
KBR_WUR kbr_err kbr_store_document_get(kbr_store *st, const char *sha256, unsigned char **body,
                                       size_t *len, int64_t *audit_seq);

/* Last seq (0 if empty) and its hash (64 zeros if empty). */
KBR_WUR kbr_err kbr_store_audit_tail(kbr_store *st, int64_t *seq, char hash[65]);

/*
 * Calls fn for each entry with seq in (after, after+limit], in order, with
 * the stored canonical entry (without "hash") and the stored hash.  fn
 * returning non-KBR_OK stops the walk and is returned.
 */
typedef kbr_err (*kbr_store_entry_fn)(int64_t seq, const char *entry_json, const char *hash,
                                      void *arg);
KBR_WUR kbr_err kbr_store_audit_walk(kbr_store *st, int64_t after, int64_t limit,
                                     kbr_store_entry_fn fn, void *arg);

/*
 * The audit tree (kbr_audit.h) from the perfect subtrees the audit writer stores with each
 * entry, in the entry's transaction (at most log2(seq) per entry), in O(log size) lookups.
 * Root of the first size entries (size 0: SHA-256 of ""); the audit path of entry seq in the
 * tree of size entries (*path is *path_len 32-byte hashes, leaf side first, caller frees with
 * free()).  KBR_ERR_BAD_REQUEST unless 1 <= seq <= size (root: 0 <= size) and size is at most
 * the log's last seq.
 */
KBR_WUR kbr_err kbr_store_merkle_root(kbr_store *st, int64_t size, unsigned char root[32]);
KBR_WUR kbr_err kbr_store_merkle_proof(kbr_store *st, int64_t seq, int64_t size,
                                       unsigned char **path, size_t *path_len);
/* The consistency proof from the tree of the first `first` entries to that of the first
 * `second` (kbr_merkle_consistency): KBR_ERR_BAD_REQUEST unless 1 <= first <= second and
 * second is at most the log's last seq. */
KBR_WUR kbr_err kbr_store_merkle_consistency(kbr_store *st, int64_t first, int64_t second,
                                             unsigned char **path, size_t *path_len);
/* The latest checkpoint (the one the latest entry recorded): {size, root_hash, time,
 * signature_b64, audit_seq (the entry that recorded it), origin, note, key_id, key_label,
 * public_key_pem, next_key_id, next_key_label, next_key_pem (null when absent)};
 * KBR_ERR_NOT_FOUND when there is none.  New ref. */
KBR_WUR kbr_err kbr_store_checkpoint_latest(kbr_store *st, json_t **out);
/* *found: a checkpoint with this signature is recorded. */
KBR_WUR kbr_err kbr_store_checkpoint_find(kbr_store *st, const char *signature_b64, bool *found);
/* The rotations (checkpoints with a next key) recorded by entries up to seq, in the order of
 * their entries, each as kbr_store_checkpoint_latest shows a checkpoint: the chain of audit
 * keys from the first to the one that signs after them.  New ref (an empty array without). */
KBR_WUR kbr_err kbr_store_checkpoint_rotations(kbr_store *st, int64_t seq, json_t **out);

/* Entries as GET /v1/audit shows them: the entry objects with "hash" added. New ref. */
KBR_WUR kbr_err kbr_store_audit_page(kbr_store *st, int64_t after, int64_t limit, json_t **entries);

/*
 * What a reader limited to products or keys may see of the log (API.md "Custody
 * boundaries"): with products_limited, the entries whose "products" name one of products
 * (an entry "x" matches "x"; a "prefix*" matches every product, or product pattern, that
 * starts with prefix); with keys_limited, the entries whose key one of keys matches likewise.
 * An entry about no product (or no key) is seen only by readers without that limit.
 */
typedef struct {
    bool products_limited;
    const char *const *products;
    size_t nproducts;
    bool keys_limited;
    const char *const *keys;
    size_t nkeys;
} kbr_audit_scope;

/* kbr_store_audit_page of the entries scope lets its reader see: up to limit of them with
 * seq > after, in order.  scope NULL: every entry.  New ref. */
KBR_WUR kbr_err kbr_store_audit_page_within(kbr_store *st, int64_t after, int64_t limit,
                                            const kbr_audit_scope *scope, json_t **entries);
/* May a reader with scope see entry seq?  KBR_ERR_NOT_FOUND when there is no such entry. */
KBR_WUR kbr_err kbr_store_audit_visible(kbr_store *st, int64_t seq, const kbr_audit_scope *scope,
                                        bool *visible);

/* Key objects as the API shows them, without the live "hsm" attributes; "certificate" is null
 * or the current {pem, chain_pem, not_after, serial_number, fingerprint}.  New refs. */
KBR_WUR kbr_err kbr_store_key_get(kbr_store *st, const char *name, json_t **key); /* NOT_FOUND */
KBR_WUR kbr_err kbr_store_key_list(kbr_store *st, json_t **keys);

/*
 * Tokens as GET /v1/tokens shows them: {jti, sub, scope, issued_at, not_before, expires_at,
 * uses, last_used_at, revoked_at, revoke_reason, issued_by, cnf_x5t, parent_jti (the issuing
 * token, null for a root), orphan, kid (the issuer key that signed it)}, in issue order.
 * uses counts committed key uses (audit rows with key_use and outcome ok) with that jti.
 * Filters may be NULL/false.  A key filter keeps tokens whose scope reaches the key
 * (no "keys" list, an exact name, or a matching "prefix*").  active keeps tokens
 * neither revoked nor expired at now.  New ref.
 */
KBR_WUR kbr_err kbr_store_token_list(kbr_store *st, const char *sub, const char *key, bool active,
                                     time_t now, json_t **tokens);

/*
 * The token issuer's keys, in the order the log recorded them: {kid, hsm_label,
 * public_key_pem, public_key_sha256, activated_at, replaced_at (null for the current one),
 * audit_seq}; an empty array when the ledger has none yet.  New ref.
 */
KBR_WUR kbr_err kbr_store_issuer_keys(kbr_store *st, json_t **keys);

/* Firmware build (product, version): {product, version, digest, hash, key, name, build_id,
 * signed_at, audit_seq, sbom_sha256 (the SBOM document, or null), components[]};
 * KBR_ERR_NOT_FOUND if the broker never signed it. */
KBR_WUR kbr_err kbr_store_firmware_get(kbr_store *st, const char *product, const char *version,
                                       json_t **build);

/*
 * Production batch: {batch, product, factory, quantity, markets[], created_at, created_by,
 * provisioned}; provisioned counts the devices provisioned in it (at most quantity).
 * KBR_ERR_NOT_FOUND for an unknown batch.  New ref, caller decrefs.
 */
KBR_WUR kbr_err kbr_store_batch_get(kbr_store *st, const char *batch, json_t **out);
/* Every batch in the shape of kbr_store_batch_get, ordered by name.  New ref (array). */
KBR_WUR kbr_err kbr_store_batch_list(kbr_store *st, json_t **out);

/*
 * Device (product, serial): {product, serial, batch, factory, firmware_version, csr_sha256,
 * public_key_sha256 (null when unknown), provisioned_at, audit_seq, current_firmware,
 * current_firmware_at, revocation, certificates[]};
 * current_firmware (null when neither provisioning nor an install named one) is the factory
 * image or the latest OTA install by `at`.  revocation is null, or {at, reason, reason_code,
 * revoked_by, audit_seq} once the device is revoked.  Certificates in issue order, each
 * {serial_number, fingerprint, not_after, issued_at, superseded_at (null while current),
 * issuer_key, pem, chain_pem, audit_seq, revoked_at and revocation_reason (null unless
 * revoked)}; deliveries (key.deliver) in the order they were made, each {key, at,
 * recipient_public_key_sha256, cose_sha256, delivered_by, audit_seq}.  KBR_ERR_NOT_FOUND if
 * never provisioned.  New ref.
 */
KBR_WUR kbr_err kbr_store_device_get(kbr_store *st, const char *product, const char *serial,
                                     json_t **out);
/*
 * What a CRL of issuer_key lists, read in one snapshot: {last_number (the issuer's last CRL
 * number, 0 before its first), revoked: [{serial_number, fingerprint, revoked_at, reason_code}]
 * (every revoked certificate issuer_key issued, by revoked_at then serial_number)}.  New ref.
 */
KBR_WUR kbr_err kbr_store_crl_contents(kbr_store *st, const char *issuer_key, json_t **out);

/* The devices with this serial in any product, ordered by product, each {product, serial,
 * batch, factory}; an empty array when there is none.  New ref. */
KBR_WUR kbr_err kbr_store_device_find(kbr_store *st, const char *serial, json_t **out);

/*
 * The ledger's name of a device identity key: SHA-256 of the DER SubjectPublicKeyInfo of pub,
 * lowercase hex into hex.  An EC point is encoded uncompressed first, so one key has one name
 * whichever point form its CSR or certificate carried.  pub is not changed.  KBR_ERR_CRYPTO
 * when OpenSSL cannot encode the key.
 */
KBR_WUR kbr_err kbr_store_public_key_sha256(EVP_PKEY *pub, char hex[65]);
/*
 * The same name for the key a SubjectPublicKeyInfo (of a CSR or certificate) carries, read
 * from its bytes when they already are the canonical encoding, as they almost always are
 * (about a hundred times faster than kbr_store_public_key_sha256).  KBR_ERR_CRYPTO when
 * OpenSSL cannot read or encode the key.
 */
KBR_WUR kbr_err kbr_store_spki_sha256(X509_PUBKEY *spki, char hex[65]);
/*
 * The device whose identity key is or was public_key_sha256 (64 hex digits in either case;
 * otherwise KBR_ERR_INTERNAL), as {product, serial}; KBR_ERR_NOT_FOUND when no device ever
 * had it.  A check before issuing: the device.provision and device.rotate effects stay the
 * rule.  New ref.
 */
KBR_WUR kbr_err kbr_store_device_by_public_key(kbr_store *st, const char *public_key_sha256,
                                               json_t **out);
/* The device's events in the order they were recorded, each {kind, at, detail{}, audit_seq};
 * an empty array for a device the ledger does not know.  New ref. */
KBR_WUR kbr_err kbr_store_device_events(kbr_store *st, const char *product, const char *serial,
                                        json_t **out);

/*
 * The subset of serials (an array of strings; otherwise KBR_ERR_INTERNAL) that are devices of
 * product, in the order of their first mention, each once; an empty array when none is.  One
 * query however long the list, for OTA reports of thousands of devices.  New ref (array).
 */
KBR_WUR kbr_err kbr_store_devices_known(kbr_store *st, const char *product, const json_t *serials,
                                        json_t **known);

/*
 * *used tells whether challenge_sha256 (64 hex digits in either case; otherwise
 * KBR_ERR_INTERNAL) of device (product, serial) was already answered, with any key.  A check before
 * signing: the debug.authorize effect stays the rule, so two requests racing with one challenge
 * still get one answer recorded.
 */
KBR_WUR kbr_err kbr_store_debug_challenge_used(kbr_store *st, const char *product,
                                               const char *serial, const char *challenge_sha256,
                                               bool *used);

/*
 * The device's firmware history, ordered by at, then audit_seq, then report order: each
 * {version, status ("factory", "installed" or "failed"), at, campaign (null for "factory"),
 * audit_seq}; an empty array for a device the ledger does not know.  New ref.
 */
KBR_WUR kbr_err kbr_store_device_firmware(kbr_store *st, const char *product, const char *serial,
                                          json_t **out);

/* ---- the Cyber Resilience Act (docs/cra.md) ---- */

/* Whether s is a day "YYYY-MM-DD" (years 1970 to 9999) that the calendar has. */
bool kbr_store_date_valid(const char *s);
/* The start of day s (kbr_store_date_valid) in UTC; KBR_ERR_BAD_REQUEST otherwise. */
KBR_WUR kbr_err kbr_store_date_time(const char *s, time_t *out);

/*
 * A product's CRA support period: {product, placed_on_market, support_until, support_period:
 * {days, years (whole years it covers), under_five_years (Art. 13(8): shorter than five
 * years, which is only allowed for a product expected in use for less)}, created_at,
 * created_by, updated_at, audit_seq}.  The period runs from placed_on_market to
 * support_until, both days included.  KBR_ERR_NOT_FOUND for a product never registered.
 */
KBR_WUR kbr_err kbr_store_product_get(kbr_store *st, const char *product, json_t **out);
/* The support_period member of a product from its two days (kbr_store_date_valid). */
KBR_WUR kbr_err kbr_store_support_period(const char *placed_on_market, const char *support_until,
                                         json_t **out);

/*
 * An incident as GET /v1/incidents/{id} shows it at now (docs/api.md "Incidents"):
 * {id, title, product, component, query, cve, aware_at, actively_exploited, severity,
 *  created_at, created_by, audit_seq, exposure_at_awareness (as recorded), builds
 *  [{product, version, audit_seq}] (those recorded and those matched since),
 *  fix (null or {fixed_version, available_at, recorded_at, audit_seq}),
 *  deadlines: {early_warning, notification, final_report: {due (null for the final report
 *   until a fix is recorded), status ("open", "submitted", "overdue"), submitted_at, on_time
 *   (null until submitted)}},
 *  reports [{stage, sha256, at, by, audit_seq}],
 *  now (with_now): View C's builds, devices, affected and remediation for the incident's
 *   question, product and fix,
 *  over_time (with_now): {days [], total, eu, by_market, invalid_markets: each {affected [],
 *   updated [], pending []} per day}: the incident's fleet at the end of each day on which it
 *   changed, from the day the incident was recorded}.
 * KBR_ERR_NOT_FOUND for an unknown incident.
 */
KBR_WUR kbr_err kbr_store_incident_view(kbr_store *st, const char *id, time_t now, bool with_now,
                                        json_t **out);
/* Whether some product has a build of version this broker signed. */
KBR_WUR kbr_err kbr_store_firmware_version_exists(kbr_store *st, const char *version, bool *exists);
/* The deadlines member of an incident aware_at (RFC 3339) whose fix is available since
 * fix_available_at (NULL: none yet), with reports [{stage, at}] in the order recorded. */
KBR_WUR kbr_err kbr_store_incident_deadlines(const char *aware_at, const char *fix_available_at,
                                             const json_t *reports, time_t now, json_t **out);
/* Every incident as kbr_store_incident_view shows it without now and over_time, by
 * created_at then id.  New ref. */
KBR_WUR kbr_err kbr_store_incident_list(kbr_store *st, time_t now, json_t **out);

/* ---- custody views (API.md "Views"): each answer is read from one snapshot ---- */

/*
 * Firmware version order, used for fixed_version ("that version or later") and to sort
 * builds: the generic order of kbr_cra.h (runs of digits and of letters, numbers by value, a
 * word before a number: 1.2 = 1.2.0 < 1.2.1 < 1.10-rc1 < 1.10 < 2).  A version without a
 * letter or digit (which generic refuses) sorts before every other, bytewise among them.
 * Returns <0, 0, >0.
 */
int kbr_store_version_cmp(const char *a, const char *b);

/*
 * View A: what product depends on, as of now.  New ref:
 * {product,
 *  keys: {"<purpose>": [key object as kbr_store_key_get shows it, plus
 *         relations: ["registered" (its products name product), "firmware-signing" (signed a
 *         build), "device-certificates" (issued a device certificate), "debug-auth" (answered
 *         a challenge of a device), "issuer" (issued the current certificate of a key listed
 *         here)], live_tokens: [{jti, sub, expires_at, uses, max_uses (null if none)}]
 *         (neither revoked nor expired at now, scope reaching the key and the product: no
 *         products list, or one that covers product; by expires_at)] by name},
 *  device_certificates: {total_current, by_expiry_month: [{month: "YYYY-MM", count}]}
 *         (current, i.e. not superseded, certificates of the product's devices),
 *  expiring (only when within_days >= 0): {within_days, until (now + within_days days),
 *         key_certificates: [{key, purpose, serial_number, fingerprint, not_after}],
 *         device_certificates: {count, first: [{serial, product, serial_number, fingerprint,
 *         not_after}] (at most 100, by not_after)},
 *         tokens: [{jti, sub, expires_at, keys: [names]}] (live tokens of the keys above)}}.
 * "Expiring" is not_after (or expires_at) <= until: a current certificate that already
 * expired is listed too, a token that expired is no longer live.
 * KBR_ERR_NOT_FOUND when no key relates to product and no batch or device has it;
 * KBR_ERR_BAD_REQUEST for an empty product or within_days over 36500.
 */
KBR_WUR kbr_err kbr_store_view_product(kbr_store *st, const char *product, time_t now,
                                       long within_days /* <0: no expiring section */,
                                       json_t **out);
/* View A as a reader limited to some keys sees it: only the keys for which visible(name, arg)
 * holds, in every section (keys, expiring key certificates and tokens, continuity); what is
 * the product's own (device certificates, support) stays.  visible NULL: every key. */
typedef bool (*kbr_key_visible_fn)(const char *key, void *arg);
KBR_WUR kbr_err kbr_store_view_product_seen(kbr_store *st, const char *product, time_t now,
                                            long within_days, kbr_key_visible_fn visible, void *arg,
                                            json_t **out);

/*
 * View B: custody of key.  New ref:
 * {key, tokens: [every token whose scope reaches the key (as kbr_store_token_list with that
 *   key filter shows them), live or not, by issued_at],
 *  operations: [{sub (null when the request had none), op, outcome, count, last_at, last_seq}]
 *   (every audit entry naming the key, denials and errors included, by sub, op, outcome),
 *  principals: [{sub, live_grant, tokens, operations}] (live_grant: a token of sub reaching
 *   the key is neither revoked nor expired at now; principals with one first, then by sub)}.
 * KBR_ERR_NOT_FOUND for a key the registry does not have.
 */
KBR_WUR kbr_err kbr_store_view_custody(kbr_store *st, const char *key, time_t now, json_t **out);

typedef struct {
    const char *component;     /* an SBOM component name, matched exactly; or */
    const char *purl;          /* a package URL: its type, namespace and name (docs/cra.md) */
    const json_t *versions;    /* array of component versions to match; NULL: any version; or */
    const char *vers;          /* a vers range of them ("vers:deb/<3.0.11-1~deb12u2") */
    const char *product;       /* only this product's builds and devices; NULL: every product */
    const char *fixed_version; /* firmware version that fixes it; NULL: no remediation */
    bool devices;              /* list the affected devices (affected_devices), paged */
    const char *after;         /* the page: serials after this one; NULL: from the start */
    int limit;                 /* page size; 0 means 100, at most 1000 */
} kbr_exposure_query;

/* Whether q is a question View C answers: KBR_ERR_BAD_REQUEST with msg naming the field. */
KBR_WUR kbr_err kbr_store_exposure_check(const kbr_exposure_query *q, kbr_msg *msg);

/*
 * View C: exposure to a component.  New ref:
 * {query: {component, purl, versions, vers, product, fixed_version},
 *  builds: [{product, version, digest, signed_at, key, audit_seq, components: [{name, version,
 *   purl}] (the SBOM entries that matched)}] by product then version order,
 *  undecided: [{product, version, component: {name, version, purl}, reason}] (a build whose
 *   SBOM carries the component with a version the question cannot decide; not counted),
 *  devices: {current (devices whose current firmware is one of the builds: the factory image
 *   unless a later OTA install replaced it), by_batch: [{batch, markets, count}],
 *   by_market: {"DE": n, ...} (a device counts once in each market of its batch),
 *   eu (each device once if any market of its batch is an EU member state),
 *   invalid_markets: {"EL": n} (markets of old batches that are no ISO 3166-1 code)},
 *  affected: {total (devices that ever ran one of the builds, factory image or installed OTA),
 *   by_market, eu, invalid_markets},
 *  remediation (with fixed_version): {affected, updated (now on fixed_version or later),
 *   pending (affected - updated), by_market: {"DE": {affected, updated, pending}}, eu: {...},
 *   invalid_markets: {...}},
 *  pending_devices (with fixed_version, without devices): {items: [{product, serial,
 *   current_firmware, batch}] ordered by serial then product, next_after},
 *  affected_devices (with devices): {items: [... and, with fixed_version, status "updated" or
 *   "pending"], next_after}}.
 * A page holds limit devices, a few more when the last serial is shared by devices of other
 * products (a page never splits a serial); next_after is the last serial of a full page
 * (ask again with after = next_after; the next page may be empty) and null otherwise.
 * KBR_ERR_BAD_REQUEST when kbr_store_exposure_check refuses q.
 */
KBR_WUR kbr_err kbr_store_view_exposure(kbr_store *st, const kbr_exposure_query *q, json_t **out);

/*
 * View D: everything about device serial.  New ref:
 * {product, serial, batch, factory, markets, provisioned_at, audit_seq, firmware_version
 *  (factory image), current_firmware, current_firmware_at, public_key_sha256 (the identity
 *  key, null when the ledger does not know it), revocation (null, or {at, reason,
 *  reason_code, revoked_by, audit_seq}),
 *  certificates: [{serial_number, fingerprint, not_after, issued_at, superseded_at, issuer_key,
 *   audit_seq, revoked_at, revocation_reason}] in issue order,
 *  firmware: [as kbr_store_device_firmware], debug_auth: [{at, key, ticket, principal,
 *   permissions, challenge_sha256, expires_at, audit_seq}],
 *  deliveries: [as kbr_store_device_get shows them],
 *  events: [{kind, at, audit_seq}] in recorded order}.
 * product NULL: the device is looked up by serial; KBR_ERR_CONFLICT when devices of several
 * products have it (ask again with product).  KBR_ERR_NOT_FOUND for an unknown device.
 */
KBR_WUR kbr_err kbr_store_view_device(kbr_store *st, const char *product, const char *serial,
                                      json_t **out);

#endif
