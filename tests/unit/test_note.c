/*
 * test_note.c - C2SP signed notes and tlog checkpoints (audit/note.c) against the published
 * vectors: golang.org/x/mod/sumdb/note's signer, verifier keys and notes, the examples of
 * c2sp.org/signed-note, and sumdb/tlog's tree text.  Ed25519 is deterministic, so a note
 * signed here must be the Go package's byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "kbr_audit.h"

/* sumdb/note's test key: "PRIVATE+KEY+PeterNeumann+c74f20a3+" then base64(0x01 || seed). */
static const char peter_seed_b64[] = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
static const char peter_vkey[] =
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
static const char enoch_vkey[] = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
static const char text[] = "If you think cryptography is the answer to your problem,\n"
                           "then you don't know what your problem is.\n";
static const char peter_sig[] =
    "\xe2\x80\x94 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvq"
    "fqdngotpRZb6KE6RyyBwJnAM=\n";
static const char enoch_sig[] =
    "\xe2\x80\x94 EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG0"
    "1oOTGwnWLox33WWd1RvMc+QQ=\n";

/* c2sp.org/signed-note's example. */
static const char c2sp_vkey[] =
    "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
static const char c2sp_note[] =
    "This is an example message.\n"
    "\n"
    "\xe2\x80\x94 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH"
    "3mFXmRKuwHjG1Yu72IneyaQM=\n";

static char *cat(const char *a, const char *b, const char *c)
{
    char *s = NULL;

    assert_true(asprintf(&s, "%s%s%s", a, b, c) > 0);
    return s;
}

static EVP_PKEY *peter_private(void)
{
    unsigned char *raw = NULL;
    size_t len = 0;
    EVP_PKEY *k;

    assert_int_equal(kbr_b64_decode(peter_seed_b64, &raw, &len), KBR_OK);
    assert_int_equal(len, 33);
    assert_int_equal(raw[0], 0x01);
    k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, raw + 1, 32);
    assert_non_null(k);
    free(raw);
    return k;
}

static void ed25519_sign(EVP_PKEY *k, const char *msg, unsigned char sig[64])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t len = 64;

    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, k), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &len, (const unsigned char *)msg, strlen(msg)), 1);
    assert_int_equal(len, 64);
    EVP_MD_CTX_free(ctx);
}

static EVP_PKEY *vkey_key(const char *vkey, const char *want_name)
{
    char *name = NULL;
    EVP_PKEY *k = NULL;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_note_vkey_parse(vkey, &name, &k, &msg), KBR_OK);
    assert_string_equal(name, want_name);
    free(name);
    return k;
}

/* The signer: key ID, verifier key and the whole signed note as sumdb/note makes them. */
static void test_go_signer(void **state)
{
    EVP_PKEY *k = peter_private();
    uint32_t id = 0;
    char *vkey = NULL, *line = NULL, *note = NULL;
    unsigned char sig[64];

    (void)state;
    assert_int_equal(kbr_note_key_id("PeterNeumann", k, &id), KBR_OK);
    assert_int_equal(id, 0xc74f20a3);
    assert_int_equal(kbr_note_vkey("PeterNeumann", k, &vkey), KBR_OK);
    assert_string_equal(vkey, peter_vkey);
    ed25519_sign(k, text, sig);
    assert_int_equal(kbr_note_sig_line("PeterNeumann", id, sig, sizeof(sig), &line), KBR_OK);
    assert_string_equal(line, peter_sig);
    note = cat(text, "\n", line);
    assert_string_equal(note, "If you think cryptography is the answer to your problem,\n"
                              "then you don't know what your problem is.\n"
                              "\n"
                              "\xe2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZ"
                              "InNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n");
    /* names the format refuses */
    free(line);
    assert_int_equal(kbr_note_sig_line("a+b", id, sig, sizeof(sig), &line), KBR_ERR_BAD_REQUEST);
    assert_null(line);
    free(note);
    free(vkey);
    EVP_PKEY_free(k);
}

/* A note with two signatures: each verifies with its own key and only with it. */
static void test_go_open(void **state)
{
    EVP_PKEY *peter = vkey_key(peter_vkey, "PeterNeumann");
    EVP_PKEY *enoch = vkey_key(enoch_vkey, "EnochRoot");
    char *msg_text = cat(text, "\n", peter_sig), *both = NULL;
    kbr_note n;
    kbr_msg msg = {{0}};

    (void)state;
    both = cat(msg_text, enoch_sig, "");
    assert_int_equal(kbr_note_parse(both, strlen(both), &n, &msg), KBR_OK);
    assert_int_equal(n.nsigs, 2);
    assert_int_equal(n.text_len, strlen(text));
    assert_memory_equal(n.text, text, n.text_len);
    assert_int_equal(n.sigs[0].id, 0xc74f20a3);
    assert_int_equal(n.sigs[1].id, 0xaf0cfe78);
    assert_int_equal(kbr_note_verify(&n, "PeterNeumann", peter, &msg), KBR_OK);
    assert_int_equal(kbr_note_verify(&n, "EnochRoot", enoch, &msg), KBR_OK);
    /* the right key under another name, another key under the right name */
    assert_int_equal(kbr_note_verify(&n, "PeterNeuman", peter, &msg), KBR_ERR_NOT_FOUND);
    assert_int_equal(kbr_note_verify(&n, "PeterNeumann", enoch, &msg), KBR_ERR_NOT_FOUND);
    assert_non_null(strstr(msg.text, "no signature by key PeterNeumann+"));
    kbr_note_clear(&n);
    free(both);
    free(msg_text);
    EVP_PKEY_free(peter);
    EVP_PKEY_free(enoch);
}

