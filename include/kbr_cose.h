/*
 * kbr_cose.h - COSE_Sign1 (RFC 9052) with a detached payload, the form SUIT
 * manifests (RFC 9124) carry in their authentication wrapper.
 *
 * Everything written here is in the deterministic encoding of RFC 8949
 * section 4.2.1 (definite lengths, shortest heads, map labels in ascending
 * order), and the parser accepts only that encoding and only the shape this
 * module writes:
 *
 *   COSE_Sign1 = [ protected: bstr .cbor {1: alg, ? 4: kid},
 *                  unprotected: {}, payload: nil, signature: bstr ]
 *
 * optionally wrapped in CBOR tag 18.  The signature is r||s for ES256 and
 * ES384 (each half padded to the field size) and the 64-byte Ed25519
 * signature for EdDSA; the bytes signed are the Sig_structure (ECDSA over
 * its SHA-256 / SHA-384 digest, EdDSA over the bytes themselves).
 *
 * Every output buffer is malloc()ed and the caller frees it with free().
 * Out-params are NULL / 0 on any failure.  Functions that take a kbr_msg
 * (may be NULL) write there why input was refused, prefixed by the part at
 * fault ("cose_sign1: ...", "protected: ...", "format: ...").
 */
#ifndef KBR_COSE_H
#define KBR_COSE_H

#include <openssl/evp.h>

#include "kbr_common.h"
#include "kbr_hsm.h"

/* COSE algorithm identifiers (IANA COSE Algorithms registry). */
typedef enum {
    KBR_COSE_ES256 = -7,
    KBR_COSE_ES384 = -35,
    KBR_COSE_EDDSA = -8,
} kbr_cose_alg;

/* CBOR tag of a tagged COSE_Sign1 (RFC 9052 section 2). */
#define KBR_COSE_SIGN1_TAG 18

/*
 * The COSE algorithm for a key: ecdsa-p256 -> ES256, ecdsa-p384 -> ES384,
 * ed25519 -> EdDSA.  Any other key gives KBR_ERR_BAD_REQUEST with
 * "format: cose_sign1 takes ecdsa-p256, ecdsa-p384 or ed25519 keys".
 */
KBR_WUR kbr_err kbr_cose_alg_for(kbr_alg alg, kbr_cose_alg *out, kbr_msg *msg);

/* What the HSM is asked for: the digest for ES256 / ES384, KBR_HASH_NONE for EdDSA. */
kbr_hash kbr_cose_hash(kbr_cose_alg alg);
/* Signature length: 64 for ES256 and EdDSA, 96 for ES384; 0 for a value that is no kbr_cose_alg. */
size_t kbr_cose_sig_len(kbr_cose_alg alg);

/*
 * The serialized protected header map {1: alg, 4: kid}, kid as a bstr.
 * kidlen 0 leaves the kid out ({1: alg}); kid may then be NULL.
 * KBR_ERR_BAD_REQUEST for an alg that is no kbr_cose_alg.  Caller frees *out.
 */
KBR_WUR kbr_err kbr_cose_protected(kbr_cose_alg alg, const unsigned char *kid, size_t kidlen,
                                   unsigned char **out, size_t *outlen);

/*
 * The serialized Sig_structure ["Signature1", protected, external_aad,
 * payload] (RFC 9052 section 4.4): the bytes that get signed.  prot is the
 * serialized protected header as it goes into the COSE_Sign1; aad may be
 * NULL when aadlen is 0 (SUIT uses no external data), and so may payload.
 * KBR_ERR_TOO_LARGE if the lengths overflow size_t.  Caller frees *out.
 */
KBR_WUR kbr_err kbr_cose_sig_structure(const unsigned char *prot, size_t protlen,
                                       const unsigned char *aad, size_t aadlen,
                                       const unsigned char *payload, size_t paylen,
                                       unsigned char **out, size_t *outlen);

/*
 * The serialized COSE_Sign1 [prot, {}, nil, sig], wrapped in tag 18 if
 * tagged.  prot must be a protected header as kbr_cose_protected() writes
 * it and siglen must be kbr_cose_sig_len() of its alg; otherwise
 * KBR_ERR_BAD_REQUEST.  Caller frees *out.
 */
KBR_WUR kbr_err kbr_cose_sign1(const unsigned char *prot, size_t protlen, const unsigned char *sig,
                               size_t siglen, bool tagged, unsigned char **out, size_t *outlen);

