/* args.c - the strict option parser shared by every subcommand. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
    bool set;
    const char *str;
    long long num;
    char **items; /* owned copies, for lists */
    size_t nitems;
} cli_val;

struct cli_args {
    const cli_spec *spec;
    const cli_opt *extra;
    size_t nextra;
    cli_val *vals; /* spec->nopts then nextra */
    const char **pos;
    size_t npos;
};

kbr_err cli_fail(cli_error *ce, kbr_err err, const char *code, const char *fmt, ...)
{
    va_list ap;

    if (ce == NULL)
        return err;
    snprintf(ce->code, sizeof(ce->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(ce->msg.text, sizeof(ce->msg.text), fmt, ap);
    va_end(ap);
    return err;
}

void cli_strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static kbr_err strv_push(char ***v, size_t *n, const char *s, size_t len)
{
    char **grown = realloc(*v, (*n + 1) * sizeof(**v));
    char *copy = NULL;

    if (grown == NULL)
        return KBR_ERR_NOMEM;
    *v = grown;
    copy = strndup(s, len);
    if (copy == NULL)
        return KBR_ERR_NOMEM;
    grown[(*n)++] = copy;
    return KBR_OK;
}

kbr_err cli_split_list(const char *s, char ***items, size_t *n)
{
    kbr_err err = KBR_OK;
    char **v = NULL;
    size_t count = 0;
    const char *p = s;

    *items = NULL;
    *n = 0;
    for (;;) {
        size_t len = strcspn(p, ",");
        KBR_ENSURE(len > 0, KBR_ERR_BAD_REQUEST);
        KBR_GUARD(strv_push(&v, &count, p, len));
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    *items = v;
    *n = count;
    v = NULL;
out:
    cli_strv_free(v, count);
    return err;
}

kbr_err cli_parse_ll(const char *s, long long min, long long max, long long *out)
{
    char *end = NULL;
    long long v;

    /* strtoll would skip blanks and accept "+"; a number here is digits only. */
    if (s[0] != '-' && (s[0] < '0' || s[0] > '9'))
        return KBR_ERR_BAD_REQUEST;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return KBR_ERR_BAD_REQUEST;
    *out = v;
    return KBR_OK;
}

static size_t nall(const cli_args *a)
{
    return a->spec->nopts + a->nextra;
}

static const cli_opt *opt_at(const cli_args *a, size_t i)
{
    return i < a->spec->nopts ? &a->spec->opts[i] : &a->extra[i - a->spec->nopts];
}

static bool opt_find(const cli_args *a, const char *name, size_t len, size_t *idx)
{
    for (size_t i = 0; i < nall(a); i++) {
        const char *n = opt_at(a, i)->name;
        if (strlen(n) == len && strncmp(n, name, len) == 0) {
            *idx = i;
            return true;
        }
    }
    return false;
}

static kbr_err store_list(cli_val *v, const char *name, const char *value, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    char **parts = NULL;
    size_t n = 0;

    if (cli_split_list(value, &parts, &n) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "empty item in --%s '%s'", name, value);
    for (size_t i = 0; i < n; i++)
        KBR_GUARD(strv_push(&v->items, &v->nitems, parts[i], strlen(parts[i])));
out:
    cli_strv_free(parts, n);
    return err;
}

static kbr_err store_value(const cli_opt *o, cli_val *v, const char *value, kbr_msg *msg)
{
    if (value[0] == '\0')
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "empty value for --%s", o->name);
    if (v->set && (o->kind == CLI_OPT_STR || o->kind == CLI_OPT_INT))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--%s given more than once", o->name);
    v->set = true;
    switch (o->kind) {
    case CLI_OPT_INT:
        if (cli_parse_ll(value, 0, LLONG_MAX, &v->num) != KBR_OK)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--%s: '%s' is not a non-negative integer",
                            o->name, value);
        v->str = value;
        return KBR_OK;
    case CLI_OPT_LIST:
        return store_list(v, o->name, value, msg);
    case CLI_OPT_MULTI:
        return strv_push(&v->items, &v->nitems, value, strlen(value));
    default:
        v->str = value;
        return KBR_OK;
    }
}

/* Consumes argv[*i] (and its value, if separate), advancing *i past the value. */
static kbr_err parse_option(cli_args *a, int argc, char *const argv[], int *i, kbr_msg *msg)
{
    const char *arg = argv[*i], *name = arg + 2, *eq = NULL, *value = NULL;
    size_t idx = 0, len;
    const cli_opt *o;

    if (strncmp(arg, "--", 2) != 0)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "unknown option %s", arg);
    eq = strchr(name, '=');
    len = eq != NULL ? (size_t)(eq - name) : strlen(name);
    if (!opt_find(a, name, len, &idx))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "unknown option --%.*s", (int)len, name);
    o = opt_at(a, idx);
    if (o->kind == CLI_OPT_FLAG) {
        if (eq != NULL)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--%s takes no value", o->name);
        a->vals[idx].set = true;
        return KBR_OK;
    }
    if (eq != NULL) {
        value = eq + 1;
    } else {
        /* "--out --json" is a forgotten value, not a file named --json. */
        if (*i + 1 >= argc || strncmp(argv[*i + 1], "--", 2) == 0)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "missing value for --%s", o->name);
        value = argv[++*i];
    }
    return store_value(o, &a->vals[idx], value, msg);
}

