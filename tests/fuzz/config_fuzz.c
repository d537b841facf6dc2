/*
 * config_fuzz.c - keybrokerd's configuration file (broker/daemon/config.c,
 * linked from libkbrd.a with the name check it uses from json.c).  The input is
 * the file's content; kbd_config_load reads it from a real file in a
 * private directory, because it resolves relative paths against the file's
 * own directory (realpath), which a memfd or pipe does not have.
 */
#include "../../broker/daemon/kbd.h"

#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

static char dir[64];
static char conf[96];

static void remove_dir(void)
{
    (void)unlink(conf);
    (void)rmdir(dir);
}

static void fixture_init(void)
{
    snprintf(dir, sizeof(dir), "/tmp/kbr-config-fuzz-XXXXXX");
    FUZZ_CHECK(mkdtemp(dir) != NULL);
    snprintf(conf, sizeof(conf), "%s/keybroker.conf", dir);
    FUZZ_CHECK(atexit(remove_dir) == 0);
}

static void write_conf(const uint8_t *data, size_t size)
{
    FILE *f = fopen(conf, "wb");

    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(size == 0 || fwrite(data, 1, size, f) == size);
    FUZZ_CHECK(fclose(f) == 0);
}

static bool absolute(const char *path)
{
    return path == NULL || path[0] == '/';
}

/* A configuration that loads is one the daemon can start from without further checks. */
static void check_loaded(const kbd_config *c)
{
    FUZZ_CHECK(c->listen_host != NULL && c->listen_port >= 0 && c->listen_port <= 65535);
    FUZZ_CHECK(c->instance_id != NULL && kbr_name_valid(c->instance_id));
    FUZZ_CHECK(c->token_label != NULL && strlen(c->token_label) <= 32);
    FUZZ_CHECK(c->pin_file != NULL && c->store != NULL && c->bootstrap_token_file != NULL);
    /* every path is resolved against the file's directory once, at load */
    FUZZ_CHECK(absolute(c->pin_file) && absolute(c->bootstrap_token_file));
    FUZZ_CHECK(absolute(c->port_file) && absolute(c->pkcs11_module));
    FUZZ_CHECK(absolute(c->tls_cert) && absolute(c->tls_key) && absolute(c->tls_client_ca));
    FUZZ_CHECK(strncmp(c->store, "sqlite:", 7) != 0 || c->store[7] == '/');
    FUZZ_CHECK((c->tls_cert == NULL) == (c->tls_key == NULL));
    FUZZ_CHECK(c->tls_client_ca == NULL || c->tls_cert != NULL);
    FUZZ_CHECK(c->workers >= 1 && c->body_limit >= 1024);
    FUZZ_CHECK(c->checkpoint_entries >= 1 && c->checkpoint_seconds >= 1);
    FUZZ_CHECK(c->max_token_ttl >= 60);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    kbd_config cfg;
    kbr_msg msg = {{0}};
    kbr_err err;

    if (!ready) {
        fixture_init();
        ready = true;
    }
    write_conf(data, size);
    err = kbd_config_load(conf, &cfg, &msg);
    if (err == KBR_OK)
        check_loaded(&cfg);
    else
        FUZZ_CHECK((err == KBR_ERR_CONFIG || err == KBR_ERR_NOMEM) && msg.text[0] != '\0');
    kbd_config_cleanup(&cfg);
    return 0;
}
