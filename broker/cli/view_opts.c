/*
 * view_opts.c - the options of keybroker view product|exposure, checked before any request:
 * names and UTF-8, the exposure's subject (component or purl, versions or vers), paging.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- options ---- */

static kbr_err view_utf8(const char *what, const char *value, kbr_msg *msg)
{
    /* json_string() refuses invalid UTF-8, which here is the user's input. */
    json_t *s = value != NULL ? json_string(value) : NULL;
    bool ok = value == NULL || s != NULL;

    json_decref(s);
    return ok ? KBR_OK : kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s is not valid UTF-8", what);
}

kbr_err cli_view_names_check(const cli_args *a, const char *what, kbr_msg *msg)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(view_utf8(what, cli_args_pos(a, 0), msg));
    KBR_GUARD(view_utf8("--product", cli_args_str(a, "product"), msg));
out:
    return err;
}

kbr_err cli_view_product_opts(const cli_args *a, long long *within_days, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    long long days = -1;

    *within_days = -1;
    KBR_GUARD(cli_view_names_check(a, "P", msg));
    if (cli_args_int(a, "expiring-within-days", &days) && days > CLI_VIEW_DAYS_MAX)
        err = kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--expiring-within-days must be 0 to %d",
                       CLI_VIEW_DAYS_MAX);
    KBR_GUARD(err);
    *within_days = days;
out:
    return err;
}

static kbr_err view_exposure_subject(const cli_exposure_opts *o, kbr_msg *msg)
{
    if ((o->component == NULL) == (o->purl == NULL))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "give exactly one of --component and --purl");
    if (o->purl != NULL && strncmp(o->purl, "pkg:", 4) != 0)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--purl must be a package URL such as pkg:deb/debian/openssl");
    if (o->versions != NULL && o->vers != NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "give --versions or --vers, not both");
    if (o->vers != NULL && strncmp(o->vers, "vers:", 5) != 0)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--vers must be a version range such as vers:deb/<3.0.11-1~deb12u2");
    return KBR_OK;
}

static kbr_err view_exposure_paging(const cli_args *a, bool json, const cli_exposure_opts *o,
                                    kbr_msg *msg)
{
    bool has_limit = cli_args_str(a, "limit") != NULL;
    bool pages = o->fixed_version != NULL || o->devices;

    if (has_limit && (o->limit < 1 || o->limit > CLI_VIEW_LIMIT_MAX))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--limit must be 1 to %d", CLI_VIEW_LIMIT_MAX);
    if ((has_limit || o->after != NULL) && !pages)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--after and --limit page the devices: give --fixed-version or --devices");
    if (o->csv && !pages)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--csv lists the pending devices (give --fixed-version) or every affected "
                        "device (--devices)");
    if (o->csv && json)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "--csv and --json do not go together");
    if ((o->eu || o->by_market) && (json || o->csv))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "--eu and --by-market shape the text: not with --json or --csv");
    return KBR_OK;
}

static kbr_err view_exposure_utf8(const cli_exposure_opts *o, kbr_msg *msg)
{
    kbr_err err = KBR_OK;

    KBR_GUARD(view_utf8("--component", o->component, msg));
    KBR_GUARD(view_utf8("--purl", o->purl, msg));
    KBR_GUARD(view_utf8("--vers", o->vers, msg));
    KBR_GUARD(view_utf8("--product", o->product, msg));
    KBR_GUARD(view_utf8("--fixed-version", o->fixed_version, msg));
    KBR_GUARD(view_utf8("--after", o->after, msg));
    for (size_t i = 0; i < o->nversions; i++)
        KBR_GUARD(view_utf8("--versions", o->versions[i], msg));
out:
    return err;
}

kbr_err cli_view_exposure_opts(const cli_args *a, bool json, cli_exposure_opts *o, kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    cli_exposure_opts r = {0};

    memset(o, 0, sizeof(*o));
    r.component = cli_args_str(a, "component");
    r.purl = cli_args_str(a, "purl");
    r.vers = cli_args_str(a, "vers");
    r.product = cli_args_str(a, "product");
    r.fixed_version = cli_args_str(a, "fixed-version");
    r.after = cli_args_str(a, "after");
    r.versions = cli_args_list(a, "versions", &r.nversions);
    r.csv = cli_args_flag(a, "csv");
    r.devices = cli_args_flag(a, "devices");
    r.eu = cli_args_flag(a, "eu");
    r.by_market = cli_args_flag(a, "by-market");
    (void)cli_args_int(a, "limit", &r.limit);
    KBR_GUARD(view_exposure_subject(&r, msg));
    KBR_GUARD(view_exposure_paging(a, json, &r, msg));
    KBR_GUARD(view_exposure_utf8(&r, msg));
    *o = r;
out:
    return err;
}
