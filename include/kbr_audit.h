/*
 * kbr_audit.h - the append-only, hash-chained audit log and its writer thread.
 *
 * An entry is the JSON object
 *   {"seq", "time", "sub", "jti", "op", "key", "outcome", "error_code",
 *    "detail", "prev_hash"[, "products"][, "effects"][, "documents"][, "key_use"]}
 * (absent values are JSON null; "products" only when the entry is about some).  "effects" is
 * the JSON form of the ledger effects the record made (kbr_store.h), present when the ledger
 * kept some: every fact a view shows comes from one of them, so the log alone rebuilds the
 * ledger.  "documents" lists the SHA-256 of each document the record stored (an SBOM as
 * sent), "key_use" is true when the entry counts toward its token's max_uses.  Its canonical form
 * (RFC 8785, written straight from the record by kbr_audit_entry_text; kbr_json_canonical of the
 * parsed entry gives the same bytes) is what is stored and hashed: hash = hex(SHA-256(0x00 ||
 * canonical)), the RFC 6962 leaf hash, and the next entry's prev_hash.  The first entry's prev_hash
 * is 64 zeros.  GET /v1/audit shows the entry with "hash" added.
 *
 * One writer thread owns the store's write connection.  Records submitted
 * from any thread are queued; the writer takes everything queued (up to a
 * bound), applies each record's ledger effects and inserts its entry in one
 * transaction, commits durably, then calls each record's done() in seq
 * order.  done() runs on the writer thread and must not block.  Each
 * record's effects are applied under a savepoint of their own: when the
 * ledger refuses them for a reason of the record's (a rule it hits, an
 * effect it cannot take), that record alone is answered with an error and
 * the rest of the group commits; only a failure of the store itself (I/O, a
 * full disk) fails the group.
 */
#ifndef KBR_AUDIT_H
#define KBR_AUDIT_H

#include <openssl/evp.h>

#include "kbr_common.h"
#include "kbr_store.h"

typedef struct kbr_audit kbr_audit;

typedef struct kbr_audit_rec kbr_audit_rec;
typedef void (*kbr_audit_done_fn)(kbr_audit_rec *rec, void *arg);

struct kbr_audit_rec {
    /* Set by the submitter.  Strings are owned by the record (freed by kbr_audit_rec_free). */
    char *sub, *jti, *op, *key; /* NULL -> null */
    char *outcome;              /* "ok", "denied" or "error" */
    char *error_code;           /* API error code or NULL */
    json_t *detail;             /* an object; never NULL after kbr_audit_rec_new */
    kbr_effects *effects;       /* ledger effects or NULL; freed with the record */
    /*
     * The products the entry is about (names, or a "prefix*" a token's scope names), an array
     * or NULL; the entry carries it as "products" when it is not empty.  It is what bounds who
     * may read the entry: a token limited to products sees the entries about them.
     */
    json_t *products;
    bool key_use; /* counts toward the token's max_uses */
    kbr_audit_done_fn done;
    void *arg;

    /*
     * Set by the writer before done().  result: KBR_OK (durable),
     * KBR_ERR_CONFLICT (an effect hit a uniqueness rule: nothing of the
     * effects was kept, the entry was recorded as denied/conflict and
     * key_use cleared), KBR_ERR_INTERNAL (the ledger refused an effect of
     * this record alone, a malformed one or a value it cannot hold: nothing
     * of the effects was kept, the entry was recorded as
     * error/audit_unavailable with detail.effects_refused {reason, types}
     * and key_use cleared), KBR_ERR_QUOTA (key_use was set and the token's
     * max_uses were spent when the writer came to it, by another broker
     * sharing the store: recorded as denied/quota_exhausted without its
     * effects, key_use cleared), or KBR_ERR_AUDIT (nothing durable; seq is 0).
     * Only KBR_ERR_AUDIT leaves no entry.
     */
    kbr_err result;
    int64_t seq;
    char time[KBR_TIME_LEN];
    char hash[65];

    kbr_audit_rec *next; /* queue link; private to the writer */
};

/* A record with empty detail, outcome "ok".  Strings are copied; NULL allowed; a string that
 * is not UTF-8 is KBR_ERR_BAD_REQUEST.  Caller frees with kbr_audit_rec_free. */