/*
 * Signs in the way kbr_hsm_sign() does for one key: in is a digest of hash
 * for KBR_SIG_ECDSA_RAW, the message for KBR_SIG_EDDSA.  *sig is malloc()ed
 * and freed by kbr_cose_sign1_make() with free().
 */
typedef kbr_err (*kbr_cose_sign_fn)(void *arg, kbr_sig_format fmt, kbr_hash hash,
                                    const unsigned char *in, size_t inlen, unsigned char **sig,
                                    size_t *siglen);

/*
 * The whole signing step: protected header for alg and kid, Sig_structure
 * over aad and the detached payload, its digest (ECDSA), one call to sign,
 * and the COSE_Sign1.  The signer's error is returned as it is;
 * KBR_ERR_INTERNAL if it returns a signature of the wrong length.
 * Caller frees *out.
 */
KBR_WUR kbr_err kbr_cose_sign1_make(kbr_cose_alg alg, const unsigned char *kid, size_t kidlen,
                                    const unsigned char *aad, size_t aadlen,
                                    const unsigned char *payload, size_t paylen, bool tagged,
                                    kbr_cose_sign_fn sign, void *arg, unsigned char **out,
                                    size_t *outlen);

/*
 * Strictly parses a tagged or untagged COSE_Sign1 of the shape above and
 * returns copies of the serialized protected header, the signature and the
 * kid (*kid NULL and *kidlen 0 when the header has none), and the alg.
 * Refused with KBR_ERR_BAD_REQUEST: another tag, an attached payload, any
 * unprotected parameter, protected parameters other than alg and kid, an
 * unknown alg, a signature whose length does not fit the alg, trailing
 * bytes, and any encoding other than the deterministic one.  Caller frees
 * *prot, *sig and *kid.
 */
KBR_WUR kbr_err kbr_cose_sign1_parse(const unsigned char *in, size_t len, unsigned char **prot,
                                     size_t *protlen, unsigned char **sig, size_t *siglen,
                                     kbr_cose_alg *alg, unsigned char **kid, size_t *kidlen,
                                     kbr_msg *msg);

/*
 * Parses in as kbr_cose_sign1_parse() does and verifies its signature over
 * aad and the detached payload with pub.  KBR_ERR_BAD_REQUEST if in does
 * not parse or pub is not a key of the header's alg (curve included),
 * KBR_ERR_CRYPTO if the signature does not verify.  Leaves the calling
 * thread's OpenSSL error queue empty.
 */
KBR_WUR kbr_err kbr_cose_sign1_verify(const unsigned char *in, size_t len, const unsigned char *aad,
                                      size_t aadlen, const unsigned char *payload, size_t paylen,
                                      EVP_PKEY *pub, kbr_msg *msg);

/*
 * ---- COSE_Encrypt (RFC 9052 5.1) of a key delivered to a device (encrypt.c) ----
 *
 * One recipient, the algorithms of RFC 9053, in the deterministic encoding:
 *
 *   96([ protected: bstr .cbor {1: 1 (A128GCM), 3: 101 (application/cose-key)},
 *        unprotected: {5: iv},
 *        ciphertext: bstr (the COSE_Key and the GCM tag),
 *        recipients: [[ protected: bstr .cbor {1: -29 (ECDH-ES + A128KW)},
 *                       unprotected: {4: kid, -1: {1: 2, -1: 1, -2: x, -3: y}},
 *                       ciphertext: bstr (the CEK wrapped under the KEK) ]] ])
 *
 * where -1 is the ephemeral key and kid names the device's key (kbr_hsm.h says what the HSM
 * computes).  kbr_cose_encrypt_contexts gives what the HSM needs from these headers: the
 * COSE_KDF_Context [-3 (A128KW), [nil, nil, nil], [nil, nil, nil], [128, recipient
 * protected]] (RFC 9053 5.2) and the Enc_structure ["Encrypt", protected, h''] (RFC 9052
 * 5.3).  Both point to static bytes.
 */
#define KBR_COSE_ENCRYPT_TAG 96

void kbr_cose_encrypt_contexts(const unsigned char **kdf_context, size_t *kdf_context_len,
                               const unsigned char **enc_structure, size_t *enc_structure_len);

/* The tagged COSE_Encrypt around d; kid is 1..64 bytes.  Caller frees *out. */
KBR_WUR kbr_err kbr_cose_encrypt(const kbr_hsm_delivery *d, const unsigned char *kid, size_t kidlen,
                                 unsigned char **out, size_t *outlen);

#endif
