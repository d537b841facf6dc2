/* keybroker.c - keybroker: the command table, global options and error reporting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <curl/curl.h>

#include "cli.h"

#define N_ELEMS(a)      (sizeof(a) / sizeof((a)[0]))
#define CLI_DEFAULT_URL "http://127.0.0.1:8443"
#define CLI_EXIT_ERROR  1
#define CLI_EXIT_USAGE  2

/* Every subcommand; a new one is a cli_command in its cmd_*.c file plus a line here. */
static const cli_command *const commands[] = {
    &cli_cmd_key_create,
    &cli_cmd_key_list,
    &cli_cmd_key_show,
    &cli_cmd_key_retire,
    &cli_cmd_key_pubkey,
    &cli_cmd_key_certificate,
    &cli_cmd_token_issue,
    &cli_cmd_token_list,
    &cli_cmd_token_revoke,
    &cli_cmd_token_rotate_issuer,
    &cli_cmd_token_exchange,
    &cli_cmd_verify,
    &cli_cmd_revoke,
    &cli_cmd_sign,
    &cli_cmd_batch_create,
    &cli_cmd_batch_show,
    &cli_cmd_provision,
    &cli_cmd_rotate,
    &cli_cmd_device_revoke,
    &cli_cmd_debug_auth,
    &cli_cmd_ota_report,
    &cli_cmd_audit_list,
    &cli_cmd_audit_export,
    &cli_cmd_health,
    &cli_cmd_jwks,
    &cli_cmd_view_product,
    &cli_cmd_view_custody,
    &cli_cmd_view_exposure,
    &cli_cmd_view_device,
    &cli_cmd_audit_checkpoint,
    &cli_cmd_audit_proof,
    &cli_cmd_audit_verify,
    &cli_cmd_audit_consistency,
    &cli_cmd_audit_rotate_key,
    &cli_cmd_evidence_device,
    &cli_cmd_evidence_product,
    &cli_cmd_evidence_verify,
    &cli_cmd_evidence_incident,
    &cli_cmd_product_create,
    &cli_cmd_product_show,
    &cli_cmd_incident_create,
    &cli_cmd_incident_list,
    &cli_cmd_incident_show,
    &cli_cmd_incident_fix,
    &cli_cmd_incident_report,
    &cli_cmd_incident_document,
    &cli_cmd_incident_chart,
    &cli_cmd_backup,
};

/* Accepted before or after the command words. */
static const cli_opt global_opts[] = {
    {"json", CLI_OPT_FLAG, false, NULL},        {"url", CLI_OPT_STR, false, "URL"},
    {"token-file", CLI_OPT_STR, false, "FILE"}, {"cert", CLI_OPT_STR, false, "FILE"},
    {"cert-key", CLI_OPT_STR, false, "FILE"},   {"help", CLI_OPT_FLAG, false, NULL},
};

static void print_words(FILE *f, const cli_command *c)
{
    for (size_t w = 0; w < N_ELEMS(c->words) && c->words[w] != NULL; w++)
        fprintf(f, "%s%s", w > 0 ? " " : "", c->words[w]);
}

static void command_usage(FILE *f, const cli_command *c)
{
    fputs("usage: keybroker ", f);
    print_words(f, c);
    fprintf(f, "%s%s\n  %s\n", c->synopsis[0] != '\0' ? " " : "", c->synopsis, c->summary);
}

static void usage(FILE *f)
{
    fputs(
        "usage: keybroker [--json] [--url URL] [--token-file FILE] [--cert FILE --cert-key FILE]\n"
        "                 COMMAND [ARGS]\n\ncommands:\n",
        f);
    for (size_t i = 0; i < N_ELEMS(commands); i++) {
        fputs("  ", f);
        print_words(f, commands[i]);
        fprintf(f, "%s%s\n      %s\n", commands[i]->synopsis[0] != '\0' ? " " : "",
                commands[i]->synopsis, commands[i]->summary);
    }
    fputs("\nglobal options go before or after the command:\n"
          "  --json             print the server's JSON response\n"
          "  --url URL          the broker (KEYBROKER_URL, default " CLI_DEFAULT_URL ")\n"
          "  --token-file FILE  the bearer token (KEYBROKER_TOKEN_FILE, else KEYBROKER_TOKEN)\n"
          "  --cert FILE        client certificate for mTLS (KEYBROKER_CERT)\n"
          "  --cert-key FILE    its private key (KEYBROKER_KEY)\n"
          "KEYBROKER_CACERT names the CA bundle for https (default: the system's).\n"
          "Exit status: 0 ok, 1 error, 2 usage error.\n",
          f);
}

