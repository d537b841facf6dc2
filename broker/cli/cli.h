/*
 * cli.h - internal interfaces of the keybroker command-line client.
 *
 * Everything but keybroker.c is built into libkbr_cli.a, which bin/keybroker and
 * tests/unit/test_cli.c link: the pure parts (option parsing, tables,
 * digests and SBOM encoding, request bodies), the HTTP client and the
 * subcommands built on them.
 */
#ifndef KBR_CLI_H
#define KBR_CLI_H

#include <stdio.h>
#include <time.h>

#include <openssl/evp.h>

#include "kbr_common.h"

/* ---- errors as the user sees them: "keybroker: <code>: <message>" ---- */

#define CLI_USAGE "usage" /* the code of a usage error; exit status 2 */

typedef struct {
    char code[48];
    kbr_msg msg;
} cli_error;

/* Fills ce (code and printf message) and returns err. ce may be NULL. */
kbr_err cli_fail(cli_error *ce, kbr_err err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- options (args.c) ---- */

typedef enum {
    CLI_OPT_FLAG,  /* --json */
    CLI_OPT_STR,   /* --out FILE; at most once */
    CLI_OPT_INT,   /* --ttl N; a non-negative decimal integer */
    CLI_OPT_LIST,  /* --op sign --op read or --op sign,read */
    CLI_OPT_MULTI, /* --component X, repeatable, never split on commas */
} cli_opt_kind;

typedef struct {
    const char *name; /* without the leading "--" */
    cli_opt_kind kind;
    bool required;
    const char *metavar; /* for usage text; NULL for flags */
} cli_opt;

/* What a command accepts: its options and its positional arguments. */
typedef struct {
    const cli_opt *opts;
    size_t nopts;
    const char *const *pos; /* names of the positional arguments, max_pos of them */
    size_t min_pos;
    size_t max_pos;
} cli_spec;

typedef struct cli_args cli_args;

/*
 * Parses argv[0..argc) against spec plus the extra (global) options.
 * "--name value" and "--name=value" are accepted, "--" ends the options.
 * Unknown options, single-valued options given twice, missing or empty
 * values (a value may not start with "--" unless given as --name=value), bad numbers,
 * empty list items, missing required options and wrong positional counts
 * give KBR_ERR_BAD_REQUEST with msg naming the option or argument.
 * The result borrows argv's strings; caller frees with cli_args_free().
 */
KBR_WUR kbr_err cli_args_parse(const cli_spec *spec, const cli_opt *extra, size_t nextra, int argc,
                               char *const argv[], cli_args **out, kbr_msg *msg);
void cli_args_free(cli_args *a);

/* Accessors; names are option names without "--"; results are borrowed. */
bool cli_args_flag(const cli_args *a, const char *name);
const char *cli_args_str(const cli_args *a, const char *name);
bool cli_args_int(const cli_args *a, const char *name, long long *value);
const char *const *cli_args_list(const cli_args *a, const char *name, size_t *n);
size_t cli_args_npos(const cli_args *a);
const char *cli_args_pos(const cli_args *a, size_t i);

/* Splits "a,b,c" into new strings; an empty item is KBR_ERR_BAD_REQUEST. Caller frees. */
KBR_WUR kbr_err cli_split_list(const char *s, char ***items, size_t *n);
void cli_strv_free(char **v, size_t n);
/* Decimal integer in [min, max], the whole string consumed. */
KBR_WUR kbr_err cli_parse_ll(const char *s, long long min, long long max, long long *out);

/* ---- tables (table.c) ---- */

/*
 * Renders a header row and nrows rows of ncols cells (row-major; NULL shows
 * as "-"), each escaped by cli_term_put() as one line, with columns padded
 * to their widest escaped cell (counted in UTF-8 characters), two spaces
 * apart, no trailing blanks. Caller frees *out.
 */
KBR_WUR kbr_err cli_table_render(const char *const *headers, size_t ncols, const char *const *cells,
                                 size_t nrows, char **out);

/* ---- terminal safety (table.c) ---- */

/*
 * What the CLI prints comes from the broker and from files, and neither may
 * drive the terminal. cli_term_put() writes s with C0 controls, DEL, C1
 * controls (U+0080..U+009F), the bidi marks, embeddings, overrides and
 * isolates (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069) and the
 * line and paragraph separators (U+2028, U+2029) escaped as \u009b (\n, \r,
 * \t for those three), and bytes that are not UTF-8 as \xc0. keep names the
 * ASCII controls left as they are: CLI_TERM_LINE for a value shown on one
 * line (a table cell, a name in a message), CLI_TERM_LINES for text of lines
 * (PEM, rendered tables). The escaped text contains nothing more to escape.
 */
#define CLI_TERM_LINE  ""
#define CLI_TERM_LINES "\n\t"
void cli_term_put(FILE *f, const char *s, const char *keep);
/* cli_term_put() into a new string. Caller frees. */
KBR_WUR kbr_err cli_term_escape(const char *s, const char *keep, char **out);
/* Whether cli_term_put() would write s unchanged. */
bool cli_term_plain(const char *s, const char *keep);

/* A table column: its header and the dotted member path of its value ("hsm.label"). */
typedef struct {
    const char *header;
    const char *path;
} cli_column;

/* The member at a dotted path of an object, or NULL. Borrowed. */
const json_t *cli_json_path(const json_t *obj, const char *path);
/*
 * One cell's text: strings as given, numbers and booleans as JSON, null or
 * absent as NULL (shown "-"), arrays of scalars joined with ",", anything
 * else as compact JSON. Caller frees.
 */
KBR_WUR kbr_err cli_json_cell(const json_t *v, char **out);
/* One row per element of the array rows. Caller frees *out. */
KBR_WUR kbr_err cli_table_from_json(const json_t *rows, const cli_column *cols, size_t ncols,
                                    char **out);
/* One object as FIELD/VALUE rows, one per column. Caller frees *out. */
KBR_WUR kbr_err cli_fields_from_json(const json_t *obj, const cli_column *cols, size_t ncols,
                                     char **out);

/* ---- signing inputs (sign_body.c) ---- */

/* Files are hashed in chunks of this size (cli_digest_file). */
#define CLI_HASH_CHUNK (64 * 1024)
/* Largest SBOM file sent; its base64 must fit the daemon's default 1 MiB body limit. */
#define CLI_SBOM_MAX (700 * 1024)
/* Largest ed25519 message: 1 MiB body limit less room for the other fields, before base64. */
#define CLI_MESSAGE_MAX ((1024 * 1024 - 16 * 1024) / 4 * 3)

/* Hex digest ("sha256" or "sha384") of a file, read in chunks. Caller frees *hex. */
KBR_WUR kbr_err cli_digest_file(const char *path, const char *hash, char **hex, kbr_msg *msg);
/* Checks a user-given hex digest against the hash's length; returns it lowercased. Caller frees. */
KBR_WUR kbr_err cli_digest_normalize(const char *hex, const char *hash, char **out, kbr_msg *msg);
/* Base64 of a CycloneDX JSON file, after checking it is one. Caller frees *b64. */
KBR_WUR kbr_err cli_sbom_b64_from_file(const char *path, char **b64, kbr_msg *msg);
/* Base64 of a whole file of at most max bytes. Caller frees *b64. */
KBR_WUR kbr_err cli_file_b64(const char *path, size_t max, char **b64, kbr_msg *msg);
/* "name@version[@purl]" as {"name","version"[,"purl"]}. Caller frees *out. */
KBR_WUR kbr_err cli_component_parse(const char *spec, json_t **out, kbr_msg *msg);

/* Everything a POST /v1/sign body may carry; NULL fields are left out. Strings borrowed. */
typedef struct {
    const char *key;
    const char *digest; /* hex, or NULL with message_b64 */
    const char *hash;
    const char *message_b64;
    const char *format;
    const char *product;
    const char *version;
    const char *name;
    const char *build_id;
    const char *kind;
    const char *sbom_b64;
    const json_t *components; /* array of component objects, or NULL */
} cli_sign_req;

/*
 * The JSON body of POST /v1/sign. Refuses (KBR_ERR_BAD_REQUEST, msg naming
 * the option) a missing key, both or neither of digest and message, a
 * --format other than raw, der or cose_sign1, a digest with cose_sign1,
 * and SBOM or artifact options that do not go together. Caller frees *out
 * with json_decref.
 */
KBR_WUR kbr_err cli_sign_body(const cli_sign_req *r, json_t **out, kbr_msg *msg);
/* --format: NULL (the broker's default, raw), raw, der or cose_sign1; else KBR_ERR_BAD_REQUEST. */
KBR_WUR kbr_err cli_sign_format_check(const char *format, kbr_msg *msg);
/*
 * Whether `sign --file` sends the file itself (message_b64) rather than its
 * digest: for cose_sign1, whose signature covers the payload inside the
 * Sig_structure, and for ed25519 keys (PureEdDSA). alg may be NULL when the
 * key's algorithm is unknown.
 */
bool cli_sign_sends_message(const char *alg, const char *format);

/* ---- checking signatures (cmd_verify.c) ---- */

/* What keybroker verify checks; message (the signed file) or digest, the other NULL. */
typedef struct {
    const char *format;  /* raw (default), der or cose_sign1 */
    const char *hash;    /* sha256 (default) or sha384: ECDSA and RSA over a file or digest */
    const char *padding; /* RSA: pss (default, salt = hash length) or pkcs1 */
    const unsigned char *message, *digest, *sig;
    size_t message_len, digest_len, siglen;
} cli_verify_req;

/*
 * Checks r's signature with pub (EC, RSA or Ed25519): raw r||s or DER for ECDSA, PSS or
 * PKCS#1 v1.5 for RSA, over the message (Ed25519: always) or a digest; or a tagged
 * COSE_Sign1 with detached payload (ES256, ES384, EdDSA) over the message.
 * KBR_ERR_UNAUTHENTICATED when it does not verify; KBR_ERR_BAD_REQUEST, msg saying why,
 * when the input cannot be what the key signs.
 */
KBR_WUR kbr_err cli_verify_signature(EVP_PKEY *pub, const cli_verify_req *r, kbr_msg *msg);
/*
 * The command that checks a signature `keybroker sign --out SIG --file FILE` made with key
 * (its algorithm as the broker names it) against KEY.pem (`keybroker key pubkey KEY --out
 * KEY.pem`): openssl dgst or pkeyutl where openssl reads the format, keybroker verify for
 * raw ECDSA and COSE_Sign1.  Written into buf; NULL when an argument is missing.
 */
const char *cli_openssl_recipe(const char *algorithm, const char *format, const char *hash,
                               const char *key, const char *sig, const char *file, char *buf,
                               size_t len);

/* ---- HTTP client (client.c) ---- */

typedef struct cli_client cli_client;

typedef struct {
    const char *url; /* base URL, e.g. https://broker:8443 */
    const char *cacert;
    const char *cert;
    const char *cert_key;
} cli_client_conf;

/*
 * One libcurl handle for the whole run. token (may be NULL) is taken: the
 * client wipes and frees it. Caller frees *out with cli_client_free().
 */
KBR_WUR kbr_err cli_client_new(const cli_client_conf *conf, kbr_secret *token, cli_client **out,
                               cli_error *ce);
void cli_client_free(cli_client *c);

typedef struct {
    long status;
    json_t *body;        /* parsed response, NULL if empty or not JSON */
    long long audit_seq; /* X-Audit-Seq, the audit record of this call; -1 if absent */
    /* set before the call: keep the body's bytes as they came (a document whose SHA-256 the
     * log names) in raw, raw_len; never for a response that may carry a token */
    bool keep_raw;
    char *raw;
    size_t raw_len;
} cli_response;

/*
 * Sends method path (starting "/v1/") with an optional JSON body. Returns
 * KBR_OK for 2xx; otherwise fills ce from the {"error":{...}} body or the
 * transport error, and resp still holds what arrived. Caller cleans resp up.
 */
KBR_WUR kbr_err cli_call(cli_client *c, const char *method, const char *path, const json_t *body,
                         cli_response *resp, cli_error *ce);
void cli_response_cleanup(cli_response *r);

/*
 * GETs path and streams a 2xx body to fd as it arrives (no size limit and no total timeout:
 * a store copy is large and made before its first byte), hashing it with SHA-256.  An error
 * answer is read and reported as cli_call does.  *got says what arrived.
 */
typedef struct {
    long status;
    long long audit_seq;       /* X-Audit-Seq, -1 if absent */
    long long content_length;  /* -1 if absent */
    long long received;        /* body bytes written to fd */
    unsigned char sha256[32];  /* of those bytes */
    char backup_sha256[65];    /* X-Backup-SHA256, "" if absent */
    long long backup_last_seq; /* X-Backup-Last-Seq, -1 if absent */
} cli_download;
KBR_WUR kbr_err cli_get_to_fd(cli_client *c, const char *path, int fd, cli_download *got,
                              cli_error *ce);

/* prefix + URL-escaped segment + suffix (suffix may be NULL). Caller frees. */
KBR_WUR kbr_err cli_path_join(cli_client *c, const char *prefix, const char *segment,
                              const char *suffix, char **out);
/* Appends "?name=value" or "&name=value" (value escaped) to *path, reallocating it. */
KBR_WUR kbr_err cli_query_add(cli_client *c, char **path, const char *name, const char *value);

/*
 * The client's response handling, used by cli_call() and declared here for
 * tests/unit/test_cli.c. A response body is read into a cli_buf, which is
 * wiped whenever it is grown or freed: it may hold a freshly issued token.
 */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool overflow;
} cli_buf;

