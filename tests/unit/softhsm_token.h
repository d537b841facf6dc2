/*
 * softhsm_token.h - a SoftHSM2 token of the unit tests' own, in a private
 * directory, created before the module is loaded and removed afterwards.
 */
#ifndef KBT_SOFTHSM_TOKEN_H
#define KBT_SOFTHSM_TOKEN_H

#include <limits.h>

#define KBT_TOKEN_LABEL "kbr-test"
#define KBT_USER_PIN    "1234"

/* The directory of the token (empty until created) and the module to load. */
extern char kbt_token_dir[PATH_MAX];
extern const char *kbt_module_path;

/* Makes the directory (prefix names it), the softhsm2.conf that SOFTHSM2_CONF now points at,
 * and the token.  0 on success. */
int kbt_token_create(const char *prefix);
/* Removes the directory and everything in it. */
void kbt_token_destroy(void);

#endif