static void test_c2sp_example(void **state)
{
    EVP_PKEY *k = vkey_key(c2sp_vkey, "example.com/foo");
    kbr_note n;
    kbr_msg msg = {{0}};
    char *vkey = NULL;

    (void)state;
    assert_int_equal(kbr_note_vkey("example.com/foo", k, &vkey), KBR_OK);
    assert_string_equal(vkey, c2sp_vkey);
    assert_int_equal(kbr_note_parse(c2sp_note, strlen(c2sp_note), &n, &msg), KBR_OK);
    assert_int_equal(kbr_note_verify(&n, "example.com/foo", k, &msg), KBR_OK);
    kbr_note_clear(&n);
    free(vkey);
    EVP_PKEY_free(k);
}

static void assert_refused(const char *note, size_t len, const char *want)
{
    kbr_note n;
    kbr_msg msg = {{0}};

    assert_int_equal(kbr_note_parse(note, len, &n, &msg), KBR_ERR_BAD_REQUEST);
    assert_null(n.text);
    if (strstr(msg.text, want) == NULL)
        fail_msg("refusal \"%s\" does not name \"%s\"", msg.text, want);
}

/* sumdb/note's malformed notes, and the same refusals by name. */
static void test_malformed(void **state)
{
    char *s, *many = NULL;
    size_t n;

    (void)state;
    assert_refused(text, strlen(text), "no blank line");
    s = cat(text, "\n", "");
    assert_refused(s, strlen(s), "no signature lines");
    free(s);
    s = cat(text, "\n", peter_sig);
    assert_refused(s, strlen(s) - 1, "does not end in a newline");
    free(s);
    s = cat("\x01", text, "\n");
    assert_refused(s, strlen(s), "control character");
    free(s);
    s = cat("\xff", text, "\n");
    assert_refused(s, strlen(s), "not UTF-8");
    free(s);
    s = cat(text,
            "\n\xe2\x80\x94 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FF"
            "YC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
            "");
    assert_refused(s, strlen(s), "signature line 1");
    free(s);
    s = cat(text, "\n", peter_sig);
    many = cat(s, "Unexpected line.\n", "");
    assert_refused(many, strlen(many), "signature line 2 does not start with an em dash");
    free(many);
    free(s);
    /* a plus in the key name, a signature too short to hold a key ID, non-canonical base64 */
    s = cat(text,
            "\n\xe2\x80\x94 a+b x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZ"
            "SNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
            "");
    assert_refused(s, strlen(s), "key name");
    free(s);
    s = cat(text, "\n\xe2\x80\x94 PeterNeumann AAAA\n", "");
    assert_refused(s, strlen(s), "not base64 of a key ID and a signature");
    free(s);
    s = cat(text, "\n\xe2\x80\x94 PeterNeumann AAAAAAB=\n", "");
    assert_refused(s, strlen(s), "canonical");
    free(s);
    /* a NUL inside is a control character, not the end of the note */
    s = cat(text, "\n", peter_sig);
    s[3] = '\0';
    assert_refused(s, strlen(text) + 1 + strlen(peter_sig), "control character");
    free(s);
    /* seventeen signatures */
    s = cat(text, "\n", "");
    n = strlen(s);
    for (int i = 0; i < 17; i++) {
        char *t = cat(s, peter_sig, "");
        free(s);
        s = t;
    }
    assert_refused(s, strlen(s), "more than 16 signatures");
    assert_true(strlen(s) > n);
    free(s);
    assert_refused("", 0, "empty");
}

/* A signature that does not verify is named; a note with one tampered byte of text too. */
static void test_bad_signature(void **state)
{
    EVP_PKEY *peter = vkey_key(peter_vkey, "PeterNeumann");
    char line[256], *s;
    kbr_note n;
    kbr_msg msg = {{0}};
    size_t at = strlen("\xe2\x80\x94 PeterNeumann ") + 56;

    (void)state;
    /* sumdb/note's own: four characters inserted into the base64 */
    snprintf(line, sizeof(line), "%.*sABCD%s", (int)at, peter_sig, peter_sig + at);
    s = cat(text, "\n", line);
    assert_int_equal(kbr_note_parse(s, strlen(s), &n, &msg), KBR_OK);
    assert_int_equal(kbr_note_verify(&n, "PeterNeumann", peter, &msg), KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "bad signature by key PeterNeumann+c74f20a3"));
    kbr_note_clear(&n);
    free(s);
    s = cat(text, "\n", peter_sig);
    s[0] = 'i';
    assert_int_equal(kbr_note_parse(s, strlen(s), &n, &msg), KBR_OK);
    assert_int_equal(kbr_note_verify(&n, "PeterNeumann", peter, &msg), KBR_ERR_BAD_REQUEST);
    kbr_note_clear(&n);
    free(s);
    EVP_PKEY_free(peter);
}

