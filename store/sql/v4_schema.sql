-- Version 4 (evidence: the log is the source of truth):
--  - audit keeps the entry's canonical text and its hash; every other column is generated
--    from the entry, so no column can say what the hashed entry does not, and an UPDATE of
--    one is refused.  seq must be the entry's.  key_use is the entry's "key_use"; entries an
--    older broker wrote keep the flag it stored beside them in legacy_key_use.
--  - audit_products is filled from the entry's "products" by a trigger.
--  - documents: what entries name by SHA-256 (an SBOM as it was sent), each kept once, with
--    the first entry that named it; firmware.sbom_sha256 names a build's SBOM.
--  - log_effects: effects_from is the first seq whose entry carries its ledger effects.
--    Entries before it were written by an older broker: the facts they recorded cannot be
--    rebuilt from the log (keybrokerd --verify-store says so).

DROP TRIGGER IF EXISTS audit_token_use;

DROP TRIGGER IF EXISTS audit_key_operation;

DROP INDEX IF EXISTS audit_jti;

DROP INDEX IF EXISTS audit_key_sub_op;

ALTER TABLE audit RENAME TO audit_v3;

CREATE TABLE audit(
    seq INTEGER PRIMARY KEY
        CHECK (legacy_key_use IS NOT NULL OR seq = json_extract(entry, '$.seq')),
    entry TEXT NOT NULL CHECK (json_valid(entry)),
    hash TEXT NOT NULL,
    legacy_key_use INTEGER,
    time TEXT GENERATED ALWAYS AS (json_extract(entry, '$.time')) VIRTUAL NOT NULL,
    sub TEXT GENERATED ALWAYS AS (json_extract(entry, '$.sub')) VIRTUAL,
    jti TEXT GENERATED ALWAYS AS (json_extract(entry, '$.jti')) VIRTUAL,
    op TEXT GENERATED ALWAYS AS (json_extract(entry, '$.op')) VIRTUAL,
    key TEXT GENERATED ALWAYS AS (json_extract(entry, '$.key')) VIRTUAL,
    outcome TEXT GENERATED ALWAYS AS (json_extract(entry, '$.outcome')) VIRTUAL NOT NULL,
    error_code TEXT GENERATED ALWAYS AS (json_extract(entry, '$.error_code')) VIRTUAL,
    prev_hash TEXT GENERATED ALWAYS AS (json_extract(entry, '$.prev_hash')) VIRTUAL NOT NULL,
    key_use INTEGER GENERATED ALWAYS AS
        (coalesce(json_extract(entry, '$.key_use'), legacy_key_use, 0)) VIRTUAL);

INSERT INTO audit(seq, entry, hash, legacy_key_use)
    SELECT seq, entry, hash, key_use FROM audit_v3 ORDER BY seq;

DROP TABLE audit_v3;

CREATE INDEX audit_jti ON audit(jti);

CREATE INDEX audit_key_sub_op ON audit(key, sub, op);

CREATE TRIGGER audit_token_use AFTER INSERT ON audit
    WHEN new.key_use = 1 AND new.outcome = 'ok' AND new.jti IS NOT NULL BEGIN
    INSERT INTO token_usage(jti, uses, last_used_at) VALUES (new.jti, 1, new.time)
    ON CONFLICT(jti) DO UPDATE SET uses = uses + 1, last_used_at = excluded.last_used_at;
    END;

CREATE TRIGGER audit_key_operation AFTER INSERT ON audit
    WHEN new.key IS NOT NULL BEGIN
    INSERT INTO key_operations(key, sub, op, outcome, count, last_at, last_seq)
    VALUES (new.key, coalesce(new.sub, ''), coalesce(new.op, ''), new.outcome, 1, new.time,
    new.seq) ON CONFLICT(key, sub, op, outcome) DO UPDATE SET count = count + 1,
    last_at = excluded.last_at, last_seq = excluded.last_seq;
    END;

CREATE TRIGGER audit_products_of AFTER INSERT ON audit
    WHEN json_type(new.entry, '$.products') = 'array' BEGIN
    INSERT OR IGNORE INTO audit_products(product, seq)
    SELECT value, new.seq FROM json_each(new.entry, '$.products') WHERE type = 'text';
    END;

ALTER TABLE firmware ADD COLUMN sbom_sha256 TEXT;

CREATE TABLE documents(
    sha256 TEXT PRIMARY KEY, body BLOB NOT NULL, audit_seq INTEGER NOT NULL);

CREATE TABLE log_effects(effects_from INTEGER NOT NULL);

INSERT INTO log_effects(effects_from) SELECT coalesce(max(seq), 0) + 1 FROM audit;

UPDATE meta SET schema_version = 4;