/* Number of words of c that argv[i..] starts with, or 0 if not all of them. */
static size_t match_words(const cli_command *c, int argc, char *const argv[], int i)
{
    size_t n = 0;

    for (; n < N_ELEMS(c->words) && c->words[n] != NULL; n++)
        if (i + (int)n >= argc || strcmp(argv[i + (int)n], c->words[n]) != 0)
            return 0;
    return n;
}

static const cli_command *find_command(int argc, char *const argv[], int i, size_t *nwords)
{
    const cli_command *best = NULL;

    *nwords = 0;
    for (size_t k = 0; k < N_ELEMS(commands); k++) {
        size_t n = match_words(commands[k], argc, argv, i);
        if (n > *nwords) {
            *nwords = n;
            best = commands[k];
        }
    }
    return best;
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* True if the global option arg (without "=value") is followed by its value. */
static bool separate_value(const char *arg)
{
    for (size_t k = 0; k < N_ELEMS(global_opts); k++)
        if (strncmp(arg, "--", 2) == 0 && strcmp(arg + 2, global_opts[k].name) == 0)
            return global_opts[k].kind != CLI_OPT_FLAG;
    return false;
}

/* Index of the first command word; options before it are left for the parser to read. */
static int command_start(int argc, char *const argv[], bool *help)
{
    int i = 1;

    while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "--") != 0) {
        if (is_help(argv[i]))
            *help = true;
        i += separate_value(argv[i]) ? 2 : 1;
    }
    return i < argc ? i : argc;
}

static bool wants_help(int argc, char *const argv[])
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (is_help(argv[i]))
            return true;
    return false;
}

typedef struct {
    const cli_command *cmd; /* NULL: the whole usage */
    cli_args *args;
    bool help;
} invocation;

static kbr_err parse_rest(int argc, char *const argv[], int start, size_t nwords, invocation *inv,
                          cli_error *ce)
{
    kbr_err err = KBR_OK;
    char **rest = calloc((size_t)argc + 1, sizeof(*rest));
    int n = 0;
    kbr_msg msg = {{0}};

    KBR_ENSURE(rest != NULL, KBR_ERR_NOMEM);
    for (int i = 1; i < argc; i++)
        if (i < start || i >= start + (int)nwords)
            rest[n++] = argv[i];
    inv->help = wants_help(n, rest);
    if (inv->help)
        goto out;
    err = cli_args_parse(&inv->cmd->spec, global_opts, N_ELEMS(global_opts), n, rest, &inv->args,
                         &msg);
    KBR_ENSURE(err == KBR_OK, cli_from_msg(ce, err, &msg));
out:
    free(rest);
    return err;
}

static kbr_err parse_invocation(int argc, char *const argv[], invocation *inv, cli_error *ce)
{
    kbr_err err = KBR_OK;
    int start = command_start(argc, argv, &inv->help);
    size_t nwords = 0;

    if (inv->help)
        goto out;
    KBR_ENSURE(start < argc, cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE,
                                      "no command given (see keybroker help)"));
    if (strcmp(argv[start], "help") == 0) {
        inv->help = true;
        inv->cmd = find_command(argc, argv, start + 1, &nwords);
        goto out;
    }
    inv->cmd = find_command(argc, argv, start, &nwords);
    KBR_ENSURE(inv->cmd != NULL,
               cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE, "unknown command '%s'", argv[start]));
    KBR_GUARD(parse_rest(argc, argv, start, nwords, inv, ce));
out:
    return err;
}

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : NULL;
}

static const char *opt_or_env(const cli_args *a, const char *opt, const char *env,
                              const char *fallback)
{
    const char *v = cli_args_str(a, opt);

    if (v == NULL)
        v = env_nonempty(env);
    return v != NULL ? v : fallback;
}

