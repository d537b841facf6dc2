-- Version 7, the audit log's part (signed notes, audit key rotation, recovery):
--  - checkpoints are keyed by the entry that records them: a tree size may be signed more than
--    once (a rotation signs the head the last checkpoint signed, naming the next key), never
--    with the same signature twice.  Each keeps the signed note (origin, note), the key that
--    signed it (key_id, its C2SP note key ID; key_label, its HSM label; public_key_pem) and, for
--    a rotation, the key it names next (next_key_id, next_key_label, next_key_pem).
--    Checkpoints an older broker recorded have none of these.
--  - Everything here comes from the "checkpoint" effects of the entries, as before.

ALTER TABLE checkpoints RENAME TO checkpoints_v6;

CREATE TABLE checkpoints(
    audit_seq INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    root_hash TEXT NOT NULL,
    time TEXT NOT NULL,
    signature_b64 TEXT NOT NULL UNIQUE,
    origin TEXT,
    note TEXT,
    key_id TEXT,
    key_label TEXT,
    public_key_pem TEXT,
    next_key_id TEXT,
    next_key_label TEXT,
    next_key_pem TEXT,
    CHECK ((note IS NULL) = (key_id IS NULL) AND (key_id IS NULL) = (public_key_pem IS NULL)),
    CHECK ((next_key_pem IS NULL) = (next_key_id IS NULL) AND
        (next_key_pem IS NULL OR key_id IS NOT NULL)));

INSERT INTO checkpoints(audit_seq, size, root_hash, time, signature_b64)
    SELECT audit_seq, size, root_hash, time, signature_b64 FROM checkpoints_v6 ORDER BY size;

DROP TABLE checkpoints_v6;

CREATE INDEX checkpoints_size ON checkpoints(size);
