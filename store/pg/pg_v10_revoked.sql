-- Version 10 of the PostgreSQL back end's schema: what store/sql/v10_schema.sql does to a
-- SQLite store, in the terms of pg_schema.sql.  A revoked device certificate no longer counts
-- among a product's device certificates that expire (View A): revoking one that is not
-- superseded takes it out of device_cert_expiry, superseding one already revoked takes
-- nothing out, and the counters of a store recorded before are corrected here.

CREATE OR REPLACE FUNCTION kbr_certificates_expiry_drop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM certificate_revocations WHERE fingerprint = NEW.fingerprint)
    THEN
        UPDATE device_cert_expiry SET count = count - 1
        WHERE product = NEW.product AND day = substr(NEW.not_after, 1, 10);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION kbr_certificate_revocations_expiry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE device_cert_expiry d SET count = d.count - 1 FROM certificates c
    WHERE c.fingerprint = NEW.fingerprint AND c.owner_kind = 'device'
    AND c.superseded_at IS NULL AND d.product = c.product AND d.day = substr(c.not_after, 1, 10);
    RETURN NULL;
END $$;
CREATE TRIGGER certificate_revocations_expiry AFTER INSERT ON certificate_revocations
    FOR EACH ROW EXECUTE FUNCTION kbr_certificate_revocations_expiry();

UPDATE device_cert_expiry d SET count = d.count - r.n
    FROM (SELECT c.product AS product, substr(c.not_after, 1, 10) AS day, count(*) AS n
    FROM certificate_revocations v JOIN certificates c ON c.fingerprint = v.fingerprint
    WHERE c.owner_kind = 'device' AND c.superseded_at IS NULL GROUP BY 1, 2) AS r
    WHERE d.product = r.product AND d.day = r.day;

UPDATE meta SET schema_version = 10;