KBR_WUR kbr_err kbr_audit_rec_new(const char *sub, const char *jti, const char *op, const char *key,
                                  kbr_audit_rec **out);
/* outcome must be "ok", "denied" or "error" (else KBR_ERR_INTERNAL); on failure rec is
 * unchanged. */
KBR_WUR kbr_err kbr_audit_rec_set_outcome(kbr_audit_rec *rec, const char *outcome,
                                          const char *error_code);
void kbr_audit_rec_free(kbr_audit_rec *rec); /* accepts NULL */
/* Adds product (copied) to rec->products unless it is there already.  NULL is ignored. */
KBR_WUR kbr_err kbr_audit_rec_add_product(kbr_audit_rec *rec, const char *product);

/*
 * Opens its own connection to store_url, loads the chain tail, checks that
 * the last `verify_tail` entries recompute to their stored hashes and chain
 * (KBR_ERR_STORE with msg naming the first bad seq if not), and starts the
 * writer thread.  verify_tail <= 0 checks nothing; INT64_MAX checks the
 * whole log.  Caller stops with kbr_audit_stop.
 */
KBR_WUR kbr_err kbr_audit_start(const char *store_url, int64_t verify_tail, kbr_audit **out,
                                kbr_msg *msg);

/* Queues rec; done() is called exactly once, from the writer thread. Ownership passes to the
 * writer until done() is called, then back to whoever done() hands it to.  A record without
 * done() is freed by the writer after its commit. */
void kbr_audit_submit(kbr_audit *a, kbr_audit_rec *rec);

/* Submits and waits for the commit; returns rec->result.  For --init and tests.  rec->done must
 * be NULL; the caller keeps ownership. */
KBR_WUR kbr_err kbr_audit_append_sync(kbr_audit *a, kbr_audit_rec *rec);

/* false after a failed commit, true again after the next successful one. */
bool kbr_audit_healthy(kbr_audit *a);
/* Whether this writer committed entry seq.  Brokers sharing a store ask in increasing seq
 * order (each answer forgets the groups before seq), to tell their own entries from those
 * of the others. */
bool kbr_audit_written_here(kbr_audit *a, int64_t seq);
/* Whether this broker makes the periodic checkpoints (kbr_store_checkpoint_lease, asked about
 * once a second). */
bool kbr_audit_checkpoint_lease(kbr_audit *a);
/* The seq of the last durable entry. */
int64_t kbr_audit_last_seq(kbr_audit *a);

/* Counters since kbr_audit_start, for metrics: a commit carries `records / commits` records
 * on average, which shows how well group commit amortizes the fsync. */
typedef struct {
    uint64_t records;         /* records made durable (any result but KBR_ERR_AUDIT) */
    uint64_t commits;         /* transactions committed */
    uint64_t failed_commits;  /* groups that were not made durable (records got KBR_ERR_AUDIT) */
    uint64_t refused_records; /* records whose effects the ledger refused (KBR_ERR_INTERNAL) */
} kbr_audit_stats;
void kbr_audit_get_stats(kbr_audit *a, kbr_audit_stats *out);
/* Seconds each group's commit took (failed ones included), and records per committed group. */
const kbr_hist *kbr_audit_commit_latency(kbr_audit *a);
const kbr_hist *kbr_audit_group_sizes(kbr_audit *a);
/* The writer's copies of the WAL's last frames, so that it starts over (SQLite stores). */
const kbr_hist *kbr_audit_wal_restart_latency(kbr_audit *a);

/* Commits everything queued, then stops the thread and closes.  Accepts NULL. */
void kbr_audit_stop(kbr_audit *a);

/*
 * keybrokerd --verify-store: the store at url checked against its own log, read in one
 * snapshot (a broker may keep serving) and never written: it is opened read-only, and one
 * of an older schema is refused (the caller checks a migrated copy of it).  Each entry's
 * hash is recomputed from its text and chained; the ledger is made again from the entries
 * alone (their effects, and the documents they name, each checked against its SHA-256) with
 * the writer's own code, in a scratch store made at the path scratch (it must not exist;
 * removed after, with its -wal and -shm; a caller that may be interrupted removes those
 * itself); then the two stores are compared, schema and every table row by row, and the
 * store's own indexes checked against its tables.
 * KBR_OK: the store is what its log says.  KBR_ERR_CONFLICT: msg names the first difference
 * (an entry, or a table, row, column and both values).  Another error: the check could not
 * be made (msg says why).
 */
