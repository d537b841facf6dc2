/*
 * backend.h - private to store/: what a store back end provides.
 *
 * kbr_store_* in store.c, effect.c, effect_json.c and effects.c hold the back-end-neutral
 * logic (URL dispatch, the rules of each effect, the firmware retry rule, the
 * order of a provisioning, rotation, debug unlock or OTA report's writes,
 * scope matching, the audit page); a back end supplies one ops table of
 * plain storage operations.  Strings handed to a back end are borrowed, and
 * effects reach it checked and normalized (effect.c).
 */
#ifndef KBR_STORE_BACKEND_H
#define KBR_STORE_BACKEND_H

#include "kbr_store.h"

typedef struct kbr_store_ops kbr_store_ops;

/* Every back end's connection struct starts with this. */
struct kbr_store {
    const kbr_store_ops *ops;
};

/* A validated key.create effect; times are normalized RFC 3339 UTC. */
typedef struct {
    const char *name, *purpose, *algorithm, *owner, *hsm_label, *hsm_id, *public_key_pem;
    const char *public_key_sha256; /* lowercase hex, or NULL */
    const char *products_json;     /* canonical JSON array of strings */
    const char *created_at;
} kbr_eff_key;

/* Where an effect already is what the back end stores, it is handed on as it is. */
typedef kbr_fx_token_issue kbr_eff_token;
typedef kbr_fx_firmware_sign kbr_eff_firmware;
typedef kbr_effect_component kbr_eff_component;
typedef kbr_fx_debug_authorize kbr_eff_debug;
typedef kbr_fx_device_revoke kbr_eff_revoke;
typedef kbr_fx_crl_issue kbr_eff_crl;
typedef kbr_fx_key_deliver kbr_eff_deliver;

/* Whose certificate: a registry key (key_name) or a device (product, serial). */
typedef struct {
    const char *kind; /* "key" or "device" */
    const char *key_name;
    const char *product, *serial;
} kbr_eff_owner;

/* A validated certificate; serial_number and fingerprint are lowercase hex. */
typedef struct {
    kbr_eff_owner owner;
    const char *serial_number, *fingerprint, *pem, *chain_pem, *not_after, *issued_at;
    const char *issuer_key; /* NULL when no registry key signed it */
} kbr_eff_cert;

typedef struct {
    const char *batch, *product, *factory, *created_at, *created_by;
    int64_t quantity;
    const char *markets_json; /* canonical JSON array of strings */
} kbr_eff_batch;

typedef struct {
    const char *product, *serial, *batch, *factory, *firmware_version, *csr_sha256, *at;
    const char *public_key_sha256; /* lowercase hex; NULL when the effect did not carry it */
} kbr_eff_device;

/* One line of a device's firmware history. */
typedef struct {
    const char *product, *serial, *version;
    const char *status; /* "factory", "installed" or "failed" */
    const char *at;
    const char *campaign; /* NULL for the factory image */
} kbr_eff_device_firmware;

/* One device as a walk of the fleet reads it; strings live until fn returns. */
typedef struct {
    const char *product, *serial, *current_firmware, *batch;
    int64_t history;
    bool has_history;
} kbr_fleet_row;
/* Sets *stop to end the walk; an error ends it too and is returned. */
typedef kbr_err (*kbr_fleet_fn)(const kbr_fleet_row *row, void *arg, bool *stop);

struct kbr_store_ops {
    const char *scheme;
    /* See kbr_store_shared. */
    bool shared;
    /* location is the URL after "scheme:". */
    kbr_err (*open)(const char *location, kbr_store **out, kbr_msg *msg);
    /* See kbr_store_open_existing; NULL: exists, then open. */
    kbr_err (*open_existing)(const char *location, kbr_store **out, kbr_msg *msg);
    void (*close)(kbr_store *st);
    /* See kbr_store_lock. */
    kbr_err (*lock)(const char *location, int *fd, kbr_msg *msg);
    /* See kbr_store_exists, kbr_store_open_readonly, kbr_store_backup, kbr_store_copy_to and
     * kbr_store_interrupt; a back end without one leaves it NULL. */
    kbr_err (*exists)(const char *location, kbr_msg *msg);
    /* See kbr_store_file; NULL for a store that is not a file. */
    kbr_err (*file)(const char *location, char **path, kbr_msg *msg);
    /* See kbr_store_shown, for a store that is not a file: the URL as messages show it. */
    char *(*shown)(const char *url);
    kbr_err (*open_readonly)(const char *location, kbr_store **out, kbr_store_info *info,
                             kbr_msg *msg);
    kbr_err (*backup)(kbr_store *st, int *fd, kbr_store_backup_info *info, kbr_msg *msg);
    kbr_err (*copy_to)(kbr_store *st, const char *path, kbr_msg *msg);
    void (*interrupt)(kbr_store *st);

