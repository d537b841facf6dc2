-- Version 5, the token issuer's keys (issuer.rotate effects):
--  - issuer_keys: every key that ever signed the broker's tokens, in the order the log
--    recorded them.  The current one (replaced_at null) signs new tokens; a replaced one
--    stays, since the tokens it signed verify with it until they expire.  The HSM object is
--    hsm_label; public_key_pem is the key the ledger trusts under kid (its RFC 7638
--    thumbprint), so a token can be verified from the log without the HSM.
--  - tokens.kid: the issuer key that signed the token.  Tokens recorded before the first
--    issuer key was recorded get it when it is (store/effects.c): one key signed them all.

CREATE TABLE issuer_keys(
    kid TEXT PRIMARY KEY, hsm_label TEXT NOT NULL UNIQUE, public_key_pem TEXT NOT NULL,
    public_key_sha256 TEXT NOT NULL UNIQUE, activated_at TEXT NOT NULL, replaced_at TEXT,
    audit_seq INTEGER NOT NULL);

--  At most one current key.
CREATE UNIQUE INDEX issuer_keys_current ON issuer_keys(replaced_at IS NULL)
    WHERE replaced_at IS NULL;

ALTER TABLE tokens ADD COLUMN kid TEXT REFERENCES issuer_keys(kid);

CREATE INDEX tokens_kid ON tokens(kid, expires_at);
