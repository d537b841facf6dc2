/*
 * recover.c - `keybrokerd -c FILE --recover`: accepting a store the HSM's record says was
 * rolled back (a restore from a backup), with what was lost written down.
 *
 * The daemon refuses to start on a store shorter than, or different from, the last head the
 * HSM recorded (keybrokerd.c).  After a restore that is the truth: the entries after the copy are
 * gone, and with them revocations, quota counts and devices.  --recover, with the daemon
 * stopped (it takes the store lock), records one "audit.recovered" entry that
 *   - names the lost range: the entries the HSM's record covered that the store does not hold
 *     (after the last recorded head the HSM knows nothing, so "at least" up to it),
 *   - revokes every token the store knows (token.revoke_all): a revocation in the lost range
 *     cannot come back, so no token issued before the recovery may be trusted,
 *   - issues a new bootstrap token, written like --init's (mode 0600, bootstrap_token_file);
 * then signs a head of the recovered log with the audit key the store hands on and has the
 * HSM record it in place of the old record (this process holds the module and the PIN, so
 * the HSM process's rule that a record only extends the last does not stand in its way),
 * and commits that checkpoint's entry.  A crash before the new record leaves the store still
 * refused: --recover runs again and records the same range once more.  It refuses to run when
 * there is nothing to recover.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "kbd.h"
#include "modes.h"

#define BOOTSTRAP_TTL (24L * 3600)
#define REVOKE_REASON                                                                              \
    "keybrokerd --recover: the store was restored and entries were lost; a revocation among "      \
    "them cannot come back, so no token issued before the recovery is trusted"

typedef struct {
    json_t *rec; /* the HSM's latest record, NULL when it does not read */
    bool unreadable;
    int64_t kept;  /* entries the store holds */
    bool diverged; /* the store holds the recorded size but other entries */
} lost;

/* What the store lost against the record: nothing to recover is KBR_ERR_CONFLICT with msg. */
static kbr_err what_was_lost(kbr_hsm_session *s, kbr_store *st, lost *l, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char tail[65];
    kbr_msg why = {{0}};
    json_int_t size;

    err = kbd_record_read(s, &l->rec, &why);
    if (err == KBR_ERR_HSM_KEY) {
        /* a record that does not read is replaced; the log says so */
        fprintf(stderr, "keybrokerd: %s; it will be replaced\n", why.text);
        l->unreadable = true;
        err = KBR_OK;
    }
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "%s", why.text));
    KBR_GUARD(kbr_store_audit_tail(st, &l->kept, tail));
    if (l->unreadable)
        goto out;
    KBR_ENSURE(l->rec != NULL,
               kbr_fail(msg, KBR_ERR_CONFLICT,
                        "nothing to recover: the HSM holds no audit record yet (the first "
                        "checkpoint makes one)"));
    size = json_integer_value(json_object_get(l->rec, "size"));
    err = kbd_record_vs_store(st, l->rec, &why);
    KBR_ENSURE(err != KBR_OK,
               kbr_fail(msg, KBR_ERR_CONFLICT,
                        "nothing to recover: the store holds the %lld entries of the checkpoint "
                        "the HSM recorded (signed at %s)",
                        (long long)size, json_string_value(json_object_get(l->rec, "time"))));
    KBR_ENSURE(err == KBR_ERR_CONFLICT, kbr_fail(msg, err, "%s", why.text));
    err = KBR_OK;
    l->diverged = l->kept >= size;
out:
    return err;
}