    kbr_err (*writer_mode)(kbr_store *st);
    /* See kbr_store_writer_between; NULL when there is nothing to do. */
    kbr_err (*writer_between)(kbr_store *st, bool *copied);
    /* See kbr_store_token_uses_left and kbr_store_checkpoint_lease. */
    kbr_err (*token_uses_left)(kbr_store *st, const char *jti, int64_t *left);
    kbr_err (*checkpoint_lease)(kbr_store *st, bool *held);
    kbr_err (*maintain)(kbr_store *st);
    kbr_err (*begin)(kbr_store *st);
    kbr_err (*commit)(kbr_store *st);
    void (*rollback)(kbr_store *st);
    /* Whether the writer's transaction is still open: a back end may end it by itself on
     * some failures (SQLite after FULL, IOERR, BUSY or NOMEM). */
    bool (*in_transaction)(kbr_store *st);
    /* One record's effects nest inside the writer's transaction. */
    kbr_err (*savepoint)(kbr_store *st);
    kbr_err (*release)(kbr_store *st);
    void (*rollback_to)(kbr_store *st); /* rolls back and releases the savepoint */

    kbr_err (*key_create)(kbr_store *st, const kbr_eff_key *k, int64_t seq);
    /* Retiring a retired key keeps its first retired_at; an unknown name is a constraint. */
    kbr_err (*key_retire)(kbr_store *st, const char *name, const char *at);
    kbr_err (*token_issue)(kbr_store *st, const kbr_eff_token *t, int64_t seq);
    /* The current issuer key's kid (*kid is the caller's); KBR_ERR_NOT_FOUND when none. */
    kbr_err (*issuer_current)(kbr_store *st, char **kid);
    /* Marks the current key kid replaced at `at`. */
    kbr_err (*issuer_replace)(kbr_store *st, const char *kid, const char *at);
    /* KBR_ERR_STORE_CONSTRAINT when the kid, label or public key is an issuer key already. */
    kbr_err (*issuer_insert)(kbr_store *st, const kbr_fx_issuer_rotate *r,
                             const char *public_key_sha256, int64_t seq);
    /* Every token without a kid gets kid. */
    kbr_err (*tokens_assign_kid)(kbr_store *st, const char *kid);
    /* See kbr_store_issuer_keys. */
    kbr_err (*issuer_keys)(kbr_store *st, json_t **keys);
    /* Only a live token is changed: the first revocation's time and reason stay. */
    kbr_err (*token_revoke)(kbr_store *st, const char *jti, const char *at, const char *reason);
    /* Every live token, likewise. */
    kbr_err (*token_revoke_all)(kbr_store *st, const char *at, const char *reason);
    /* KBR_ERR_NOT_FOUND when the build is unknown; *digest is the caller's to free. */
    kbr_err (*firmware_digest)(kbr_store *st, const char *product, const char *version,
                               char **digest);
    kbr_err (*firmware_insert)(kbr_store *st, const kbr_eff_firmware *f, int64_t seq);
    /* purl_key: kbr_store_purl_key of the component's purl, or NULL. */
    kbr_err (*component_insert)(kbr_store *st, const char *product, const char *version,
                                const kbr_eff_component *c, const char *purl_key);
    kbr_err (*key_exists)(kbr_store *st, const char *name, bool *exists);
    /* See kbr_store_evidence_seqs. */
    kbr_err (*evidence_seqs)(kbr_store *st, const char *product, const char *serial, json_t **seqs);
    /* Checking a store against its log: see kbr_store_bulk_mode and the calls after it. */
    kbr_err (*bulk_mode)(kbr_store *st);
    kbr_err (*scratch_mode)(kbr_store *st);
    kbr_err (*effects_from)(kbr_store *st, int64_t *seq);
    kbr_err (*integrity)(kbr_store *st, kbr_msg *msg);
    kbr_err (*compare)(kbr_store *st, kbr_store *rebuilt, kbr_store_compare_stats *stats,
                       kbr_msg *msg);
    /* Keeps the document unless the store has it (then the first entry that named it stays). */
    kbr_err (*document_put)(kbr_store *st, const kbr_document *doc, int64_t seq);
    kbr_err (*document_exists)(kbr_store *st, const char *sha256, bool *exists);
    /* See kbr_store_document_get. */
    kbr_err (*document_get)(kbr_store *st, const char *sha256, unsigned char **body, size_t *len,
                            int64_t *audit_seq);
    /* The chain of a certificate issuer_key signed with its certificate fingerprint: that
     * certificate's pem then its chain_pem (*chain is the caller's to free).
     * KBR_ERR_NOT_FOUND when issuer_key never had that certificate. */
    kbr_err (*issuer_chain)(kbr_store *st, const char *issuer_key, const char *fingerprint,
                            char **chain);
    /* Marks the owner's current certificates superseded at `at`; *fingerprints (new ref, the
     * caller's) lists them in issue order, empty when there were none. */
    kbr_err (*cert_supersede)(kbr_store *st, const kbr_eff_owner *owner, const char *at,
                              json_t **fingerprints);
    kbr_err (*cert_insert)(kbr_store *st, const kbr_eff_cert *c, int64_t seq);
    kbr_err (*batch_create)(kbr_store *st, const kbr_eff_batch *b, int64_t seq);
    /* Counts one more device into the batch: KBR_ERR_STORE_CONSTRAINT unless the batch
     * exists, belongs to product and factory, and has room left. */
    kbr_err (*batch_claim)(kbr_store *st, const char *batch, const char *product,
                           const char *factory);
    /* KBR_ERR_STORE_CONSTRAINT when (product, serial) exists or another device has the key. */
    kbr_err (*device_insert)(kbr_store *st, const kbr_eff_device *d, int64_t seq);
    kbr_err (*device_exists)(kbr_store *st, const char *product, const char *serial, bool *exists);
    /* Makes public_key_sha256 the device's identity key: KBR_ERR_STORE_CONSTRAINT when another
     * device has it. */
    kbr_err (*device_key_set)(kbr_store *st, const char *product, const char *serial,
                              const char *public_key_sha256);
    kbr_err (*device_event_insert)(kbr_store *st, const char *product, const char *serial,
                                   const char *kind, const char *at, const char *detail_json,
                                   int64_t seq);
    /* Records (product, serial, challenge_sha256) as answered: KBR_ERR_STORE_CONSTRAINT when
     * it was, whatever the key. */
    kbr_err (*debug_challenge_insert)(kbr_store *st, const kbr_eff_debug *d, int64_t seq);
    /* *added is false, and nothing is written, when the history already holds the same fact
     * (product, serial, version, status, at); KBR_ERR_STORE_CONSTRAINT for a device the ledger
     * does not know. */
    kbr_err (*device_firmware_insert)(kbr_store *st, const kbr_eff_device_firmware *r, int64_t seq,
                                      bool *added);
    /* Makes version the device's current firmware as of `at`, unless what it has now was
     * installed later than `at`. */
    kbr_err (*device_firmware_current)(kbr_store *st, const char *product, const char *serial,
                                       const char *version, const char *at);
    /* Revocation and CRLs (v5). */
    kbr_err (*device_revoked)(kbr_store *st, const char *product, const char *serial,
                              bool *revoked);
    /* Records the device's revocation and each certificate's; the rules are effects.c's. */
    kbr_err (*device_revoke)(kbr_store *st, const kbr_eff_revoke *d, int64_t seq);
    /* The issuer's last CRL number, 0 before its first. */
    kbr_err (*crl_last_number)(kbr_store *st, const char *issuer_key, int64_t *last);
    kbr_err (*crl_insert)(kbr_store *st, const kbr_eff_crl *l, int64_t seq);
    /* {serial_number, fingerprint, revoked_at, reason_code} of every revoked certificate
     * issuer_key issued, by revoked_at then serial_number. */
    kbr_err (*crl_revoked)(kbr_store *st, const char *issuer_key, json_t **rows);
    /* {at, reason, reason_code, revoked_by, audit_seq}; KBR_ERR_NOT_FOUND unless revoked. */
    kbr_err (*device_revocation)(kbr_store *st, const char *product, const char *serial,
                                 json_t **out);
    /* Keys delivered to devices (v8).  KBR_ERR_STORE_CONSTRAINT unless the device exists with
     * d->recipient_public_key_sha256 as its identity key, d->key is an ota-encryption key, the
     * document exists, and the device has not had the key delivered yet. */
    kbr_err (*key_delivery_insert)(kbr_store *st, const kbr_eff_deliver *d, int64_t seq);
    /* The device's deliveries in the order they were made: {key, at, recipient_public_key_sha256,
     * cose_sha256, delivered_by, audit_seq}; an empty array when none. */
    kbr_err (*device_deliveries)(kbr_store *st, const char *product, const char *serial,
                                 json_t **out);

