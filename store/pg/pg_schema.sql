-- The PostgreSQL back end's schema: the tables, derived columns and counters of the SQLite
-- schema as SQLite reaches version 6 (store/sql/v1.sql to v6_revoke.sql), in one step.  A
-- PostgreSQL store starts at version 6; a later version adds a file beside this one, as
-- store/sql/ does.  What differs, and why:
--  - Text is "ctext", text in the "C" collation, so text compares bytewise as in SQLite
--    (serial order, the purl prefix ranges, the order of every list) whatever the
--    database's own collation.
--  - The audit columns derived from the entry are STORED generated columns (PostgreSQL has
--    no virtual ones); entry is kept as text, the canonical bytes that were hashed.
--  - Triggers are PL/pgSQL functions; RAISE with a constraint's SQLSTATE where SQLite
--    raises ABORT, so a refused effect is a constraint on both.
--  - components and device_keys get what SQLite's rowid gave them: components.id keeps
--    SBOM order.
--  - writer_lock is the one row every writer locks first (FOR UPDATE) in each group
--    commit: several brokers on one database then append to one log in one total order.
--    The broker that makes the periodic checkpoints holds a session advisory lock instead
--    (store/pg.c), which ends with its connection.
--  - kbr_name_matches is the scope rule of common/names.c as an SQL function.
-- Every object is created in the connection's current schema (search_path), so one
-- database can hold several stores, one per schema.

