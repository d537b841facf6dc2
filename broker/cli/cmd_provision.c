/*
 * cmd_provision.c - keybroker key certificate, provision and rotate: the
 * device CA's own certificate, and device certificates made from a CSR.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli.h"
#include "kbr_ca.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const char *const key_name_pos[] = {"NAME"};
static const char *const device_serial_pos[] = {"SERIAL"};

static const cli_column key_cert_fields[] = {
    {"name", "name"},
    {"fingerprint", "certificate.fingerprint"},
    {"serial_number", "certificate.serial_number"},
    {"not_after", "certificate.not_after"},
};

/* Rotation adds what it replaced; provisioning shows the first four. */
static const cli_column issued_fields[] = {
    {"serial_number", "serial_number"},
    {"not_after", "not_after"},
    {"fingerprint_sha256", "fingerprint_sha256"},
    {"audit_seq", "audit_seq"},
    {"superseded", "superseded"},
};

/* Skips NULL values; what names the option, so bad UTF-8 is reported against it. */
static kbr_err prov_set_str(json_t *obj, const char *field, const char *what, const char *value,
                            kbr_msg *msg)
{
    json_t *v = NULL;

    if (value == NULL)
        return KBR_OK;
    v = json_string(value);
    if (v == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s is not valid UTF-8", what);
    return json_object_set_new(obj, field, v) == 0 ? KBR_OK : KBR_ERR_NOMEM;
}

static kbr_err prov_read_file(const char *opt, const char *path, size_t max, char **out,
                              kbr_msg *msg)
{
    kbr_err err = kbr_file_read(path, max, out, NULL);

    if (err == KBR_ERR_TOO_LARGE)
        return kbr_fail(msg, err, "--%s %s is larger than %zu bytes", opt, path, max);
    if (err == KBR_ERR_IO)
        return kbr_fail(msg, err, "--%s %s: %s", opt, path, strerror(errno));
    return err;
}

/* A file that is not what the option wants is caught here, before anything is sent. */
static kbr_err prov_check_pem(const char *opt, const char *path, const char *pem, bool csr,
                              kbr_msg *msg)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509_REQ *req = NULL;
    X509 *cert = NULL;
    bool ok;

    if (bio == NULL)
        return KBR_ERR_NOMEM;
    if (csr)
        ok = (req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL)) != NULL;
    else
        ok = (cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL;
    X509_REQ_free(req);
    X509_free(cert);
    BIO_free(bio);
    ERR_clear_error();
    if (!ok)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--%s %s is not a PEM %s", opt, path,
                        csr ? "certificate request (CSR)" : "certificate");
    return KBR_OK;
}

static kbr_err prov_load_pem(const cli_args *a, const char *opt, bool csr, json_t *obj,
                             const char *field, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const char *path = cli_args_str(a, opt);
    char *pem = NULL;

    KBR_ENSURE(path != NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "missing required option --%s", opt));
    KBR_GUARD(prov_read_file(opt, path, csr ? KBR_CA_CSR_MAX : KBR_CA_CHAIN_MAX, &pem, msg));
    KBR_GUARD(prov_check_pem(opt, path, pem, csr, msg));
    KBR_GUARD(prov_set_str(obj, field, path, pem, msg));
out:
    free(pem);
    return err;
}

/* ---- key certificate ---- */

static kbr_err key_cert_check(const cli_args *a, long long *days, kbr_msg *msg)
{
    bool self = cli_args_flag(a, "self-signed"), pem = cli_args_str(a, "pem") != NULL;
    bool subject = cli_args_str(a, "subject") != NULL, has_days = cli_args_int(a, "days", days);

    if (self == pem)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "give exactly one of --self-signed, --pem");
    if (pem && (subject || has_days))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--subject and --days go with --self-signed");
    if (self && (!subject || !has_days))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--self-signed needs --subject and --days");
    if (self && (*days < 1 || *days > KBR_CA_DAYS_MAX))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--days must be between 1 and %d",
                        KBR_CA_DAYS_MAX);
    return KBR_OK;
}

static kbr_err self_signed_object(const cli_args *a, long long days, json_t *body, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *ss = json_object();

    KBR_ENSURE(ss != NULL && json_object_set_new(body, "self_signed", ss) == 0, KBR_ERR_NOMEM);
    KBR_GUARD(prov_set_str(ss, "subject", "--subject", cli_args_str(a, "subject"), msg));
    KBR_ENSURE(json_object_set_new(ss, "days", json_integer(days)) == 0, KBR_ERR_NOMEM);
out:
    return err;
}

