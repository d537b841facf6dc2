/*
 * config.c - the `key = value` configuration file.
 *
 * Relative paths are taken relative to the configuration file's directory,
 * so a deployment directory can be moved or driven from any working
 * directory.  Unknown keys and malformed values stop the start with a
 * message naming the line: a typo in a security setting must not be
 * silently ignored.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kbd.h"

#define DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

static char *resolve_path(const char *dir, const char *value)
{
    char *out = NULL;

    if (value[0] == '/' || dir == NULL)
        return strdup(value);
    if (asprintf(&out, "%s/%s", dir, value) < 0)
        return NULL;
    return out;
}

static void set_defaults(kbd_config *cfg)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    memset(cfg, 0, sizeof(*cfg));
    cfg->listen_host = strdup("127.0.0.1");
    cfg->listen_port = 8443;
    cfg->instance_id = strdup("keybroker");
    cfg->pkcs11_module = strdup(DEFAULT_MODULE);
    cfg->token_label = strdup("keybroker");
    cfg->workers = n > 0 ? (int)n : 2;
    cfg->body_limit = 1048576;
    cfg->checkpoint_entries = 1000;
    cfg->checkpoint_seconds = 60;
    cfg->max_token_ttl = 366L * 86400;
    cfg->device_cert_days = 3650;
    cfg->debug_unlock_seconds = 3600;
    cfg->rate_limit = 1000;
    cfg->unauth_audit_rate = 20;
    cfg->max_connections = 1024;
    cfg->max_connections_per_source = 128;
    cfg->request_timeout = 60;
    cfg->crl_validity = 7L * 86400;
    cfg->oidc_exchange_rate = 10;
}

static kbr_err parse_long(const char *v, long min, long max, long *out)
{
    char *end = NULL;
    long n;

    errno = 0;
    n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < min || n > max)
        return KBR_ERR_CONFIG;
    *out = n;
    return KBR_OK;
}

static kbr_err parse_address(char **host_slot, int *port_slot, const char *v)
{
    const char *colon = strrchr(v, ':');
    long port;
    char *host;

    if (colon == NULL || colon == v)
        return KBR_ERR_CONFIG;
    if (parse_long(colon + 1, 0, 65535, &port) != KBR_OK)
        return KBR_ERR_CONFIG;
    if (v[0] == '[' && colon[-1] == ']')
        host = strndup(v + 1, (size_t)(colon - v - 2));
    else
        host = strndup(v, (size_t)(colon - v));
    if (host == NULL)
        return KBR_ERR_NOMEM;
    free(*host_slot);
    *host_slot = host;
    *port_slot = (int)port;
    return KBR_OK;
}

static kbr_err parse_listen(kbd_config *cfg, const char *v)
{
    return parse_address(&cfg->listen_host, &cfg->listen_port, v);
}

bool kbd_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (strcmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

/* "1000", "60s" or "1000 60s": entries and/or seconds between checkpoints. */
static kbr_err parse_checkpoint(kbd_config *cfg, const char *v)
{
    char buf[128];
    char *save = NULL;

    if (strlen(v) >= sizeof(buf))
        return KBR_ERR_CONFIG;
    snprintf(buf, sizeof(buf), "%s", v);
    for (char *tok = strtok_r(buf, " \t", &save); tok != NULL; tok = strtok_r(NULL, " \t", &save)) {
        size_t n = strlen(tok);
        long val;
        if (n > 1 && tok[n - 1] == 's') {
            tok[n - 1] = '\0';
            if (parse_long(tok, 1, 86400, &val) != KBR_OK)
                return KBR_ERR_CONFIG;
            cfg->checkpoint_seconds = val;
        } else {
            if (parse_long(tok, 1, 100000000, &val) != KBR_OK)
                return KBR_ERR_CONFIG;
            cfg->checkpoint_entries = val;
        }
    }
    return KBR_OK;
}