typedef struct {
    int64_t entries, effects, documents, tables, rows;
} kbr_audit_verify_stats;
KBR_WUR kbr_err kbr_audit_verify_store(const char *url, const char *scratch,
                                       kbr_audit_verify_stats *stats, kbr_msg *msg);

/* hex(SHA-256(0x00 || canonical[0..len))): an entry's hash from its stored text. */
KBR_WUR kbr_err kbr_audit_leaf_hash(const char *canonical, size_t len, char out[65]);

/* The entry of record r as number seq at time after prev (64 hex digits): the fields above,
 * its effects and documents included (r->effects as it stands), as its canonical text (what
 * is stored and hashed; *len without the NUL; the caller frees) or as a JSON value (new ref). */
KBR_WUR kbr_err kbr_audit_entry_text(const kbr_audit_rec *r, int64_t seq, const char *time,
                                     const char *prev, char **out, size_t *len);
KBR_WUR kbr_err kbr_audit_entry_new(const kbr_audit_rec *r, int64_t seq, const char *time,
                                    const char *prev, json_t **out);

/* hash = hex(SHA-256(0x00 || canonical(entry))) where entry lacks "hash". */
KBR_WUR kbr_err kbr_audit_entry_hash(const json_t *entry, char hash[65]);

/*
 * Offline check of a sequence of entries as GET /v1/audit shows them (with
 * "hash"), starting at seq first_seq with prev_hash expected_prev: each
 * entry's hash recomputes, prev_hash chains, seq is consecutive.
 * expected_prev NULL means 64 zeros (a log checked from seq 1).
 * KBR_ERR_BAD_REQUEST with msg naming the first bad seq.
 */
KBR_WUR kbr_err kbr_audit_verify_entries(const json_t *entries, int64_t first_seq,
                                         const char *expected_prev, kbr_msg *msg);

/*
 * The signed audit tree (RFC 6962 / RFC 9162): leaves are the entries'
 * hashes in seq order (leaf index = seq - 1), an inner node is
 * SHA-256(0x01 || left || right), and a tree of n leaves splits at the
 * largest power of two below n.  Hashes are raw KBR_MERKLE_HASH_LEN bytes;
 * an array of hashes is their concatenation.
 */
#define KBR_MERKLE_HASH_LEN 32

/* SHA-256(0x01 || left || right).  out may alias left or right. */
KBR_WUR kbr_err kbr_merkle_node(const unsigned char left[KBR_MERKLE_HASH_LEN],
                                const unsigned char right[KBR_MERKLE_HASH_LEN],
                                unsigned char out[KBR_MERKLE_HASH_LEN]);
/* MTH over n leaf hashes; n == 0 gives SHA-256 of the empty string (RFC 6962 2.1). */
KBR_WUR kbr_err kbr_merkle_root(const unsigned char *leaves, uint64_t n,
                                unsigned char root[KBR_MERKLE_HASH_LEN]);
/*
 * The audit path of leaf m (0-based) in the tree of the first n leaves, leaf side first
 * (RFC 6962 2.1.1).  *path (caller frees with free()) holds *path_len hashes; an empty path
 * for n == 1.  KBR_ERR_BAD_REQUEST unless m < n.
 */
KBR_WUR kbr_err kbr_merkle_proof(const unsigned char *leaves, uint64_t n, uint64_t m,
                                 unsigned char **path, size_t *path_len);
/*
 * The same over any source of the tree's perfect subtrees: get(arg, level, idx, out) gives
 * the hash of the 2^level leaves from index idx * 2^level (level 0: a leaf), and is asked
 * for O(log n) of them.  The store keeps them as the log grows (kbr_store_merkle_root).
 */
typedef kbr_err (*kbr_merkle_node_fn)(void *arg, unsigned level, uint64_t idx,
                                      unsigned char out[KBR_MERKLE_HASH_LEN]);
KBR_WUR kbr_err kbr_merkle_root_from(kbr_merkle_node_fn get, void *arg, uint64_t n,
                                     unsigned char root[KBR_MERKLE_HASH_LEN]);