static kbr_err add_positional(cli_args *a, const char *arg, kbr_msg *msg)
{
    if (a->npos >= a->spec->max_pos)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "unexpected argument '%s'", arg);
    a->pos[a->npos++] = arg;
    return KBR_OK;
}

static kbr_err check_complete(const cli_args *a, kbr_msg *msg)
{
    for (size_t i = 0; i < nall(a); i++) {
        const cli_opt *o = opt_at(a, i);
        if (o->required && !a->vals[i].set)
            return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "missing required option --%s", o->name);
    }
    if (a->npos < a->spec->min_pos)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "missing argument %s", a->spec->pos[a->npos]);
    return KBR_OK;
}

static kbr_err parse_all(cli_args *a, int argc, char *const argv[], kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    bool options_done = false;

    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0)
            options_done = true;
        else if (!options_done && arg[0] == '-' && arg[1] != '\0')
            KBR_GUARD(parse_option(a, argc, argv, &i, msg));
        else
            KBR_GUARD(add_positional(a, arg, msg));
    }
    KBR_GUARD(check_complete(a, msg));
out:
    return err;
}

kbr_err cli_args_parse(const cli_spec *spec, const cli_opt *extra, size_t nextra, int argc,
                       char *const argv[], cli_args **out, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    cli_args *a = NULL;

    *out = NULL;
    a = calloc(1, sizeof(*a));
    KBR_ENSURE(a != NULL, KBR_ERR_NOMEM);
    a->spec = spec;
    a->extra = extra;
    a->nextra = nextra;
    a->vals = calloc(spec->nopts + nextra + 1, sizeof(*a->vals));
    a->pos = calloc(spec->max_pos + 1, sizeof(*a->pos));
    KBR_ENSURE(a->vals != NULL && a->pos != NULL, KBR_ERR_NOMEM);
    KBR_GUARD(parse_all(a, argc, argv, msg));
    *out = a;
    a = NULL;
out:
    cli_args_free(a);
    return err;
}

void cli_args_free(cli_args *a)
{
    if (a == NULL)
        return;
    if (a->vals != NULL)
        for (size_t i = 0; i < nall(a); i++)
            cli_strv_free(a->vals[i].items, a->vals[i].nitems);
    free(a->vals);
    free(a->pos);
    free(a);
}

static const cli_val *val_of(const cli_args *a, const char *name)
{
    size_t idx = 0;

    if (!opt_find(a, name, strlen(name), &idx))
        return NULL;
    return &a->vals[idx];
}

bool cli_args_flag(const cli_args *a, const char *name)
{
    const cli_val *v = val_of(a, name);

    return v != NULL && v->set;
}

const char *cli_args_str(const cli_args *a, const char *name)
{
    const cli_val *v = val_of(a, name);

    return v != NULL && v->set ? v->str : NULL;
}

bool cli_args_int(const cli_args *a, const char *name, long long *value)
{
    const cli_val *v = val_of(a, name);

    if (v == NULL || !v->set)
        return false;
    *value = v->num;
    return true;
}

const char *const *cli_args_list(const cli_args *a, const char *name, size_t *n)
{
    const cli_val *v = val_of(a, name);

    *n = v != NULL ? v->nitems : 0;
    return v != NULL ? (const char *const *)v->items : NULL;
}

size_t cli_args_npos(const cli_args *a)
{
    return a->npos;
}

const char *cli_args_pos(const cli_args *a, size_t i)
{
    return i < a->npos ? a->pos[i] : NULL;
}