/* Grows b to hold at least need bytes; false when out of memory. */
KBR_WUR bool cli_buf_grow(cli_buf *b, size_t need);
void cli_buf_wipe(cli_buf *b);
/* Status, X-Audit-Seq and JSON body (duplicate members refused) of the response in buf. */
KBR_WUR kbr_err cli_read_response(cli_client *c, const cli_buf *buf, cli_response *resp,
                                  cli_error *ce);
/* The error of an HTTP status >= 400 and its {"error":{...}} body (body may be NULL). */
KBR_WUR kbr_err cli_http_error(long status, const json_t *body, cli_error *ce);

/* ---- commands (cmd_*.c) ---- */

typedef struct {
    cli_client *client;
    const cli_args *args;
    bool json;
    FILE *out;
} cli_ctx;

typedef struct {
    const char *words[3]; /* the command path, NULL-terminated: {"key", "create"} */
    const char *synopsis; /* what follows the words in usage */
    const char *summary;
    cli_spec spec;
    bool needs_token;
    kbr_err (*run)(cli_ctx *ctx, cli_error *ce);
} cli_command;

extern const cli_command cli_cmd_key_create, cli_cmd_key_list, cli_cmd_key_show, cli_cmd_key_retire,
    cli_cmd_key_pubkey;
extern const cli_command cli_cmd_token_issue, cli_cmd_token_list, cli_cmd_token_revoke,
    cli_cmd_token_rotate_issuer, cli_cmd_revoke;