KBR_WUR kbr_err kbr_merkle_proof_from(kbr_merkle_node_fn get, void *arg, uint64_t m, uint64_t n,
                                      unsigned char **path, size_t *path_len);
/* KBR_OK when path proves leaf at index m in a tree of size n with this root (RFC 9162
 * 2.1.3.2), KBR_ERR_BAD_REQUEST when it does not or m >= n. */
KBR_WUR kbr_err kbr_merkle_verify(const unsigned char leaf[KBR_MERKLE_HASH_LEN], uint64_t m,
                                  uint64_t n, const unsigned char *path, size_t path_len,
                                  const unsigned char root[KBR_MERKLE_HASH_LEN]);

/*
 * The consistency proof between the trees of the first m and the first n leaves (RFC 9162
 * 2.1.4.1: the SUBPROOF hashes in the RFC's order), over an array of leaf hashes or any source
 * of perfect subtrees.  *path (caller frees with free()) holds *path_len hashes, none when
 * m == n.  KBR_ERR_BAD_REQUEST unless 1 <= m <= n.
 */
KBR_WUR kbr_err kbr_merkle_consistency(const unsigned char *leaves, uint64_t m, uint64_t n,
                                       unsigned char **path, size_t *path_len);
KBR_WUR kbr_err kbr_merkle_consistency_from(kbr_merkle_node_fn get, void *arg, uint64_t m,
                                            uint64_t n, unsigned char **path, size_t *path_len);
/* KBR_OK when path proves that the tree of m leaves with root first is a prefix of the tree of
 * n leaves with root second (RFC 9162 2.1.4.2; m == n needs an empty path and equal roots);
 * KBR_ERR_BAD_REQUEST when it does not, or unless 1 <= m <= n. */
KBR_WUR kbr_err kbr_merkle_consistency_verify(uint64_t m, uint64_t n,
                                              const unsigned char first[KBR_MERKLE_HASH_LEN],
                                              const unsigned char second[KBR_MERKLE_HASH_LEN],
                                              const unsigned char *path, size_t path_len);

/*
 * C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, and the checkpoint text of
 * c2sp.org/tlog-checkpoint ("<origin>\n<size>\n<base64 root>\n"), in audit/note.c.  A key
 * name (the origin) is 1 to KBR_NOTE_NAME_MAX bytes of UTF-8 without spaces, '+' or control
 * characters; an Ed25519 key's ID is the first four bytes of
 * SHA-256(name || 0x0A || 0x01 || public key), and a signature line is
 * "\u2014 <name> <base64(key ID || signature)>\n".
 */
#define KBR_NOTE_MAX      8192 /* bytes of a note this broker reads */
#define KBR_NOTE_NAME_MAX 255
#define KBR_NOTE_SIGS_MAX 16  /* the format asks verifiers to take at least 16 */
#define KBR_NOTE_SIG_MAX  128 /* bytes of one signature after its key ID */

bool kbr_note_name_valid(const char *name, size_t len);
/* The key ID of Ed25519 key pub under name; KBR_ERR_CRYPTO for another kind of key,
 * KBR_ERR_BAD_REQUEST for a name that is not a key name. */
KBR_WUR kbr_err kbr_note_key_id(const char *name, EVP_PKEY *pub, uint32_t *id);
/* The verifier key "<name>+<hex key ID>+<base64(0x01 || public key)>", and back: the name and
 * key of a vkey whose ID matches them (KBR_ERR_BAD_REQUEST with msg otherwise).  New strings
 * and keys for the caller. */
KBR_WUR kbr_err kbr_note_vkey(const char *name, EVP_PKEY *pub, char **out);
KBR_WUR kbr_err kbr_note_vkey_parse(const char *vkey, char **name, EVP_PKEY **pub, kbr_msg *msg);
/* The checkpoint note's text (origin: 1 to KBR_NOTE_NAME_MAX bytes of UTF-8 without control
 * characters; this broker's origin is also its key name), and one signature line (with its
 * newline).  New strings. */
KBR_WUR kbr_err kbr_note_checkpoint_text(const char *origin, uint64_t size,
                                         const unsigned char root[KBR_MERKLE_HASH_LEN], char **out);