static kbr_err set_path(char **slot, const char *dir, const char *v)
{
    char *p = resolve_path(dir, v);

    if (p == NULL)
        return KBR_ERR_NOMEM;
    free(*slot);
    *slot = p;
    return KBR_OK;
}

static kbr_err set_string(char **slot, const char *v)
{
    char *p = strdup(v);

    if (p == NULL)
        return KBR_ERR_NOMEM;
    free(*slot);
    *slot = p;
    return KBR_OK;
}

/*
 * A sqlite: store's path is made absolute (relative to the file's directory) and named by the
 * file SQLite opens, symbolic links followed: every open, lock and check after, and a reload's
 * comparison, then go by one name, whatever a link points at later.  A name SQLite cannot
 * follow is kept, and the store's lock refuses it with the reason.
 */
static kbr_err set_store(kbd_config *cfg, const char *dir, const char *v)
{
    char *p = NULL, *resolved = NULL;
    kbr_msg msg = {{0}};
    kbr_err err;

    if (strncmp(v, "sqlite:", 7) != 0)
        return set_string(&cfg->store, v);
    if (v[7] == '/' || dir == NULL)
        p = strdup(v);
    else if (asprintf(&p, "sqlite:%s/%s", dir, v + 7) < 0)
        p = NULL;
    if (p == NULL)
        return KBR_ERR_NOMEM;
    err = kbr_store_resolved_url(p, &resolved, &msg);
    if (err == KBR_OK)
        err = set_string(&cfg->store, resolved);
    else if (err != KBR_ERR_NOMEM)
        err = set_string(&cfg->store, p);
    free(resolved);
    free(p);
    return err;
}

/* Printable ASCII, 1 to max characters; spaces only where allowed. */
static bool printable(const char *v, size_t max, bool spaces)
{
    size_t n = strlen(v);

    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (v[i] < (spaces ? 0x20 : 0x21) || v[i] > 0x7e)
            return false;
    return true;
}

/* An absolute URI (RFC 3986): a scheme, ':', and no spaces. */
static bool uri(const char *v)
{
    size_t n = strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");

    return printable(v, 512, false) && n > 0 && v[n] == ':' && v[n + 1] != '\0' &&
           ((v[0] >= 'a' && v[0] <= 'z') || (v[0] >= 'A' && v[0] <= 'Z'));
}

#define CRL_URL_KEY "{key}"

/*
 * An http or https URL of printable ASCII without spaces, holding {key} exactly once: each CA
 * key's certificates point to that key's own CRL.  The key names that replace it ("letters,
 * digits and . _ - : @ +") need no escaping in a URL path.
 */
static kbr_err set_crl_url(kbd_config *cfg, const char *v)
{
    const char *first = strstr(v, CRL_URL_KEY);
    size_t n = strlen(v);

    if ((strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) || n > 512 ||
        first == NULL || strstr(first + 1, CRL_URL_KEY) != NULL)
        return KBR_ERR_CONFIG;
    for (size_t i = 0; i < n; i++)
        if (v[i] <= ' ' || v[i] > '~')
            return KBR_ERR_CONFIG;
    return set_string(&cfg->crl_url, v);
}

char *kbd_crl_url_for(const kbd_config *cfg, const char *key, kbr_err *err)
{
    const char *at = cfg->crl_url != NULL ? strstr(cfg->crl_url, CRL_URL_KEY) : NULL;
    char *url = NULL;

    *err = KBR_OK;
    if (at == NULL)
        return NULL;
    if (asprintf(&url, "%.*s%s%s", (int)(at - cfg->crl_url), cfg->crl_url, key,
                 at + strlen(CRL_URL_KEY)) < 0) {
        *err = KBR_ERR_NOMEM;
        return NULL;
    }
    return url;
}