static kbr_err load_token(const cli_args *a, kbr_secret **out, cli_error *ce)
{
    const char *file = opt_or_env(a, "token-file", "KEYBROKER_TOKEN_FILE", NULL);
    const char *env = env_nonempty("KEYBROKER_TOKEN");
    kbr_err err;

    *out = NULL;
    if (file != NULL) {
        err = kbr_secret_from_file(file, out);
        if (err == KBR_ERR_CONFIG)
            return cli_fail(ce, err, "io_error", "token file %s is empty", file);
        if (err != KBR_OK)
            return cli_fail(ce, err, "io_error", "cannot read token file %s", file);
        return KBR_OK;
    }
    if (env == NULL)
        return cli_fail(ce, KBR_ERR_BAD_REQUEST, CLI_USAGE,
                        "no token: set KEYBROKER_TOKEN or KEYBROKER_TOKEN_FILE, or pass "
                        "--token-file FILE");
    return kbr_secret_new(env, strlen(env), out);
}

static kbr_err make_client(const invocation *inv, cli_client **out, cli_error *ce)
{
    kbr_err err = KBR_OK;
    kbr_secret *token = NULL;
    cli_client_conf conf = {
        .url = opt_or_env(inv->args, "url", "KEYBROKER_URL", CLI_DEFAULT_URL),
        .cacert = env_nonempty("KEYBROKER_CACERT"),
        .cert = opt_or_env(inv->args, "cert", "KEYBROKER_CERT", NULL),
        .cert_key = opt_or_env(inv->args, "cert-key", "KEYBROKER_KEY", NULL),
    };

    *out = NULL;
    /* verify needs a token only to fetch the key from the broker */
    if (inv->cmd->needs_token ||
        (inv->cmd == &cli_cmd_verify && cli_args_str(inv->args, "key") != NULL))
        KBR_GUARD(load_token(inv->args, &token, ce));
    KBR_GUARD(cli_client_new(&conf, token, out, ce));
out:
    return err;
}

static kbr_err execute(const invocation *inv, cli_error *ce)
{
    kbr_err err = KBR_OK;
    cli_ctx ctx = {.args = inv->args, .json = cli_args_flag(inv->args, "json"), .out = stdout};

    KBR_GUARD(make_client(inv, &ctx.client, ce));
    KBR_GUARD(inv->cmd->run(&ctx, ce));
    KBR_ENSURE(fflush(stdout) == 0 && !ferror(stdout),
               cli_fail(ce, KBR_ERR_IO, "io_error", "cannot write to stdout"));
out:
    cli_client_free(ctx.client);
    return err;
}

static int report(kbr_err err, const invocation *inv, const cli_error *ce)
{
    bool is_usage = strcmp(ce->code, CLI_USAGE) == 0;

    cli_print_error(stderr, err, ce);
    if (is_usage && inv->cmd != NULL)
        command_usage(stderr, inv->cmd);
    else if (is_usage)
        usage(stderr);
    return is_usage ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
}

static int run(int argc, char *const argv[])
{
    invocation inv = {0};
    cli_error ce = {{0}, {{0}}};
    kbr_err err = parse_invocation(argc, argv, &inv, &ce);
    int rc = 0;

    if (err == KBR_OK && inv.help && inv.cmd != NULL)
        command_usage(stdout, inv.cmd);
    else if (err == KBR_OK && inv.help)
        usage(stdout);
    else if (err == KBR_OK)
        err = execute(&inv, &ce);
    if (err != KBR_OK)
        rc = report(err, &inv, &ce);
    cli_args_free(inv.args);
    return rc;
}

int main(int argc, char *argv[])
{
    /* The process holds a bearer token; it must not end up in a core file. */
    const struct rlimit no_core = {0, 0};
    int rc;

    setrlimit(RLIMIT_CORE, &no_core);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fputs("keybroker: internal_error: libcurl failed to initialize\n", stderr);
        return CLI_EXIT_ERROR;
    }
    rc = run(argc, argv);
    curl_global_cleanup();
    return rc;
}