/* The recovered entry's detail: the range lost and the head the HSM had recorded. */
static json_t *lost_detail(const lost *l)
{
    json_t *d = json_pack("{s:I}", "entries_kept", (json_int_t)l->kept);
    json_int_t size;

    if (d == NULL)
        return NULL;
    if (l->unreadable) {
        json_object_set_new(d, "hsm_record", json_string("unreadable"));
        return d;
    }
    size = json_integer_value(json_object_get(l->rec, "size"));
    json_object_set_new(d, "hsm_checkpoint",
                        json_pack("{s:O,s:O,s:O,s:O,s:O}", "size", json_object_get(l->rec, "size"),
                                  "root_hash", json_object_get(l->rec, "root_hash"), "time",
                                  json_object_get(l->rec, "time"), "key_id",
                                  json_object_get(l->rec, "key_id"), "signature_b64",
                                  json_object_get(l->rec, "signature_b64")));
    /*
     * "to" is the last entry the HSM vouched for: entries after it, never recorded there, may
     * be lost too ("open_ended").  A store of another history holds entries where the lost ones
     * were: which of its own first entries agree with them cannot be told ("from" null).
     */
    if (!l->diverged)
        json_object_set_new(d, "lost",
                            json_pack("{s:I,s:I,s:b}", "from", (json_int_t)l->kept + 1, "to", size,
                                      "open_ended", 1));
    else
        json_object_set_new(
            d, "lost",
            json_pack("{s:n,s:I,s:b,s:b}", "from", "to", size, "open_ended", 1, "diverged", 1));
    return d;
}

/* One record: what was lost, every token revoked, a new bootstrap token (issued after). */
static kbr_err record_recovered(kbr_audit *audit, const lost *l, const kbr_effects *issuer_fx,
                                kbr_effects *issue, kbr_audit_rec **out)
{
    kbr_err err = KBR_OK;
    kbr_audit_rec *rec = NULL;
    char now[KBR_TIME_LEN];
    json_t *detail = lost_detail(l), *issued = kbd_effect_json(kbr_effects_get(issue, 0));
    const kbr_effect *key = kbr_effects_get(issuer_fx, 0);
    kbr_effect revoke = {.type = KBR_EFFECT_TOKEN_REVOKE_ALL,
                         .u.token_revoke_all = {.at = now, .reason = REVOKE_REASON}};

    *out = NULL;
    kbr_time_fmt(time(NULL), now);
    KBR_ENSURE(detail != NULL && issued != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_audit_rec_new(KBD_SERVICE_SUB, NULL, "audit.recovered", NULL, &rec));
    KBR_ENSURE(json_object_update(rec->detail, detail) == 0, KBR_ERR_NOMEM);
    json_object_set_new(rec->detail, "tokens_revoked", json_string("every token issued before"));
    json_object_set_new(rec->detail, "bootstrap",
                        json_pack("{s:O,s:O}", "jti", json_object_get(issued, "jti"), "expires_at",
                                  json_object_get(issued, "expires_at")));
    KBR_GUARD(kbr_effects_new(&rec->effects));
    KBR_GUARD(kbr_effects_add(rec->effects, &revoke));
    if (key != NULL) {
        KBR_GUARD(kbr_effects_add(rec->effects, key));
        json_object_set_new(rec->detail, "issuer_key",
                            json_pack("{s:s,s:s}", "kid", key->u.issuer_rotate.kid, "hsm_label",
                                      key->u.issuer_rotate.hsm_label));
    }
    KBR_GUARD(kbr_effects_add(rec->effects, kbr_effects_get(issue, 0)));
    KBR_GUARD(kbr_audit_append_sync(audit, rec));
    *out = rec;
    rec = NULL;
out:
    json_decref(issued);
    json_decref(detail);
    kbr_audit_rec_free(rec);
    return err;
}