    kbr_err (*audit_insert)(kbr_store *st, const kbr_store_audit_row *row);
    kbr_err (*audit_tail)(kbr_store *st, int64_t *seq, char hash[65]);
    /* The audit tree's perfect subtree of 2^level leaves at idx: level 0 is the entry
     * hash of seq idx + 1, put only stores levels >= 1.  KBR_ERR_NOT_FOUND when absent. */
    kbr_err (*merkle_node_get)(kbr_store *st, unsigned level, int64_t idx, unsigned char out[32]);
    kbr_err (*merkle_node_put)(kbr_store *st, unsigned level, int64_t idx,
                               const unsigned char hash[32]);
    /* KBR_ERR_STORE_CONSTRAINT when the signature was recorded before. */
    kbr_err (*checkpoint_insert)(kbr_store *st, const kbr_fx_checkpoint *c, int64_t seq);
    kbr_err (*checkpoint_latest)(kbr_store *st, json_t **out);
    kbr_err (*checkpoint_find)(kbr_store *st, const char *signature_b64, bool *found);
    kbr_err (*checkpoint_rotations)(kbr_store *st, int64_t seq, json_t **out);
    kbr_err (*audit_walk)(kbr_store *st, int64_t after, int64_t limit, kbr_store_entry_fn fn,
                          void *arg);
    /* audit_walk over the entries scope lets its reader see (scope not NULL). */
    kbr_err (*audit_walk_within)(kbr_store *st, int64_t after, int64_t limit,
                                 const kbr_audit_scope *scope, kbr_store_entry_fn fn, void *arg);