/* sumdb/tlog's tree text, and a checkpoint note read back. */
static void test_checkpoint_text(void **state)
{
    unsigned char in[12], root[KBR_MERKLE_HASH_LEN];
    char *t = NULL, *line = NULL, *note = NULL;
    EVP_PKEY *k = peter_private();
    unsigned char sig[64];
    uint32_t id = 0;
    kbr_note n;
    kbr_note_checkpoint cp;
    kbr_msg msg = {{0}};

    (void)state;
    in[0] = 0x00;
    memcpy(in + 1, "hello world", 11);
    assert_int_equal(EVP_Digest(in, sizeof(in), root, NULL, EVP_sha256(), NULL), 1);
    assert_int_equal(kbr_note_checkpoint_text("go.sum database tree", 123456789012ULL, root, &t),
                     KBR_OK);
    assert_string_equal(
        t, "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n");
    free(t);

    assert_int_equal(kbr_note_checkpoint_text("PeterNeumann", 42, root, &t), KBR_OK);
    assert_int_equal(kbr_note_key_id("PeterNeumann", k, &id), KBR_OK);
    ed25519_sign(k, t, sig);
    assert_int_equal(kbr_note_sig_line("PeterNeumann", id, sig, sizeof(sig), &line), KBR_OK);
    note = cat(t, "\n", line);
    assert_int_equal(kbr_note_parse(note, strlen(note), &n, &msg), KBR_OK);
    assert_int_equal(kbr_note_checkpoint_parse(&n, &cp, &msg), KBR_OK);
    assert_string_equal(cp.origin, "PeterNeumann");
    assert_int_equal(cp.size, 42);
    assert_memory_equal(cp.root, root, sizeof(root));
    assert_int_equal(kbr_note_verify(&n, "PeterNeumann", k, &msg), KBR_OK);
    kbr_note_clear(&n);

    /* bodies that are not checkpoints */
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"o\n42\n", "fewer than three lines"},
        {"o\n042\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n", "leading zeros"},
        {"o\n-1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n", "decimal"},
        {"o\n99999999999999999999\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n", "decimal"},
        {"o\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n", "32 bytes"},
        {"o\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\next\n", "lines after"},
        {"\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n", "line 1 is empty"},
        {"o\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb1=\n", "canonical"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *s = cat(bad[i].text, "\n", line);
        assert_int_equal(kbr_note_parse(s, strlen(s), &n, &msg), KBR_OK);
        assert_int_equal(kbr_note_checkpoint_parse(&n, &cp, &msg), KBR_ERR_BAD_REQUEST);
        if (strstr(msg.text, bad[i].want) == NULL)
            fail_msg("\"%s\": refusal \"%s\" does not name \"%s\"", bad[i].text, msg.text,
                     bad[i].want);
        kbr_note_clear(&n);
        free(s);
    }
    free(note);
    free(line);
    free(t);
    EVP_PKEY_free(k);
}

static void test_names_and_vkeys(void **state)
{
    EVP_PKEY *k = NULL;
    char *name = NULL;
    kbr_msg msg = {{0}};

    (void)state;
    assert_true(kbr_note_name_valid("example.com/log42", 17));
    assert_true(kbr_note_name_valid("keybroker", 9));
    assert_false(kbr_note_name_valid("", 0));
    assert_false(kbr_note_name_valid("a b", 3));
    assert_false(kbr_note_name_valid("a+b", 3));
    assert_false(kbr_note_name_valid("a\tb", 3));
    assert_false(kbr_note_name_valid("a\xc2\xa0"
                                     "b",
                                     4)); /* NO-BREAK SPACE */
    assert_false(kbr_note_name_valid("a\xe3\x80\x80"
                                     "b",
                                     5));               /* IDEOGRAPHIC SPACE */
    assert_false(kbr_note_name_valid("a\xc0\xafz", 4)); /* overlong */
    /* the vkey manglings sumdb/note refuses: another ID, another type byte, a cut */
    assert_int_equal(kbr_note_vkey_parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/"
                                         "LDE4izWy10TW",
                                         &name, &k, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg.text, "does not match"));
    assert_int_equal(kbr_note_vkey_parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/"
                                         "LDE4izWy10TW",
                                         &name, &k, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_int_equal(kbr_note_vkey_parse("PeterNeumann+c74f20a3", &name, &k, &msg),
                     KBR_ERR_BAD_REQUEST);
    assert_null(name);
    assert_null(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_go_signer),       cmocka_unit_test(test_go_open),
        cmocka_unit_test(test_c2sp_example),    cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_bad_signature),   cmocka_unit_test(test_checkpoint_text),
        cmocka_unit_test(test_names_and_vkeys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
