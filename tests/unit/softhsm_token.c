/*
 * softhsm_token.c - see softhsm_token.h.
 */
#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "softhsm_token.h"
#include "tmpdir.h"

extern char **environ;

char kbt_token_dir[PATH_MAX];
const char *kbt_module_path = "/usr/lib/softhsm/libsofthsm2.so";

/*
 * SoftHSM2 2.6.1 leaks an ASN.1 string in C_SignInit for every EdDSA key
 * (inside the module, not in the caller).  The sanitizers read these hooks:
 * the slow unwinder sees through libcrypto's frames to the module's, and
 * only allocations made under the module are excused.
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "fast_unwind_on_malloc=0";
}

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libsofthsm2.so\n";
}

static int write_conf(const char *conf)
{
    FILE *fp = fopen(conf, "w");

    if (fp == NULL)
        return -1;
    fprintf(fp, "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
            kbt_token_dir);
    return fclose(fp);
}

static int run_quiet(char *const argv[])
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status = 0, rc;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0 || waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int kbt_token_create(const char *prefix)
{
    char path[PATH_MAX + 32];
    char *const argv[] = {"softhsm2-util", "--init-token", "--free",   "--label", KBT_TOKEN_LABEL,
                          "--pin",         KBT_USER_PIN,   "--so-pin", "5678",    NULL};
    if (kbt_tmpdir(kbt_token_dir, sizeof(kbt_token_dir), prefix) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/tokens", kbt_token_dir);
    if (mkdir(path, 0700) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/softhsm2.conf", kbt_token_dir);
    if (write_conf(path) != 0 || setenv("SOFTHSM2_CONF", path, 1) != 0)
        return -1;
    if (getenv("KBR_TEST_PKCS11_MODULE") != NULL)
        kbt_module_path = getenv("KBR_TEST_PKCS11_MODULE");
    return run_quiet(argv);
}

void kbt_token_destroy(void)
{
    kbt_rmtree(kbt_token_dir);
}