    /* Key rows: the key's columns and its current certificate's as cert_pem, cert_chain_pem,
     * cert_not_after, cert_serial_number, cert_fingerprint (null without one); store.c
     * shapes the key object. */
    kbr_err (*key_get)(kbr_store *st, const char *name, json_t **key);
    kbr_err (*key_list)(kbr_store *st, json_t **keys);
    /* Filtered by sub and liveness only; store.c applies the key filter. */
    kbr_err (*token_list)(kbr_store *st, const char *sub, bool active, time_t now, json_t **tokens);
    /* The build's row; its components {name, version, purl} in SBOM order. */
    kbr_err (*firmware_get)(kbr_store *st, const char *product, const char *version,
                            json_t **build);
    kbr_err (*firmware_components)(kbr_store *st, const char *product, const char *version,
                                   json_t **rows);
    kbr_err (*batch_get)(kbr_store *st, const char *batch, json_t **out);
    kbr_err (*batch_list)(kbr_store *st, json_t **out);
    /* The device's row; its certificates {serial_number, fingerprint, not_after, issued_at,
     * superseded_at, issuer_key, pem, chain_pem, audit_seq, revoked_at, revocation_reason} in
     * issue order. */
    kbr_err (*device_get)(kbr_store *st, const char *product, const char *serial, json_t **out);
    kbr_err (*device_certificates)(kbr_store *st, const char *product, const char *serial,
                                   json_t **rows);
    kbr_err (*device_find)(kbr_store *st, const char *serial, json_t **out);
    /* public_key_sha256 is lowercase hex; {product, serial} or KBR_ERR_NOT_FOUND. */
    kbr_err (*device_by_key)(kbr_store *st, const char *public_key_sha256, json_t **out);
    kbr_err (*device_events)(kbr_store *st, const char *product, const char *serial, json_t **out);
    /* serials is an array of strings (checked by store.c); the result as kbr_store.h says. */
    kbr_err (*devices_known)(kbr_store *st, const char *product, const json_t *serials,
                             json_t **known);
    /* challenge_sha256 is lowercase hex. */
    kbr_err (*debug_challenge_used)(kbr_store *st, const char *product, const char *serial,
                                    const char *challenge_sha256, bool *used);
    kbr_err (*device_firmware)(kbr_store *st, const char *product, const char *serial,
                               json_t **out);

