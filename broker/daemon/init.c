/*
 * init.c - `keybrokerd -c FILE --init`: the store, the issuer and audit keys
 * in the HSM, and a fresh bootstrap token.  Running it again changes nothing
 * but the bootstrap token: the previous live bootstrap tokens are revoked in
 * the same audit record that issues the new one, so there is only ever one,
 * and with them every token issued under them that is not an orphan (the
 * token tree of h_tokens.c).
 *
 * The issuer key is the ledger's current one, whatever rotations made it;
 * only a ledger without issuer keys (a new deployment, or a store an older
 * broker wrote) takes kbr/issuer, made when missing, and records it in the
 * bootstrap token's own entry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "kbd.h"
#include "hsmproc.h"
#include "modes.h"

#define BOOTSTRAP_TTL (24L * 3600)

kbr_err kbd_open_hsm(const kbd_config *cfg, kbr_hsm **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_secret *pin = NULL;

    *out = NULL;
    err = kbr_secret_from_file(cfg->pin_file, &pin);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, KBR_ERR_CONFIG, "cannot read pin_file %s", cfg->pin_file));
    err = kbr_hsm_open(cfg->pkcs11_module, cfg->token_label, pin, out, msg);
out:
    kbr_secret_free(pin);
    return err;
}

/*
 * Finds the key, or generates it when missing.  The issuer key is ECDSA P-256 (tokens are
 * ES256).  The audit key is Ed25519: one key signs the checkpoints' JSON heads and their C2SP
 * signed notes, whose common signature type is Ed25519, it is deterministic (no nonce for the
 * HSM to get wrong), and `openssl pkeyutl -verify -rawin` checks it with nothing else.  An
 * older broker's P-256 audit key is refused by name, never used for the other kind.
 */
static kbr_err ensure_key(kbr_hsm_session *s, const char *label, kbr_alg alg, kbr_msg *msg,
                          bool *created)
{
    kbr_hsm_key_info info = {0};
    kbr_err err = kbr_hsm_find_key(s, label, &info);

    *created = false;
    if (err == KBR_OK && alg == KBR_ALG_ED25519)
        return kbd_audit_key_usable(s, label, msg);
    if (err == KBR_OK)
        return info.alg_known && info.alg == alg
                   ? KBR_OK
                   : kbr_fail(msg, KBR_ERR_HSM_KEY, "HSM key %s is not an %s key", label,
                              kbr_alg_name(alg));
    if (err != KBR_ERR_NOT_FOUND)
        return kbr_fail(msg, err, "HSM lookup of %s failed: %s", label, kbr_err_str(err));
    err = kbr_hsm_generate(s, label, alg, &info);
    if (err != KBR_OK)
        return kbr_fail(msg, err, "cannot generate %s in the HSM: %s", label, kbr_err_str(err));
    *created = true;
    return KBR_OK;
}

/*
 * The key that signs the bootstrap token: the ledger's current issuer key, which must be in
 * the HSM as recorded, like every key a live token was signed with.  A ledger without issuer
 * keys gets kbr/issuer (made when missing): *record is the issuer.rotate effect that records
 * it, for the bootstrap token's entry.
 */
static kbr_err pick_issuer(kbr_hsm_session *s, const kbr_policy *p, const json_t *keys,
                           kbd_issuer *current, kbr_effects **record, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    EVP_PKEY *pub = NULL;
    bool created;

    *record = NULL;
    if (json_array_size(keys) > 0) {
        KBR_GUARD(kbd_issuers_check_hsm(s, p, keys, time(NULL), msg));
        goto out;
    }
    KBR_GUARD(ensure_key(s, KBD_ISSUER_LABEL, KBR_ALG_ECDSA_P256, msg, &created));
    if (created)
        fprintf(stderr, "keybrokerd: created issuer key %s in the HSM\n", KBD_ISSUER_LABEL);
    KBR_GUARD(kbd_issuer_effect(s, KBD_ISSUER_LABEL, NULL, time(NULL), current, &pub, record, msg));
out:
    EVP_PKEY_free(pub);
    return err;
}

