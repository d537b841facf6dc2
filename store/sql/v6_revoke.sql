-- Version 6, device revocation and CRLs:
--  - device_revocations: a device revoked for good, when, why (an RFC 5280 CRLReason) and by
--    whom, with the audit entry that recorded it.
--  - certificate_revocations: each certificate revoked with it, named by its fingerprint,
--    with the issuer and serial number a CRL lists it by.  An issuer's CRL is one index range.
--  - crls: every CRL an issuer key signed, numbered 1, 2, 3, ... per issuer (RFC 5280 5.2.3),
--    with its thisUpdate and nextUpdate, how many certificates it lists and the SHA-256 of
--    its DER.  The CRL itself is not kept: what it lists is in the log, and a new one is
--    signed when it is asked for.
-- All three are written only by the device.revoke and crl.issue effects (kbr_store.h).

CREATE TABLE device_revocations(
    product TEXT NOT NULL, serial TEXT NOT NULL, revoked_at TEXT NOT NULL,
    reason TEXT NOT NULL, reason_code INTEGER NOT NULL, revoked_by TEXT NOT NULL,
    audit_seq INTEGER NOT NULL, PRIMARY KEY(product, serial),
    FOREIGN KEY(product, serial) REFERENCES devices(product, serial)) WITHOUT ROWID;

CREATE TABLE certificate_revocations(
    fingerprint TEXT PRIMARY KEY REFERENCES certificates(fingerprint),
    issuer_key TEXT NOT NULL REFERENCES keys(name), serial_number TEXT NOT NULL,
    revoked_at TEXT NOT NULL, reason_code INTEGER NOT NULL, audit_seq INTEGER NOT NULL)
    WITHOUT ROWID;

CREATE INDEX certificate_revocations_issuer
    ON certificate_revocations(issuer_key, revoked_at, serial_number);

CREATE TABLE crls(
    issuer_key TEXT NOT NULL REFERENCES keys(name), number INTEGER NOT NULL CHECK(number >= 1),
    issuer_fingerprint TEXT NOT NULL, this_update TEXT NOT NULL,
    next_update TEXT NOT NULL CHECK(next_update > this_update),
    entries INTEGER NOT NULL CHECK(entries >= 0), sha256 TEXT NOT NULL,
    audit_seq INTEGER NOT NULL, PRIMARY KEY(issuer_key, number)) WITHOUT ROWID;
