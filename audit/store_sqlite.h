/*
 * store_sqlite.h - private to audit/: the SQLite back end's connection,
 * shared by store_sqlite.c (connection, schema, transactions, audit table)
 * and store_sqlite_ledger.c (ledger writes and reads).
 */
#ifndef KBR_STORE_SQLITE_H
#define KBR_STORE_SQLITE_H

#include <sqlite3.h>

#include "store_backend.h"

/*
 * Every statement the back end runs.  Each is prepared once per connection,
 * on first use, from the SQL its caller passes (so the SQL stays next to
 * the code that binds it) and reused after that.
 */
typedef enum {
    SQ_BEGIN,
    SQ_COMMIT,
    SQ_ROLLBACK,
    SQ_SAVEPOINT,
    SQ_RELEASE,
    SQ_ROLLBACK_TO,
    SQ_AUDIT_INSERT,
    SQ_AUDIT_TAIL,
    SQ_AUDIT_WALK,
    SQ_KEY_INSERT,
    SQ_KEY_RETIRE,
    SQ_KEY_EXISTS,
    SQ_KEY_GET,
    SQ_KEY_LIST,
    SQ_TOKEN_INSERT,
    SQ_TOKEN_REVOKE,
    SQ_TOKEN_LIST,
    SQ_FIRMWARE_DIGEST,
    SQ_FIRMWARE_INSERT,
    SQ_FIRMWARE_GET,
    SQ_COMPONENT_INSERT,
    SQ_COMPONENT_LIST,
    SQ__COUNT
} kbr_sq_id;

typedef struct {
    kbr_store base; /* first: a kbr_store * is a kbr_sqlite * */
    sqlite3 *db;
    sqlite3_stmt *stmts[SQ__COUNT];
} kbr_sqlite;

/* The one translation of SQLite result codes into kbr_err. */
kbr_err kbr_sqlite_err(int rc);

/* Statement id (prepared from sql the first time), ready to bind.  Borrowed: end with
 * kbr_sqlite_done. */
KBR_WUR kbr_err kbr_sqlite_stmt(kbr_sqlite *s, kbr_sq_id id, const char *sql, sqlite3_stmt **out);
/* Resets a statement from kbr_sqlite_stmt so it holds no lock or snapshot; accepts NULL. */
void kbr_sqlite_done(sqlite3_stmt *stmt);
/* Steps a statement that returns no rows. */
KBR_WUR kbr_err kbr_sqlite_run(sqlite3_stmt *stmt);
/* Binds s, or NULL as SQL NULL. */
KBR_WUR kbr_err kbr_sqlite_bind_text(sqlite3_stmt *stmt, int idx, const char *s);
/* A column's text, or NULL for SQL NULL. */
const char *kbr_sqlite_text(sqlite3_stmt *stmt, int col);

/* Ledger operations (store_sqlite_ledger.c). */
kbr_err kbr_sqlite_key_create(kbr_store *st, const kbr_eff_key *k, int64_t seq);
kbr_err kbr_sqlite_key_retire(kbr_store *st, const char *name, const char *at);
kbr_err kbr_sqlite_token_issue(kbr_store *st, const kbr_eff_token *t, int64_t seq);
kbr_err kbr_sqlite_token_revoke(kbr_store *st, const char *jti, const char *at, const char *reason);
kbr_err kbr_sqlite_firmware_digest(kbr_store *st, const char *product, const char *version,
                                   char **digest);
kbr_err kbr_sqlite_firmware_insert(kbr_store *st, const kbr_eff_firmware *f, int64_t seq);
kbr_err kbr_sqlite_component_insert(kbr_store *st, const char *product, const char *version,
                                    const kbr_eff_component *c);
kbr_err kbr_sqlite_key_get(kbr_store *st, const char *name, json_t **key);
kbr_err kbr_sqlite_key_list(kbr_store *st, json_t **keys);
kbr_err kbr_sqlite_token_list(kbr_store *st, const char *sub, bool active, time_t now,
                              json_t **tokens);
kbr_err kbr_sqlite_firmware_get(kbr_store *st, const char *product, const char *version,
                                json_t **build);

#endif
