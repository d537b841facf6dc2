-- Version 1, kept as it was: a new store is created at version 1 and taken through the
-- same steps as a store written by an older broker (v2_*.sql, v3_*.sql, sqlite_migrate.c).
--
-- Version 1: the data model of docs/architecture.md.  Times are RFC 3339 UTC text,
-- lists and scopes canonical JSON text; audit_seq names the audit entry
-- that recorded the fact.  The tables later features fill exist from the
-- start so their data never needs a migration of the core tables.
-- Certificates of keys and devices share one table, so expiry queries see
-- them all; a certificate is never deleted, a newer one supersedes it.
-- batches.provisioned is kept with each device insert, in the same
-- transaction, so the quota check costs one row and not a count.
-- Foreign keys tie every certificate, device and event to what it names.
-- devices.current_firmware follows the factory image and OTA "installed"
-- reports by their `at` (reports may arrive out of order); device_firmware
-- keeps every report.

CREATE TABLE IF NOT EXISTS meta(schema_version INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS audit(
    seq INTEGER PRIMARY KEY, time TEXT NOT NULL, sub TEXT, jti TEXT, op TEXT, key TEXT,
    outcome TEXT NOT NULL, error_code TEXT, key_use INTEGER NOT NULL DEFAULT 0,
    entry TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);

CREATE INDEX IF NOT EXISTS audit_jti ON audit(jti);

--  The audit tree's perfect subtrees above the leaves (the leaves are audit.hash), written
-- with the entry that completes them; checkpoints are the signed tree heads.
CREATE TABLE IF NOT EXISTS merkle_nodes(
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY(level, idx)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS checkpoints(
    size INTEGER PRIMARY KEY, root_hash TEXT NOT NULL, time TEXT NOT NULL,
    signature_b64 TEXT NOT NULL, audit_seq INTEGER NOT NULL);

CREATE INDEX IF NOT EXISTS audit_key_sub_op ON audit(key, sub, op);

CREATE TABLE IF NOT EXISTS keys(
    name TEXT PRIMARY KEY, purpose TEXT NOT NULL, algorithm TEXT NOT NULL,
    products TEXT NOT NULL, owner TEXT, hsm_label TEXT, hsm_id TEXT, public_key_pem TEXT,
    state TEXT NOT NULL DEFAULT 'active', created_at TEXT NOT NULL, retired_at TEXT,
    audit_seq INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS tokens(
    jti TEXT PRIMARY KEY, sub TEXT NOT NULL, scope TEXT NOT NULL, issued_by TEXT,
    issued_at TEXT NOT NULL, not_before TEXT, expires_at TEXT NOT NULL, cnf_x5t TEXT,
    revoked_at TEXT, revoke_reason TEXT, audit_seq INTEGER NOT NULL);

CREATE INDEX IF NOT EXISTS tokens_sub ON tokens(sub);

CREATE TABLE IF NOT EXISTS firmware(
    product TEXT NOT NULL, version TEXT NOT NULL, digest TEXT NOT NULL, hash TEXT,
    key TEXT, name TEXT, build_id TEXT, signed_at TEXT NOT NULL, audit_seq INTEGER NOT NULL,
    PRIMARY KEY(product, version));

CREATE TABLE IF NOT EXISTS components(
    product TEXT NOT NULL, version TEXT NOT NULL, name TEXT NOT NULL, cversion TEXT,
    purl TEXT, FOREIGN KEY(product, version) REFERENCES firmware(product, version));

CREATE INDEX IF NOT EXISTS components_build ON components(product, version);

CREATE INDEX IF NOT EXISTS components_name ON components(name);

CREATE INDEX IF NOT EXISTS components_purl ON components(purl);

CREATE TABLE IF NOT EXISTS batches(
    batch TEXT PRIMARY KEY, product TEXT NOT NULL, factory TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK(quantity >= 1), markets TEXT NOT NULL,
    provisioned INTEGER NOT NULL DEFAULT 0 CHECK(provisioned BETWEEN 0 AND quantity),
    created_at TEXT NOT NULL, created_by TEXT NOT NULL, audit_seq INTEGER NOT NULL);

--  WITHOUT ROWID: a product's devices lie in serial order, so a walk of the fleet reads
-- the table itself.  history names the set of builds the device ever ran.
CREATE TABLE IF NOT EXISTS devices(
    product TEXT NOT NULL, serial TEXT NOT NULL, batch TEXT REFERENCES batches(batch),
    factory TEXT, firmware_version TEXT, csr_sha256 TEXT, provisioned_at TEXT NOT NULL,
    current_firmware TEXT, current_firmware_at TEXT,
    history INTEGER REFERENCES firmware_histories(id),
    audit_seq INTEGER NOT NULL, PRIMARY KEY(product, serial)) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS devices_batch ON devices(batch);

--  Covers the exposure view's walk over every product in serial order.
CREATE INDEX IF NOT EXISTS devices_serial
    ON devices(serial, product, history, current_firmware, batch);

CREATE INDEX IF NOT EXISTS devices_current_firmware ON devices(product, current_firmware);

CREATE INDEX IF NOT EXISTS devices_history
    ON devices(history, current_firmware, serial, batch);

CREATE TABLE IF NOT EXISTS certificates(
    id INTEGER PRIMARY KEY,
    owner_kind TEXT NOT NULL CHECK(owner_kind IN ('key', 'device')),
    key_name TEXT REFERENCES keys(name), product TEXT, device_serial TEXT,
    serial_number TEXT NOT NULL, fingerprint TEXT NOT NULL UNIQUE, pem TEXT NOT NULL,
    chain_pem TEXT NOT NULL, not_after TEXT NOT NULL, issued_at TEXT NOT NULL,
    superseded_at TEXT, issuer_key TEXT REFERENCES keys(name), audit_seq INTEGER NOT NULL,
    CHECK((owner_kind = 'key' AND key_name IS NOT NULL AND product IS NULL
    AND device_serial IS NULL)
    OR (owner_kind = 'device' AND key_name IS NULL AND product IS NOT NULL
    AND device_serial IS NOT NULL)),
    FOREIGN KEY(product, device_serial) REFERENCES devices(product, serial));

CREATE INDEX IF NOT EXISTS certificates_device ON certificates(product, device_serial);

CREATE INDEX IF NOT EXISTS certificates_key ON certificates(key_name);

CREATE INDEX IF NOT EXISTS certificates_not_after ON certificates(not_after);

--  The key object shows one certificate, so a key has at most one current.
CREATE UNIQUE INDEX IF NOT EXISTS certificates_key_current ON certificates(key_name)
    WHERE owner_kind = 'key' AND superseded_at IS NULL;

--  RFC 5280 4.1.2.2: a CA never reuses a serial number (revocation names it).
CREATE UNIQUE INDEX IF NOT EXISTS certificates_issuer_serial
    ON certificates(issuer_key, serial_number) WHERE owner_kind = 'device';

CREATE TABLE IF NOT EXISTS device_events(
    id INTEGER PRIMARY KEY, product TEXT NOT NULL, serial TEXT NOT NULL,
    kind TEXT NOT NULL CHECK(kind IN ('provisioned', 'rotated', 'debug-auth',
    'ota-installed', 'ota-failed')), at TEXT NOT NULL, detail TEXT NOT NULL,
    audit_seq INTEGER NOT NULL,
    FOREIGN KEY(product, serial) REFERENCES devices(product, serial));

CREATE INDEX IF NOT EXISTS device_events_device ON device_events(product, serial, id);

--  Factory images need not be builds this broker signed, so no reference to firmware.
CREATE TABLE IF NOT EXISTS device_firmware(
    id INTEGER PRIMARY KEY, product TEXT NOT NULL, serial TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL CHECK(status IN ('factory', 'installed', 'failed')),
    at TEXT NOT NULL, campaign TEXT, audit_seq INTEGER NOT NULL,
    FOREIGN KEY(product, serial) REFERENCES devices(product, serial));

CREATE INDEX IF NOT EXISTS device_firmware_device ON device_firmware(product, serial, at);

CREATE INDEX IF NOT EXISTS device_firmware_version ON device_firmware(product, version);

--  The primary key is the replay rule: a key answers a challenge once, across restarts.
CREATE TABLE IF NOT EXISTS debug_challenges(
    key TEXT NOT NULL REFERENCES keys(name), challenge_sha256 TEXT NOT NULL,
    product TEXT NOT NULL, serial TEXT NOT NULL, at TEXT NOT NULL,
    audit_seq INTEGER NOT NULL, PRIMARY KEY(key, challenge_sha256),
    FOREIGN KEY(product, serial) REFERENCES devices(product, serial));

CREATE INDEX IF NOT EXISTS batches_product ON batches(product);

-- What the custody views read instead of scanning the ledger.  Triggers keep
-- each table in the transaction that changes what it summarizes, so a view
-- over a million devices or millions of audit rows reads a few counter rows
-- and never disagrees with the ledger:
--  - key_relations: why a product depends on a key (its registry entry names
--    the product, or the key signed the product's firmware, issued its device
--    certificates or answered a debug challenge of one of its devices);
--  - token_keys: the "keys" entries of each token's scope ('*' when the
--    scope has no list), so the tokens reaching a key are index lookups;
--  - token_usage and key_operations: key uses per token, and audit entries
--    per (key, sub, op, outcome), counted as the audit rows are inserted;
--  - device_cert_expiry: current device certificates per (product, day of
--    not_after);
--  - fleet_firmware: devices per (product, current firmware, batch);
--  - firmware_histories: each distinct set of builds that devices of a product
--    ever ran (factory image or installed OTA), with firmware_history_versions
--    as its index by version and history_firmware counting its devices per
--    current firmware.  Fleets move through a few campaigns, so there are few
--    such sets, and "devices that ever ran one of these builds" is a sum over
--    the sets that hold one, not a distinct count over the firmware history.
-- Counters are not deleted at zero; readers skip zero rows.

CREATE TABLE IF NOT EXISTS key_relations(
    product TEXT NOT NULL, key TEXT NOT NULL, role TEXT NOT NULL,
    PRIMARY KEY(product, key, role)) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS keys_relate AFTER INSERT ON keys BEGIN
    INSERT OR IGNORE INTO key_relations(product, key, role)
    SELECT value, new.name, 'registered' FROM json_each(new.products) WHERE type = 'text';
    END;

CREATE TRIGGER IF NOT EXISTS firmware_relate AFTER INSERT ON firmware
    WHEN new.key IS NOT NULL BEGIN
    INSERT OR IGNORE INTO key_relations(product, key, role)
    VALUES (new.product, new.key, 'firmware-signing');
    END;

CREATE TRIGGER IF NOT EXISTS certificates_relate AFTER INSERT ON certificates
    WHEN new.owner_kind = 'device' AND new.issuer_key IS NOT NULL BEGIN
    INSERT OR IGNORE INTO key_relations(product, key, role)
    VALUES (new.product, new.issuer_key, 'device-certificates');
    END;

CREATE TRIGGER IF NOT EXISTS debug_relate AFTER INSERT ON debug_challenges BEGIN
    INSERT OR IGNORE INTO key_relations(product, key, role)
    VALUES (new.product, new.key, 'debug-auth');
    END;

CREATE TABLE IF NOT EXISTS token_keys(
    pattern TEXT NOT NULL, jti TEXT NOT NULL, PRIMARY KEY(pattern, jti)) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS tokens_keys AFTER INSERT ON tokens BEGIN
    INSERT OR IGNORE INTO token_keys(pattern, jti)
    SELECT value, new.jti FROM json_each(new.scope, '$.keys') WHERE type = 'text';
    INSERT OR IGNORE INTO token_keys(pattern, jti) SELECT '*', new.jti
    WHERE coalesce(json_type(new.scope, '$.keys'), 'null') = 'null';
    END;

CREATE INDEX IF NOT EXISTS tokens_expires ON tokens(expires_at);

CREATE TABLE IF NOT EXISTS token_usage(
    jti TEXT PRIMARY KEY, uses INTEGER NOT NULL, last_used_at TEXT NOT NULL) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS audit_token_use AFTER INSERT ON audit
    WHEN new.key_use = 1 AND new.outcome = 'ok' AND new.jti IS NOT NULL BEGIN
    INSERT INTO token_usage(jti, uses, last_used_at) VALUES (new.jti, 1, new.time)
    ON CONFLICT(jti) DO UPDATE SET uses = uses + 1, last_used_at = excluded.last_used_at;
    END;

CREATE TABLE IF NOT EXISTS key_operations(
    key TEXT NOT NULL, sub TEXT NOT NULL, op TEXT NOT NULL, outcome TEXT NOT NULL,
    count INTEGER NOT NULL, last_at TEXT NOT NULL, last_seq INTEGER NOT NULL,
    PRIMARY KEY(key, sub, op, outcome)) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS audit_key_operation AFTER INSERT ON audit
    WHEN new.key IS NOT NULL BEGIN
    INSERT INTO key_operations(key, sub, op, outcome, count, last_at, last_seq)
    VALUES (new.key, coalesce(new.sub, ''), coalesce(new.op, ''), new.outcome, 1, new.time,
    new.seq) ON CONFLICT(key, sub, op, outcome) DO UPDATE SET count = count + 1,
    last_at = excluded.last_at, last_seq = excluded.last_seq;
    END;

CREATE TABLE IF NOT EXISTS device_cert_expiry(
    product TEXT NOT NULL, day TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY(product, day)) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS certificates_device_expiry ON certificates(product, not_after)
    WHERE owner_kind = 'device' AND superseded_at IS NULL;

CREATE TRIGGER IF NOT EXISTS certificates_expiry_add AFTER INSERT ON certificates
    WHEN new.owner_kind = 'device' AND new.superseded_at IS NULL BEGIN
    INSERT INTO device_cert_expiry(product, day, count)
    VALUES (new.product, substr(new.not_after, 1, 10), 1)
    ON CONFLICT(product, day) DO UPDATE SET count = count + 1;
    END;

CREATE TRIGGER IF NOT EXISTS certificates_expiry_drop AFTER UPDATE OF superseded_at
    ON certificates WHEN new.owner_kind = 'device' AND old.superseded_at IS NULL
    AND new.superseded_at IS NOT NULL BEGIN
    UPDATE device_cert_expiry SET count = count - 1
    WHERE product = new.product AND day = substr(new.not_after, 1, 10);
    END;

CREATE TABLE IF NOT EXISTS fleet_firmware(
    product TEXT NOT NULL, firmware TEXT NOT NULL, batch TEXT NOT NULL,
    count INTEGER NOT NULL, PRIMARY KEY(product, firmware, batch)) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS devices_fleet_add AFTER INSERT ON devices BEGIN
    INSERT INTO fleet_firmware(product, firmware, batch, count)
    VALUES (new.product, coalesce(new.current_firmware, ''), coalesce(new.batch, ''), 1)
    ON CONFLICT(product, firmware, batch) DO UPDATE SET count = count + 1;
    END;

CREATE TRIGGER IF NOT EXISTS devices_fleet_move AFTER UPDATE OF current_firmware
    ON devices WHEN old.current_firmware IS NOT new.current_firmware BEGIN
    UPDATE fleet_firmware SET count = count - 1 WHERE product = old.product
    AND firmware = coalesce(old.current_firmware, '') AND batch = coalesce(old.batch, '');
    INSERT INTO fleet_firmware(product, firmware, batch, count)
    VALUES (new.product, coalesce(new.current_firmware, ''), coalesce(new.batch, ''), 1)
    ON CONFLICT(product, firmware, batch) DO UPDATE SET count = count + 1;
    END;

CREATE TABLE IF NOT EXISTS firmware_histories(
    id INTEGER PRIMARY KEY, product TEXT NOT NULL, versions TEXT NOT NULL,
    UNIQUE(product, versions));

CREATE TABLE IF NOT EXISTS firmware_history_versions(
    product TEXT NOT NULL, version TEXT NOT NULL,
    history INTEGER NOT NULL REFERENCES firmware_histories(id),
    PRIMARY KEY(product, version, history)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS history_firmware(
    history INTEGER NOT NULL, firmware TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY(history, firmware)) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS devices_history_move AFTER UPDATE OF history, current_firmware
    ON devices WHEN old.history IS NOT new.history
    OR old.current_firmware IS NOT new.current_firmware BEGIN
    UPDATE history_firmware SET count = count - 1
    WHERE history = old.history AND firmware = coalesce(old.current_firmware, '');
    INSERT INTO history_firmware(history, firmware, count)
    SELECT new.history, coalesce(new.current_firmware, ''), 1 WHERE new.history IS NOT NULL
    ON CONFLICT(history, firmware) DO UPDATE SET count = count + 1;
    END;

CREATE TABLE IF NOT EXISTS checkpoints(
    size INTEGER PRIMARY KEY, root_hash TEXT NOT NULL, time TEXT NOT NULL,
    signature TEXT NOT NULL);