static kbr_err recover(kbd_config *cfg, kbr_hsm_session *s, kbr_store *st, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    lost l = {0};
    kbr_audit *audit = NULL;
    kbr_audit_rec *done = NULL;
    kbr_scope scope = {.ops = KBR_OP_ADMIN | KBR_OP_READ, .max_uses = -1};
    kbd_token_spec spec = {.sub = KBD_BOOTSTRAP_SUB,
                           .issued_by = "keybrokerd --recover",
                           .scope = &scope,
                           .ttl = BOOTSTRAP_TTL,
                           .cnf_x5t = NULL};
    kbr_effects *issue = NULL, *issuer_fx = NULL;
    kbd_issuer issuer;
    char *token = NULL, jti[33] = "";
    json_t *latest = NULL;
    const char *label = NULL;
    kbr_msg why = {{0}};

    KBR_GUARD(what_was_lost(s, st, &l, msg));
    /* the recovered log goes on with the audit key it hands on itself */
    err = kbr_store_checkpoint_latest(st, &latest);
    KBR_ENSURE(err == KBR_OK || err == KBR_ERR_NOT_FOUND,
               kbr_fail(msg, err, "audit log: checkpoints cannot be read"));
    err = KBR_OK;
    label = latest != NULL ? kbd_cp_signer_label(latest) : NULL;
    KBR_GUARD(kbd_audit_key_usable(s, label != NULL ? label : KBD_AUDIT_LABEL, msg));
    err = kbr_audit_start(cfg->store, 10000, &audit, &why);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "%s", why.text));
    KBR_GUARD(kbd_bootstrap_issuer(s, st, cfg, &issuer, &issuer_fx, msg));
    KBR_GUARD(kbd_token_mint(s, cfg->instance_id, &issuer, &spec, &token, &issue, msg));
    snprintf(jti, sizeof(jti), "%s", kbr_effects_get(issue, 0)->u.token_issue.jti);
    err = record_recovered(audit, &l, issuer_fx, issue, &done);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err, "cannot record the recovery: %s", kbr_err_str(err)));
    err = kbr_file_write(cfg->bootstrap_token_file, token, strlen(token), 0600, &why);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err, "cannot write bootstrap_token_file: %s", why.text));
    KBR_GUARD(kbd_checkpoint_now(s, st, audit,
                                 &(kbd_head_spec){cfg->audit_origin, l.rec, NULL, true}, msg));
    if (l.unreadable)
        fprintf(stderr,
                "keybrokerd: recovered (entry %lld): the HSM's record did not read; "
                "the store's %lld entries are kept\n",
                (long long)done->seq, (long long)l.kept);
    else
        fprintf(stderr,
                "keybrokerd: recovered (entry %lld): the store holds %lld entries; %s up to "
                "entry %lld, which the HSM recorded at %s, and any after it, are lost\n",
                (long long)done->seq, (long long)l.kept,
                l.diverged ? "the entries it holds differ from those" : "the entries after them",
                (long long)json_integer_value(json_object_get(l.rec, "size")),
                json_string_value(json_object_get(l.rec, "time")));
    fprintf(stderr,
            "keybrokerd: every token issued before entry %lld is revoked; bootstrap token (jti "
            "%s) written to %s\n",
            (long long)done->seq, jti, cfg->bootstrap_token_file);
out:
    if (token != NULL)
        OPENSSL_clear_free(token, strlen(token));
    kbr_effects_free(issue);
    kbr_effects_free(issuer_fx);
    kbr_audit_rec_free(done);
    kbr_audit_stop(audit);
    json_decref(latest);
    json_decref(l.rec);
    return err;
}

kbr_err kbd_recover_deployment(kbd_config *cfg, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_hsm *hsm = NULL;
    kbr_hsm_session *s = NULL;
    kbr_store *st = NULL;
    int lock = -1;

    /* what a store lost is recorded in that store: a missing one is not made empty, which
     * would move the HSM's record onto a log of nothing and refuse the store put back */
    err = kbr_store_exists(cfg->store, msg);
    if (err == KBR_ERR_NOT_FOUND) {
        char why[KBR_MSG_LEN];
        snprintf(why, sizeof(why), "%s", msg->text);
        err = kbr_fail(msg, err,
                       "%s; put the store (or its restored copy) in place before --recover", why);
    }
    KBR_GUARD(err);
    /* a daemon serving the store would go on with the old tokens and counters */
    err = kbr_store_lock(cfg->store, &lock, msg);
    if (err == KBR_ERR_CONFLICT) {
        char holder[KBR_MSG_LEN];
        snprintf(holder, sizeof(holder), "%s", msg->text);
        err = kbr_fail(msg, err, "%s; stop it before --recover", holder);
    }
    KBR_GUARD(err);
    KBR_GUARD(kbr_store_open_existing(cfg->store, &st, msg));
    KBR_GUARD(kbd_open_hsm(cfg, &hsm, msg));
    err = kbr_hsm_session_open(hsm, &s);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "cannot open an HSM session"));
    KBR_GUARD(recover(cfg, s, st, msg));
out:
    kbr_store_close(st);
    kbr_hsm_session_close(s);
    kbr_hsm_close(hsm);
    kbr_store_unlock(lock);
    return err;
}
