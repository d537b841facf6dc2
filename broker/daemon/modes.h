/*
 * modes.h - keybrokerd's modes besides serving: --init, --recover, --check, --verify-store,
 * and the checks on the HSM's keys they and the start share.
 */
#ifndef KBD_MODES_H
#define KBD_MODES_H

#include "hsmproc.h"
#include "kbd.h"

/* keybrokerd.c: the audit key under label is an Ed25519 key in the HSM; an older broker's ECDSA
 * kbr/audit is refused with what to do (KBR_ERR_HSM_KEY), a missing one names --init. */
KBR_WUR kbr_err kbd_audit_key_usable(kbr_hsm_session *s, const char *label, kbr_msg *msg);

/* init.c */
KBR_WUR kbr_err kbd_init_deployment(kbd_config *cfg, kbr_msg *msg);
/* init.c: the issuer key a bootstrap token is signed with, the ledger's current one (in the
 * HSM as recorded); when the ledger has none, kbr/issuer (made when missing) and *record the
 * issuer.rotate effect (a list of one, caller frees) that records it, else NULL. */
KBR_WUR kbr_err kbd_bootstrap_issuer(kbr_hsm_session *s, kbr_store *st, const kbd_config *cfg,
                                     kbd_issuer *issuer, kbr_effects **record, kbr_msg *msg);
/* Signs the head of the log as it stands (kbd_head_sign_and_record, in this process) and
 * commits its entry: --init and --recover end with the HSM's record matching the store. */
KBR_WUR kbr_err kbd_checkpoint_now(kbr_hsm_session *s, kbr_store *st, kbr_audit *audit,
                                   const kbd_head_spec *spec, kbr_msg *msg);
/* recover.c: `keybrokerd --recover` (docs/operations.md, "Restoring"). */
KBR_WUR kbr_err kbd_recover_deployment(kbd_config *cfg, kbr_msg *msg);
/* check.c: keybrokerd --check; prints one line per problem, returns the exit status. */
int kbd_check(const char *path);
/* verify_store.c: --verify-store; prints what it checked.  KBR_ERR_CONFLICT when the store differs
 * from its log (msg names the first difference).  Its scratch files go in a directory of their
 * own made in scratch_dir (NULL: the store's directory). */
KBR_WUR kbr_err kbd_verify_store(const kbd_config *cfg, const char *scratch_dir, kbr_msg *msg);

#endif