extern const cli_command cli_cmd_sign, cli_cmd_verify, cli_cmd_token_exchange;
extern const cli_command cli_cmd_audit_list, cli_cmd_audit_export, cli_cmd_health, cli_cmd_jwks;
extern const cli_command cli_cmd_audit_verify;
extern const cli_command cli_cmd_evidence_device;
extern const cli_command cli_cmd_evidence_product;
extern const cli_command cli_cmd_evidence_verify;
extern const cli_command cli_cmd_audit_checkpoint;
extern const cli_command cli_cmd_audit_consistency, cli_cmd_audit_rotate_key;
extern const cli_command cli_cmd_audit_proof;
extern const cli_command cli_cmd_batch_create, cli_cmd_batch_show;
extern const cli_command cli_cmd_key_certificate, cli_cmd_provision, cli_cmd_rotate;
extern const cli_command cli_cmd_device_revoke;
extern const cli_command cli_cmd_debug_auth, cli_cmd_ota_report;
extern const cli_command cli_cmd_view_product, cli_cmd_view_custody, cli_cmd_view_exposure,
    cli_cmd_view_device;
extern const cli_command cli_cmd_backup;
/*
 * Request bodies of the factory commands, built from options parsed against
 * the command's own spec.  Bad input (a value out of range, a market that is
 * not a country code, a file that is not the PEM the option wants, missing
 * or conflicting options) is KBR_ERR_BAD_REQUEST; an unreadable file
 * KBR_ERR_IO and an oversized one KBR_ERR_TOO_LARGE; msg names the option.
 * Caller frees *out with json_decref.
 */
