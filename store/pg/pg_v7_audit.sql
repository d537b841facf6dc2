-- Version 7 of a PostgreSQL store: store/sql/v7_audit.sql in PostgreSQL terms (the audit
-- log's signed notes, audit key rotation, recovery):
--  - checkpoints are keyed by the entry that records them: a tree size may be signed more than
--    once (a rotation signs the head the last checkpoint signed, naming the next key), never
--    with the same signature twice.  Each keeps the signed note (origin, note), the key that
--    signed it (key_id, its C2SP note key ID; key_label, its HSM label; public_key_pem) and, for
--    a rotation, the key it names next (next_key_id, next_key_label, next_key_pem).
--    Checkpoints an older broker recorded have none of these.
--  - Everything here comes from the "checkpoint" effects of the entries, as before.
-- The step runs in the transaction that opens the store, under the schema lock (store/pg.c).

ALTER TABLE checkpoints RENAME TO checkpoints_v6;

CREATE TABLE checkpoints(
    audit_seq bigint PRIMARY KEY,
    size bigint NOT NULL,
    root_hash ctext NOT NULL,
    time ctext NOT NULL,
    signature_b64 ctext NOT NULL UNIQUE,
    origin ctext,
    note ctext,
    key_id ctext,
    key_label ctext,
    public_key_pem ctext,
    next_key_id ctext,
    next_key_label ctext,
    next_key_pem ctext,
    CHECK ((note IS NULL) = (key_id IS NULL) AND (key_id IS NULL) = (public_key_pem IS NULL)),
    CHECK ((next_key_pem IS NULL) = (next_key_id IS NULL) AND
        (next_key_pem IS NULL OR key_id IS NOT NULL)));

INSERT INTO checkpoints(audit_seq, size, root_hash, time, signature_b64)
    SELECT audit_seq, size, root_hash, time, signature_b64 FROM checkpoints_v6 ORDER BY size;

DROP TABLE checkpoints_v6;

CREATE INDEX checkpoints_size ON checkpoints(size);

UPDATE meta SET schema_version = 7;
