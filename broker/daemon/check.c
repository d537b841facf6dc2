/*
 * check.c - keybrokerd -c FILE --check: what a start would find wrong, found
 * without starting and without changing anything, one line per finding:
 *
 *   ok: ...        what was checked and holds;
 *   warning: ...   what will not stop a start but should be known (a store
 *                  whose schema the next start migrates, a certificate
 *                  about to expire);
 *   problem: ...   what stops a start, or breaks clients once started.
 *
 * Exit 0 without a problem, 1 with any.  The configuration is read to its
 * end, every bad line reported; the other checks go on with the defaults in
 * place of the bad lines.  Nothing is migrated or locked, and nothing created
 * but the -shm SQLite makes to read a -wal that lost its own: the store
 * is read as it is (kbr_store_open_readonly; an older schema is reported,
 * not migrated), the log file and the store's directory are only tested
 * for writing.  The HSM is logged in to, as a start would (a wrong PIN
 * counts against the token's retry limit like any failed login), its
 * issuer and audit keys are looked up, never made, and the audit record it
 * holds (the last signed head) is checked against the store, so a restored
 * backup is reported as the rollback a start would refuse.
 *
 * It checks as the user running it: run it as the daemon's user (sudo -u
 * keybroker keybrokerd -c ... --check) for the permissions to mean what
 * they will mean to the daemon.
 */
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "kbd.h"
#include "hsmproc.h"
#include "modes.h"

#define EXPIRY_WARN_DAYS 30

typedef struct {
    int problems, warnings;
} tally;

static void say(tally *t, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(tally *t, const char *kind, const char *fmt, ...)
{
    va_list ap;

    if (strcmp(kind, "problem") == 0)
        t->problems++;
    else if (strcmp(kind, "warning") == 0)
        t->warnings++;
    printf("%s: ", kind);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

static void config_problem(const char *problem, void *arg)
{
    say(arg, "problem", "%s", problem);
}

static void check_certificate_dates(tally *t, const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    int days = 0, secs = 0;

    if (f != NULL)
        fclose(f);
    if (x == NULL)
        return;
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) == 1) {
        if (days < 0 || (days == 0 && secs < 0))
            say(t, "problem", "tls_cert %s expired %d days ago: clients will refuse it", path,
                -days);
        else if (days < EXPIRY_WARN_DAYS)
            say(t, "warning", "tls_cert %s expires in %d days: renew it, then send SIGHUP", path,
                days);
    }
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notBefore(x)) == 1 && (days > 0 || secs > 0))
        say(t, "problem", "tls_cert %s is not valid yet", path);
    X509_free(x);
}

static void check_network(tally *t, const kbd_config *cfg, const char *path)
{
    kbr_msg msg = {{0}};

    if (cfg->tls_cert == NULL && !kbd_is_loopback(cfg->listen_host))
        say(t, "problem",
            "%s: plain HTTP is only allowed on a loopback address; set tls_cert and tls_key to "
            "listen on %s",
            path, cfg->listen_host);
    if (cfg->tls_cert == NULL)
        return;
    if (kbd_tls_check(cfg, &msg) != KBR_OK) {
        say(t, "problem", "%s", msg.text);
        return;
    }
    say(t, "ok", "TLS: tls_cert %s and tls_key %s load and match%s%s", cfg->tls_cert, cfg->tls_key,
        cfg->tls_client_ca != NULL ? "; client CA " : "",
        cfg->tls_client_ca != NULL ? cfg->tls_client_ca : "");
    check_certificate_dates(t, cfg->tls_cert);
}

/* Could the daemon append to path (creating it in its directory if it is not there)? */
static void check_writable(tally *t, const char *what, const char *path)
{
    char *copy = strdup(path);
    const char *dir = copy != NULL ? dirname(copy) : ".";

    if (access(path, F_OK) == 0) {
        if (access(path, W_OK) != 0)
            say(t, "problem", "%s %s is not writable: %s", what, path, strerror(errno));
    } else if (access(dir, W_OK | X_OK) != 0) {
        say(t, "problem", "%s %s cannot be created: %s: %s", what, path, dir, strerror(errno));
    }
    free(copy);
}