/* POST /v1/batches: --quantity 1..100000000, --factory factory:NAME, --market upper-cased. */
KBR_WUR kbr_err cli_batch_body(const cli_args *a, json_t **out, kbr_msg *msg);
/* POST /v1/keys/{name}/certificate: --self-signed --subject --days, or --pem FILE. */
KBR_WUR kbr_err cli_key_cert_body(const cli_args *a, json_t **out, kbr_msg *msg);
/* POST /v1/provision: --key, --csr FILE, and the device from --serial --product --batch. */
KBR_WUR kbr_err cli_provision_body(const cli_args *a, json_t **out, kbr_msg *msg);
/* POST /v1/devices/{serial}/certificates: --key, --csr FILE, --product. */
KBR_WUR kbr_err cli_rotate_body(const cli_args *a, json_t **out, kbr_msg *msg);
/* POST /v1/devices/SERIAL/revoke from --product and --reason (cmd_device.c). */
KBR_WUR kbr_err cli_device_revoke_body(const cli_args *a, json_t **out, kbr_msg *msg);

/* The most to-be-signed bytes the broker signs for one debug unlock. */
#define CLI_DEBUG_MESSAGE_MAX 4096
/* The most results one OTA report carries, as the broker accepts them. */
#define CLI_OTA_RESULTS_MAX 10000