KBR_WUR kbr_err kbr_note_sig_line(const char *name, uint32_t id, const unsigned char *sig,
                                  size_t siglen, char **out);

typedef struct {
    char name[KBR_NOTE_NAME_MAX + 1];
    uint32_t id;
    unsigned char sig[KBR_NOTE_SIG_MAX];
    size_t siglen;
} kbr_note_sig;

typedef struct {
    char *text; /* the signed text, its last newline included */
    size_t text_len;
    kbr_note_sig sigs[KBR_NOTE_SIGS_MAX];
    size_t nsigs;
} kbr_note;

/*
 * Reads a signed note strictly: at most KBR_NOTE_MAX bytes of UTF-8 without control characters
 * but newlines, a text ending in a newline, a blank line, then 1 to KBR_NOTE_SIGS_MAX signature
 * lines each ending in a newline, with valid key names and canonical base64.
 * KBR_ERR_BAD_REQUEST with msg naming the problem.  Clear *out with kbr_note_clear.
 */
KBR_WUR kbr_err kbr_note_parse(const char *note, size_t len, kbr_note *out, kbr_msg *msg);
void kbr_note_clear(kbr_note *n);
/* The signature by Ed25519 key pub under name verifies over the text: KBR_ERR_NOT_FOUND when
 * the note has no signature by that name and key ID, KBR_ERR_BAD_REQUEST when it does not
 * verify, KBR_ERR_CRYPTO when pub is not an Ed25519 key; msg says which. */
KBR_WUR kbr_err kbr_note_verify(const kbr_note *n, const char *name, EVP_PKEY *pub, kbr_msg *msg);

typedef struct {
    char origin[KBR_NOTE_NAME_MAX + 1];
    uint64_t size;
    unsigned char root[KBR_MERKLE_HASH_LEN];
} kbr_note_checkpoint;
/* The note's text as a checkpoint: exactly three lines (this broker writes no extension
 * lines), an origin, the size a decimal without leading zeros, the root 32 bytes in base64. */
KBR_WUR kbr_err kbr_note_checkpoint_parse(const kbr_note *n, kbr_note_checkpoint *out,
                                          kbr_msg *msg);

/*
 * A checkpoint (signed tree head): {"size", "root_hash" (hex), "time" (RFC 3339)}, and for a
 * rotation "next_key_pem", the audit key that signs after this one.  The audit key (Ed25519)
 * signs the canonical JSON (RFC 8785) of those members, nothing hashed first ("signature_b64",
 * base64), and the same head as a C2SP signed note ("note": the tlog-checkpoint text
 * "<origin>\n<size>\n<base64 root>\n", key name = origin; a rotation's note carries the next
 * key's signature too).  An older broker's checkpoints were ECDSA P-256 signatures, raw r||s,
 * over SHA-256 of the canonical {"root_hash", "size", "time"}.
 */
/* The canonical JSON the key signs (new string); KBR_ERR_BAD_REQUEST with msg naming a member
 * that is missing or mistyped. */
KBR_WUR kbr_err kbr_audit_head_message(const json_t *cp, char **out, kbr_msg *msg);
/* SHA-256 of kbr_audit_head_message: what an older broker's P-256 key signed. */
KBR_WUR kbr_err kbr_audit_checkpoint_digest(const json_t *cp, unsigned char digest[32],
                                            kbr_msg *msg);
/* cp.signature_b64 verifies with pubkey: Ed25519 over the head, or an older broker's P-256
 * signature.  KBR_ERR_BAD_REQUEST with msg when it does not, KBR_ERR_CRYPTO when the key cannot
 * be used. */
KBR_WUR kbr_err kbr_audit_checkpoint_signature_holds(const json_t *cp, EVP_PKEY *pubkey,
                                                     kbr_msg *msg);
/* cp.note is the checkpoint's own head (its size and root, and nothing else) as a signed note
 * whose origin's signature by key verifies, and next's too when next is not NULL.
 * KBR_ERR_BAD_REQUEST with msg naming the problem. */
KBR_WUR kbr_err kbr_audit_checkpoint_note_holds(const json_t *cp, EVP_PKEY *key, EVP_PKEY *next,
                                                kbr_msg *msg);