static kbr_err apply(kbd_config *cfg, const char *dir, const char *k, const char *v)
{
    long n;

    if (strcmp(k, "listen") == 0)
        return parse_listen(cfg, v);
    if (strcmp(k, "port_file") == 0)
        return set_path(&cfg->port_file, dir, v);
    if (strcmp(k, "instance_id") == 0)
        return kbr_name_valid(v) ? set_string(&cfg->instance_id, v) : KBR_ERR_CONFIG;
    if (strcmp(k, "csaf_publisher") == 0)
        return printable(v, 256, true) ? set_string(&cfg->csaf_publisher, v) : KBR_ERR_CONFIG;
    if (strcmp(k, "csaf_namespace") == 0)
        return uri(v) ? set_string(&cfg->csaf_namespace, v) : KBR_ERR_CONFIG;
    if (strcmp(k, "audit_origin") == 0)
        return kbr_note_name_valid(v, strlen(v)) ? set_string(&cfg->audit_origin, v)
                                                 : KBR_ERR_CONFIG;
    if (strcmp(k, "pkcs11_module") == 0)
        return set_path(&cfg->pkcs11_module, dir, v);
    if (strcmp(k, "token_label") == 0)
        return strlen(v) <= 32 ? set_string(&cfg->token_label, v) : KBR_ERR_CONFIG;
    if (strcmp(k, "pin_file") == 0)
        return set_path(&cfg->pin_file, dir, v);
    if (strcmp(k, "store") == 0)
        return set_store(cfg, dir, v);
    if (strcmp(k, "bootstrap_token_file") == 0)
        return set_path(&cfg->bootstrap_token_file, dir, v);
    if (strcmp(k, "tls_cert") == 0)
        return set_path(&cfg->tls_cert, dir, v);
    if (strcmp(k, "tls_key") == 0)
        return set_path(&cfg->tls_key, dir, v);
    if (strcmp(k, "tls_client_ca") == 0)
        return set_path(&cfg->tls_client_ca, dir, v);
    if (strcmp(k, "oidc_issuers") == 0)
        return set_path(&cfg->oidc_issuers, dir, v);
    if (strcmp(k, "oidc_exchange_rate") == 0)
        return parse_long(v, 1, 100000, &cfg->oidc_exchange_rate);
    if (strcmp(k, "ops_listen") == 0)
        return parse_address(&cfg->ops_listen_host, &cfg->ops_listen_port, v);
    if (strcmp(k, "log_file") == 0)
        return set_path(&cfg->log_file, dir, v);
    if (strcmp(k, "log_format") == 0) {
        if (strcmp(v, "text") != 0 && strcmp(v, "json") != 0)
            return KBR_ERR_CONFIG;
        cfg->log_json = strcmp(v, "json") == 0;
        return KBR_OK;
    }
    if (strcmp(k, "checkpoint_every") == 0)
        return parse_checkpoint(cfg, v);
    if (strcmp(k, "workers") == 0) {
        if (parse_long(v, 1, 256, &n) != KBR_OK)
            return KBR_ERR_CONFIG;
        cfg->workers = (int)n;
        return KBR_OK;
    }
    if (strcmp(k, "body_limit") == 0) {
        if (parse_long(v, 1024, 64L * 1048576, &n) != KBR_OK)
            return KBR_ERR_CONFIG;
        cfg->body_limit = (size_t)n;
        return KBR_OK;
    }
    if (strcmp(k, "unauth_audit_rate") == 0)
        return parse_long(v, 0, 1000000, &cfg->unauth_audit_rate);
    if (strcmp(k, "rate_limit") == 0)
        return parse_long(v, 0, 1000000, &cfg->rate_limit);
    if (strcmp(k, "max_connections") == 0) {
        cfg->max_connections_set = true;
        return parse_long(v, 16, 1000000, &cfg->max_connections);
    }
    if (strcmp(k, "max_connections_per_source") == 0)
        return parse_long(v, 1, 1000000, &cfg->max_connections_per_source);
    if (strcmp(k, "request_timeout") == 0)
        return parse_long(v, 1, 3600, &cfg->request_timeout);
    if (strcmp(k, "debug_unlock_max_seconds") == 0)
        return parse_long(v, 60, 7L * 86400, &cfg->debug_unlock_seconds);
    if (strcmp(k, "device_cert_days") == 0)
        return parse_long(v, 1, 36500, &cfg->device_cert_days);
    if (strcmp(k, "max_token_ttl") == 0)
        return parse_long(v, 60, 10L * 366 * 86400, &cfg->max_token_ttl);
    if (strcmp(k, "crl_url") == 0)
        return set_crl_url(cfg, v);
    if (strcmp(k, "crl_validity") == 0)
        return parse_long(v, 2, 366L * 86400, &cfg->crl_validity);
    return KBR_ERR_NOT_FOUND;
}

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
        *--end = '\0';
    return s;
}

