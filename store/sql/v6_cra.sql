-- Version 6, the Cyber Resilience Act (docs/cra.md):
--  - components.purl_key: the component's package as its purl names it, normalized as the
--    purl specification says and without version, qualifiers or subpath
--    ("pkg:deb/debian/openssl"), NULL when the SBOM gave no purl or one that does not parse.
--    View C finds a package by it, never by a longer name.  The firmware.sign effect's apply
--    fills it from the logged component (kbr_store_purl_key); rows recorded before get it
--    here, from the same function (kbr_purl_key in SQL).
--  - history_firmware_batch: history_firmware per batch, so "ever ran an affected build" is
--    counted per market.  A row that drops to 0 is deleted, so the table holds what the
--    devices hold whichever way they got there.

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
