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
 * Ledger effects are JSON objects with a "type":
 *   key.create    {name, purpose, algorithm, products[], owner, hsm_label, hsm_id,
 *                  public_key_pem, created_at}
 *   key.retire    {name, at}
 *   token.issue   {jti, sub, scope{}, issued_by, issued_at, not_before, expires_at,
 *                  cnf_x5t (string or null)}
 *   token.revoke  {jtis[], at, reason}
 *   firmware.sign {product, version, digest, hash, key, name, build_id, signed_at,
 *                  components[{name, version, purl}]}
 *                 same (product, version) with the same digest: nothing to do (a CI
 *                 retry); with another digest: KBR_ERR_STORE_CONSTRAINT.
 * Unknown types are KBR_ERR_INTERNAL.
 */
#ifndef KBR_STORE_H
#define KBR_STORE_H

#include "kbr_common.h"

typedef struct kbr_store kbr_store;

/*
 * Opens a connection and creates or migrates the schema.  url is
 * "sqlite:PATH" or "sqlite:PATH?max_pages=N" (a size quota: writes that
 * would grow the database past N pages fail like a full disk).
 * KBR_ERR_CONFIG for an unknown scheme or option, KBR_ERR_STORE when
 * the database cannot be opened or written; msg names the cause.  Caller
 * closes with kbr_store_close.
 */
KBR_WUR kbr_err kbr_store_open(const char *url, kbr_store **out, kbr_msg *msg);
void kbr_store_close(kbr_store *st); /* accepts NULL */

/* ---- the writer's transaction ---- */
KBR_WUR kbr_err kbr_store_begin(kbr_store *st);
KBR_WUR kbr_err kbr_store_commit(kbr_store *st); /* durable on KBR_OK */
void kbr_store_rollback(kbr_store *st);

/*
 * Applies effects (a JSON array, may be NULL) for the record with sequence
 * number seq, inside a savepoint: on any failure the savepoint is rolled
 * back and nothing of this record's effects stays.
 * KBR_ERR_STORE_CONSTRAINT when a uniqueness rule is hit, KBR_ERR_STORE otherwise.
 */
KBR_WUR kbr_err kbr_store_apply_effects(kbr_store *st, const json_t *effects, int64_t seq);

/* The audit row as committed; entry_json is the canonical entry without "hash". */
typedef struct {
    int64_t seq;
    const char *time, *sub, *jti, *op, *key, *outcome, *error_code; /* NULL allowed */
    bool key_use;
    const char *entry_json;
    const char *prev_hash, *hash; /* 64 hex chars */
} kbr_store_audit_row;

KBR_WUR kbr_err kbr_store_audit_insert(kbr_store *st, const kbr_store_audit_row *row);

/* ---- reads ---- */

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

/* Entries as GET /v1/audit shows them: the entry objects with "hash" added. New ref. */
KBR_WUR kbr_err kbr_store_audit_page(kbr_store *st, int64_t after, int64_t limit, json_t **entries);

/* Key objects as the API shows them, without the live "hsm" attributes.  New refs. */
KBR_WUR kbr_err kbr_store_key_get(kbr_store *st, const char *name, json_t **key); /* NOT_FOUND */
KBR_WUR kbr_err kbr_store_key_list(kbr_store *st, json_t **keys);

/*
 * Tokens as GET /v1/tokens shows them: {jti, sub, scope, issued_at, not_before, expires_at,
 * uses, last_used_at, revoked_at, revoke_reason, issued_by, cnf_x5t}.  uses counts committed
 * key uses (audit rows with key_use and outcome ok) with that jti.
 * Filters may be NULL/false.  A key filter keeps tokens whose scope reaches the key
 * (no "keys" list, an exact name, or a matching "prefix*").  active keeps tokens
 * neither revoked nor expired at now.  New ref.
 */
KBR_WUR kbr_err kbr_store_token_list(kbr_store *st, const char *sub, const char *key, bool active,
                                     time_t now, json_t **tokens);

/* Firmware build (product, version): {product, version, digest, hash, key, name, build_id,
 * signed_at, audit_seq, components[]}; KBR_ERR_NOT_FOUND if the broker never signed it. */
KBR_WUR kbr_err kbr_store_firmware_get(kbr_store *st, const char *product, const char *version,
                                       json_t **build);

#endif
