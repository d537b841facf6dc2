/*
 * replay.c - runs a fuzz target over its committed corpus without libFuzzer,
 * so `make check` (gcc, and gcc with ASan+UBSan under `make asan`) keeps
 * every seed and every past crash reproducer as a regression test.
 *
 * Usage: X_replay [FILE|DIR]...  Without arguments it replays the corpus
 * directory compiled in as KBR_FUZZ_CORPUS.  A crash or a failed property
 * aborts the process; an unreadable corpus is reported as a failed test.
 * The last line is cmocka's summary, which tests/run-tests.sh counts.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

#ifndef KBR_FUZZ_CORPUS
#error "build with -DKBR_FUZZ_CORPUS=\"path/to/corpus/dir\""
#endif

/* Set by the sanitizer runtime when the binary is built with one. */
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

/* The input being replayed, so a crash names the file to look at. */
static char current[4096];

static void name_current(void)
{
    static const char what[] = "\nreplay: crashed on input ";

    if (write(STDERR_FILENO, what, sizeof(what) - 1) < 0 ||
        write(STDERR_FILENO, current, strlen(current)) < 0 || write(STDERR_FILENO, "\n", 1) < 0)
        return;
}

static void on_fatal_signal(int sig)
{
    name_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void catch_crashes(void)
{
    static const int sigs[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};

    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], on_fatal_signal);
    if (__sanitizer_set_death_callback != NULL)
        __sanitizer_set_death_callback(name_current);
}

/* Each input gets a heap buffer of exactly its size, so ASan sees any read past it. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    uint8_t *buf = NULL;
    int rc = -1;

    snprintf(current, sizeof(current), "%s", path);
    if (f == NULL || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        goto out;
    buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
    if (buf == NULL || fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        goto out;
    (void)LLVMFuzzerTestOneInput(buf, (size_t)st.st_size);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "%s: cannot read: %s\n", path, strerror(errno));
    free(buf);
    if (f != NULL)
        fclose(f);
    return rc;
}

static int skip_hidden(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

/* Sorted, so a failing run names the same input first every time. */
static int replay_dir(const char *dir, size_t *count)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, skip_hidden, alphasort);
    int rc = n > 0 ? 0 : -1;
    char path[4096];

    if (n < 0)
        fprintf(stderr, "%s: cannot list: %s\n", dir, strerror(errno));
    else if (n == 0)
        fprintf(stderr, "%s: empty corpus\n", dir);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        if (replay_file(path) != 0)
            rc = -1;
        else
            (*count)++;
        free(names[i]);
    }
    free(names);
    return rc;
}

static int replay_path(const char *path, size_t *count)
{
    struct stat st;

    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return replay_dir(path, count);
    if (replay_file(path) != 0)
        return -1;
    (*count)++;
    return 0;
}

int main(int argc, char **argv)
{
    static const uint8_t empty[1];
    const char *name = argc > 1 ? argv[1] : KBR_FUZZ_CORPUS;
    size_t count = 0;
    int rc = 0;

    printf("[==========] Running 1 test(s).\n[ RUN      ] replay %s\n", name);
    fflush(stdout);
    catch_crashes();
    snprintf(current, sizeof(current), "(empty input)");
    /* libFuzzer always tries the empty input first; so does the replay. */
    (void)LLVMFuzzerTestOneInput(empty, 0);
    if (argc < 2)
        rc = replay_path(KBR_FUZZ_CORPUS, &count);
    for (int i = 1; i < argc; i++)
        if (replay_path(argv[i], &count) != 0)
            rc = -1;
    if (rc != 0) {
        printf("[  FAILED  ] replay %s\n[==========] 1 test(s) run.\n", name);
        printf("[  FAILED  ] 1 test(s), listed below:\n[  FAILED  ] replay %s\n", name);
        return 1;
    }
    printf("[       OK ] replay %s: %zu input(s)\n[==========] 1 test(s) run.\n", name, count);
    printf("[  PASSED  ] 1 test(s).\n");
    return 0;
}