/*
 * POST /v1/debug-auth from --key --device --product --challenge (16 to 64
 * bytes of hex) --permissions (1 to 64 bytes of hex) --ticket and --message
 * FILE, the vendor tool's to-be-signed bytes, sent as message_b64. A
 * missing option, bad hex, a message over CLI_DEBUG_MESSAGE_MAX bytes or one
 * that does not contain the challenge bytes is KBR_ERR_BAD_REQUEST: the
 * broker answers a challenge once, so what can be refused here is refused
 * before it is spent. An unreadable file is KBR_ERR_IO. Hex goes lowercase.
 */
KBR_WUR kbr_err cli_debug_auth_body(const cli_args *a, json_t **out, kbr_msg *msg);
/*
 * POST /v1/ota/deployments from --product --version --campaign and
 * --results FILE: a JSON array of {device, status, at}, or an object whose
 * "results" is that array (its "product", "version" and "campaign", when
 * present, must match the options). Each result is checked (status
 * installed or failed, at an RFC 3339 UTC time, no other members) and sent
 * as read; 1 to CLI_OTA_RESULTS_MAX of them. Bad input is
 * KBR_ERR_BAD_REQUEST naming the element, an unreadable file KBR_ERR_IO,
 * an oversized one KBR_ERR_TOO_LARGE.
 */
KBR_WUR kbr_err cli_ota_report_body(const cli_args *a, json_t **out, kbr_msg *msg);
/*
 * The table of an OTA report's response: "recorded N", one "unknown SN"
 * row per device the ledger does not know ("unknown -" if none) and the
 * audit record (left out if audit_seq < 0). A response without an integer
 * recorded or an array of strings unknown_devices is KBR_ERR_BAD_REQUEST.
 * Caller frees *out.
 */
KBR_WUR kbr_err cli_ota_report_text(const json_t *resp, long long audit_seq, char **out);

/* ---- the Cyber Resilience Act (cmd_cra.c, chart.c) ---- */

/*
 * One of an incident's clocks (docs/api.md "Incidents": {due, status, submitted_at, on_time})
 * as a person reads it at now: "due 2026-12-06 11:39Z, 20 h 59 min left", "OVERDUE by
 * 3 h 2 min (due ...)", "submitted 2026-12-05 14:39Z, on time" or "late by 2 h", or "-" for a
 * final report without a fix.  KBR_ERR_BAD_REQUEST for a deadline that is not one.
 */
KBR_WUR kbr_err cli_clock_text(const json_t *deadline, time_t now, char *out, size_t n);
/* An incident (GET /v1/incidents/{id}) as text: its record, its clocks at now, its exposure
 * when recorded and now per member state, its reports.  Caller frees. */
KBR_WUR kbr_err cli_incident_text(const json_t *incident, time_t now, char **out);
/*
 * An incident's remediation as an SVG drawing: a panel for every market together, one for
 * the EU and one per member state, each the devices updated and pending day by day (from
 * over_time), with the fix's availability and the final report's due day marked, up to now.
 * Text from the broker is escaped as XML.  KBR_ERR_BAD_REQUEST for an incident without
 * over_time.  Caller frees.
 */
KBR_WUR kbr_err cli_incident_chart_svg(const json_t *incident, time_t now, char **out);