kbr_err cli_key_cert_body(const cli_args *a, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;
    long long days = 0;

    *out = NULL;
    KBR_GUARD(key_cert_check(a, &days, msg));
    body = json_object();
    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    if (cli_args_flag(a, "self-signed"))
        KBR_GUARD(self_signed_object(a, days, body, msg));
    else
        KBR_GUARD(prov_load_pem(a, "pem", false, body, "pem", msg));
    *out = body;
    body = NULL;
out:
    json_decref(body);
    return err;
}

/* ---- device certificate request bodies ---- */

static kbr_err device_object(const cli_args *a, json_t *body, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *dev = json_object();

    KBR_ENSURE(dev != NULL && json_object_set_new(body, "device", dev) == 0, KBR_ERR_NOMEM);
    KBR_GUARD(prov_set_str(dev, "serial", "--serial", cli_args_str(a, "serial"), msg));
    KBR_GUARD(prov_set_str(dev, "product", "--product", cli_args_str(a, "product"), msg));
    KBR_GUARD(prov_set_str(dev, "batch", "--batch", cli_args_str(a, "batch"), msg));
    KBR_GUARD(prov_set_str(dev, "firmware_version", "--firmware-version",
                           cli_args_str(a, "firmware-version"), msg));
out:
    return err;
}

/* The CA key first: without it there is nothing to ask the broker. */
static kbr_err csr_body(const cli_args *a, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    const char *key = cli_args_str(a, "key");
    json_t *body = NULL;

    *out = NULL;
    KBR_ENSURE(key != NULL, kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                                     "missing required option --key (the device CA key)"));
    body = json_object();
    KBR_ENSURE(body != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(prov_set_str(body, "key", "--key", key, msg));
    KBR_GUARD(prov_load_pem(a, "csr", true, body, "csr_pem", msg));
    *out = body;
    body = NULL;
out:
    json_decref(body);
    return err;
}

/* --deliver KEY (repeatable, or KEY,KEY): the ota-encryption keys sealed to the device. */
static kbr_err deliver_list(const cli_args *a, json_t *body, kbr_msg *msg)
{
    size_t n = 0;
    const char *const *keys = cli_args_list(a, "deliver", &n);
    json_t *arr = NULL;

    if (n == 0)
        return KBR_OK;
    if (cli_args_str(a, "deliver-out") == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--deliver needs --deliver-out DIR, where each delivery is written");
    arr = json_array();
    if (arr == NULL || json_object_set_new(body, "deliver", arr) != 0)
        return KBR_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_string(keys[i]);
        if (v == NULL)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--deliver is not valid UTF-8");
        if (json_array_append_new(arr, v) != 0)
            return KBR_ERR_NOMEM;
    }
    return KBR_OK;
}

kbr_err cli_provision_body(const cli_args *a, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;

    *out = NULL;
    KBR_GUARD(csr_body(a, &body, msg));
    KBR_GUARD(device_object(a, body, msg));
    KBR_GUARD(deliver_list(a, body, msg));
    *out = body;
    body = NULL;
out:
    json_decref(body);
    return err;
}

kbr_err cli_rotate_body(const cli_args *a, json_t **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;

    *out = NULL;
    KBR_GUARD(csr_body(a, &body, msg));
    KBR_GUARD(prov_set_str(body, "product", "--product", cli_args_str(a, "product"), msg));
    *out = body;
    body = NULL;
out:
    json_decref(body);
    return err;
}

/* ---- output files ---- */

/* DIR/KEY.cose: where the delivery of KEY is written; the caller frees. */
static kbr_err delivery_path(const cli_args *a, const char *key, char **path)
{
    return asprintf(path, "%s/%s.cose", cli_args_str(a, "deliver-out"), key) < 0 ? KBR_ERR_NOMEM
                                                                                 : KBR_OK;
}

static kbr_err check_delivery_outputs(const cli_args *a, cli_error *ce)
{
    kbr_err err = KBR_OK;
    size_t n = 0;
    const char *const *keys = cli_args_list(a, "deliver", &n);
    char *path = NULL;

    for (size_t i = 0; i < n; i++) {
        KBR_GUARD(delivery_path(a, keys[i], &path));
        KBR_GUARD(cli_check_out("deliver-out", path, 0600, ce));
        free(path);
        path = NULL;
    }
out:
    free(path);
    return err;
}