    /* Reads between begin and end see one state of the store; end accepts a failed begin.
     * msg, when not NULL, names why a begin failed. */
    kbr_err (*snapshot_begin)(kbr_store *st, kbr_msg *msg);
    void (*snapshot_end)(kbr_store *st);

    /*
     * The views' rows, each one query of flat rows (arrays of objects, new refs); views.c and
     * exposure.c compose them inside a snapshot.  Times are RFC 3339 text.
     */
    /* {key, role}: key_relations of product, and the issuers of those keys' current
     * certificates, transitively ("issuer"), by key then role. */
    kbr_err (*product_relations)(kbr_store *st, const char *product, json_t **rows);
    /* Does a batch or a device name product? */
    kbr_err (*product_known)(kbr_store *st, const char *product, bool *known);
    /* {jti, sub, expires_at, uses, max_uses (null)} of the tokens live at now whose scope
     * reaches key and product (kbr_store.h, View A), by expires_at then jti. */
    kbr_err (*live_tokens)(kbr_store *st, const char *key, const char *product, const char *now,
                           json_t **rows);
    /* {month "YYYY-MM", count} of product's current device certificates, months with any. */
    kbr_err (*cert_months)(kbr_store *st, const char *product, json_t **rows);
    /* *count current device certificates of product with not_after <= until, and the first
     * limit of them {product, serial, serial_number, fingerprint, not_after} by not_after. */
    kbr_err (*expiring_devices)(kbr_store *st, const char *product, const char *until, int limit,
                                int64_t *count, json_t **rows);
    /* Token rows (as token_list) whose scope reaches key, by issued_at then jti. */
    kbr_err (*key_tokens)(kbr_store *st, const char *key, json_t **rows);
    /* {sub (null when none), op, outcome, count, last_at, last_seq} by sub, op, outcome. */
    kbr_err (*key_operations)(kbr_store *st, const char *key, json_t **rows);
    /* {product, version, name, cversion, purl} of the SBOM components named component, or
     * (component NULL) of the package purl_key (kbr_store_purl_key); of product, or of every
     * product when it is NULL; by product, version, then SBOM order. */
    kbr_err (*exposure_components)(kbr_store *st, const char *component, const char *purl_key,
                                   const char *product, json_t **rows);
    /* {digest, signed_at, key, audit_seq} of build (product, version); KBR_ERR_NOT_FOUND. */
    kbr_err (*build_row)(kbr_store *st, const char *product, const char *version, json_t **row);
    /* {batch, markets[], count} of product's devices whose current firmware is firmware. */
    kbr_err (*fleet_batches)(kbr_store *st, const char *product, const char *firmware,
                             json_t **rows);
    /* {history} of every set of builds ever run that holds (product, version). */
    kbr_err (*build_histories)(kbr_store *st, const char *product, const char *version,
                               json_t **rows);
    /* {firmware, batch, count} of the devices whose history is history, by current firmware
     * and batch (history_firmware_batch). */
    kbr_err (*history_batches)(kbr_store *st, int64_t history, json_t **rows);
    /* The markets of batch (an array; empty for a batch the ledger does not have). */
    kbr_err (*batch_markets)(kbr_store *st, const char *batch, json_t **markets);
    /* {product, serial, current_firmware, batch} of the first limit devices of history on
     * firmware with serial > after, by serial. */
    kbr_err (*pending_group)(kbr_store *st, int64_t history, const char *firmware,
                             const char *after, int limit, json_t **rows);
    /* Every device with serial > after (of product, or of all by serial then product), in
     * that order, to fn until it stops. */
    kbr_err (*fleet_walk)(kbr_store *st, const char *product, const char *after, kbr_fleet_fn fn,
                          void *arg);
    /* The number of devices (of product; NULL: all). */
    kbr_err (*fleet_size)(kbr_store *st, const char *product, int64_t *n);