/* A key under label: there, and of alg as --init makes it; its public key's SHA-256 into sha. */
static bool check_key(tally *t, kbr_hsm_session *s, const char *what, const char *label,
                      kbr_alg alg, char sha[65])
{
    kbr_hsm_key_info info = {0};
    EVP_PKEY *pub = NULL;
    kbr_err err = kbr_hsm_find_key(s, label, &info);

    if (err == KBR_ERR_NOT_FOUND) {
        say(t, "problem", "%s key %s not found in the HSM: run keybrokerd --init", what, label);
        return false;
    }
    if (err != KBR_OK) {
        say(t, "problem", "HSM lookup of %s failed: %s", label, kbr_err_str(err));
        return false;
    }
    if (!info.alg_known || info.alg != alg) {
        say(t, "problem", "HSM key %s is not an %s key", label,
            alg == KBR_ALG_ED25519 ? "Ed25519" : "ECDSA P-256");
        return false;
    }
    sha[0] = '\0';
    if (kbr_hsm_public_key(s, label, &pub) == KBR_OK &&
        kbr_store_public_key_sha256(pub, sha) != KBR_OK)
        sha[0] = '\0';
    EVP_PKEY_free(pub);
    return true;
}

/*
 * The issuer key tokens are signed with now, as the ledger records it (kbr/issuer on a
 * ledger that records none yet, a store an older broker wrote), and the audit key the log
 * hands on (the latest checkpoint's next key or its own, kbr/audit before any); *audit_pub is
 * the key that signed the latest checkpoint, as the HSM holds it.
 */
static void check_keys(tally *t, kbr_hsm_session *s, const json_t *issuers, const json_t *latest,
                       EVP_PKEY **audit_pub)
{
    const char *label = KBD_ISSUER_LABEL, *kid = NULL, *want = NULL;
    const char *audit = latest != NULL ? kbd_cp_signer_label(latest) : NULL;
    const char *signer =
        latest != NULL ? json_string_value(json_object_get(latest, "key_label")) : NULL;
    const json_t *row;
    char sha[65];
    size_t i;

    json_array_foreach(issuers, i, row)
    {
        if (json_is_null(json_object_get(row, "replaced_at"))) {
            label = json_string_value(json_object_get(row, "hsm_label"));
            kid = json_string_value(json_object_get(row, "kid"));
            want = json_string_value(json_object_get(row, "public_key_sha256"));
        }
    }
    if (check_key(t, s, "issuer", label, KBR_ALG_ECDSA_P256, sha)) {
        if (want != NULL && strcmp(want, sha) != 0)
            say(t, "problem",
                "issuer key %s in the HSM is not the one the ledger records (kid %s): another "
                "key was put under its label",
                label, kid);
        else
            say(t, "ok", "issuer key %s is in the HSM (ECDSA P-256%s%s)", label,
                kid != NULL ? ", kid " : "", kid != NULL ? kid : "");
    }
    if (audit == NULL)
        audit = KBD_AUDIT_LABEL;
    if (check_key(t, s, "audit", audit, KBR_ALG_ED25519, sha))
        say(t, "ok", "audit key %s is in the HSM (Ed25519)", audit);
    /* an older broker's checkpoint names no key: the first audit key signed it */
    if (kbr_hsm_public_key(s, signer != NULL ? signer : KBD_AUDIT_LABEL, audit_pub) != KBR_OK)
        *audit_pub = NULL;
}

/*
 * The head the HSM recorded last, as a start checks it: it verifies with the HSM's audit keys,
 * and the store (st, when its schema is current) holds it.  A store behind it is a rollback.
 */
static void check_record(tally *t, kbr_hsm_session *s, kbr_store *st)
{
    json_t *rec = NULL;
    kbr_msg msg = {{0}};
    kbr_err err = kbd_record_read(s, &rec, &msg);

    if (err != KBR_OK) {
        say(t, "problem", "%s%s", msg.text,
            err == KBR_ERR_HSM ? "" : "; run keybrokerd --recover to write a new one");
        return;
    }
    if (rec == NULL) {
        say(t, "ok", "HSM: no audit record yet (the first signed checkpoint writes it)");
        return;
    }
    if (kbd_record_holds(s, rec, &msg) != KBR_OK)
        say(t, "problem", "the audit record in the HSM does not verify: %s", msg.text);
    else if (st != NULL && (err = kbd_record_vs_store(st, rec, &msg)) != KBR_OK)
        say(t, "problem", "%s%s", msg.text[0] != '\0' ? msg.text : kbr_err_str(err),
            err == KBR_ERR_CONFLICT
                ? ". After a restore from a backup: keybrokerd -c FILE --recover"
                : "");
    else
        say(t, "ok", "HSM: the audit record (checkpoint of %lld entries, signed %s) verifies%s",
            (long long)json_integer_value(json_object_get(rec, "size")),
            json_string_value(json_object_get(rec, "time")),
            st != NULL ? ", and the store holds it" : "");
    json_decref(rec);
}