static kbr_err parse_line(kbd_config *cfg, const char *dir, char *line, kbr_msg *msg,
                          const char *path, int lineno)
{
    char *hash = strchr(line, '#');
    char *eq, *k, *v;
    kbr_err err;

    if (hash != NULL)
        *hash = '\0';
    k = trim(line);
    if (*k == '\0')
        return KBR_OK;
    eq = strchr(k, '=');
    if (eq == NULL)
        return kbr_fail(msg, KBR_ERR_CONFIG, "%s:%d: expected `key = value`", path, lineno);
    *eq = '\0';
    v = trim(eq + 1);
    k = trim(k);
    if (*v == '\0')
        return kbr_fail(msg, KBR_ERR_CONFIG, "%s:%d: %s has no value", path, lineno, k);
    err = apply(cfg, dir, k, v);
    if (err == KBR_ERR_NOT_FOUND)
        return kbr_fail(msg, KBR_ERR_CONFIG, "%s:%d: unknown key \"%s\"", path, lineno, k);
    if (err != KBR_OK)
        return kbr_fail(msg, err == KBR_ERR_NOMEM ? err : KBR_ERR_CONFIG,
                        "%s:%d: bad value for %s: \"%s\"", path, lineno, k, v);
    return KBR_OK;
}

static kbr_err fill_required(kbd_config *cfg, const char *dir, const char *path, kbr_msg *msg)
{
    if (cfg->pin_file == NULL)
        return kbr_fail(msg, KBR_ERR_CONFIG, "%s: pin_file is required", path);
    if (cfg->store == NULL && set_store(cfg, dir, "sqlite:keybroker.db") != KBR_OK)
        return KBR_ERR_NOMEM;
    if (cfg->bootstrap_token_file == NULL &&
        set_path(&cfg->bootstrap_token_file, dir, "bootstrap.token") != KBR_OK)
        return KBR_ERR_NOMEM;
    if (cfg->csaf_publisher == NULL && set_string(&cfg->csaf_publisher, cfg->instance_id) != KBR_OK)
        return KBR_ERR_NOMEM;
    if (cfg->csaf_namespace == NULL &&
        asprintf(&cfg->csaf_namespace, "urn:keybroker:%s", cfg->instance_id) < 0) {
        cfg->csaf_namespace = NULL;
        return KBR_ERR_NOMEM;
    }
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL))
        return kbr_fail(msg, KBR_ERR_CONFIG, "%s: tls_cert and tls_key go together", path);
    if (cfg->tls_client_ca != NULL && cfg->tls_cert == NULL)
        return kbr_fail(msg, KBR_ERR_CONFIG, "%s: tls_client_ca needs tls_cert and tls_key", path);
    /* the checkpoints' origin line and the key name of their signature lines */
    if (cfg->audit_origin == NULL) {
        if (!kbr_note_name_valid(cfg->instance_id, strlen(cfg->instance_id)))
            return kbr_fail(msg, KBR_ERR_CONFIG,
                            "%s: instance_id \"%s\" cannot name signed checkpoints (a '+' is "
                            "not allowed there): set audit_origin",
                            path, cfg->instance_id);
        if (set_string(&cfg->audit_origin, cfg->instance_id) != KBR_OK)
            return KBR_ERR_NOMEM;
    }
    if (cfg->max_connections_per_source > cfg->max_connections)
        return kbr_fail(msg, KBR_ERR_CONFIG,
                        "%s: max_connections_per_source (%ld) exceeds max_connections (%ld)", path,
                        cfg->max_connections_per_source, cfg->max_connections);
    if (cfg->oidc_issuers != NULL)
        return kbd_oidc_config_load(cfg->oidc_issuers, &cfg->oidc, msg);
    if (cfg->ops_listen_host != NULL && strcmp(cfg->ops_listen_host, cfg->listen_host) == 0 &&
        cfg->ops_listen_port == cfg->listen_port && cfg->listen_port != 0)
        return kbr_fail(msg, KBR_ERR_CONFIG, "%s: ops_listen is the listen address", path);
    return KBR_OK;
}