/*
 * jti of every live bootstrap token and of every live token under them, to be
 * revoked by the new one's record.  The stored tokens are in the same
 * registry the daemon keeps (load_ledger), so the tree is walked by one rule.
 */
static kbr_err jtis_to_revoke(kbr_store *st, kbr_policy *p, json_t **jtis)
{
    kbr_err err = KBR_OK;
    json_t *rows = NULL, *row;
    time_t now = time(NULL);
    size_t i;

    *jtis = json_array();
    KBR_ENSURE(*jtis != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_store_token_list(st, KBD_BOOTSTRAP_SUB, NULL, true, now, &rows));
    json_array_foreach(rows, i, row)
    {
        const kbr_token *t = kbr_policy_find(p, json_string_value(json_object_get(row, "jti")));
        if (t != NULL && t->revoked_at == 0 && t->expires_at > now)
            KBR_ENSURE(json_array_append(*jtis, json_object_get(row, "jti")) == 0, KBR_ERR_NOMEM);
    }
    (void)kbr_policy_revoke_descendants(p, now, *jtis);
out:
    json_decref(rows);
    return err;
}

/*
 * One record issues the new bootstrap token and revokes the old tree: there is only ever one.
 * It records the issuer key first when the ledger had none (issuer_fx, may be NULL).
 */
static kbr_err record_bootstrap(kbr_audit *audit, const kbr_effects *issuer_fx,
                                const kbr_effects *issue, json_t *old_jtis)
{
    kbr_err err = KBR_OK;
    kbr_audit_rec *rec = NULL;
    char now[KBR_TIME_LEN];
    json_t *issued = kbd_effect_json(kbr_effects_get(issue, 0));
    const kbr_effect *key = kbr_effects_get(issuer_fx, 0);
    kbr_effect revoke = {.type = KBR_EFFECT_TOKEN_REVOKE,
                         .u.token_revoke = {.at = now,
                                            .reason = "the bootstrap token, or a token issued "
                                                      "under it, was replaced by a new "
                                                      "bootstrap token"}};

    kbr_time_fmt(time(NULL), now);
    KBR_ENSURE(issued != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(kbr_audit_rec_new("service:keybrokerd", NULL, "token.issue", NULL, &rec));
    KBR_GUARD(kbr_effects_new(&rec->effects));
    if (key != NULL) {
        KBR_GUARD(kbr_effects_add(rec->effects, key));
        json_object_set_new(rec->detail, "issuer_key",
                            json_pack("{s:s,s:s}", "kid", key->u.issuer_rotate.kid, "hsm_label",
                                      key->u.issuer_rotate.hsm_label));
    }
    KBR_GUARD(kbr_effects_add(rec->effects, kbr_effects_get(issue, 0)));
    json_object_set(rec->detail, "kid", json_object_get(issued, "kid"));
    json_object_set(rec->detail, "jti", json_object_get(issued, "jti"));
    json_object_set(rec->detail, "token_sub", json_object_get(issued, "sub"));
    json_object_set(rec->detail, "scope", json_object_get(issued, "scope"));
    json_object_set(rec->detail, "expires_at", json_object_get(issued, "expires_at"));
    json_object_set_new(rec->detail, "bootstrap", json_true());
    if (json_array_size(old_jtis) > 0) {
        KBR_GUARD(kbd_strings_of(old_jtis, &revoke.u.token_revoke.jtis));
        KBR_GUARD(kbr_effects_add(rec->effects, &revoke));
        json_object_set(rec->detail, "revoked", old_jtis);
    }
    KBR_GUARD(kbr_audit_append_sync(audit, rec));
out:
    free((void *)revoke.u.token_revoke.jtis.items);
    json_decref(issued);
    kbr_audit_rec_free(rec);
    return err;
}

/* The issuer keys and tokens of the ledger in a registry, as the daemon would load them. */
static kbr_err load_ledger(kbr_store *st, const kbd_config *cfg, kbr_policy **p, json_t **keys,
                           kbd_issuer *current, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *rows = NULL, *row;
    size_t i;

    *keys = NULL;
    KBR_GUARD(kbr_policy_new(cfg->instance_id, p));
    KBR_GUARD(kbr_store_issuer_keys(st, keys));
    KBR_GUARD(kbd_issuers_to_policy(*p, *keys, current, msg));
    KBR_GUARD(kbr_store_token_list(st, NULL, NULL, false, time(NULL), &rows));
    json_array_foreach(rows, i, row)
    {
        err = kbr_policy_add_token(*p, row);
        KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "stored token %s is unreadable",
                                           json_string_value(json_object_get(row, "jti"))));
    }
