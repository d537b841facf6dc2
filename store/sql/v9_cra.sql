-- Version 9, the Cyber Resilience Act (docs/cra.md):
--  - components.purl_key: the component's package as its purl names it, normalized as the
--    purl specification says and without version, qualifiers or subpath
--    ("pkg:deb/debian/openssl"), NULL when the SBOM gave no purl or one that does not parse.
--    View C finds a package by it, never by a longer name.  The firmware.sign effect's apply
--    fills it from the logged component (kbr_store_purl_key); rows recorded before get it
--    here, from the same function (kbr_purl_key in SQL).
--  - history_firmware_batch: history_firmware per batch, so "ever ran an affected build" is
--    counted per market.  A row that drops to 0 is deleted, so the table holds what the
--    devices hold whichever way they got there.
--  - products: a product's CRA support period (product.register effects).
--  - incidents, incident_builds, incident_fleet, incident_reports: vulnerabilities handled
--    under Art. 14 (incident.create, incident.fix, incident.report effects).  incident_fleet
--    keeps, per incident, the day-by-day change of its affected devices per batch and current
--    firmware: the devices that ran one of the incident's builds when it was recorded count
--    on that day, and every later move of an affected device (an install, or a first run of
--    one of the builds) counts on the day of the device's latest install (never before the
--    incident's first day).  A device's latest install only moves forward, so the sum up to a
--    day is never negative: it is the fleet as it stood at the end of that day.

ALTER TABLE components ADD COLUMN purl_key TEXT;

UPDATE components SET purl_key = kbr_purl_key(purl) WHERE purl IS NOT NULL;

DROP INDEX IF EXISTS components_purl;

CREATE INDEX components_purl_key ON components(purl_key) WHERE purl_key IS NOT NULL;

CREATE TABLE history_firmware_batch(
    history INTEGER NOT NULL, firmware TEXT NOT NULL, batch TEXT NOT NULL,
    count INTEGER NOT NULL CHECK(count > 0), PRIMARY KEY(history, firmware, batch)) WITHOUT ROWID;

INSERT INTO history_firmware_batch(history, firmware, batch, count)
    SELECT history, coalesce(current_firmware, ''), coalesce(batch, ''), count(*) FROM devices
    WHERE history IS NOT NULL GROUP BY 1, 2, 3;

CREATE TRIGGER devices_history_batch_move AFTER UPDATE OF history, current_firmware
    ON devices WHEN old.history IS NOT new.history
    OR old.current_firmware IS NOT new.current_firmware BEGIN
    DELETE FROM history_firmware_batch WHERE history = old.history
    AND firmware = coalesce(old.current_firmware, '') AND batch = coalesce(old.batch, '')
    AND count = 1;
    UPDATE history_firmware_batch SET count = count - 1 WHERE history = old.history
    AND firmware = coalesce(old.current_firmware, '') AND batch = coalesce(old.batch, '');
    INSERT INTO history_firmware_batch(history, firmware, batch, count)
    SELECT new.history, coalesce(new.current_firmware, ''), coalesce(new.batch, ''), 1
    WHERE new.history IS NOT NULL
    ON CONFLICT(history, firmware, batch) DO UPDATE SET count = count + 1;
    END;

CREATE TABLE products(
    product TEXT PRIMARY KEY, placed_on_market TEXT NOT NULL, support_until TEXT NOT NULL
    CHECK(support_until > placed_on_market), created_at TEXT NOT NULL, created_by TEXT NOT NULL,
    updated_at TEXT, audit_seq INTEGER NOT NULL, first_seq INTEGER NOT NULL);

CREATE TABLE incidents(
    id TEXT PRIMARY KEY, title TEXT NOT NULL, product TEXT, component TEXT NOT NULL,
    query TEXT NOT NULL CHECK(json_valid(query)), aware_at TEXT NOT NULL,
    actively_exploited INTEGER NOT NULL CHECK(actively_exploited IN (0, 1)),
    severity TEXT NOT NULL CHECK(severity IN ('low', 'medium', 'high', 'critical')),
    cve TEXT, created_at TEXT NOT NULL, created_by TEXT NOT NULL,
    start_day TEXT NOT NULL, exposure TEXT NOT NULL CHECK(json_valid(exposure)),
    fixed_version TEXT, fix_available_at TEXT, fix_recorded_at TEXT, fix_seq INTEGER,
    audit_seq INTEGER NOT NULL);

CREATE INDEX incidents_product ON incidents(product);

CREATE TABLE incident_builds(
    product TEXT NOT NULL, version TEXT NOT NULL, incident TEXT NOT NULL REFERENCES incidents(id),
    audit_seq INTEGER NOT NULL, PRIMARY KEY(product, version, incident),
    FOREIGN KEY(product, version) REFERENCES firmware(product, version)) WITHOUT ROWID;

CREATE INDEX incident_builds_incident ON incident_builds(incident);

CREATE TABLE incident_fleet(
    incident TEXT NOT NULL, day TEXT NOT NULL, batch TEXT NOT NULL, firmware TEXT NOT NULL,
    delta INTEGER NOT NULL, PRIMARY KEY(incident, day, batch, firmware)) WITHOUT ROWID;

CREATE TRIGGER devices_incident_move AFTER UPDATE OF history, current_firmware
    ON devices WHEN old.history IS NOT new.history
    OR old.current_firmware IS NOT new.current_firmware BEGIN
    INSERT INTO incident_fleet(incident, day, batch, firmware, delta)
    SELECT i.id, max(i.start_day,
    substr(max(coalesce(new.current_firmware_at, ''), new.provisioned_at), 1, 10)),
    coalesce(old.batch, ''), coalesce(old.current_firmware, ''), -1 FROM incidents i
    WHERE i.id IN (SELECT b.incident FROM incident_builds b JOIN firmware_history_versions v
    ON v.product = b.product AND v.version = b.version AND v.history = old.history
    WHERE b.product = old.product)
    ON CONFLICT(incident, day, batch, firmware) DO UPDATE SET delta = delta - 1;
    INSERT INTO incident_fleet(incident, day, batch, firmware, delta)
    SELECT i.id, max(i.start_day,
    substr(max(coalesce(new.current_firmware_at, ''), new.provisioned_at), 1, 10)),
    coalesce(new.batch, ''), coalesce(new.current_firmware, ''), 1 FROM incidents i
    WHERE i.id IN (SELECT b.incident FROM incident_builds b JOIN firmware_history_versions v
    ON v.product = b.product AND v.version = b.version AND v.history = new.history
    WHERE b.product = new.product)
    ON CONFLICT(incident, day, batch, firmware) DO UPDATE SET delta = delta + 1;
    END;

CREATE TABLE incident_reports(
    id INTEGER PRIMARY KEY, incident TEXT NOT NULL REFERENCES incidents(id),
    stage TEXT NOT NULL CHECK(stage IN ('early-warning', 'notification', 'final')),
    sha256 TEXT NOT NULL REFERENCES documents(sha256), at TEXT NOT NULL, by TEXT NOT NULL,
    audit_seq INTEGER NOT NULL);

CREATE INDEX incident_reports_incident ON incident_reports(incident, stage, id);
