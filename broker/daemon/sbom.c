/*
 * sbom.c - the SBOM that comes with a firmware signature: an inline
 * component list or a CycloneDX JSON document.  The broker keeps each
 * component's name, version and purl, because "which builds carry component
 * X" is later answered from this record and nowhere else, and the document
 * itself (the CycloneDX bytes as sent, or the inline list's canonical JSON),
 * named in the signing entry by its SHA-256.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "kbr_cra.h"

#define SBOM_MAX_DEPTH 8

static kbr_err component_field(const json_t *c, const char *field, size_t maxlen, const char *where,
                               const char **out, kbr_msg *msg)
{
    json_t *v = json_object_get(c, field);

    *out = NULL;
    if (v == NULL || json_is_null(v))
        return KBR_OK;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > maxlen ||
        strlen(json_string_value(v)) != json_string_length(v))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s.%s: must be a string of 1 to %zu characters",
                        where, field, maxlen);
    *out = json_string_value(v);
    return KBR_OK;
}

static kbr_err add_component(const json_t *c, const char *where, json_t *out, kbr_msg *msg)
{
    const char *name, *version, *purl;
    kbr_purl *parsed = NULL;
    kbr_msg why = {{0}};
    json_t *o;

    if (!json_is_object(c))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: must be an object", where);
    if (component_field(c, "name", 256, where, &name, msg) != KBR_OK ||
        component_field(c, "version", 128, where, &version, msg) != KBR_OK ||
        component_field(c, "purl", 1024, where, &purl, msg) != KBR_OK)
        return KBR_ERR_BAD_REQUEST;
    if (name == NULL)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s.name: required", where);
    /* A purl that does not parse would hide the component from every question by package:
     * refused, as purl-spec reads it (kbr_purl_parse, repairing what its suite recommends). */
    if (purl != NULL && kbr_purl_parse(purl, KBR_PURL_LENIENT, &parsed, &why) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s.purl: %s", where, why.text);
    kbr_purl_free(parsed);
    if (json_array_size(out) >= KBD_SBOM_MAX_COMPONENTS)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "sbom: more than %d components",
                        KBD_SBOM_MAX_COMPONENTS);
    o = json_object();
    if (o == NULL || !kbd_json_set_str(o, "name", name, false) ||
        !kbd_json_set_str(o, "version", version, true) ||
        !kbd_json_set_str(o, "purl", purl, true)) {
        json_decref(o);
        return kbr_fail(msg, KBR_ERR_NOMEM, "out of memory");
    }
    if (json_array_append_new(out, o) != 0)
        return kbr_fail(msg, KBR_ERR_NOMEM, "out of memory");
    return KBR_OK;
}

/* CycloneDX components nest (an assembly lists its parts): flatten them all. */
static kbr_err walk_cdx(const json_t *list, const char *where, int depth, json_t *out, kbr_msg *msg)
{
    size_t i;
    json_t *c;
    kbr_err err;
    char here[128];

    if (list == NULL)
        return KBR_OK;
    if (!json_is_array(list))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: must be an array", where);
    if (depth > SBOM_MAX_DEPTH)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "%s: nested deeper than %d", where,
                        SBOM_MAX_DEPTH);
    json_array_foreach(list, i, c)
    {
        snprintf(here, sizeof(here), "%.96s[%zu]", where, i);
        err = add_component(c, here, out, msg);
        if (err != KBR_OK)
            return err;
        err = walk_cdx(json_object_get(c, "components"), "sbom_b64: nested components", depth + 1,
                       out, msg);
        if (err != KBR_OK)
            return err;
    }
    return KBR_OK;
}

/* The document is kept as it was sent: *raw, *len. */
static kbr_err parse_cdx_document(const char *b64, json_t *out, unsigned char **raw, size_t *len,
                                  kbr_msg *msg)
{
    kbr_err err = KBR_OK;
    json_t *doc = NULL;
    json_error_t jerr;
    const char *format;

    if (kbr_b64_decode(b64, raw, len) != KBR_OK)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "sbom_b64: not valid base64");
    doc = json_loadb((const char *)*raw, *len, JSON_REJECT_DUPLICATES, &jerr);
    KBR_ENSURE(doc != NULL,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "sbom_b64: not a JSON document (line %d: %s)",
                        jerr.line, jerr.text));
    format = json_string_value(json_object_get(doc, "bomFormat"));
    KBR_ENSURE(format != NULL && strcmp(format, "CycloneDX") == 0,
               kbr_fail(msg, KBR_ERR_BAD_REQUEST, "sbom_b64: bomFormat must be \"CycloneDX\""));
    KBR_GUARD(walk_cdx(json_object_get(doc, "components"), "sbom_b64: components", 0, out, msg));
out:
    json_decref(doc);
    return err;
}

static kbr_err parse_inline(const json_t *sbom, json_t *out, kbr_msg *msg)
{
    static const char *const allowed[] = {"format", "components", NULL};
    const char *format = NULL;
    json_t *list = json_object_get(sbom, "components");
    size_t i;
    json_t *c;
    kbr_err err;
    char here[64];

    if (!json_is_object(sbom))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "sbom: must be an object");
    if (kbd_json_only(sbom, allowed, msg) != KBR_OK ||
        kbd_json_str(sbom, "format", true, 32, &format, msg) != KBR_OK)
        return kbd_msg_prefix(msg, "sbom", KBR_ERR_BAD_REQUEST);
    if (strcmp(format, "cyclonedx") != 0)
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "sbom.format: must be \"cyclonedx\"");
    if (!json_is_array(list))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "sbom.components: must be an array");
    json_array_foreach(list, i, c)
    {
        snprintf(here, sizeof(here), "sbom.components[%zu]", i);
        err = add_component(c, here, out, msg);
        if (err != KBR_OK)
            return err;
    }
    return KBR_OK;
}

void kbd_sbom_free(kbd_sbom *s)
{
    json_decref(s->components);
    free(s->document);
    *s = (kbd_sbom){0};
}

kbr_err kbd_sbom_parse(const json_t *body, kbd_sbom *sbom, kbr_msg *msg)
{
    json_t *inline_sbom = json_object_get(body, "sbom");
    json_t *doc = json_object_get(body, "sbom_b64");
    json_t *out;
    kbr_err err;

    *sbom = (kbd_sbom){0};
    if ((inline_sbom == NULL) == (doc == NULL))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST,
                        "sbom: firmware needs its SBOM, as sbom (inline) or sbom_b64 (CycloneDX "
                        "JSON), exactly one of them");
    if (doc != NULL && !json_is_string(doc))
        return kbr_fail(msg, KBR_ERR_BAD_REQUEST, "sbom_b64: must be a base64 string");
    out = json_array();
    if (out == NULL)
        return KBR_ERR_NOMEM;
    sbom->components = out;
    if (doc != NULL) {
        err = parse_cdx_document(json_string_value(doc), out, &sbom->document, &sbom->len, msg);
    } else {
        /* an inline list is kept as its canonical JSON */
        err = parse_inline(inline_sbom, out, msg);
        if (err == KBR_OK)
            err = kbr_json_canonical(inline_sbom, (char **)&sbom->document);
        sbom->len = sbom->document != NULL ? strlen((const char *)sbom->document) : 0;
    }
    if (err != KBR_OK)
        kbd_sbom_free(sbom);
    return err;
}
