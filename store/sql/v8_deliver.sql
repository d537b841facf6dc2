-- Version 8, keys delivered to devices:
--  - key_deliveries: the private key of an ota-encryption key, sealed to a device's identity
--    key as a COSE_Encrypt, once per device and key.  The COSE_Encrypt itself is a document
--    (cose_sha256), kept whole, so a station that lost its answer gets the same bytes again.
--    recipient_public_key_sha256 is the device's identity key when the delivery was made;
--    delivered_by the principal whose request made it.
--  - a delivery counts as an operation on the delivered key (key_operations, View B) and
--    relates the key to the device's product (key_relations, role 'ota-delivery').
-- Written only by the key.deliver effect (kbr_store.h).

CREATE TABLE key_deliveries(
    product TEXT NOT NULL, serial TEXT NOT NULL, key TEXT NOT NULL REFERENCES keys(name),
    recipient_public_key_sha256 TEXT NOT NULL,
    cose_sha256 TEXT NOT NULL REFERENCES documents(sha256), delivered_by TEXT NOT NULL,
    at TEXT NOT NULL, audit_seq INTEGER NOT NULL, PRIMARY KEY(product, serial, key),
    FOREIGN KEY(product, serial) REFERENCES devices(product, serial)) WITHOUT ROWID;

CREATE INDEX key_deliveries_key ON key_deliveries(key);

CREATE TRIGGER key_deliveries_count AFTER INSERT ON key_deliveries BEGIN
    INSERT INTO key_operations(key, sub, op, outcome, count, last_at, last_seq)
    VALUES (new.key, new.delivered_by, 'key.deliver', 'ok', 1, new.at, new.audit_seq)
    ON CONFLICT(key, sub, op, outcome) DO UPDATE SET count = count + 1,
    last_at = excluded.last_at, last_seq = excluded.last_seq;
    INSERT OR IGNORE INTO key_relations(product, key, role)
    VALUES (new.product, new.key, 'ota-delivery');
    END;

UPDATE meta SET schema_version = 8;