static void check_hsm(tally *t, const kbd_config *cfg, kbr_store *st, const json_t *issuers,
                      const json_t *latest, EVP_PKEY **audit_pub)
{
    kbr_hsm *hsm = NULL;
    kbr_hsm_session *s = NULL;
    kbr_msg msg = {{0}};
    kbr_err err;

    *audit_pub = NULL;
    err = kbd_open_hsm(cfg, &hsm, &msg);
    if (err != KBR_OK) {
        say(t, "problem", "%s", msg.text[0] != '\0' ? msg.text : kbr_err_str(err));
        return;
    }
    say(t, "ok", "HSM: module %s, token \"%s\", logged in with the PIN of %s", cfg->pkcs11_module,
        cfg->token_label, cfg->pin_file);
    err = kbr_hsm_session_open(hsm, &s);
    if (err != KBR_OK)
        say(t, "problem", "cannot open an HSM session: %s", kbr_err_str(err));
    else {
        check_keys(t, s, issuers, latest, audit_pub);
        check_record(t, s, st);
    }
    kbr_hsm_session_close(s);
    kbr_hsm_close(hsm);
}

/* The latest checkpoint against the stored tree and the audit key, as a start checks it. */
static void check_log(tally *t, kbr_store *st, const char *path, EVP_PKEY *audit_pub)
{
    json_t *cp = NULL;
    unsigned char root[32];
    char hex[65], last_hash[65];
    int64_t size, last = 0;
    const char *signed_root;
    kbr_msg msg = {{0}};
    kbr_err err;

    if (kbr_store_audit_tail(st, &last, last_hash) != KBR_OK) {
        say(t, "problem", "store %s: its audit log cannot be read", path);
        return;
    }
    err = kbr_store_checkpoint_latest(st, &cp);
    if (err == KBR_ERR_NOT_FOUND) {
        say(t, "ok", "store %s: %lld audit entries, no signed checkpoint yet", path,
            (long long)last);
        return;
    }
    if (err != KBR_OK) {
        say(t, "problem", "store %s: its checkpoints cannot be read", path);
        return;
    }
    size = json_integer_value(json_object_get(cp, "size"));
    signed_root = json_string_value(json_object_get(cp, "root_hash"));
    if (kbr_store_merkle_root(st, size, root) != KBR_OK) {
        say(t, "problem", "store %s: the audit tree of %lld entries cannot be read", path,
            (long long)size);
    } else {
        kbr_hex_encode_buf(root, sizeof(root), hex);
        if (signed_root == NULL || strcmp(hex, signed_root) != 0)
            say(t, "problem",
                "store %s: the first %lld entries no longer match the checkpoint signed at %s; "
                "the store was rewritten",
                path, (long long)size, json_string_value(json_object_get(cp, "time")));
        else if (audit_pub != NULL &&
                 kbr_audit_checkpoint_signature_holds(cp, audit_pub, &msg) != KBR_OK)
            say(t, "problem",
                "store %s: checkpoint of %lld entries does not verify with the "
                "audit key",
                path, (long long)size);
        else
            say(t, "ok",
                "store %s: %lld audit entries; the latest checkpoint (%lld entries, %s) matches "
                "the stored tree%s",
                path, (long long)last, (long long)size,
                json_string_value(json_object_get(cp, "time")),
                audit_pub != NULL ? " and verifies with the audit key" : "");
    }
    json_decref(cp);
}

bool kbd_store_mode_warning(const char *file, char *out, size_t n)
{
    static const char *const tails[] = {"", "-wal", "-shm"};
    char side[4200], open_to[1024];
    struct stat sb;
    size_t found = 0, o = 0;

    open_to[0] = '\0';
    for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
        snprintf(side, sizeof(side), "%s%s", file, tails[i]);
        if (stat(side, &sb) != 0 || (sb.st_mode & 077) == 0)
            continue;
        if (o < sizeof(open_to))
            o += (size_t)snprintf(open_to + o, sizeof(open_to) - o, "%s%s (%04o)",
                                  found > 0 ? ", " : "", side, (unsigned)(sb.st_mode & 07777));
        found++;
    }
    if (found > 0)
        snprintf(out, n,
                 "store %s: %s open to other users; it holds every token's record and every "
                 "device's: chmod 600 them (a store made by this broker is 0600 from the start)",
                 file, open_to);
    return found > 0;
}

