/*
 * reload.c - SIGHUP: the configuration file is read again and what can
 * change while serving is applied; nothing else is touched, and no
 * connection is dropped.
 *
 * Applied: tls_cert, tls_key and tls_client_ca are loaded again (their
 * files, or other paths); new connections get the new certificate, open
 * ones keep the one they were accepted with.  log_file is reopened (by
 * every process of the broker) and log_format applied.  A file that does
 * not load (a bad certificate, a key that does not match it, an unreadable
 * CA file, a configuration line that does not parse) changes nothing: the
 * old certificate stays, and the log says why.
 *
 * Everything else is read once at start: a change to it is named in the
 * log with "restart keybrokerd to apply it", as PostgreSQL does, and has no
 * effect until then.  So are switching TLS or client certificates on or
 * off, and switching log_file on or off (standard error cannot be given
 * back once it was the file).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "hsmproc.h"

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void needs_restart(const char *setting, int *n)
{
    kbd_log(KBD_LOG_WARN, "reload.needs_restart", NULL,
            "reload: %s changed; restart keybrokerd to apply it", setting);
    (*n)++;
}

/* Settings read once at start: each one that differs is named. */
static int compare_fixed(const kbd_config *run, const kbd_config *f)
{
    int n = 0;

#define STR(field, name)                                                                           \
    if (!same_str(run->field, f->field))                                                           \
    needs_restart(name, &n)
#define NUM(field, name)                                                                           \
    if (run->field != f->field)                                                                    \
    needs_restart(name, &n)
    if (!same_str(run->listen_host, f->listen_host) || run->listen_port != f->listen_port)
        needs_restart("listen", &n);
    if (!same_str(run->ops_listen_host, f->ops_listen_host) ||
        run->ops_listen_port != f->ops_listen_port)
        needs_restart("ops_listen", &n);
    STR(port_file, "port_file");
    STR(instance_id, "instance_id");
    STR(pkcs11_module, "pkcs11_module");
    STR(token_label, "token_label");
    STR(pin_file, "pin_file");
    STR(store, "store");
    STR(bootstrap_token_file, "bootstrap_token_file");
    NUM(workers, "workers");
    NUM(body_limit, "body_limit");
    if (run->checkpoint_entries != f->checkpoint_entries ||
        run->checkpoint_seconds != f->checkpoint_seconds)
        needs_restart("checkpoint_every", &n);
    NUM(max_token_ttl, "max_token_ttl");
    NUM(device_cert_days, "device_cert_days");
    NUM(debug_unlock_seconds, "debug_unlock_max_seconds");
    NUM(rate_limit, "rate_limit");
    NUM(unauth_audit_rate, "unauth_audit_rate");
    /* a default max_connections may have been lowered to fit the open-files limit */
    if ((run->max_connections_set || f->max_connections_set) &&
        run->max_connections != f->max_connections)
        needs_restart("max_connections", &n);
    if ((run->max_connections_set || f->max_connections_set) &&
        run->max_connections_per_source != f->max_connections_per_source)
        needs_restart("max_connections_per_source", &n);
    NUM(request_timeout, "request_timeout");
    STR(crl_url, "crl_url");
    NUM(crl_validity, "crl_validity");
    STR(oidc_issuers, "oidc_issuers");
    NUM(oidc_exchange_rate, "oidc_exchange_rate");
    if ((run->tls_cert == NULL) != (f->tls_cert == NULL))
        needs_restart("whether TLS is on (tls_cert)", &n);
    else if ((run->tls_client_ca == NULL) != (f->tls_client_ca == NULL))
        needs_restart("whether client certificates are required (tls_client_ca)", &n);
    if ((run->log_file == NULL) != (f->log_file == NULL))
        needs_restart("whether log_file is set", &n);
#undef STR
#undef NUM
    return n;
}

static void swap_str(char **a, char **b)
{
    char *t = *a;

    *a = *b;
    *b = t;
}

static bool reload_tls(kbd *d, kbd_config *fresh)
{
    char about[512];
    kbr_msg msg = {{0}};

    if (d->tls == NULL || fresh->tls_cert == NULL ||
        (d->cfg.tls_client_ca == NULL) != (fresh->tls_client_ca == NULL))
        return true;
    if (kbd_tls_reload(d, fresh, about, sizeof(about), &msg) != KBR_OK) {
        kbd_log(KBD_LOG_ERROR, "reload.tls_failed", NULL,
                "reload: %s; still serving the certificate loaded before", msg.text);
        return false;
    }
    swap_str(&d->cfg.tls_cert, &fresh->tls_cert);
    swap_str(&d->cfg.tls_key, &fresh->tls_key);
    swap_str(&d->cfg.tls_client_ca, &fresh->tls_client_ca);
    kbd_log(KBD_LOG_INFO, "reload.tls", NULL,
            "reload: new connections get the certificate of %s (%s)%s%s", d->cfg.tls_cert, about,
            d->cfg.tls_client_ca != NULL ? "; client CA " : "",
            d->cfg.tls_client_ca != NULL ? d->cfg.tls_client_ca : "");
    return true;
}

static bool reload_log(kbd *d, kbd_config *fresh)
{
    kbr_msg msg = {{0}};
    kbd_config apply = d->cfg;

    /* log_file on or off needs a restart: the running one stays */
    if ((d->cfg.log_file == NULL) == (fresh->log_file == NULL))
        apply.log_file = fresh->log_file;
    apply.log_json = fresh->log_json;
    if (kbd_log_setup(&apply, &msg) != KBR_OK) {
        kbd_log(KBD_LOG_ERROR, "reload.log_failed", NULL, "reload: %s; logging as before",
                msg.text);
        return false;
    }
    if (apply.log_file == fresh->log_file)
        swap_str(&d->cfg.log_file, &fresh->log_file);
    d->cfg.log_json = fresh->log_json;
    return true;
}

void kbd_reload(kbd *d)
{
    kbd_config fresh;
    kbr_msg msg = {{0}};
    bool ok;
    int fixed;

    kbd_notify("RELOADING=1");
    kbd_log(KBD_LOG_INFO, "reload", NULL, "SIGHUP: reading %s again", d->config_path);
    /* the keeper and the HSM process reopen their log too */
    kbd_hsmproc_hup(d);
    d->reload_at = time(NULL);
    if (kbd_config_load(d->config_path, &fresh, &msg) != KBR_OK) {
        kbd_log(KBD_LOG_ERROR, "reload.failed", NULL,
                "reload: %s; nothing changed, the running configuration stays", msg.text);
        kbd_config_cleanup(&fresh);
        d->reload_ok = false;
        kbd_notify("READY=1");
        return;
    }
    fixed = compare_fixed(&d->cfg, &fresh);
    ok = reload_log(d, &fresh);
    ok = reload_tls(d, &fresh) && ok;
    kbd_config_cleanup(&fresh);
    d->reload_ok = ok;
    kbd_log(ok ? KBD_LOG_INFO : KBD_LOG_ERROR, "reload.done", NULL, "reload %s%s",
            ok ? "done" : "done in part (see above)",
            fixed > 0 ? "; some changes wait for a restart (see above)" : "");
    kbd_notify("READY=1");
}
