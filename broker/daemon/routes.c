/*
 * routes.c - the API's paths, the op each needs and the name its audit
 * entries carry.  One table, so the contract can be read in one place.
 */
#include <stdlib.h>
#include <string.h>

#include "kbd.h"

static const kbd_route routes[] = {
    {"GET", "/v1/health", false, 0, NULL, kbd_h_health, 0},
    {"GET", "/v1/jwks", false, 0, NULL, kbd_h_jwks, 0},
    /* public, as a CRL is in PKI: what it may cost is bounded in h_crl.c */
    {"GET", "/v1/cas/{}/crl", false, 0, NULL, kbd_h_crl, 0},
    {"GET", "/metrics", false, 0, NULL, kbd_h_metrics, 0},
    {"POST", "/v1/keys", true, KBR_OP_ADMIN, "key.create", kbd_h_key_create, 0},
    {"GET", "/v1/keys", true, KBR_OP_READ, "key.list", kbd_h_key_list, 0},
    /* op checked in the handler: read, or a key-using op on this very key */
    {"GET", "/v1/keys/{}", true, 0, "key.show", kbd_h_key_get, 0},
    {"POST", "/v1/keys/{}/retire", true, KBR_OP_ADMIN, "key.retire", kbd_h_key_retire, 0},
    {"POST", "/v1/tokens", true, KBR_OP_ADMIN, "token.issue", kbd_h_token_issue, 0},
    {"GET", "/v1/tokens", true, KBR_OP_ADMIN, "token.list", kbd_h_token_list, 0},
    /* no bearer token: an ID token of a configured OIDC issuer, in the body */
    {"POST", "/v1/tokens/exchange", false, 0, "token.exchange", kbd_h_token_exchange,
     KBD_EXCHANGE_BODY_MAX},
    {"POST", "/v1/tokens/{}/revoke", true, KBR_OP_ADMIN, "token.revoke", kbd_h_token_revoke, 0},
    {"POST", "/v1/revocations", true, KBR_OP_ADMIN, "token.revoke", kbd_h_revocations, 0},
    {"POST", "/v1/tokens/issuer/rotate", true, KBR_OP_ADMIN, "issuer.rotate", kbd_h_issuer_rotate,
     0},
    {"POST", "/v1/sign", true, KBR_OP_SIGN, "sign", kbd_h_sign, 0},
    {"GET", "/v1/audit", true, KBR_OP_READ, "audit.read", kbd_h_audit_list, 0},
    {"GET", "/v1/audit/checkpoint", true, KBR_OP_READ, "audit.read", kbd_h_audit_checkpoint, 0},
    {"GET", "/v1/audit/proof", true, KBR_OP_READ, "audit.read", kbd_h_audit_proof, 0},
    {"GET", "/v1/audit/consistency", true, KBR_OP_READ, "audit.read", kbd_h_audit_consistency, 0},
    {"POST", "/v1/audit/key/rotate", true, KBR_OP_ADMIN, "audit.key.rotate", kbd_h_audit_key_rotate,
     0},
    {"POST", "/v1/keys/{}/certificate", true, KBR_OP_ADMIN, "key.certificate",
     kbd_h_key_certificate, 0},
    {"POST", "/v1/batches", true, KBR_OP_ADMIN, "batch.create", kbd_h_batch_create, 0},
    /* op checked in the handler: admin or read, or provision for the factory's own batch */
    {"GET", "/v1/batches/{}", true, 0, "batch.show", kbd_h_batch_get, 0},
    {"POST", "/v1/provision", true, KBR_OP_PROVISION, "provision", kbd_h_provision, 0},
    {"POST", "/v1/devices/{}/certificates", true, KBR_OP_ROTATE, "rotate", kbd_h_rotate, 0},
    {"POST", "/v1/devices/{}/revoke", true, KBR_OP_ADMIN, "device.revoke", kbd_h_device_revoke, 0},
    {"POST", "/v1/debug-auth", true, KBR_OP_DEBUG_AUTH, "debug-auth", kbd_h_debug_auth, 0},
    {"POST", "/v1/ota/deployments", true, KBR_OP_OTA_REPORT, "ota-report", kbd_h_ota_report, 0},
    {"GET", "/v1/views/products/{}", true, KBR_OP_READ, "view.product", kbd_h_view_product, 0},
    {"GET", "/v1/views/keys/{}/custody", true, KBR_OP_READ, "view.custody", kbd_h_view_custody, 0},
    {"GET", "/v1/views/exposure", true, KBR_OP_READ, "view.exposure", kbd_h_view_exposure, 0},
    {"GET", "/v1/views/devices/{}", true, KBR_OP_READ, "view.device", kbd_h_view_device, 0},
    {"GET", "/v1/evidence/devices/{}", true, KBR_OP_READ, "evidence.device", kbd_h_evidence_device,
     0},
    {"GET", "/v1/evidence/products/{}", true, KBR_OP_READ, "evidence.product",
     kbd_h_evidence_product, 0},
    {"GET", "/v1/backup", true, KBR_OP_ADMIN, "store.backup", kbd_h_backup, 0},
    {"GET", "/v1/evidence/incidents/{}", true, KBR_OP_READ, "evidence.incident",
     kbd_h_evidence_incident, 0},
    {"POST", "/v1/products", true, KBR_OP_ADMIN, "product.register", kbd_h_product_register, 0},
    {"GET", "/v1/products/{}", true, KBR_OP_READ, "product.show", kbd_h_product_get, 0},
    {"POST", "/v1/incidents", true, KBR_OP_ADMIN, "incident.create", kbd_h_incident_create, 0},
    {"GET", "/v1/incidents", true, KBR_OP_READ, "incident.list", kbd_h_incident_list, 0},
    {"GET", "/v1/incidents/{}", true, KBR_OP_READ, "incident.show", kbd_h_incident_get, 0},
    {"POST", "/v1/incidents/{}/fix", true, KBR_OP_ADMIN, "incident.fix", kbd_h_incident_fix, 0},
    {"POST", "/v1/incidents/{}/reports", true, KBR_OP_ADMIN, "incident.report",
     kbd_h_incident_report, 0},
    /* the stage is the last segment of the pattern (h_incidents.c) */
    {"GET", "/v1/incidents/{}/reports/early-warning", true, KBR_OP_READ, "incident.report.show",
     kbd_h_incident_report_get, 0},
    {"GET", "/v1/incidents/{}/reports/notification", true, KBR_OP_READ, "incident.report.show",
     kbd_h_incident_report_get, 0},
    {"GET", "/v1/incidents/{}/reports/final", true, KBR_OP_READ, "incident.report.show",
     kbd_h_incident_report_get, 0},
};

