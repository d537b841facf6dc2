-- Version 2:
--  - device_keys: every key (kbr_store_public_key_sha256) that was ever a device's identity,
--    with that device, for good: a key is one device's, whatever the product, and stays its
--    own after the device rotates to another (its old certificates are valid until they
--    expire).  Triggers on devices keep it and refuse, as a constraint, a key another device
--    holds.
--  - devices.public_key_sha256: the device's current identity key, shown in View D.
--  - Devices recorded before get both from their certificates, in issue order: of devices
--    that share a key (what version 2 refuses) the first provisioned owns it in device_keys,
--    and each still shows it as its current key, so the clones stay visible.  A certificate
--    that does not parse gives no key: the store opens either way.
--  - device_firmware holds each fact (product, serial, version, status, at) once, so an OTA
--    report sent twice is history once; of the copies an older broker recorded, the first
--    stays.
--
-- This part runs before the device keys are read from the certificates (sqlite_migrate.c).

ALTER TABLE devices ADD COLUMN public_key_sha256 TEXT;

CREATE TABLE device_keys(key TEXT PRIMARY KEY, product TEXT NOT NULL,
    serial TEXT NOT NULL) WITHOUT ROWID;

DELETE FROM device_firmware WHERE id NOT IN (SELECT min(id) FROM device_firmware
    GROUP BY product, serial, version, status, at);

CREATE UNIQUE INDEX device_firmware_fact
    ON device_firmware(product, serial, version, status, at);

DROP TABLE IF EXISTS temp.cert_keys;

CREATE TEMP TABLE cert_keys(id INTEGER NOT NULL, product TEXT NOT NULL,
    serial TEXT NOT NULL, key TEXT NOT NULL, current INTEGER NOT NULL);