/* POST /v1/products from P --placed-on-market --support-until (days YYYY-MM-DD). */
KBR_WUR kbr_err cli_product_body(const cli_args *a, json_t **out, kbr_msg *msg);
/* POST /v1/incidents from ID and the options of `incident create` (--versions or --vers,
 * --actively-exploited yes|no). */
KBR_WUR kbr_err cli_incident_body(const cli_args *a, json_t **out, kbr_msg *msg);

extern const cli_command cli_cmd_product_create, cli_cmd_product_show;
extern const cli_command cli_cmd_incident_create, cli_cmd_incident_list, cli_cmd_incident_show,
    cli_cmd_incident_fix, cli_cmd_incident_report, cli_cmd_incident_document,
    cli_cmd_incident_chart, cli_cmd_evidence_incident;

/* ---- custody views (cmd_view.c) ---- */

/* The broker's bounds on ?expiring_within_days= and on a page of pending devices. */
#define CLI_VIEW_DAYS_MAX  36500
#define CLI_VIEW_LIMIT_MAX 1000

/*
 * The options of `view product`, `view custody` and `view device`, checked
 * as the other commands check theirs: names (positional or --product) valid
 * UTF-8, --expiring-within-days 0..CLI_VIEW_DAYS_MAX. *within_days is -1
 * without the option. Bad input is KBR_ERR_BAD_REQUEST naming the option.
 */
KBR_WUR kbr_err cli_view_product_opts(const cli_args *a, long long *within_days, kbr_msg *msg);
/* what: the positional argument's name in messages ("KEY"). */
KBR_WUR kbr_err cli_view_names_check(const cli_args *a, const char *what, kbr_msg *msg);

/* The options of `view exposure`, all borrowed from the parsed arguments. */
typedef struct {
    const char *component, *purl, *vers, *product, *fixed_version, *after;
    const char *const *versions; /* nversions items, or NULL */
    size_t nversions;
    long long limit; /* devices per page; 0: the broker's default */
    bool csv;
    bool devices;   /* list every affected device (paged), not only the pending ones */
    bool eu;        /* the text shows the member states and the EU only */
    bool by_market; /* the text shows every figure per market */
} cli_exposure_opts;

/*
 * Reads `view exposure`'s options. KBR_ERR_BAD_REQUEST (msg naming the
 * option) unless exactly one of --component and --purl is given, --purl
 * starts "pkg:", at most one of --versions and --vers, --limit is
 * 1..CLI_VIEW_LIMIT_MAX, --after and --limit come only with --fixed-version
 * or --devices (they page the devices), --csv has one of those and not --json
 * (json: the global flag), --eu and --by-market (what the text shows) go
 * with neither --json nor --csv, and every name is valid UTF-8.
 */
KBR_WUR kbr_err cli_view_exposure_opts(const cli_args *a, bool json, cli_exposure_opts *o,
                                       kbr_msg *msg);

/*
 * The readable text of each view's response, as the commands print it.
 * A response lacking a member the text shows (or of the wrong type) is
 * KBR_ERR_BAD_REQUEST. Caller frees *out.
 */
/* The header line of `view exposure --csv`, written once before the first page. */
#define CLI_VIEW_CSV_HEADER "product,serial,current_firmware,batch\n"
KBR_WUR kbr_err cli_view_product_text(const json_t *view, char **out);
KBR_WUR kbr_err cli_view_custody_text(const json_t *view, char **out);
KBR_WUR kbr_err cli_view_exposure_text(const json_t *view, char **out);
/* The same with `view exposure`'s text options: eu keeps the member states and the EU total
 * (every headline figure for the EU), by_market shows the devices running, affected, updated
 * and pending per market in one table. */
KBR_WUR kbr_err cli_view_exposure_text_opts(const json_t *view, bool eu, bool by_market,
                                            char **out);
KBR_WUR kbr_err cli_view_device_text(const json_t *view, char **out);

/*
 * CSV rows product,serial,current_firmware,batch of pending_devices.items (or of
 * affected_devices.items),
 * after the header line when header is true; lines end in "\n". Fields
 * holding a comma, a double quote, CR or LF are quoted as RFC 4180 says
 * (quotes doubled); a null current_firmware is an empty field. An item
 * that is not an object of strings, or a field holding anything else that
 * cli_term_put() would escape (never part of a ledger name), is
 * KBR_ERR_BAD_REQUEST: the CSV is printed as it is.
 * Caller frees *out.
 */