/* Each COSE_Encrypt to DIR/KEY.cose, as the device reads it; on stdout (base64) if not. */
static kbr_err write_deliveries(const cli_ctx *ctx, const json_t *body, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const json_t *list = json_object_get(body, "delivered"), *one;
    unsigned char *cose = NULL;
    size_t i, len = 0;
    char *path = NULL;
    kbr_msg why = {{0}};

    if (cli_args_str(ctx->args, "deliver-out") == NULL)
        return KBR_OK;
    json_array_foreach(list, i, one)
    {
        const char *key = cli_json_str(one, "key"), *b64 = cli_json_str(one, "cose_encrypt_b64");
        KBR_ENSURE(key != NULL && b64 != NULL && kbr_name_valid(key) &&
                       kbr_b64_decode(b64, &cose, &len) == KBR_OK,
                   cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response",
                            "the response's delivered[%zu] is not a key and a COSE_Encrypt", i));
        KBR_GUARD(delivery_path(ctx->args, key, &path));
        if (kbr_file_write(path, cose, len, 0600, &why) != KBR_OK) {
            cli_term_put(ctx->out, b64, CLI_TERM_LINES);
            KBR_GUARD(cli_fail(ce, KBR_ERR_IO, "io_error",
                               "cannot write %s; the delivery of %s is on stdout (base64)",
                               why.text, key));
        }
        free(path);
        free(cose);
        path = NULL;
        cose = NULL;
    }
out:
    free(path);
    free(cose);
    return err;
}

/*
 * Checked before the request: once the broker has issued a certificate the
 * serial and a batch slot are spent, so a file that cannot be written must
 * be found out first.
 */
static kbr_err check_outputs(const cli_args *a, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *cert = cli_args_str(a, "out"), *chain = cli_args_str(a, "chain-out");

    KBR_ENSURE(
        cert == NULL || chain == NULL || strcmp(cert, chain) != 0,
        cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE, "--out and --chain-out name the same file"));
    if (cert != NULL)
        KBR_GUARD(cli_check_out("out", cert, 0644, ce));
    if (chain != NULL)
        KBR_GUARD(cli_check_out("chain-out", chain, 0644, ce));
out:
    return err;
}

/* If the file still cannot be written, the PEM goes to stdout rather than being lost. */
static kbr_err write_or_print(const cli_ctx *ctx, const char *file, const char *pem,
                              const char *what, cli_error *ce)
{
    kbr_msg why = {{0}};

    if (kbr_file_write(file, pem, strlen(pem), 0644, &why) == KBR_OK)
        return KBR_OK;
    cli_term_put(ctx->out, pem, CLI_TERM_LINES);
    return cli_fail(ce, KBR_ERR_IO, "io_error", "cannot write %s; the issued %s is on stdout",
                    why.text, what);
}

static kbr_err issued_pem(const json_t *body, const char *field, const char **pem, cli_error *ce)
{
    *pem = cli_json_str(body, field);
    if (*pem == NULL)
        return cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response", "the response has no %s", field);
    return KBR_OK;
}

/*
 * Files first, then the table; without --out the certificate follows the
 * table, since a device certificate is issued once per serial.
 */
static kbr_err show_issued(const cli_ctx *ctx, const json_t *body, size_t nfields, cli_error *ce)
{
    kbr_err err = KBR_OK;
    const char *file = cli_args_str(ctx->args, "out");
    const char *chain_file = cli_args_str(ctx->args, "chain-out");
    cli_ctx shown = cli_ctx_beside(ctx, cli_is_stdout(chain_file) ? chain_file : file);
    const char *cert = NULL, *chain = NULL;

    KBR_GUARD(issued_pem(body, "certificate_pem", &cert, ce));
    KBR_GUARD(issued_pem(body, "chain_pem", &chain, ce));
    if (file != NULL)
        KBR_GUARD(write_or_print(ctx, file, cert, "certificate", ce));
    if (chain_file != NULL)
        KBR_GUARD(write_or_print(ctx, chain_file, chain, "chain", ce));
    KBR_GUARD(cli_show(&shown, body, NULL, issued_fields, nfields, ce));
    if (file == NULL && !ctx->json)
        KBR_GUARD(cli_print_lines(ctx->out, cert, ce));
out:
    return err;
}

typedef kbr_err (*body_fn)(const cli_args *a, json_t **out, kbr_msg *msg);