/* With report, every bad line is passed to it and reading goes on; msg keeps the first. */
static kbr_err config_read(const char *path, kbd_config *cfg, kbd_config_report_fn report,
                           void *arg, kbr_msg *msg)
{
    kbr_err err = KBR_OK, first = KBR_OK;
    FILE *f = NULL;
    char line[4096];
    char *dir = NULL, *slash;
    int lineno = 0;
    kbr_msg one = {{0}};

    set_defaults(cfg);
    f = fopen(path, "r");
    if (f == NULL) {
        err = kbr_fail(msg, KBR_ERR_CONFIG, "%s: %s", path, strerror(errno));
        goto out;
    }
    dir = realpath(path, NULL);
    KBR_ENSURE(dir != NULL, kbr_fail(msg, KBR_ERR_CONFIG, "%s: %s", path, strerror(errno)));
    slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    while (fgets(line, sizeof(line), f) != NULL) {
        bool whole = strchr(line, '\n') != NULL || feof(f);
        lineno++;
        err = whole ? parse_line(cfg, dir, line, &one, path, lineno)
                    : kbr_fail(&one, KBR_ERR_CONFIG, "%s:%d: line too long", path, lineno);
        /* the rest of a line too long is not a line of its own */
        while (!whole && fgets(line, sizeof(line), f) != NULL && strchr(line, '\n') == NULL)
            ;
        if (err == KBR_OK)
            continue;
        if (first == KBR_OK) {
            first = err;
            snprintf(msg->text, sizeof(msg->text), "%s", one.text);
        }
        if (report == NULL || err == KBR_ERR_NOMEM)
            goto out;
        report(one.text, arg);
    }
    err = first;
    if (err == KBR_OK) {
        err = fill_required(cfg, dir, path, msg);
        if (err != KBR_OK && report != NULL)
            report(msg->text, arg);
    } else if (report != NULL && fill_required(cfg, dir, path, &one) != KBR_OK) {
        report(one.text, arg);
    }
out:
    if (err != KBR_OK && report != NULL && (f == NULL || dir == NULL))
        report(msg->text, arg);
    free(dir);
    if (f != NULL)
        fclose(f);
    return err;
}

kbr_err kbd_config_load(const char *path, kbd_config *cfg, kbr_msg *msg)
{
    return config_read(path, cfg, NULL, NULL, msg);
}

kbr_err kbd_config_load_all(const char *path, kbd_config *cfg, kbd_config_report_fn report,
                            void *arg, kbr_msg *msg)
{
    return config_read(path, cfg, report, arg, msg);
}

void kbd_config_cleanup(kbd_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->listen_host);
    free(cfg->port_file);
    free(cfg->instance_id);
    free(cfg->audit_origin);
    free(cfg->pkcs11_module);
    free(cfg->token_label);
    free(cfg->pin_file);
    free(cfg->store);
    free(cfg->bootstrap_token_file);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->tls_client_ca);
    free(cfg->csaf_publisher);
    free(cfg->csaf_namespace);
    free(cfg->ops_listen_host);
    free(cfg->log_file);
    free(cfg->crl_url);
    free(cfg->oidc_issuers);
    kbd_oidc_config_cleanup(&cfg->oidc);
    memset(cfg, 0, sizeof(*cfg));
}
