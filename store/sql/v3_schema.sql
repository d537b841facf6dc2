-- Version 3 (custody boundaries):
--  - tokens.parent_jti and tokens.orphan: the token tree.  A token issued under another names
--    it, so revoking the parent revokes it; an orphan stands alone.  Tokens recorded before
--    have no parent.
--  - keys.public_key_sha256, and one registry entry per HSM object: unique by label, by
--    CKA_ID (when it has one) and by public key, retired keys included (registering the
--    object again would undo its retirement).  Keys recorded before get the hash from their
--    public_key_pem; a store in which two entries already name one object does not open,
--    and the message names them.
--  - audit_products: the products each audit entry is about (its "products"), which bound
--    what a reader limited to products sees.  Entries recorded before are about none.
--  - debug_challenges: a challenge is answered once per device, whatever the key; the
--    table is rebuilt with that key, keeping every answer.
--
-- This part runs before the keys' public keys are hashed (sqlite_migrate.c).

ALTER TABLE tokens ADD COLUMN parent_jti TEXT;

ALTER TABLE tokens ADD COLUMN orphan INTEGER NOT NULL DEFAULT 0;

CREATE INDEX tokens_parent ON tokens(parent_jti) WHERE parent_jti IS NOT NULL;

ALTER TABLE keys ADD COLUMN public_key_sha256 TEXT;

CREATE TABLE audit_products(product TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY(product, seq)) WITHOUT ROWID;

DROP TRIGGER IF EXISTS debug_relate;

ALTER TABLE debug_challenges RENAME TO debug_challenges_v2;

CREATE TABLE debug_challenges(
    key TEXT NOT NULL REFERENCES keys(name), challenge_sha256 TEXT NOT NULL,
    product TEXT NOT NULL, serial TEXT NOT NULL, at TEXT NOT NULL,
    audit_seq INTEGER NOT NULL, PRIMARY KEY(product, serial, challenge_sha256),
    FOREIGN KEY(product, serial) REFERENCES devices(product, serial)) WITHOUT ROWID;

--  a device's challenge answered by two keys before this version: the first answer stays
INSERT OR IGNORE INTO debug_challenges SELECT key, challenge_sha256, product, serial, at,
    audit_seq FROM debug_challenges_v2 ORDER BY audit_seq;

DROP TABLE debug_challenges_v2;

CREATE TRIGGER debug_relate AFTER INSERT ON debug_challenges BEGIN
    INSERT OR IGNORE INTO key_relations(product, key, role)
    VALUES (new.product, new.key, 'debug-auth');
    END;