out:
    json_decref(rows);
    return err;
}

kbr_err kbd_bootstrap_issuer(kbr_hsm_session *s, kbr_store *st, const kbd_config *cfg,
                             kbd_issuer *issuer, kbr_effects **record, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_policy *p = NULL;
    json_t *keys = NULL;

    *record = NULL;
    KBR_GUARD(load_ledger(st, cfg, &p, &keys, issuer, msg));
    KBR_GUARD(pick_issuer(s, p, keys, issuer, record, msg));
out:
    kbr_policy_free(p);
    json_decref(keys);
    return err;
}

static kbr_err mint_bootstrap(kbd_config *cfg, kbr_hsm_session *s, kbr_store *st, kbr_audit *audit,
                              kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_scope scope = {.ops = KBR_OP_ADMIN | KBR_OP_READ, .max_uses = -1};
    kbd_token_spec spec = {.sub = KBD_BOOTSTRAP_SUB,
                           .issued_by = "keybrokerd --init",
                           .scope = &scope,
                           .ttl = BOOTSTRAP_TTL,
                           .cnf_x5t = NULL};
    kbd_issuer issuer;
    char *token = NULL, jti[33] = "";
    kbr_effects *effect = NULL, *issuer_fx = NULL;
    kbr_policy *p = NULL;
    json_t *old = NULL, *keys = NULL;
    kbr_msg why = {{0}};

    KBR_GUARD(load_ledger(st, cfg, &p, &keys, &issuer, msg));
    KBR_GUARD(pick_issuer(s, p, keys, &issuer, &issuer_fx, msg));
    KBR_GUARD(jtis_to_revoke(st, p, &old));
    KBR_GUARD(kbd_token_mint(s, cfg->instance_id, &issuer, &spec, &token, &effect, msg));
    snprintf(jti, sizeof(jti), "%s", kbr_effects_get(effect, 0)->u.token_issue.jti);
    err = record_bootstrap(audit, issuer_fx, effect, old);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err, "cannot record the bootstrap token: %s", kbr_err_str(err)));
    err = kbr_file_write(cfg->bootstrap_token_file, token, strlen(token), 0600, &why);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err, "cannot write bootstrap_token_file: %s", why.text));
    fprintf(stderr, "keybrokerd: bootstrap token (jti %s, issuer key %s) written to %s\n", jti,
            issuer.label, cfg->bootstrap_token_file);
out:
    if (token != NULL)
        OPENSSL_clear_free(token, strlen(token));
    kbr_effects_free(effect);
    kbr_effects_free(issuer_fx);
    kbr_policy_free(p);
    json_decref(keys);
    json_decref(old);
    return err;
}

/*
 * The HSM's record and this store agree before --init adds to the store: a store behind the
 * record is a rollback, which only --recover accepts.  *pending is the entry of a head the HSM
 * recorded but the store lost, to commit first.
 */
static kbr_err init_record(kbr_hsm_session *s, kbr_store *st, json_t **rec, kbr_audit_rec **pending,
                           kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    bool in = false;

    *pending = NULL;
    KBR_GUARD(kbd_record_read(s, rec, msg));
    if (*rec == NULL)
        goto out;
    err = kbd_record_vs_store(st, *rec, msg);
    KBR_ENSURE(err != KBR_ERR_CONFLICT,
               kbd_msg_wrap(msg, err, "",
                            ". After a restore from a backup: keybrokerd -c FILE --recover"));
    KBR_GUARD(err);
    KBR_GUARD(kbd_record_in_store(st, *rec, &in));
    if (!in)
        KBR_GUARD(kbd_record_entry(*rec, "audit.checkpoint", pending));
out:
    return err;
}