DO $$ BEGIN
    CREATE DOMAIN ctext AS text COLLATE "C";
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE OR REPLACE FUNCTION kbr_name_matches(pattern text, name text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN right(pattern, 1) = '*' THEN starts_with(name, left(pattern, -1))
        ELSE name = pattern END
$$;

CREATE TABLE meta(schema_version bigint NOT NULL);

CREATE TABLE writer_lock(id integer PRIMARY KEY CHECK (id = 1));
INSERT INTO writer_lock(id) VALUES (1);

CREATE TABLE audit(
    seq bigint PRIMARY KEY
        CHECK (legacy_key_use IS NOT NULL OR seq = (entry::jsonb ->> 'seq')::bigint),
    entry ctext NOT NULL CHECK (jsonb_typeof(entry::jsonb) = 'object'),
    hash ctext NOT NULL,
    legacy_key_use bigint,
    time ctext GENERATED ALWAYS AS (entry::jsonb ->> 'time') STORED NOT NULL,
    sub ctext GENERATED ALWAYS AS (entry::jsonb ->> 'sub') STORED,
    jti ctext GENERATED ALWAYS AS (entry::jsonb ->> 'jti') STORED,
    op ctext GENERATED ALWAYS AS (entry::jsonb ->> 'op') STORED,
    key ctext GENERATED ALWAYS AS (entry::jsonb ->> 'key') STORED,
    outcome ctext GENERATED ALWAYS AS (entry::jsonb ->> 'outcome') STORED NOT NULL,
    error_code ctext GENERATED ALWAYS AS (entry::jsonb ->> 'error_code') STORED,
    prev_hash ctext GENERATED ALWAYS AS (entry::jsonb ->> 'prev_hash') STORED NOT NULL,
    key_use bigint GENERATED ALWAYS AS
        (coalesce((entry::jsonb ->> 'key_use')::boolean::int, legacy_key_use, 0)) STORED);

CREATE INDEX audit_jti ON audit(jti);
CREATE INDEX audit_key_sub_op ON audit(key, sub, op);

CREATE TABLE audit_products(product ctext NOT NULL, seq bigint NOT NULL,
    PRIMARY KEY(product, seq));

CREATE TABLE merkle_nodes(
    level bigint NOT NULL, idx bigint NOT NULL, hash bytea NOT NULL, PRIMARY KEY(level, idx));

CREATE TABLE checkpoints(
    size bigint PRIMARY KEY, root_hash ctext NOT NULL, time ctext NOT NULL,
    signature_b64 ctext NOT NULL, audit_seq bigint NOT NULL);

CREATE TABLE documents(sha256 ctext PRIMARY KEY, body bytea NOT NULL, audit_seq bigint NOT NULL);

CREATE TABLE log_effects(effects_from bigint NOT NULL);
INSERT INTO log_effects(effects_from) VALUES (1);

CREATE TABLE keys(
    name ctext PRIMARY KEY, purpose ctext NOT NULL, algorithm ctext NOT NULL,
    products ctext NOT NULL, owner ctext, hsm_label ctext, hsm_id ctext, public_key_pem ctext,
    state ctext NOT NULL DEFAULT 'active', created_at ctext NOT NULL, retired_at ctext,
    audit_seq bigint NOT NULL, public_key_sha256 ctext);

CREATE UNIQUE INDEX keys_hsm_label ON keys(hsm_label) WHERE hsm_label IS NOT NULL;
CREATE UNIQUE INDEX keys_hsm_id ON keys(hsm_id) WHERE hsm_id IS NOT NULL AND hsm_id <> '';
CREATE UNIQUE INDEX keys_public_key ON keys(public_key_sha256)
    WHERE public_key_sha256 IS NOT NULL;

CREATE TABLE issuer_keys(
    kid ctext PRIMARY KEY, hsm_label ctext NOT NULL UNIQUE, public_key_pem ctext NOT NULL,
    public_key_sha256 ctext NOT NULL UNIQUE, activated_at ctext NOT NULL, replaced_at ctext,
    audit_seq bigint NOT NULL);

CREATE UNIQUE INDEX issuer_keys_current ON issuer_keys((replaced_at IS NULL))
    WHERE replaced_at IS NULL;

CREATE TABLE tokens(
    jti ctext PRIMARY KEY, sub ctext NOT NULL, scope ctext NOT NULL, issued_by ctext,
    issued_at ctext NOT NULL, not_before ctext, expires_at ctext NOT NULL, cnf_x5t ctext,
    revoked_at ctext, revoke_reason ctext, audit_seq bigint NOT NULL, parent_jti ctext,
    orphan bigint NOT NULL DEFAULT 0, kid ctext REFERENCES issuer_keys(kid));

CREATE INDEX tokens_sub ON tokens(sub);
CREATE INDEX tokens_expires ON tokens(expires_at);
CREATE INDEX tokens_parent ON tokens(parent_jti) WHERE parent_jti IS NOT NULL;
CREATE INDEX tokens_kid ON tokens(kid, expires_at);

CREATE TABLE firmware(
    product ctext NOT NULL, version ctext NOT NULL, digest ctext NOT NULL, hash ctext,
    key ctext, name ctext, build_id ctext, signed_at ctext NOT NULL, audit_seq bigint NOT NULL,
    sbom_sha256 ctext, PRIMARY KEY(product, version));

CREATE TABLE components(
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product ctext NOT NULL, version ctext NOT NULL, name ctext NOT NULL, cversion ctext,
    purl ctext, FOREIGN KEY(product, version) REFERENCES firmware(product, version));

CREATE INDEX components_build ON components(product, version);
CREATE INDEX components_name ON components(name);
CREATE INDEX components_purl ON components(purl);

CREATE TABLE batches(
    batch ctext PRIMARY KEY, product ctext NOT NULL, factory ctext NOT NULL,
    quantity bigint NOT NULL CHECK(quantity >= 1), markets ctext NOT NULL,
    provisioned bigint NOT NULL DEFAULT 0 CHECK(provisioned BETWEEN 0 AND quantity),
    created_at ctext NOT NULL, created_by ctext NOT NULL, audit_seq bigint NOT NULL);

CREATE INDEX batches_product ON batches(product);

CREATE TABLE firmware_histories(
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, product ctext NOT NULL,
    versions ctext NOT NULL, UNIQUE(product, versions));

CREATE TABLE devices(
    product ctext NOT NULL, serial ctext NOT NULL, batch ctext REFERENCES batches(batch),
    factory ctext, firmware_version ctext, csr_sha256 ctext, provisioned_at ctext NOT NULL,
    current_firmware ctext, current_firmware_at ctext,
    history bigint REFERENCES firmware_histories(id),
    audit_seq bigint NOT NULL, public_key_sha256 ctext, PRIMARY KEY(product, serial));

CREATE INDEX devices_batch ON devices(batch);
CREATE INDEX devices_serial ON devices(serial, product, history, current_firmware, batch);
CREATE INDEX devices_current_firmware ON devices(product, current_firmware);
CREATE INDEX devices_history ON devices(history, current_firmware, serial, batch);

CREATE TABLE device_keys(key ctext PRIMARY KEY, product ctext NOT NULL, serial ctext NOT NULL);

CREATE TABLE certificates(
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    owner_kind ctext NOT NULL CHECK(owner_kind IN ('key', 'device')),
    key_name ctext REFERENCES keys(name), product ctext, device_serial ctext,
    serial_number ctext NOT NULL, fingerprint ctext NOT NULL UNIQUE, pem ctext NOT NULL,
    chain_pem ctext NOT NULL, not_after ctext NOT NULL, issued_at ctext NOT NULL,
    superseded_at ctext, issuer_key ctext REFERENCES keys(name), audit_seq bigint NOT NULL,
    CHECK((owner_kind = 'key' AND key_name IS NOT NULL AND product IS NULL
    AND device_serial IS NULL)
    OR (owner_kind = 'device' AND key_name IS NULL AND product IS NOT NULL
    AND device_serial IS NOT NULL)),
    FOREIGN KEY(product, device_serial) REFERENCES devices(product, serial));

CREATE INDEX certificates_device ON certificates(product, device_serial);
CREATE INDEX certificates_key ON certificates(key_name);
CREATE INDEX certificates_not_after ON certificates(not_after);
CREATE UNIQUE INDEX certificates_key_current ON certificates(key_name)
    WHERE owner_kind = 'key' AND superseded_at IS NULL;
CREATE UNIQUE INDEX certificates_issuer_serial
    ON certificates(issuer_key, serial_number) WHERE owner_kind = 'device';
CREATE INDEX certificates_device_expiry ON certificates(product, not_after)
    WHERE owner_kind = 'device' AND superseded_at IS NULL;

CREATE TABLE device_events(
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, product ctext NOT NULL,
    serial ctext NOT NULL,
    kind ctext NOT NULL CHECK(kind IN ('provisioned', 'rotated', 'debug-auth',
    'ota-installed', 'ota-failed')), at ctext NOT NULL, detail ctext NOT NULL,
    audit_seq bigint NOT NULL,
    FOREIGN KEY(product, serial) REFERENCES devices(product, serial));

CREATE INDEX device_events_device ON device_events(product, serial, id);

CREATE TABLE device_firmware(
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, product ctext NOT NULL,
    serial ctext NOT NULL, version ctext NOT NULL,
    status ctext NOT NULL CHECK(status IN ('factory', 'installed', 'failed')),
    at ctext NOT NULL, campaign ctext, audit_seq bigint NOT NULL,
    FOREIGN KEY(product, serial) REFERENCES devices(product, serial));

CREATE INDEX device_firmware_device ON device_firmware(product, serial, at);
CREATE INDEX device_firmware_version ON device_firmware(product, version);
CREATE UNIQUE INDEX device_firmware_fact
    ON device_firmware(product, serial, version, status, at);

CREATE TABLE debug_challenges(
    key ctext NOT NULL REFERENCES keys(name), challenge_sha256 ctext NOT NULL,
    product ctext NOT NULL, serial ctext NOT NULL, at ctext NOT NULL,
    audit_seq bigint NOT NULL, PRIMARY KEY(product, serial, challenge_sha256),
    FOREIGN KEY(product, serial) REFERENCES devices(product, serial));

CREATE TABLE device_revocations(
    product ctext NOT NULL, serial ctext NOT NULL, revoked_at ctext NOT NULL,
    reason ctext NOT NULL, reason_code bigint NOT NULL, revoked_by ctext NOT NULL,
    audit_seq bigint NOT NULL, PRIMARY KEY(product, serial),
    FOREIGN KEY(product, serial) REFERENCES devices(product, serial));

CREATE TABLE certificate_revocations(
    fingerprint ctext PRIMARY KEY REFERENCES certificates(fingerprint),
    issuer_key ctext NOT NULL REFERENCES keys(name), serial_number ctext NOT NULL,
    revoked_at ctext NOT NULL, reason_code bigint NOT NULL, audit_seq bigint NOT NULL);

CREATE INDEX certificate_revocations_issuer
    ON certificate_revocations(issuer_key, revoked_at, serial_number);

CREATE TABLE crls(
    issuer_key ctext NOT NULL REFERENCES keys(name), number bigint NOT NULL CHECK(number >= 1),
    issuer_fingerprint ctext NOT NULL, this_update ctext NOT NULL,
    next_update ctext NOT NULL CHECK(next_update > this_update),
    entries bigint NOT NULL CHECK(entries >= 0), sha256 ctext NOT NULL,
    audit_seq bigint NOT NULL, PRIMARY KEY(issuer_key, number));

-- The views' counters, as store/sql/v1.sql describes them, kept by the same triggers.

CREATE TABLE key_relations(
    product ctext NOT NULL, key ctext NOT NULL, role ctext NOT NULL,
    PRIMARY KEY(product, key, role));

CREATE TABLE token_keys(pattern ctext NOT NULL, jti ctext NOT NULL, PRIMARY KEY(pattern, jti));

CREATE TABLE token_usage(jti ctext PRIMARY KEY, uses bigint NOT NULL, last_used_at ctext NOT NULL);

CREATE TABLE key_operations(
    key ctext NOT NULL, sub ctext NOT NULL, op ctext NOT NULL, outcome ctext NOT NULL,
    count bigint NOT NULL, last_at ctext NOT NULL, last_seq bigint NOT NULL,
    PRIMARY KEY(key, sub, op, outcome));

CREATE TABLE device_cert_expiry(
    product ctext NOT NULL, day ctext NOT NULL, count bigint NOT NULL, PRIMARY KEY(product, day));

CREATE TABLE fleet_firmware(
    product ctext NOT NULL, firmware ctext NOT NULL, batch ctext NOT NULL,
    count bigint NOT NULL, PRIMARY KEY(product, firmware, batch));

CREATE TABLE firmware_history_versions(
    product ctext NOT NULL, version ctext NOT NULL,
    history bigint NOT NULL REFERENCES firmware_histories(id),
    PRIMARY KEY(product, version, history));

CREATE TABLE history_firmware(
    history bigint NOT NULL, firmware ctext NOT NULL, count bigint NOT NULL,
    PRIMARY KEY(history, firmware));

CREATE FUNCTION kbr_keys_relate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO key_relations(product, key, role)
    SELECT e #>> '{}', NEW.name, 'registered' FROM jsonb_array_elements(NEW.products::jsonb) e
    WHERE jsonb_typeof(e) = 'string' ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER keys_relate AFTER INSERT ON keys FOR EACH ROW EXECUTE FUNCTION kbr_keys_relate();

CREATE FUNCTION kbr_firmware_relate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO key_relations(product, key, role) VALUES (NEW.product, NEW.key, 'firmware-signing')
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER firmware_relate AFTER INSERT ON firmware FOR EACH ROW
    WHEN (NEW.key IS NOT NULL) EXECUTE FUNCTION kbr_firmware_relate();

CREATE FUNCTION kbr_certificates_relate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO key_relations(product, key, role)
    VALUES (NEW.product, NEW.issuer_key, 'device-certificates') ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER certificates_relate AFTER INSERT ON certificates FOR EACH ROW
    WHEN (NEW.owner_kind = 'device' AND NEW.issuer_key IS NOT NULL)
    EXECUTE FUNCTION kbr_certificates_relate();

CREATE FUNCTION kbr_debug_relate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO key_relations(product, key, role) VALUES (NEW.product, NEW.key, 'debug-auth')
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER debug_relate AFTER INSERT ON debug_challenges FOR EACH ROW
    EXECUTE FUNCTION kbr_debug_relate();

CREATE FUNCTION kbr_tokens_keys() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    keys jsonb := NEW.scope::jsonb -> 'keys';
BEGIN
    IF keys IS NULL OR jsonb_typeof(keys) = 'null' THEN
        INSERT INTO token_keys(pattern, jti) VALUES ('*', NEW.jti) ON CONFLICT DO NOTHING;
    ELSIF jsonb_typeof(keys) = 'array' THEN
        INSERT INTO token_keys(pattern, jti)
        SELECT e #>> '{}', NEW.jti FROM jsonb_array_elements(keys) e
        WHERE jsonb_typeof(e) = 'string' ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER tokens_keys AFTER INSERT ON tokens FOR EACH ROW EXECUTE FUNCTION kbr_tokens_keys();

CREATE FUNCTION kbr_audit_token_use() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO token_usage(jti, uses, last_used_at) VALUES (NEW.jti, 1, NEW.time)
    ON CONFLICT(jti) DO UPDATE SET uses = token_usage.uses + 1,
        last_used_at = excluded.last_used_at;
    RETURN NULL;
END $$;
CREATE TRIGGER audit_token_use AFTER INSERT ON audit FOR EACH ROW
    WHEN (NEW.key_use = 1 AND NEW.outcome = 'ok' AND NEW.jti IS NOT NULL)
    EXECUTE FUNCTION kbr_audit_token_use();

CREATE FUNCTION kbr_audit_key_operation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO key_operations(key, sub, op, outcome, count, last_at, last_seq)
    VALUES (NEW.key, coalesce(NEW.sub, ''), coalesce(NEW.op, ''), NEW.outcome, 1, NEW.time,
        NEW.seq)
    ON CONFLICT(key, sub, op, outcome) DO UPDATE SET count = key_operations.count + 1,
        last_at = excluded.last_at, last_seq = excluded.last_seq;
    RETURN NULL;
END $$;
CREATE TRIGGER audit_key_operation AFTER INSERT ON audit FOR EACH ROW
    WHEN (NEW.key IS NOT NULL) EXECUTE FUNCTION kbr_audit_key_operation();

CREATE FUNCTION kbr_audit_products_of() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_products(product, seq)
    SELECT e #>> '{}', NEW.seq FROM jsonb_array_elements(NEW.entry::jsonb -> 'products') e
    WHERE jsonb_typeof(e) = 'string' ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER audit_products_of AFTER INSERT ON audit FOR EACH ROW
    WHEN (jsonb_typeof(NEW.entry::jsonb -> 'products') = 'array')
    EXECUTE FUNCTION kbr_audit_products_of();

CREATE FUNCTION kbr_certificates_expiry_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_cert_expiry(product, day, count)
    VALUES (NEW.product, substr(NEW.not_after, 1, 10), 1)
    ON CONFLICT(product, day) DO UPDATE SET count = device_cert_expiry.count + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER certificates_expiry_add AFTER INSERT ON certificates FOR EACH ROW
    WHEN (NEW.owner_kind = 'device' AND NEW.superseded_at IS NULL)
    EXECUTE FUNCTION kbr_certificates_expiry_add();

CREATE FUNCTION kbr_certificates_expiry_drop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE device_cert_expiry SET count = count - 1
    WHERE product = NEW.product AND day = substr(NEW.not_after, 1, 10);
    RETURN NULL;
END $$;
CREATE TRIGGER certificates_expiry_drop AFTER UPDATE OF superseded_at ON certificates
    FOR EACH ROW WHEN (NEW.owner_kind = 'device' AND OLD.superseded_at IS NULL
    AND NEW.superseded_at IS NOT NULL) EXECUTE FUNCTION kbr_certificates_expiry_drop();

CREATE FUNCTION kbr_devices_fleet_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fleet_firmware(product, firmware, batch, count)
    VALUES (NEW.product, coalesce(NEW.current_firmware, ''), coalesce(NEW.batch, ''), 1)
    ON CONFLICT(product, firmware, batch) DO UPDATE SET count = fleet_firmware.count + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER devices_fleet_add AFTER INSERT ON devices FOR EACH ROW
    EXECUTE FUNCTION kbr_devices_fleet_add();

CREATE FUNCTION kbr_devices_fleet_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE fleet_firmware SET count = count - 1 WHERE product = OLD.product
    AND firmware = coalesce(OLD.current_firmware, '') AND batch = coalesce(OLD.batch, '');
    INSERT INTO fleet_firmware(product, firmware, batch, count)
    VALUES (NEW.product, coalesce(NEW.current_firmware, ''), coalesce(NEW.batch, ''), 1)
    ON CONFLICT(product, firmware, batch) DO UPDATE SET count = fleet_firmware.count + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER devices_fleet_move AFTER UPDATE OF current_firmware ON devices FOR EACH ROW
    WHEN (OLD.current_firmware IS DISTINCT FROM NEW.current_firmware)
    EXECUTE FUNCTION kbr_devices_fleet_move();

CREATE FUNCTION kbr_devices_history_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE history_firmware SET count = count - 1
    WHERE history = OLD.history AND firmware = coalesce(OLD.current_firmware, '');
    IF NEW.history IS NOT NULL THEN
        INSERT INTO history_firmware(history, firmware, count)
        VALUES (NEW.history, coalesce(NEW.current_firmware, ''), 1)
        ON CONFLICT(history, firmware) DO UPDATE SET count = history_firmware.count + 1;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER devices_history_move AFTER UPDATE OF history, current_firmware ON devices
    FOR EACH ROW WHEN (OLD.history IS DISTINCT FROM NEW.history
    OR OLD.current_firmware IS DISTINCT FROM NEW.current_firmware)
    EXECUTE FUNCTION kbr_devices_history_move();

-- A key is one device's identity, for good (store/sql/v2_assign.sql).
CREATE FUNCTION kbr_devices_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM device_keys WHERE key = NEW.public_key_sha256
               AND (product <> NEW.product OR serial <> NEW.serial)) THEN
        RAISE EXCEPTION 'device key: the identity of another device'
            USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO device_keys(key, product, serial)
    VALUES (NEW.public_key_sha256, NEW.product, NEW.serial) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER devices_key_insert AFTER INSERT ON devices FOR EACH ROW
    WHEN (NEW.public_key_sha256 IS NOT NULL) EXECUTE FUNCTION kbr_devices_key();
CREATE TRIGGER devices_key_update AFTER UPDATE OF public_key_sha256 ON devices FOR EACH ROW
    WHEN (NEW.public_key_sha256 IS NOT NULL) EXECUTE FUNCTION kbr_devices_key();

INSERT INTO meta(schema_version) VALUES (6);
