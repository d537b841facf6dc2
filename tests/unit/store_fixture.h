/*
 * store_fixture.h - what the store's unit tests (test_store_*.c) share: a store of their own
 * (kbt_store_dir) for each test, effects applied as the audit writer applies them, the effects
 * of keys, certificates, batches and devices they build on, and reads of the store's tables.
 */
#ifndef KBT_STORE_FIXTURE_H
#define KBT_STORE_FIXTURE_H

#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "kbr_store.h"
#include "tmpdir.h"

typedef kbt_store_dir fixture;

/* cmocka setup and teardown: *state becomes a fixture with a store of its own. */
int setup(void **state);
int teardown(void **state);

/* The fixture's store, opened (the test fails if it does not open). */
kbr_store *open_ok(const fixture *f);
/* text parsed as JSON (the test fails if it is not). */
json_t *effects_of(const char *text);
/* Applies effects (consumed) as the writer does: in a transaction with its audit row. */
kbr_err apply_json(kbr_store *st, json_t *effects, int64_t seq);
/* apply_json of effects_json parsed. */
kbr_err apply(kbr_store *st, const char *effects_json, int64_t seq);

/* The first column of the first row of sql, read over a connection of its own. */
void query_text(const fixture *f, const char *sql, char *buf, size_t len);
int64_t query_count(const fixture *f, const char *sql);
/* SELECT count(*) FROM table WHERE cond. */
int64_t count_where(const fixture *f, const char *table, const char *cond);
/* The string, or integer, member field of obj (the test fails if it is not one). */
const char *str_at(const json_t *obj, const char *field);
int64_t int_at(const json_t *obj, const char *field);

#define FP_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

#define KEY_A                                                                                      \
    "[{\"type\": \"key.create\", \"name\": \"fw-a\", \"purpose\": \"firmware-signing\","           \
    " \"algorithm\": \"ecdsa-p256\", \"products\": [\"door\", \"lock\"], \"owner\": \"team\","     \
    " \"hsm_label\": \"fw-a\", \"hsm_id\": \"0102\", \"public_key_pem\": \"PEM\","                 \
    " \"created_at\": \"2026-03-01T10:00:00+00:00\"}]"

/* A firmware.sign of door 1.2.0 by fw-a, of digest, with the components array comps. */
#define FW(digest, comps)                                                                          \
    "[{\"type\": \"firmware.sign\", \"product\": \"door\", \"version\": \"1.2.0\","                \
    " \"digest\": \"" digest                                                                       \
    "\", \"hash\": \"sha256\", \"key\": \"fw-a\", \"name\": \"door.bin\","                         \
    " \"build_id\": \"b7\", \"signed_at\": \"2026-03-02T00:00:00Z\", \"components\": " comps "}]"

/* A firmware.sign of door version, its digest the SHA-256 of version, without components. */
json_t *sign_effect(const char *version);

#define KEY_DEBUG(name)                                                                            \
    "[{\"type\": \"key.create\", \"name\": \"" name "\", \"purpose\": \"debug-auth\","             \
    " \"algorithm\": \"ecdsa-p256\", \"products\": [\"door\"],"                                    \
    " \"created_at\": \"2026-03-01T10:00:00Z\"}]"

/* ---- certificates, batches, devices ---- */

#define KEY_CA                                                                                     \
    "[{\"type\": \"key.create\", \"name\": \"ca-door\", \"purpose\": \"device-identity-ca\","      \
    " \"algorithm\": \"ecdsa-p256\", \"products\": [\"door\", \"lock\"],"                          \
    " \"created_at\": \"2026-03-01T10:00:00Z\"}]"

#define ZEROS_OF_64 "0000000000000000000000000000000000000000000000000000000000000000"
/* The CA key's certificate, which heads every device certificate's chain. */
#define CA_TAG   "ca-door-cert"
#define CA_CHAIN "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"

/* Distinct tags give distinct fingerprints and serial numbers, as real certificates have. */
typedef struct {
    char fingerprint[65];
    char serial[33];
    char pem[128];
} cert_ids;

void ids_of(const char *tag, cert_ids *ids);
/* The fingerprint of the CA key's certificate (CA_TAG). */
const char *ca_fingerprint(void);
/* A key.certificate of the certificate tagged tag for key name, at at. */
json_t *key_cert_effect(const char *name, const char *tag, const char *at);
/* A batch.create of quantity devices for markets DE and FR. */
json_t *batch_effect(const char *batch, const char *product, const char *factory, int quantity);
/* A device.provision, issued by ca-door, of the certificate tagged tag (firmware 1.2.0). */
json_t *provision_effect(const char *product, const char *serial, const char *batch,
                         const char *factory, const char *tag);
/* A device.rotate to the certificate tagged tag, issued by ca-door. */
json_t *rotate_effect(const char *product, const char *serial, const char *tag, const char *at);
/* effect (one device.provision or device.rotate) with public_key_sha256 added; returned. */
json_t *with_key(json_t *effect, const char *key_hex);

/* A store with the door CA key (seq 1) and batch B1 of 3 doors for factory:acme (seq 2). */
kbr_store *factory_store(const fixture *f);
/* The devices provisioned in batch name. */
int64_t provisioned_in(kbr_store *st, const char *name);
/* The test fails unless the device key key_hex is product/serial's. */
void assert_key_owner(kbr_store *st, const char *key_hex, const char *product, const char *serial);
/* The key's DER SubjectPublicKeyInfo as OpenSSL writes it, hashed. */
void der_key_hex(EVP_PKEY *key, char hex[65]);

/* Makes the fixture's store (closed) one of version 9, or 7, again, on either back end. */
void store_back_to_v9(fixture *f);
void store_back_to_v7(fixture *f);

/* ---- the token issuer's keys ---- */

#define KID_1 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1"
#define KID_2 "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB2"
#define KID_3 "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC3"

/* issuer.rotate: kid, label, key and replaces (NULL: none). */
json_t *issuer_effect(const char *kid, const char *label, EVP_PKEY *key, const char *replaces);
/* The kid of token jti as listed ("null" for none, "" for no such token). */
const char *token_kid(kbr_store *st, const char *jti);

#endif