KBR_WUR kbr_err cli_view_pending_csv(const json_t *items, bool header, char **out);

/* ---- output shared by the commands (output.c) ---- */

/*
 * Text written through a FILE into a new string: cli_text_open(), the writes to f, then
 * cli_text_close() whatever happened in between (a memstream's buffer is final only once it
 * is closed).  Start from {0}: closing one that was never opened is harmless.
 */
typedef struct {
    FILE *f;
    char *buf;
    size_t len;
} cli_text;

/* Opens t for writing to t->f.  KBR_ERR_NOMEM if it cannot. */
KBR_WUR kbr_err cli_text_open(cli_text *t);
/*
 * Closes t.  If err is KBR_OK and the stream closes cleanly, *out takes the text (the caller
 * frees it); otherwise *out is NULL and the text is freed.  Returns err, or KBR_ERR_NOMEM if
 * only the close failed.
 */
KBR_WUR kbr_err cli_text_close(cli_text *t, kbr_err err, char **out);

/*
 * Writes v as json_dumpf() would with flags, but with every character
 * outside printable ASCII as \uXXXX (JSON_ENSURE_ASCII, and DEL escaped
 * here): the same JSON value, nothing a terminal acts on. KBR_ERR_IO on a
 * write error.
 */
KBR_WUR kbr_err cli_json_dumpf(FILE *f, const json_t *v, size_t flags);
/* Prints v as indented JSON (cli_json_dumpf), keys in the server's order; a NULL v prints null. */
KBR_WUR kbr_err cli_print_json(FILE *f, const json_t *v, cli_error *ce);
/* Prints a rendered table (or any text) through cli_term_put(CLI_TERM_LINES) and frees it. */
KBR_WUR kbr_err cli_print_text(FILE *f, char *text, cli_error *ce);
/* Prints text of lines from the broker (PEM) through cli_term_put(CLI_TERM_LINES). */
KBR_WUR kbr_err cli_print_lines(FILE *f, const char *text, cli_error *ce);
/* "what name" and a newline, name escaped as one line. */
void cli_print_named(FILE *f, const char *what, const char *name);
/* The error line "keybroker: CODE: MESSAGE", both escaped: either may come from the broker. */
void cli_print_error(FILE *f, kbr_err err, const cli_error *ce);
/*
 * Writes data to path with mode as kbr_file_write() does (a FIFO, device or
 * "-" in place, a symbolic link refused), naming the file and why on failure.
 */
KBR_WUR kbr_err cli_write_file(const char *path, const void *data, size_t len, unsigned mode,
                               cli_error *ce);
/* Before a request that cannot be repeated: whether cli_write_file(path, mode) would be refused. */
KBR_WUR kbr_err cli_check_out(const char *opt, const char *path, unsigned mode, cli_error *ce);
/* Whether an --out names standard output ("-"). */
bool cli_is_stdout(const char *path);
/*
 * The context for what a command shows after writing path: with --out - the
 * data has standard output to itself, so the table (or JSON) goes to stderr.
 */
cli_ctx cli_ctx_beside(const cli_ctx *ctx, const char *path);
/* GETs path and shows it as cli_show() does. */
KBR_WUR kbr_err cli_get_show(const cli_ctx *ctx, const char *path, const char *rows,
                             const cli_column *cols, size_t ncols, cli_error *ce);
/* A JSON array of the n strings. Caller frees *out with json_decref. */
KBR_WUR kbr_err cli_json_string_array(const char *const *v, size_t n, json_t **out);
/*
 * Turns a failure of a pure function (msg set) into a user error: bad input
 * is a usage error, an unreadable file io_error, an oversized one too_large.
 * Returns err.
 */
kbr_err cli_from_msg(cli_error *ce, kbr_err err, const kbr_msg *msg);
/* A member string of obj, or NULL. Borrowed. */
const char *cli_json_str(const json_t *obj, const char *path);
/*
 * Prints a response: the whole body as JSON with --json; otherwise the array
 * member `rows` of body as a table, or (rows NULL) body as FIELD/VALUE rows.
 */
KBR_WUR kbr_err cli_show(const cli_ctx *ctx, const json_t *body, const char *rows,
                         const cli_column *cols, size_t ncols, cli_error *ce);

#endif
