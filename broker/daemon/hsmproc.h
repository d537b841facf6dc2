/*
 * hsmproc.h - the HSM's side of the daemon: the HSM process (hsmproc.c), the sandbox each
 * process enters (sandbox.c), and the record of the latest signed tree head the HSM keeps
 * (arecord.c).
 */
#ifndef KBD_HSMPROC_H
#define KBD_HSMPROC_H

#include "kbd.h"

/* init.c: reads pin_file and loads the module into this process: --init, --check and the HSM
 * process only. */
KBR_WUR kbr_err kbd_open_hsm(const kbd_config *cfg, kbr_hsm **out, kbr_msg *msg);

/* hsmproc.c: the HSM in processes of its own.  start forks, so it runs before any thread;
 * it returns once the HSM process is logged in (or with the reason it is not), with d->hsm
 * set.  reap, after SIGCHLD: true if the keeper died.  stop closes d->hsm and waits for
 * the keeper, after every session is closed. */
KBR_WUR kbr_err kbd_hsmproc_start(kbd *d, kbr_msg *msg);
bool kbd_hsmproc_reap(kbd *d);
/* Passes SIGHUP on to the keeper, which reopens its log and passes it to the HSM process. */
void kbd_hsmproc_hup(kbd *d);
void kbd_hsmproc_stop(kbd *d);

/*
 * Whether this build runs under AddressSanitizer or LeakSanitizer, whose leak check stops the
 * process's threads with ptrace and clone: the sandbox keeps both there (sandbox.c), and its
 * test expects them (tests/unit/test_sandbox.c).
 */
#if defined(__SANITIZE_ADDRESS__)
#define KBD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#define KBD_SANITIZED 1
#endif
#endif
#ifndef KBD_SANITIZED
#define KBD_SANITIZED 0
#endif

/* sandbox.c: no new privileges and a seccomp deny-list, for this process and what it forks
 * later.  The network profile also refuses new processes. */
KBR_WUR kbr_err kbd_sandbox_network(kbr_msg *msg);
KBR_WUR kbr_err kbd_sandbox_hsm(kbr_msg *msg);

/*
 * arecord.c: the audit record in the HSM (the latest signed tree head, a data object under
 * KBD_RECORD_LABEL) and the signing of tree heads.  A record is the checkpoint effect's JSON
 * form (kbr_store.h) with its signer and a "serial", one more at each write.
 */
/* "kbr/audit", or "kbr/audit/<n>" with n a number from 1: the labels audit keys have. */
bool kbd_audit_label_valid(const char *label);
/* A record read strictly (KBR_ERR_BAD_REQUEST with msg); the latest of those an HSM holds (the
 * highest serial; *out NULL when none; KBR_ERR_HSM_KEY with msg when one does not read). */
KBR_WUR kbr_err kbd_record_parse(const unsigned char *v, size_t len, json_t **out, kbr_msg *msg);
KBR_WUR kbr_err kbd_record_latest(const kbr_hsm_data *items, size_t n, json_t **out, kbr_msg *msg);
/* The HSM's latest record (*out NULL when it holds none). */
KBR_WUR kbr_err kbd_record_read(kbr_hsm_session *s, json_t **out, kbr_msg *msg);
/* The label of the audit key a checkpoint (record or store row) hands on: its next key's, or
 * its own; NULL for an older broker's checkpoint. */
const char *kbd_cp_signer_label(const json_t *cp);
/* The record's keys are the ones the HSM holds under its labels, and both its signatures (and
 * the next key's on the note) verify with them.  KBR_ERR_CONFLICT with msg otherwise. */
KBR_WUR kbr_err kbd_record_holds(kbr_hsm_session *s, const json_t *cp, kbr_msg *msg);
/* The HSM process's check of a record write (kbr_hsm_data_check_fn; see arecord.c), and the
 * same with its reason in msg. */
KBR_WUR kbr_err kbd_record_verdict(kbr_hsm_session *s, const kbr_hsm_data *old, size_t nold,
                                   const unsigned char *value, size_t len,
                                   const unsigned char *evidence, size_t evlen, kbr_msg *msg);
KBR_WUR kbr_err kbd_record_check(void *arg, kbr_hsm_session *s, const kbr_hsm_data *old,
                                 size_t nold, const unsigned char *value, size_t len,
                                 const unsigned char *evidence, size_t evlen);
/* The store holds the record's head: at least its size in entries, with its root.
 * KBR_ERR_CONFLICT with msg naming "rollback" otherwise. */
KBR_WUR kbr_err kbd_record_vs_store(kbr_store *st, const json_t *rec, kbr_msg *msg);
/* *in: the store records the record's head (a checkpoint with its signature), or went on past
 * it (it is no head the log could record next: an HSM that did not see the later heads of
 * brokers sharing the store); false when the record's entry is still to be committed. */
KBR_WUR kbr_err kbd_record_in_store(kbr_store *st, const json_t *rec, bool *in);
/* The checkpoint effect of a record or signed head (serial dropped), a list of one. */
KBR_WUR kbr_err kbd_record_effects(const json_t *cp, kbr_effects **out);
/* An audit record by the broker (op) that records cp with its checkpoint effect. */
KBR_WUR kbr_err kbd_record_entry(const json_t *cp, const char *op, kbr_audit_rec **out);
typedef struct {
    const char *origin;     /* the notes' origin and key name */
    const json_t *rec;      /* the HSM's latest record, or NULL when it holds none */
    const char *next_label; /* a rotation to the audit key under this label, or NULL */
    /* --recover: the head replaces the record (rec, or one that does not read when rec is
     * NULL) instead of extending it, and is signed by the key the store hands on */
    bool fork;
} kbd_head_spec;
/*
 * Signs the head of st's log as it stands with the audit key the log hands on (the record's,
 * else the store's, else kbr/audit), as canonical JSON and as a signed note (cosigned by the
 * next key for a rotation), and records it in the HSM as the next serial, with the consistency
 * proof from the recorded head.  *effect is the checkpoint effect's JSON form (new ref), for
 * the entry to commit after.  KBR_ERR_CONFLICT with msg naming "rollback" when the store does
 * not hold the recorded head; the HSM's refusal otherwise, with msg.
 */
KBR_WUR kbr_err kbd_head_sign_and_record(kbr_hsm_session *s, kbr_store *st,
                                         const kbd_head_spec *spec, json_t **effect, kbr_msg *msg);

#endif
