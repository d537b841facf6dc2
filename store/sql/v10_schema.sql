-- Version 10:
--  - audit.products: the entry's "products" when it is an array, generated like the other
--    columns.  audit_products_of reads it instead of parsing the entry again: SQLite shares
--    one parse of the entry among the columns of an insert, but a trigger is a program of its
--    own and parsed the whole entry once more for every entry, products or not.
--  - A revoked device certificate no longer counts among a product's device certificates
--    that expire (View A): a device revoked for good does not depend on its certificate, and
--    no one renews it.  certificate_revocations_expiry takes a revoked certificate that is not
--    superseded out of device_cert_expiry, as superseding it does; certificates_expiry_drop
--    takes nothing out for one already revoked; the counters of a store recorded before are
--    corrected here.  The views that list expiring device certificates from `certificates`
--    leave out the revoked ones by certificate_revocations' key.

ALTER TABLE audit ADD COLUMN products TEXT GENERATED ALWAYS AS
    (CASE json_type(entry, '$.products') WHEN 'array' THEN json_extract(entry, '$.products') END)
    VIRTUAL;

DROP TRIGGER audit_products_of;

CREATE TRIGGER audit_products_of AFTER INSERT ON audit WHEN new.products IS NOT NULL BEGIN
    INSERT OR IGNORE INTO audit_products(product, seq)
    SELECT value, new.seq FROM json_each(new.products) WHERE type = 'text';
    END;

DROP TRIGGER IF EXISTS certificates_expiry_drop;

CREATE TRIGGER certificates_expiry_drop AFTER UPDATE OF superseded_at
    ON certificates WHEN new.owner_kind = 'device' AND old.superseded_at IS NULL
    AND new.superseded_at IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM certificate_revocations WHERE fingerprint = new.fingerprint)
    BEGIN
    UPDATE device_cert_expiry SET count = count - 1
    WHERE product = new.product AND day = substr(new.not_after, 1, 10);
    END;

CREATE TRIGGER certificate_revocations_expiry AFTER INSERT ON certificate_revocations BEGIN
    UPDATE device_cert_expiry SET count = count - 1
    WHERE (product, day) IN (SELECT product, substr(not_after, 1, 10) FROM certificates
    WHERE fingerprint = new.fingerprint AND owner_kind = 'device' AND superseded_at IS NULL);
    END;

UPDATE device_cert_expiry SET count = count - r.n
    FROM (SELECT c.product AS product, substr(c.not_after, 1, 10) AS day, count(*) AS n
    FROM certificate_revocations v JOIN certificates c ON c.fingerprint = v.fingerprint
    WHERE c.owner_kind = 'device' AND c.superseded_at IS NULL GROUP BY 1, 2) AS r
    WHERE device_cert_expiry.product = r.product AND device_cert_expiry.day = r.day;

UPDATE meta SET schema_version = 10;