/* An Ed25519 signature over msg: KBR_OK, KBR_ERR_BAD_REQUEST, or KBR_ERR_CRYPTO for a key that
 * is not Ed25519. */
KBR_WUR kbr_err kbr_audit_ed25519_holds(EVP_PKEY *pubkey, const void *msg, size_t len,
                                        const unsigned char *sig, size_t siglen);
/* A PEM public key (KBR_ERR_BAD_REQUEST when pem holds none).  Caller frees. */
KBR_WUR kbr_err kbr_audit_pem_key(const char *pem, EVP_PKEY **out);

typedef struct {
    size_t checkpoints; /* checkpoints of the log verified along the chain */
    size_t keys;        /* audit keys in the chain, the pinned one included */
    uint32_t key_id;    /* note key ID of the last key under origin (0: none) */
    char origin[KBR_NOTE_NAME_MAX + 1];
} kbr_audit_log_report;

/*
 * Offline check of an exported log against a checkpoint, trusting only first_key (pinned; an
 * Ed25519 key, or an older broker's EC P-256 one): the entries (as GET /v1/audit shows them,
 * from seq 1) chain (kbr_audit_verify_entries); every checkpoint the log records (its
 * "checkpoint" effects), in order, has the root of the entries it covers, is signed by the key
 * the one before hands on (first_key for the first; a rotation hands on its next key, which
 * also signs its note), and its note says the same head; cp is the log's own checkpoint, or
 * one newer signed by the key the log hands on last, and the log holds the cp.size entries it
 * covers with that root.  So a rotation missing, or signed by another key, breaks the chain.
 * KBR_ERR_BAD_REQUEST with msg naming the first problem; KBR_ERR_CRYPTO when the key cannot be
 * used.  report (may be NULL) says what held.
 */
KBR_WUR kbr_err kbr_audit_verify_log(const json_t *entries, const json_t *cp, EVP_PKEY *first_key,
                                     kbr_audit_log_report *report, kbr_msg *msg);
/* kbr_audit_verify_log without a report. */
KBR_WUR kbr_err kbr_audit_verify_checkpoint(const json_t *entries, const json_t *cp,
                                            EVP_PKEY *pubkey, kbr_msg *msg);

/*
 * Evidence bundles (docs/api.md "Evidence bundles"):
 *   {"format": "keybroker-evidence/1", "subject", "generated_at", "checkpoint",
 *    "audit_public_keys", "audit_key_chain", "entries": [{"entry", "leaf_index",
 *    "inclusion_proof"}], "documents": {sha256: base64}}
 *
 * kbr_evidence_build (libkbr): the bundle about subject ({"kind": "device", "product",
 * "serial"} or {"kind": "product", "product"}) from the entries seqs names, each with its
 * inclusion proof to cp (a checkpoint that covers them all: KBR_ERR_CONFLICT otherwise), the
 * audit keys from the first to cp's signer (audit_public_keys, PEM) and the rotations that hand
 * each on to the next (audit_key_chain, checkpoints as GET /v1/audit/checkpoint shows them),
 * and every document they name.  New ref.
 *
 * kbr_evidence_verify (core, offline): text is a bundle; it holds when the chain leads from
 * pubkey (the pinned first audit key) to cp's signer, each rotation signed (head and note) by
 * the key before it and its note cosigned by the next, audit_public_keys lists those keys,
 * cp's signature (and its note's) verifies with the last, every entry's hash recomputes and its
 * proof leads to cp's root, every document
 * hashes to its name and is named by an entry and every named one is there, and the entries
 * establish the subject (a device's bundle provisions it; a product's records a key, batch or
 * build of it).
 * *summary: {subject, checkpoint_size, checkpoint_time, entries, documents, audit_keys}.
 * KBR_ERR_BAD_REQUEST with msg naming the first problem (the entry, the document, the member).
 */
KBR_WUR kbr_err kbr_evidence_build(kbr_store *st, const json_t *subject, const json_t *seqs,
                                   const json_t *cp, const json_t *audit_public_keys,
                                   const json_t *audit_key_chain, json_t **bundle);
KBR_WUR kbr_err kbr_evidence_verify(const char *text, size_t len, EVP_PKEY *pubkey,
                                    json_t **summary, kbr_msg *msg);

#endif