static kbr_err issue_device_cert(cli_ctx *ctx, body_fn make_body, const char *path, size_t nfields,
                                 cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;
    cli_response resp = {0};
    kbr_msg msg = {{0}};

    err = make_body(ctx->args, &body, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    KBR_GUARD(check_outputs(ctx->args, ce));
    KBR_GUARD(check_delivery_outputs(ctx->args, ce));
    KBR_GUARD(cli_call(ctx->client, "POST", path, body, &resp, ce));
    KBR_GUARD(write_deliveries(ctx, resp.body, ce));
    KBR_GUARD(show_issued(ctx, resp.body, nfields, ce));
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    return err;
}

static kbr_err provision_run(cli_ctx *ctx, cli_error *ce)
{
    return issue_device_cert(ctx, cli_provision_body, "/v1/provision", N_ELEMS(issued_fields) - 1,
                             ce);
}

static kbr_err rotate_run(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    char *path = NULL;

    KBR_GUARD(cli_path_join(ctx->client, "/v1/devices/", cli_args_pos(ctx->args, 0),
                            "/certificates", &path));
    KBR_GUARD(issue_device_cert(ctx, cli_rotate_body, path, N_ELEMS(issued_fields), ce));
out:
    free(path);
    return err;
}

static kbr_err key_cert_run(cli_ctx *ctx, cli_error *ce)
{
    kbr_err err = KBR_OK;
    json_t *body = NULL;
    cli_response resp = {0};
    char *path = NULL;
    const char *file = cli_args_str(ctx->args, "out"), *pem = NULL;
    cli_ctx shown = cli_ctx_beside(ctx, file);
    kbr_msg msg = {{0}};

    err = cli_key_cert_body(ctx->args, &body, &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
    if (file != NULL)
        KBR_GUARD(cli_check_out("out", file, 0644, ce));
    KBR_GUARD(
        cli_path_join(ctx->client, "/v1/keys/", cli_args_pos(ctx->args, 0), "/certificate", &path));
    KBR_GUARD(cli_call(ctx->client, "POST", path, body, &resp, ce));
    pem = cli_json_str(resp.body, "certificate.pem");
    KBR_ENSURE(pem != NULL, cli_fail(ce, KBR_ERR_BAD_REQUEST, "bad_response",
                                     "the response has no certificate.pem"));
    if (file != NULL)
        KBR_GUARD(write_or_print(ctx, file, pem, "certificate", ce));
    KBR_GUARD(cli_show(&shown, resp.body, NULL, key_cert_fields, N_ELEMS(key_cert_fields), ce));
out:
    cli_response_cleanup(&resp);
    json_decref(body);
    free(path);
    return err;
}

static const cli_opt key_cert_opts[] = {
    {"self-signed", CLI_OPT_FLAG, false, NULL}, {"subject", CLI_OPT_STR, false, "DN"},
    {"days", CLI_OPT_INT, false, "N"},          {"pem", CLI_OPT_STR, false, "FILE"},
    {"out", CLI_OPT_STR, false, "FILE"},
};

static const cli_opt provision_opts[] = {
    {"csr", CLI_OPT_STR, true, "FILE"},      {"serial", CLI_OPT_STR, true, "SN"},
    {"batch", CLI_OPT_STR, true, "B"},       {"product", CLI_OPT_STR, true, "P"},
    {"key", CLI_OPT_STR, true, "CA_KEY"},    {"firmware-version", CLI_OPT_STR, false, "V"},
    {"out", CLI_OPT_STR, false, "FILE"},     {"chain-out", CLI_OPT_STR, false, "FILE"},
    {"deliver", CLI_OPT_LIST, false, "KEY"}, {"deliver-out", CLI_OPT_STR, false, "DIR"},
};

static const cli_opt rotate_opts[] = {
    {"csr", CLI_OPT_STR, true, "FILE"},        {"product", CLI_OPT_STR, true, "P"},
    {"key", CLI_OPT_STR, true, "CA_KEY"},      {"out", CLI_OPT_STR, false, "FILE"},
    {"chain-out", CLI_OPT_STR, false, "FILE"},
};

const cli_command cli_cmd_key_certificate = {
    {"key", "certificate", NULL},
    "NAME (--self-signed --subject \"CN=..,O=..\" --days N | --pem FILE) [--out FILE]",
    "attach a certificate to a key: a self-signed CA certificate made in the HSM, or one\n"
    "      issued elsewhere for the key; --out writes it (PEM)",
    {key_cert_opts, N_ELEMS(key_cert_opts), key_name_pos, 1, 1},
    true,
    key_cert_run,
};

const cli_command cli_cmd_provision = {
    {"provision", NULL, NULL},
    "--csr FILE --serial SN --batch B --product P --key CA_KEY [--firmware-version V]\n"
    "      [--out CERT.pem] [--chain-out CHAIN.pem] [--deliver KEY... --deliver-out DIR]",
    "certify a new device from its CSR within a batch (without --out the certificate is\n"
    "      printed after the table); --deliver seals each ota-encryption KEY to the device's\n"
    "      key, written as the COSE_Encrypt DIR/KEY.cose",
    {provision_opts, N_ELEMS(provision_opts), NULL, 0, 0},
    true,
    provision_run,
};

const cli_command cli_cmd_rotate = {
    {"rotate", NULL, NULL},
    "SERIAL --csr FILE --product P --key CA_KEY [--out CERT.pem] [--chain-out CHAIN.pem]",
    "issue a provisioned device a new certificate; its current one is superseded",
    {rotate_opts, N_ELEMS(rotate_opts), device_serial_pos, 1, 1},
    true,
    rotate_run,
};