/* The store as it is: opened read-only when its schema is this broker's (*st), else NULL;
 * *file is a sqlite: store's file by the name SQLite opens (NULL for others), to free.  Messages
 * name it as `shown` (never with a password). */
static void check_store(tally *t, const kbd_config *cfg, const char *shown, kbr_store **current,
                        char **file)
{
    kbr_store *st = NULL;
    kbr_store_info info;
    kbr_msg msg = {{0}};
    const char *path = shown;
    kbr_err err = kbr_store_open_readonly(cfg->store, &st, &info, &msg);

    *current = NULL;
    *file = NULL;
    if (err != KBR_OK) {
        say(t, "problem", "%s", msg.text);
        return;
    }
    if (kbr_store_file(cfg->store, file, &msg) != KBR_OK) {
        say(t, "problem", "%s", msg.text);
        kbr_store_close(st);
        return;
    }
    if (info.served_by > 0)
        say(t, "ok", "store %s is being served by keybrokerd (pid %ld)", path, info.served_by);
    if (info.schema_version == 0) {
        kbr_store_no_schema(path, &msg);
        say(t, "problem", "%s", msg.text);
    } else if (info.schema_version > info.current_version)
        say(t, "problem", "store %s: schema version %d is newer than this broker's (%d)", path,
            info.schema_version, info.current_version);
    else if (info.schema_version < info.current_version)
        say(t, "warning",
            "store %s has schema version %d; the next start (or --init) migrates it to %d, after "
            "which brokers older than this one refuse it: back it up first",
            path, info.schema_version, info.current_version);
    if (info.schema_version == info.current_version)
        *current = st;
    else
        kbr_store_close(st);
    if (*file != NULL) {
        char *copy = strdup(*file), warning[2048];
        if (kbd_store_mode_warning(*file, warning, sizeof(warning)))
            say(t, "warning", "%s", warning);
        if (access(*file, W_OK) != 0)
            say(t, "problem", "store %s is not writable: %s", *file, strerror(errno));
        else if (copy != NULL && access(dirname(copy), W_OK | X_OK) != 0)
            say(t, "problem",
                "store %s: its directory is not writable (the daemon makes its -wal, -shm "
                "and .lock files there)",
                *file);
        free(copy);
    }
}

int kbd_check(const char *path)
{
    kbd_config cfg;
    kbr_msg msg = {{0}};
    tally t = {0, 0};
    EVP_PKEY *audit_pub = NULL;
    kbr_store *st = NULL;
    char *file = NULL, *shown = NULL;
    const char *name;
    json_t *issuers = NULL, *latest = NULL;
    kbr_err err = kbd_config_load_all(path, &cfg, config_problem, &t, &msg);

    if (err == KBR_OK)
        say(&t, "ok", "configuration %s", path);
    else if (cfg.pin_file == NULL || access(path, R_OK) != 0) {
        /* without a file or a pin_file nothing further can be checked */
        printf("%d problem%s\n", t.problems, t.problems == 1 ? "" : "s");
        kbd_config_cleanup(&cfg);
        return 1;
    } else
        printf("(the checks below use the defaults in place of the lines above)\n");
    check_network(&t, &cfg, path);
    if (cfg.log_file != NULL)
        check_writable(&t, "log_file", cfg.log_file);
    shown = kbr_store_shown(cfg.store);
    name = shown != NULL ? shown : "(the store)";
    check_store(&t, &cfg, name, &st, &file);
    if (st != NULL && kbr_store_issuer_keys(st, &issuers) != KBR_OK)
        say(&t, "problem", "store %s: its issuer keys cannot be read", name);
    if (st != NULL && kbr_store_checkpoint_latest(st, &latest) != KBR_OK)
        latest = NULL; /* check_log says why */
    check_hsm(&t, &cfg, st, issuers, latest, &audit_pub);
    if (st != NULL)
        check_log(&t, st, name, audit_pub);
    kbr_store_close(st);
    free(file);
    free(shown);
    json_decref(issuers);
    json_decref(latest);
    EVP_PKEY_free(audit_pub);
    kbd_config_cleanup(&cfg);
    if (t.problems == 0)
        printf("%s: no problems%s\n", path, t.warnings > 0 ? " (see the warnings)" : "");
    else
        printf("%s: %d problem%s\n", path, t.problems, t.problems == 1 ? "" : "s");
    return t.problems == 0 ? 0 : 1;
}
