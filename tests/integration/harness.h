/*
 * harness.h - integration test harness: a throwaway SoftHSM2 token, a
 * deployment prepared with `keybrokerd --init`, keybrokerd on 127.0.0.1
 * port 0, and an HTTP client.  Nothing is faked.
 */
#ifndef KBT_HARNESS_H
#define KBT_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "../common/store_sql.h"
#include "kbr_common.h"

#define KBT_PIN "1234"

typedef struct {
    char dir[256];
    char conf[320];
    char log[320];
    char bin_dir[256];
    char db[320];
    char store[640]; /* the store URL: sqlite:keybroker.db, or with KBT_PG_URL a schema of its
                        own in that PostgreSQL database (tests/pg-tests.sh) */
    char *extra_conf;
    bool peer; /* kbt_peer's: the store is another env's, not dropped with this one */
    pid_t pid;
    int port;
    char url[64];
    char *admin; /* the bootstrap token */
    void *curl;  /* keep-alive handle */
    bool https;
    bool tolerate_transport_errors;
    char cacert[320];      /* CA bundle for the server certificate (https) */
    char client_cert[320]; /* client certificate and key for mTLS, "" for none */
    char client_key[320];
    /* When set, the daemon is started as `wrapper[0] wrapper[1] keybrokerd -c CONF` (a program
     * that restricts itself, then runs the rest of its arguments). */
    const char *wrapper[2];
} kbt_env;

typedef struct {
    int curl_error; /* CURLcode; 0 when an HTTP response arrived */
    long status;
    json_t *json;   /* parsed body, or NULL */
    char *body;     /* NUL-terminated; len bytes long, NULs included, for a binary body */
    long audit_seq; /* X-Audit-Seq, or -1 */
    size_t len;
    char content_type[128]; /* "" without one */
} kbt_resp;

/* Creates the token, config (extra lines appended), runs --init and starts the daemon. */
kbt_env *kbt_start(const char *extra_conf);
/* The two halves of kbt_start: a directory with a SoftHSM2 token, then config/init/start. */
kbt_env *kbt_new(void);
/*
 * A second broker on a's store (PostgreSQL only): a deployment directory of its own whose
 * HSM token is a copy of a's made now (after the keys it needs exist, as an HSM HA group
 * replicates keys), the same instance_id, store and bootstrap token, started with
 * extra_conf.  kbt_free it before a.
 */
kbt_env *kbt_peer(kbt_env *a, const char *extra_conf);
/* Writes e's configuration with extra_conf, and starts nothing. */
void kbt_launch_config(kbt_env *e, const char *extra_conf);
void kbt_launch(kbt_env *e, const char *extra_conf);
/* SIGTERM, wait for exit 0 (asserted), start again on the same deployment. */
void kbt_restart(kbt_env *e);
/* Waits up to timeout_ms for the daemon to exit by itself: its exit status (128 + signal if
 * killed), or -1 if it is still running. */
int kbt_wait_exit(kbt_env *e, int timeout_ms);
/* SIGKILL, then start again. */
void kbt_kill_restart(kbt_env *e);
void kbt_stop(kbt_env *e);
/* Stops (if running) and removes everything. */
void kbt_free(kbt_env *e);
/* Runs keybrokerd with args; returns its exit status, stderr into *err (caller frees). */
int kbt_run_daemon(kbt_env *e, const char *args, char **err);
int kbt_spawn_daemon(kbt_env *e);

/* One HTTP call. body may be NULL. token may be NULL (no Authorization).  A transport
 * failure fails the test unless e->tolerate_transport_errors. */
kbt_resp kbt_call(kbt_env *e, const char *method, const char *path, const char *token,
                  const char *body);
/* The same with one more request header line ("Accept: text/plain"), or none. */
kbt_resp kbt_call_with(kbt_env *e, const char *method, const char *path, const char *token,
                       const char *body, const char *header);
/* Same with a json body built by json_pack-style format; steals nothing. */
kbt_resp kbt_callj(kbt_env *e, const char *method, const char *path, const char *token,
                   json_t *body);
void kbt_resp_free(kbt_resp *r);
/* The error code string of an error response, or "". */
const char *kbt_err_code(const kbt_resp *r);
const char *kbt_err_message(const kbt_resp *r);

/* Conveniences: create a key (asserts 201), issue a token (asserts 201; caller frees). */
void kbt_key(kbt_env *e, const char *name, const char *purpose, const char *alg,
             const char *product);
char *kbt_token(kbt_env *e, const char *spec_json);

/* Public key of a key from GET /v1/keys/{name}. */
EVP_PKEY *kbt_pubkey(kbt_env *e, const char *name);
EVP_PKEY *kbt_pem_to_pkey(const char *pem);
/* Verifies a signature over a digest (or a message for Ed25519); fmt "raw"/"der"/"pss"/"pkcs1". */
bool kbt_verify(EVP_PKEY *pub, const char *fmt, const EVP_MD *md, const unsigned char *in,
                size_t inlen, const unsigned char *sig, size_t siglen);

/* A fresh P-256 device key and its CSR (subject CN=cn, or none if cn is NULL), PEM; the key
 * goes to *key_out if given (caller frees), the PEM is the caller's to free. */
char *kbt_csr_pem(EVP_PKEY **key_out, const char *cn);

/*
 * A v3 CA certificate (basicConstraints CA:TRUE, keyUsage keyCertSign and cRLSign, valid from
 * a minute ago for a year) for pub, named CN=cn, with the serial number serial_hex (BN_hex2bn:
 * "-" first for a negative one), signed by signer and issued by issuer's subject (NULL: cn,
 * self-issued).  Caller frees with X509_free.  Its PEM from kbt_x509_pem (caller frees).
 */
X509 *kbt_ca_cert(EVP_PKEY *pub, const char *cn, const char *serial_hex, EVP_PKEY *signer,
                  X509 *issuer);
char *kbt_x509_pem(X509 *x);

/* A plain TCP connection to the broker on port from the loopback address src (127.0.0.0/8);
 * the caller closes it. */
int kbt_connect_from(const char *src, int port);
/* Has the broker closed fd (end of file or reset) within wait_ms? */
bool kbt_closed_by_server(int fd, int wait_ms);

/* The live (not zombie) children of parent, at most max of them, into out; how many. */
int kbt_children(pid_t parent, pid_t *out, int max);
/* keybrokerd's HSM keeper and HSM process (asserts there is one of each). */
void kbt_hsm_pids(const kbt_env *e, pid_t *keeper, pid_t *hsm);

/* Every audit entry (paged). New ref. */
json_t *kbt_audit_all(kbt_env *e);

/* Runs a shell command with the harness env; returns exit status; output into *out if given. */
int kbt_sh(kbt_env *e, const char *cmd, char **out);
/* e's store URL as this process opens it (a SQLite store's path made absolute). */
const char *kbt_store_url(const kbt_env *e, char *buf, size_t n);
/* What the store holds, to search for what must never be in it: the SQLite file's bytes, or
 * pg_dump's text of the deployment's schema.  *buf is the caller's to free; 0 or -1. */
int kbt_store_dump(const kbt_env *e, char **buf, size_t *n);
/* The first column of the first row of sql, run over a connection of its own to e's store
 * (either back end), into buf ("NULL" for SQL NULL; buf may be NULL); *changed (may be NULL)
 * the rows it changed.  0 on success. */
int kbt_store_query(const kbt_env *e, const char *sql, char *buf, size_t len, long *changed);

#endif