    /* ---- the CRA: products' support periods and incidents (sqlite_cra.c) ---- */
    /* {product, placed_on_market, support_until, created_at, created_by, updated_at,
     * audit_seq}; KBR_ERR_NOT_FOUND. */
    kbr_err (*product_get)(kbr_store *st, const char *product, json_t **out);
    /* Records the support period: a new row, or (exists true) a new support_until. */
    kbr_err (*product_put)(kbr_store *st, const kbr_fx_product_register *p, bool exists,
                           int64_t seq);
    kbr_err (*incident_insert)(kbr_store *st, const kbr_fx_incident_create *i, int64_t seq);
    /* KBR_ERR_STORE_CONSTRAINT when (product, version) is no build or is the incident's. */
    kbr_err (*incident_build_insert)(kbr_store *st, const char *incident, const char *product,
                                     const char *version, int64_t seq);
    /* The devices that ran one of the incident's builds, counted into its fleet on day. */
    kbr_err (*incident_fleet_load)(kbr_store *st, const char *incident, const char *day);
    /* The incident's row: {id, title, product, component, query{}, aware_at,
     * actively_exploited, severity, cve, created_at, created_by, exposure{}, fixed_version,
     * fix_available_at, fix_recorded_at, fix_seq, audit_seq}; KBR_ERR_NOT_FOUND. */
    kbr_err (*incident_get)(kbr_store *st, const char *id, json_t **out);
    /* Every incident's row as incident_get, by created_at then id. */
    kbr_err (*incident_list)(kbr_store *st, json_t **out);
    /* {product, version, audit_seq} of the incident's builds, by product then version. */
    kbr_err (*incident_builds)(kbr_store *st, const char *id, json_t **out);
    kbr_err (*incident_fix)(kbr_store *st, const kbr_fx_incident_fix *f, int64_t seq);
    kbr_err (*incident_report_insert)(kbr_store *st, const kbr_fx_incident_report *r, int64_t seq);
    /* {stage, sha256, at, by, audit_seq} of the incident's reports, in the order recorded. */
    kbr_err (*incident_reports)(kbr_store *st, const char *id, json_t **out);
    /* {day, batch, firmware, delta} of the incident's fleet, by day. */
    kbr_err (*incident_series)(kbr_store *st, const char *id, json_t **out);
    /* {id, product, query{}} of every incident, by id: what a new build is matched with. */
    kbr_err (*incident_queries)(kbr_store *st, json_t **out);
    /* See kbr_store_evidence_incident_seqs. */
    kbr_err (*evidence_incident_seqs)(kbr_store *st, const char *id, json_t **seqs);
    /* Whether some product has a build of version. */
    kbr_err (*firmware_version_exists)(kbr_store *st, const char *version, bool *exists);
};

extern const kbr_store_ops kbr_store_sqlite_ops;
/* postgresql:// and postgres:// (store/pg.c) */
extern const kbr_store_ops kbr_store_pg_ops, kbr_store_pg_alt_ops;

/*
 * match.c: which SBOM components a question names (View C, an incident's builds).
 * kbr_store_purl_key: the package of a purl as the store keeps it (its canonical string
 * without version, qualifiers and subpath; *key NULL, and KBR_OK, when purl is NULL or does
 * not parse).  kbr_match_new: the question, exactly one of component (an SBOM name) and purl,
 * with versions (an array of version strings) or vers (a vers range) or neither;
 * KBR_ERR_BAD_REQUEST with msg naming the field.  kbr_match_component: whether a component
 * {name, cversion, purl} is one the question names; KBR_MATCH_UNDECIDED (and *why) when its
 * version cannot be told in or out.
 */
typedef struct kbr_match kbr_match;
typedef enum { KBR_MATCH_NO, KBR_MATCH_YES, KBR_MATCH_UNDECIDED } kbr_match_result;
KBR_WUR kbr_err kbr_store_purl_key(const char *purl, char **key);
KBR_WUR kbr_err kbr_match_new(const char *component, const char *purl, const json_t *versions,
                              const char *vers, kbr_match **out, kbr_msg *msg);