kbr_err kbd_checkpoint_now(kbr_hsm_session *s, kbr_store *st, kbr_audit *audit,
                           const kbd_head_spec *spec, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *effect = NULL;
    kbr_audit_rec *rec = NULL;

    KBR_GUARD(kbd_head_sign_and_record(s, st, spec, &effect, msg));
    KBR_GUARD(kbd_record_entry(effect, "audit.checkpoint", &rec));
    err = kbr_audit_append_sync(audit, rec);
    KBR_ENSURE(err == KBR_OK,
               kbr_fail(msg, err, "cannot record the checkpoint: %s", kbr_err_str(err)));
    fprintf(stderr, "keybrokerd: checkpoint of %lld entries signed by audit key %s (key ID %s)\n",
            (long long)json_integer_value(json_object_get(effect, "size")),
            json_string_value(json_object_get(effect, "key_label")),
            json_string_value(json_object_get(effect, "key_id")));
out:
    kbr_audit_rec_free(rec);
    json_decref(effect);
    return err;
}

/*
 * --init loads the module into its one process, unlike a serving broker
 * (hsmproc.c): it reads no request from the network, only the
 * configuration, the store and the token, and exits when it is done.
 */
kbr_err kbd_init_deployment(kbd_config *cfg, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    kbr_hsm *hsm = NULL;
    kbr_hsm_session *s = NULL;
    kbr_store *st = NULL;
    kbr_audit *audit = NULL;
    json_t *rec = NULL;
    kbr_audit_rec *pending = NULL;
    bool created;
    int lock = -1;

    /* a daemon serving the store would keep honouring the bootstrap token this revokes */
    err = kbr_store_lock(cfg->store, &lock, msg);
    if (err == KBR_ERR_CONFLICT) {
        char holder[KBR_MSG_LEN];
        snprintf(holder, sizeof(holder), "%s", msg->text);
        err = kbr_fail(msg, err,
                       "%s; stop it before --init (it would go on honouring the bootstrap token "
                       "--init replaces)",
                       holder);
    }
    KBR_GUARD(err);
    KBR_GUARD(kbr_store_open(cfg->store, &st, msg));
    KBR_GUARD(kbd_open_hsm(cfg, &hsm, msg));
    err = kbr_hsm_session_open(hsm, &s);
    KBR_ENSURE(err == KBR_OK, kbr_fail(msg, err, "cannot open an HSM session"));
    KBR_GUARD(ensure_key(s, KBD_AUDIT_LABEL, KBR_ALG_ED25519, msg, &created));
    if (created)
        fprintf(stderr, "keybrokerd: created audit key %s in the HSM\n", KBD_AUDIT_LABEL);
    KBR_GUARD(init_record(s, st, &rec, &pending, msg));
    KBR_GUARD(kbr_audit_start(cfg->store, 1000, &audit, msg));
    if (pending != NULL) {
        err = kbr_audit_append_sync(audit, pending);
        KBR_ENSURE(err == KBR_OK,
                   kbr_fail(msg, err, "cannot record the HSM's checkpoint: %s", kbr_err_str(err)));
    }
    KBR_GUARD(mint_bootstrap(cfg, s, st, audit, msg));
    /* the HSM records a head covering the bootstrap entry: a store behind it is a rollback */
    KBR_GUARD(kbd_checkpoint_now(s, st, audit,
                                 &(kbd_head_spec){cfg->audit_origin, rec, NULL, false}, msg));
out:
    kbr_audit_rec_free(pending);
    json_decref(rec);
    kbr_audit_stop(audit);
    kbr_store_close(st);
    kbr_hsm_session_close(s);
    kbr_hsm_close(hsm);
    kbr_store_unlock(lock);
    return err;
}
