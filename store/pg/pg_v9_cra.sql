-- Version 9 of the PostgreSQL back end's schema, the Cyber Resilience Act: what
-- store/sql/v9_cra.sql adds to a SQLite store, in the terms of pg_schema.sql (ctext,
-- PL/pgSQL triggers).  Applied in the transaction that opens a store at version 6, 7 or 8
-- (store/pg.c); rows recorded before get their components.purl_key there, from
-- kbr_store_purl_key in C, as SQLite's step does with kbr_purl_key in SQL.
--  - components.purl_key: the component's package as its purl names it, normalized and
--    without version, qualifiers or subpath; View C finds a package by it.
--  - history_firmware_batch: history_firmware per batch, so "ever ran an affected build" is
--    counted per market.  A row that drops to 0 is deleted, as on SQLite.
--  - products: a product's CRA support period (product.register effects).
--  - incidents, incident_builds, incident_fleet, incident_reports: vulnerabilities handled
--    under Art. 14 (incident.create, incident.fix, incident.report effects), incident_fleet
--    kept by the devices_incident_move trigger as v9_cra.sql describes it.
-- Times and days are compared in the "C" collation, bytewise, as SQLite compares them.

ALTER TABLE components ADD COLUMN purl_key ctext;

DROP INDEX IF EXISTS components_purl;

CREATE INDEX components_purl_key ON components(purl_key) WHERE purl_key IS NOT NULL;

CREATE TABLE history_firmware_batch(
    history bigint NOT NULL, firmware ctext NOT NULL, batch ctext NOT NULL,
    count bigint NOT NULL CHECK(count > 0), PRIMARY KEY(history, firmware, batch));

INSERT INTO history_firmware_batch(history, firmware, batch, count)
    SELECT history, coalesce(current_firmware, ''), coalesce(batch, ''), count(*) FROM devices
    WHERE history IS NOT NULL GROUP BY 1, 2, 3;

CREATE FUNCTION kbr_devices_history_batch_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM history_firmware_batch WHERE history = OLD.history
    AND firmware = coalesce(OLD.current_firmware, '') AND batch = coalesce(OLD.batch, '')
    AND count = 1;
    UPDATE history_firmware_batch SET count = count - 1 WHERE history = OLD.history
    AND firmware = coalesce(OLD.current_firmware, '') AND batch = coalesce(OLD.batch, '');
    IF NEW.history IS NOT NULL THEN
        INSERT INTO history_firmware_batch(history, firmware, batch, count)
        VALUES (NEW.history, coalesce(NEW.current_firmware, ''), coalesce(NEW.batch, ''), 1)
        ON CONFLICT(history, firmware, batch)
        DO UPDATE SET count = history_firmware_batch.count + 1;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER devices_history_batch_move AFTER UPDATE OF history, current_firmware ON devices
    FOR EACH ROW WHEN (OLD.history IS DISTINCT FROM NEW.history
    OR OLD.current_firmware IS DISTINCT FROM NEW.current_firmware)
    EXECUTE FUNCTION kbr_devices_history_batch_move();

CREATE TABLE products(
    product ctext PRIMARY KEY, placed_on_market ctext NOT NULL, support_until ctext NOT NULL
    CHECK(support_until > placed_on_market), created_at ctext NOT NULL,
    created_by ctext NOT NULL, updated_at ctext, audit_seq bigint NOT NULL,
    first_seq bigint NOT NULL);

CREATE TABLE incidents(
    id ctext PRIMARY KEY, title ctext NOT NULL, product ctext, component ctext NOT NULL,
    query ctext NOT NULL CHECK(jsonb_typeof(query::jsonb) IS NOT NULL), aware_at ctext NOT NULL,
    actively_exploited bigint NOT NULL CHECK(actively_exploited IN (0, 1)),
    severity ctext NOT NULL CHECK(severity IN ('low', 'medium', 'high', 'critical')),
    cve ctext, created_at ctext NOT NULL, created_by ctext NOT NULL,
    start_day ctext NOT NULL, exposure ctext NOT NULL CHECK(jsonb_typeof(exposure::jsonb) IS NOT NULL),
    fixed_version ctext, fix_available_at ctext, fix_recorded_at ctext, fix_seq bigint,
    audit_seq bigint NOT NULL);

CREATE INDEX incidents_product ON incidents(product);

CREATE TABLE incident_builds(
    product ctext NOT NULL, version ctext NOT NULL, incident ctext NOT NULL REFERENCES incidents(id),
    audit_seq bigint NOT NULL, PRIMARY KEY(product, version, incident),
    FOREIGN KEY(product, version) REFERENCES firmware(product, version));

CREATE INDEX incident_builds_incident ON incident_builds(incident);

CREATE TABLE incident_fleet(
    incident ctext NOT NULL, day ctext NOT NULL, batch ctext NOT NULL, firmware ctext NOT NULL,
    delta bigint NOT NULL, PRIMARY KEY(incident, day, batch, firmware));

-- A device that ran one of an incident's builds leaves its old (batch, firmware) and joins
-- its new one on the day of its latest install, never before the incident's first day.
CREATE FUNCTION kbr_devices_incident_move() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    moved ctext := substr(greatest(coalesce(NEW.current_firmware_at, '') COLLATE "C",
                                   NEW.provisioned_at COLLATE "C"), 1, 10);
BEGIN
    INSERT INTO incident_fleet(incident, day, batch, firmware, delta)
    SELECT i.id, greatest(i.start_day COLLATE "C", moved COLLATE "C"), coalesce(OLD.batch, ''),
        coalesce(OLD.current_firmware, ''), -1 FROM incidents i
    WHERE i.id IN (SELECT b.incident FROM incident_builds b JOIN firmware_history_versions v
        ON v.product = b.product AND v.version = b.version AND v.history = OLD.history
        WHERE b.product = OLD.product)
    ON CONFLICT(incident, day, batch, firmware) DO UPDATE SET delta = incident_fleet.delta - 1;
    INSERT INTO incident_fleet(incident, day, batch, firmware, delta)
    SELECT i.id, greatest(i.start_day COLLATE "C", moved COLLATE "C"), coalesce(NEW.batch, ''),
        coalesce(NEW.current_firmware, ''), 1 FROM incidents i
    WHERE i.id IN (SELECT b.incident FROM incident_builds b JOIN firmware_history_versions v
        ON v.product = b.product AND v.version = b.version AND v.history = NEW.history
        WHERE b.product = NEW.product)
    ON CONFLICT(incident, day, batch, firmware) DO UPDATE SET delta = incident_fleet.delta + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER devices_incident_move AFTER UPDATE OF history, current_firmware ON devices
    FOR EACH ROW WHEN (OLD.history IS DISTINCT FROM NEW.history
    OR OLD.current_firmware IS DISTINCT FROM NEW.current_firmware)
    EXECUTE FUNCTION kbr_devices_incident_move();

CREATE TABLE incident_reports(
    id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    incident ctext NOT NULL REFERENCES incidents(id),
    stage ctext NOT NULL CHECK(stage IN ('early-warning', 'notification', 'final')),
    sha256 ctext NOT NULL REFERENCES documents(sha256), at ctext NOT NULL, by ctext NOT NULL,
    audit_seq bigint NOT NULL);

CREATE INDEX incident_reports_incident ON incident_reports(incident, stage, id);

UPDATE meta SET schema_version = 9;
