-- Version 2, second part (see v2_schema.sql); it runs after them.

INSERT OR IGNORE INTO device_keys(key, product, serial)
    SELECT key, product, serial FROM temp.cert_keys ORDER BY id;

UPDATE devices SET public_key_sha256 = k.key FROM temp.cert_keys k
    WHERE k.current AND devices.product = k.product AND devices.serial = k.serial;

DROP TABLE temp.cert_keys;

CREATE TRIGGER devices_key_insert AFTER INSERT ON devices
    WHEN new.public_key_sha256 IS NOT NULL BEGIN
    SELECT RAISE(ABORT, 'device key: the identity of another device') FROM device_keys
    WHERE key = new.public_key_sha256 AND (product <> new.product OR serial <> new.serial);
    INSERT OR IGNORE INTO device_keys(key, product, serial)
    VALUES (new.public_key_sha256, new.product, new.serial);
    END;

CREATE TRIGGER devices_key_update AFTER UPDATE OF public_key_sha256 ON devices
    WHEN new.public_key_sha256 IS NOT NULL BEGIN
    SELECT RAISE(ABORT, 'device key: the identity of another device') FROM device_keys
    WHERE key = new.public_key_sha256 AND (product <> new.product OR serial <> new.serial);
    INSERT OR IGNORE INTO device_keys(key, product, serial)
    VALUES (new.public_key_sha256, new.product, new.serial);
    END;

UPDATE meta SET schema_version = 2;