void kbr_match_free(kbr_match *m);
/* The SBOM name asked for, or NULL; the package asked for, or NULL. */
const char *kbr_match_component_name(const kbr_match *m);
const char *kbr_match_purl_key(const kbr_match *m);
bool kbr_match_selects_versions(const kbr_match *m);
kbr_match_result kbr_match_component(const kbr_match *m, const char *name, const char *cversion,
                                     const char *purl, const char **why);

/* cra.c: what of keys (View A's, by purpose) and the product's device certificates lapses
 * within a support period ending on support_until: [{kind ("key-certificate",
 * "issuer-certificate", "algorithm", "device-certificates"), ...}] by the day they lapse. */
KBR_WUR kbr_err kbr_store_continuity(kbr_store *st, const char *product, const json_t *keys,
                                     const char *support_until, json_t **out);

/* exposure.c: View C without its query echo (q checked, its limit resolved; a limit below 0
 * leaves the page of devices out), read in one snapshot.  New ref. */
KBR_WUR kbr_err kbr_store_exposure_rows(kbr_store *st, const kbr_exposure_query *q, json_t **out);

/* history.c: whether a history set (a JSON array of versions) holds version, and the one
 * spelling of the set with added: its versions sorted bytewise, as compact JSON (*out is the
 * caller's). */
bool kbr_store_history_holds(const json_t *versions, const char *version);
KBR_WUR kbr_err kbr_store_history_text(const json_t *versions, const char *added, char **out);

/*
 * Rows as the back ends return them: a row becomes an object whose members are named, and
 * typed, by a list of kbr_col_spec, one per result column in order.  Both back ends read with
 * the same lists (rows.c), so a row has one shape whichever store it comes from.
 */
/* How a result column becomes a member: text (or null), parsed JSON, an integer (0 for SQL
 * NULL), an integer or null, or a boolean (SQL NULL or 0: false). */
typedef enum {
    KBR_COL_TEXT,
    KBR_COL_JSON,
    KBR_COL_INT,
    KBR_COL_INT_OR_NULL,
    KBR_COL_BOOL
} kbr_col_kind;

typedef struct {
    const char *field;
    kbr_col_kind kind;
} kbr_col_spec;
#define KBR_NCOLS(a) (sizeof(a) / sizeof((a)[0]))

/* effect.c, for effect_json.c: the type a JSON form's "type" names (false for none), and the
 * arena a list's effects live in. */
bool kbr_effect_type_from_name(const char *name, kbr_effect_type *out);
kbr_arena *kbr_effects_arena(kbr_effects *fx);

/* rows.c: the shared row shapes */
extern const kbr_col_spec kbr_row_batch[8];
extern const kbr_col_spec kbr_row_batch_count[3];
extern const kbr_col_spec kbr_row_checkpoint[13];
extern const kbr_col_spec kbr_row_component[3];
extern const kbr_col_spec kbr_row_delivery[6];
extern const kbr_col_spec kbr_row_device[11];
extern const kbr_col_spec kbr_row_device_cert[11];
extern const kbr_col_spec kbr_row_event[4];
extern const kbr_col_spec kbr_row_expiring[5];
extern const kbr_col_spec kbr_row_exposed_build[4];
extern const kbr_col_spec kbr_row_exposed_component[5];
extern const kbr_col_spec kbr_row_firmware[10];
extern const kbr_col_spec kbr_row_firmware_history[5];
extern const kbr_col_spec kbr_row_found[4];
extern const kbr_col_spec kbr_row_history[1];
extern const kbr_col_spec kbr_row_history_batch[3];
extern const kbr_col_spec kbr_row_identity[2];
extern const kbr_col_spec kbr_row_incident[17];
extern const kbr_col_spec kbr_row_incident_build[3];
extern const kbr_col_spec kbr_row_issuer[7];
extern const kbr_col_spec kbr_row_live_token[5];
extern const kbr_col_spec kbr_row_month[2];
extern const kbr_col_spec kbr_row_operation[6];
extern const kbr_col_spec kbr_row_pending[4];
extern const kbr_col_spec kbr_row_product[7];
extern const kbr_col_spec kbr_row_query[3];
extern const kbr_col_spec kbr_row_relation[2];
extern const kbr_col_spec kbr_row_report[5];
extern const kbr_col_spec kbr_row_revocation[5];
extern const kbr_col_spec kbr_row_revoked[4];
extern const kbr_col_spec kbr_row_series[4];
extern const kbr_col_spec kbr_row_token[15];

#endif
