/* sqlite_tree.c - the SQLite back end's audit tree nodes and checkpoints. */
#include <stdlib.h>
#include <string.h>

#include "sqlite.h"

#define H 32

static kbr_err leaf_get(kbr_sqlite *s, int64_t idx, unsigned char out[H])
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    unsigned char *raw = NULL;
    size_t len = 0;
    int rc;

    KBR_GUARD(kbr_sqlite_stmt(s, SQ_MERKLE_LEAF, "SELECT hash FROM audit WHERE seq = ?1", &stmt));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 1, idx + 1)));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc != SQLITE_DONE, KBR_ERR_NOT_FOUND);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    KBR_ENSURE(kbr_sqlite_text(stmt, 0) != NULL, KBR_ERR_STORE);
    KBR_ENSURE(kbr_hex_decode(kbr_sqlite_text(stmt, 0), &raw, &len) == KBR_OK && len == H,
               KBR_ERR_STORE);
    memcpy(out, raw, H);
out:
    free(raw);
    kbr_sqlite_done(stmt);
    return err;
}

static kbr_err inner_get(kbr_sqlite *s, unsigned level, int64_t idx, unsigned char out[H])
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    KBR_GUARD(kbr_sqlite_stmt(s, SQ_MERKLE_NODE_GET,
                              "SELECT hash FROM merkle_nodes WHERE level = ?1 AND idx = ?2",
                              &stmt));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int(stmt, 1, (int)level)));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 2, idx)));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc != SQLITE_DONE, KBR_ERR_NOT_FOUND);
    KBR_ENSURE(rc == SQLITE_ROW, kbr_sqlite_err(rc));
    KBR_ENSURE(sqlite3_column_bytes(stmt, 0) == H, KBR_ERR_STORE);
    memcpy(out, sqlite3_column_blob(stmt, 0), H);
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_merkle_node_get(kbr_store *st, unsigned level, int64_t idx, unsigned char out[H])
{
    if (level == 0)
        return leaf_get((kbr_sqlite *)st, idx, out);
    return inner_get((kbr_sqlite *)st, level, idx, out);
}

kbr_err kbr_sqlite_merkle_node_put(kbr_store *st, unsigned level, int64_t idx,
                                   const unsigned char hash[H])
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    KBR_ENSURE(level >= 1, KBR_ERR_INTERNAL);
    KBR_GUARD(kbr_sqlite_stmt((kbr_sqlite *)st, SQ_MERKLE_NODE_PUT,
                              "INSERT INTO merkle_nodes(level, idx, hash) VALUES (?1, ?2, ?3)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int(stmt, 1, (int)level)));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 2, idx)));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_blob(stmt, 3, hash, H, SQLITE_STATIC)));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_checkpoint_insert(kbr_store *st, const kbr_fx_checkpoint *c, int64_t seq)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    const char *text[] = {c->root_hash,   c->time,           c->signature_b64, c->origin,
                          c->note,        c->key_id,         c->key_label,     c->public_key_pem,
                          c->next_key_id, c->next_key_label, c->next_key_pem};

    KBR_GUARD(kbr_sqlite_stmt((kbr_sqlite *)st, SQ_CHECKPOINT_INSERT,
                              "INSERT INTO checkpoints(audit_seq, size, root_hash, time,"
                              " signature_b64, origin, note, key_id, key_label, public_key_pem,"
                              " next_key_id, next_key_label, next_key_pem)"
                              " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                              &stmt));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 1, seq)));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 2, c->size)));
    for (int i = 0; i < (int)(sizeof(text) / sizeof(text[0])); i++)
        KBR_GUARD(kbr_sqlite_bind_text(stmt, 3 + i, text[i]));
    KBR_GUARD(kbr_sqlite_run(stmt));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_checkpoint_latest(kbr_store *st, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt((kbr_sqlite *)st, SQ_CHECKPOINT_LATEST,
                              "SELECT size, root_hash, time, signature_b64, audit_seq, origin,"
                              " note, key_id, key_label, public_key_pem, next_key_id,"
                              " next_key_label, next_key_pem"
                              " FROM checkpoints ORDER BY audit_seq DESC LIMIT 1",
                              &stmt));
    KBR_GUARD(kbr_sqlite_object(stmt, kbr_row_checkpoint, KBR_NCOLS(kbr_row_checkpoint), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_checkpoint_find(kbr_store *st, const char *signature_b64, bool *found)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;
    int rc;

    *found = false;
    KBR_GUARD(kbr_sqlite_stmt((kbr_sqlite *)st, SQ_CHECKPOINT_FIND,
                              "SELECT 1 FROM checkpoints WHERE signature_b64 = ?1", &stmt));
    KBR_GUARD(kbr_sqlite_bind_text(stmt, 1, signature_b64));
    rc = sqlite3_step(stmt);
    KBR_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, kbr_sqlite_err(rc));
    *found = rc == SQLITE_ROW;
out:
    kbr_sqlite_done(stmt);
    return err;
}

kbr_err kbr_sqlite_checkpoint_rotations(kbr_store *st, int64_t seq, json_t **out)
{
    kbr_err err = KBR_OK;
    sqlite3_stmt *stmt = NULL;

    *out = NULL;
    KBR_GUARD(kbr_sqlite_stmt((kbr_sqlite *)st, SQ_CHECKPOINT_ROTATIONS,
                              "SELECT size, root_hash, time, signature_b64, audit_seq, origin,"
                              " note, key_id, key_label, public_key_pem, next_key_id,"
                              " next_key_label, next_key_pem"
                              " FROM checkpoints WHERE next_key_pem IS NOT NULL AND audit_seq <= ?1"
                              " ORDER BY audit_seq",
                              &stmt));
    KBR_GUARD(kbr_sqlite_err(sqlite3_bind_int64(stmt, 1, seq)));
    KBR_GUARD(kbr_sqlite_objects(stmt, kbr_row_checkpoint, KBR_NCOLS(kbr_row_checkpoint), out));
out:
    kbr_sqlite_done(stmt);
    return err;
}
