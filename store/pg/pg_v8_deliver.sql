-- Version 8 on PostgreSQL, keys delivered to devices: store/sql/v8_deliver.sql in the terms of
-- pg_schema.sql (ctext, a PL/pgSQL trigger function).  Applied after pg_schema.sql, to a new
-- store and to one of version 6 alike.
--  - key_deliveries: the private key of an ota-encryption key, sealed to a device's identity
--    key as a COSE_Encrypt, once per device and key; the COSE_Encrypt is the document
--    cose_sha256, kept whole.  recipient_public_key_sha256 is the device's identity key when
--    the delivery was made; delivered_by the principal whose request made it.
--  - a delivery counts as an operation on the delivered key (key_operations, View B) and
--    relates the key to the device's product (key_relations, role 'ota-delivery').
-- Written only by the key.deliver effect (kbr_store.h).

CREATE TABLE key_deliveries(
    product ctext NOT NULL, serial ctext NOT NULL, key ctext NOT NULL REFERENCES keys(name),
    recipient_public_key_sha256 ctext NOT NULL,
    cose_sha256 ctext NOT NULL REFERENCES documents(sha256), delivered_by ctext NOT NULL,
    at ctext NOT NULL, audit_seq bigint NOT NULL, PRIMARY KEY(product, serial, key),
    FOREIGN KEY(product, serial) REFERENCES devices(product, serial));

CREATE INDEX key_deliveries_key ON key_deliveries(key);

CREATE FUNCTION kbr_key_deliveries_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO key_operations(key, sub, op, outcome, count, last_at, last_seq)
    VALUES (NEW.key, NEW.delivered_by, 'key.deliver', 'ok', 1, NEW.at, NEW.audit_seq)
    ON CONFLICT(key, sub, op, outcome) DO UPDATE SET count = key_operations.count + 1,
        last_at = excluded.last_at, last_seq = excluded.last_seq;
    INSERT INTO key_relations(product, key, role) VALUES (NEW.product, NEW.key, 'ota-delivery')
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER key_deliveries_count AFTER INSERT ON key_deliveries FOR EACH ROW
    EXECUTE FUNCTION kbr_key_deliveries_count();

UPDATE meta SET schema_version = 8;