size_t kbd_route_count(void)
{
    return sizeof(routes) / sizeof(routes[0]);
}

const kbd_route *kbd_route_at(size_t i)
{
    return i < kbd_route_count() ? &routes[i] : NULL;
}

size_t kbd_route_index(const kbd_route *route)
{
    if (route == NULL || route < routes || route >= routes + kbd_route_count())
        return kbd_route_count();
    return (size_t)(route - routes);
}

/* Matches one pattern on the raw path; a "{}" segment captures one non-empty raw segment. */
static bool match(const char *pattern, const char *path, const char **cap, size_t *caplen)
{
    while (*pattern != '\0') {
        if (pattern[0] == '{' && pattern[1] == '}') {
            size_t n = strcspn(path, "/");
            if (n == 0)
                return false;
            *cap = path;
            *caplen = n;
            path += n;
            pattern += 2;
            continue;
        }
        if (*pattern != *path)
            return false;
        pattern++;
        path++;
    }
    return *path == '\0';
}

const kbd_route *kbd_route_match(const char *method, const char *path, const char **cap,
                                 size_t *caplen, bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const char *c = NULL;
        size_t n = 0;
        if (!match(routes[i].pattern, path, &c, &n))
            continue;
        *path_known = true;
        if (strcmp(routes[i].method, method) != 0)
            continue;
        if (cap != NULL) {
            *cap = c;
            *caplen = n;
        }
        return &routes[i];
    }
    return NULL;
}
