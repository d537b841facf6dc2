-- Version 3, second part (see v3_schema.sql); it runs after them, once no two keys name one HSM object.

CREATE UNIQUE INDEX keys_hsm_label ON keys(hsm_label) WHERE hsm_label IS NOT NULL;

CREATE UNIQUE INDEX keys_hsm_id ON keys(hsm_id) WHERE hsm_id IS NOT NULL AND hsm_id <> '';

CREATE UNIQUE INDEX keys_public_key ON keys(public_key_sha256)
    WHERE public_key_sha256 IS NOT NULL;

UPDATE meta SET schema_version = 3;
