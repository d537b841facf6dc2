/*
 * routes.c - the API's paths, the op each needs, the name its audit
 * entries carry and the stages that serve it (kbd_route, kbd.h).  One
 * table, so the contract can be read in one place.
 */
#include <stdlib.h>
#include <string.h>

#include "kbd.h"
#include "routes.h"

static const kbd_route routes[] = {
    {"GET", "/v1/health", false, 0, NULL, .finish = kbd_health_finish},
    {"GET", "/v1/jwks", false, 0, NULL, .finish = kbd_jwks_finish},
    /* public, as a CRL is in PKI: what it may cost is bounded in h_crl.c */
    {"GET", "/v1/cas/{}/crl", false, 0, NULL, .parse = kbd_crl_parse,
     .authorize = kbd_crl_authorize, .wait = kbd_crl_wait, .finish = kbd_crl_finish},
    {"GET", "/metrics", false, 0, NULL, .finish = kbd_metrics_finish},
    {"POST", "/v1/keys", true, KBR_OP_ADMIN, "key.create", .parse = kbd_key_create_parse,
     .free_req = kbd_key_create_free, .authorize = kbd_key_create_authorize,
     .work = kbd_key_create_work, .finish = kbd_key_create_finish},
    {"GET", "/v1/keys", true, KBR_OP_READ, "key.list", .parse = kbd_scoped_parse,
     .free_req = kbd_scoped_free, .authorize = kbd_scoped_authorize, .work = kbd_key_list_work},
    /* op checked by its authorizer: read, or a key-using op on this very key */
    {"GET", "/v1/keys/{}", true, 0, "key.show", .parse = kbd_key_path_parse,
     .authorize = kbd_key_get_authorize, .work = kbd_key_get_work},
    {"POST", "/v1/keys/{}/retire", true, KBR_OP_ADMIN, "key.retire", .parse = kbd_key_retire_parse,
     .free_req = kbd_key_retire_free, .describe = kbd_key_path_describe,
     .authorize = kbd_key_retire_authorize, .work = kbd_key_retire_work, .work_inline = true,
     .finish = kbd_key_retire_finish},
    {"POST", "/v1/tokens", true, KBR_OP_ADMIN, "token.issue", .parse = kbd_token_issue_parse,
     .free_req = kbd_token_issue_free, .authorize = kbd_token_issue_authorize,
     .work = kbd_token_issue_work, .finish = kbd_token_issue_finish},
    {"GET", "/v1/tokens", true, KBR_OP_ADMIN, "token.list", .parse = kbd_token_list_parse,
     .free_req = kbd_token_list_free, .authorize = kbd_token_list_authorize,
     .work = kbd_token_list_work},
    /* no bearer token: an ID token of a configured OIDC issuer, in the body */
    {"POST", "/v1/tokens/exchange", false, 0, "token.exchange", .admit = kbd_exchange_admit,
     .parse = kbd_exchange_parse, .free_req = kbd_exchange_free,
     .authorize = kbd_exchange_authorize, .wait = kbd_exchange_wait, .work = kbd_exchange_work,
     .finish = kbd_exchange_finish, .open_body_max = KBD_EXCHANGE_BODY_MAX},
    {"POST", "/v1/tokens/{}/revoke", true, KBR_OP_ADMIN, "token.revoke",
     .parse = kbd_token_revoke_parse, .free_req = kbd_revoke_free,
     .authorize = kbd_token_revoke_authorize, .work = kbd_token_revoke_work, .work_inline = true},
    {"POST", "/v1/revocations", true, KBR_OP_ADMIN, "token.revoke", .parse = kbd_revocations_parse,
     .free_req = kbd_revoke_free, .authorize = kbd_revocations_authorize,
     .work = kbd_revocations_work, .work_inline = true},
    {"POST", "/v1/tokens/issuer/rotate", true, KBR_OP_ADMIN, "issuer.rotate",
     .parse = kbd_issuer_rotate_parse, .free_req = kbd_issuer_rotate_free,
     .authorize = kbd_issuer_rotate_authorize, .work = kbd_issuer_rotate_work,
     .finish = kbd_issuer_rotate_finish, .settle = kbd_issuer_rotate_settle},
    {"POST", "/v1/sign", true, KBR_OP_SIGN, "sign", .parse = kbd_sign_parse,
     .free_req = kbd_sign_free, .describe = kbd_sign_describe, .authorize = kbd_sign_authorize,
     .reserve_use = true, .work = kbd_sign_work, .finish = kbd_sign_finish},
    {"GET", "/v1/audit", true, KBR_OP_READ, "audit.read", .parse = kbd_audit_page_parse,
     .free_req = kbd_audit_page_free, .authorize = kbd_audit_page_authorize,
     .work = kbd_audit_list_work},
    {"GET", "/v1/audit/checkpoint", true, KBR_OP_READ, "audit.read",
     .parse = kbd_audit_checkpoint_parse, .free_req = free, .work = kbd_audit_checkpoint_work},
    {"GET", "/v1/audit/proof", true, KBR_OP_READ, "audit.read", .parse = kbd_audit_proof_parse,
     .free_req = kbd_audit_proof_free, .authorize = kbd_audit_proof_authorize,
     .work = kbd_audit_proof_work},
    {"GET", "/v1/audit/consistency", true, KBR_OP_READ, "audit.read",
     .parse = kbd_audit_consistency_parse, .free_req = free, .work = kbd_audit_consistency_work},
    {"POST", "/v1/audit/key/rotate", true, KBR_OP_ADMIN, "audit.key.rotate",
     .parse = kbd_audit_key_rotate_parse, .free_req = kbd_audit_key_rotate_free,
     .authorize = kbd_audit_key_rotate_authorize, .work = kbd_audit_key_rotate_work,
     .settle = kbd_audit_key_rotate_settle},
    {"POST", "/v1/keys/{}/certificate", true, KBR_OP_ADMIN, "key.certificate",
     .parse = kbd_key_certificate_parse, .free_req = kbd_key_certificate_free,
     .describe = kbd_key_path_describe, .authorize = kbd_key_certificate_authorize,
     .work = kbd_key_certificate_work, .finish = kbd_key_certificate_finish},
    {"POST", "/v1/batches", true, KBR_OP_ADMIN, "batch.create", .parse = kbd_batch_create_parse,
     .free_req = kbd_batch_create_free, .describe = kbd_batch_create_describe,
     .authorize = kbd_batch_create_authorize, .work = kbd_batch_create_work, .work_inline = true,
     .finish = kbd_batch_create_finish},
    /* op checked by its authorizer: admin or read, or provision for the factory's own batch */
    {"GET", "/v1/batches/{}", true, 0, "batch.show", .parse = kbd_batch_get_parse,
     .authorize = kbd_batch_get_authorize, .work = kbd_batch_get_work},
    /* one request per device at a time (wait), which reserves its unit and use itself */
    {"POST", "/v1/provision", true, KBR_OP_PROVISION, "provision", .parse = kbd_provision_parse,
     .free_req = kbd_prov_free, .describe = kbd_provision_describe,
     .authorize = kbd_provision_authorize, .wait = kbd_provision_wait, .work = kbd_provision_work,
     .settle = kbd_provision_settle},
    {"POST", "/v1/devices/{}/certificates", true, KBR_OP_ROTATE, "rotate",
     .parse = kbd_rotate_parse, .free_req = kbd_prov_free, .describe = kbd_rotate_describe,
     .authorize = kbd_rotate_authorize, .reserve_use = true, .work = kbd_rotate_work},
    {"POST", "/v1/devices/{}/revoke", true, KBR_OP_ADMIN, "device.revoke",
     .parse = kbd_device_revoke_parse, .free_req = kbd_device_revoke_free,
     .describe = kbd_device_revoke_describe, .authorize = kbd_device_revoke_authorize,
     .work = kbd_device_revoke_work, .finish = kbd_device_revoke_finish},
    {"POST", "/v1/debug-auth", true, KBR_OP_DEBUG_AUTH, "debug-auth", .parse = kbd_debug_auth_parse,
     .free_req = kbd_debug_auth_free, .describe = kbd_debug_auth_describe,
     .authorize = kbd_debug_auth_authorize, .reserve_use = true, .work = kbd_debug_auth_work},
    {"POST", "/v1/ota/deployments", true, KBR_OP_OTA_REPORT, "ota-report",
     .parse = kbd_ota_report_parse, .free_req = kbd_ota_report_free,
     .describe = kbd_ota_report_describe, .authorize = kbd_ota_report_authorize,
     .work = kbd_ota_report_work},
    {"GET", "/v1/views/products/{}", true, KBR_OP_READ, "view.product",
     .parse = kbd_view_product_parse, .free_req = kbd_view_free,
     .authorize = kbd_view_product_authorize, .work = kbd_view_product_work},
    {"GET", "/v1/views/keys/{}/custody", true, KBR_OP_READ, "view.custody",
     .parse = kbd_key_path_parse, .authorize = kbd_view_custody_authorize,
     .work = kbd_view_custody_work},
    {"GET", "/v1/views/exposure", true, KBR_OP_READ, "view.exposure",
     .parse = kbd_view_exposure_parse, .free_req = kbd_view_free,
     .authorize = kbd_view_exposure_authorize, .work = kbd_view_exposure_work},
    {"GET", "/v1/views/devices/{}", true, KBR_OP_READ, "view.device",
     .parse = kbd_view_device_parse, .free_req = kbd_view_free,
     .authorize = kbd_view_device_authorize, .work = kbd_view_device_work},
    {"GET", "/v1/evidence/devices/{}", true, KBR_OP_READ, "evidence.device",
     .parse = kbd_evidence_device_parse, .free_req = kbd_evidence_free,
     .authorize = kbd_evidence_device_authorize, .work = kbd_evidence_work},
    {"GET", "/v1/evidence/products/{}", true, KBR_OP_READ, "evidence.product",
     .parse = kbd_evidence_product_parse, .free_req = kbd_evidence_free,
     .authorize = kbd_evidence_product_authorize, .work = kbd_evidence_work},
    /* the copy is made on a thread of its own (wait) and streamed (respond) */
    {"GET", "/v1/backup", true, KBR_OP_ADMIN, "store.backup", .parse = kbd_backup_parse,
     .free_req = kbd_backup_free, .authorize = kbd_backup_authorize, .wait = kbd_backup_wait,
     .work = kbd_backup_work, .work_inline = true, .respond = kbd_backup_respond},
    {"GET", "/v1/evidence/incidents/{}", true, KBR_OP_READ, "evidence.incident",
     .parse = kbd_evidence_incident_parse, .free_req = kbd_evidence_free,
     .authorize = kbd_evidence_incident_authorize, .work = kbd_evidence_work},
    {"POST", "/v1/products", true, KBR_OP_ADMIN, "product.register",
     .parse = kbd_product_register_parse, .free_req = kbd_product_free,
     .describe = kbd_product_describe, .authorize = kbd_product_authorize,
     .work = kbd_product_register_work},
    {"GET", "/v1/products/{}", true, KBR_OP_READ, "product.show", .parse = kbd_product_get_parse,
     .free_req = kbd_product_free, .describe = kbd_product_describe,
     .authorize = kbd_product_get_authorize, .work = kbd_product_get_work},
    {"POST", "/v1/incidents", true, KBR_OP_ADMIN, "incident.create",
     .parse = kbd_incident_create_parse, .free_req = kbd_incident_free,
     .authorize = kbd_incident_create_authorize, .work = kbd_incident_create_work},
    {"GET", "/v1/incidents", true, KBR_OP_READ, "incident.list", .parse = kbd_incident_list_parse,
     .free_req = kbd_incident_free, .authorize = kbd_incident_authorize,
     .work = kbd_incident_list_work},
    {"GET", "/v1/incidents/{}", true, KBR_OP_READ, "incident.show", .parse = kbd_incident_get_parse,
     .free_req = kbd_incident_free, .describe = kbd_incident_describe,
     .authorize = kbd_incident_authorize, .work = kbd_incident_get_work},
    {"POST", "/v1/incidents/{}/fix", true, KBR_OP_ADMIN, "incident.fix",
     .parse = kbd_incident_fix_parse, .free_req = kbd_incident_free,
     .describe = kbd_incident_describe, .authorize = kbd_incident_authorize,
     .work = kbd_incident_fix_work},
    {"POST", "/v1/incidents/{}/reports", true, KBR_OP_ADMIN, "incident.report",
     .parse = kbd_incident_report_parse, .free_req = kbd_incident_free,
     .describe = kbd_incident_describe, .authorize = kbd_incident_authorize,
     .work = kbd_incident_report_work},
    /* the stage is the last segment of the pattern (h_incidents.c) */
    {"GET", "/v1/incidents/{}/reports/early-warning", true, KBR_OP_READ, "incident.report.show",
     .parse = kbd_incident_report_get_parse, .free_req = kbd_incident_free,
     .describe = kbd_incident_describe, .authorize = kbd_incident_authorize,
     .work = kbd_incident_report_get_work},
    {"GET", "/v1/incidents/{}/reports/notification", true, KBR_OP_READ, "incident.report.show",
     .parse = kbd_incident_report_get_parse, .free_req = kbd_incident_free,
     .describe = kbd_incident_describe, .authorize = kbd_incident_authorize,
     .work = kbd_incident_report_get_work},
    {"GET", "/v1/incidents/{}/reports/final", true, KBR_OP_READ, "incident.report.show",
     .parse = kbd_incident_report_get_parse, .free_req = kbd_incident_free,
     .describe = kbd_incident_describe, .authorize = kbd_incident_authorize,
     .work = kbd_incident_report_get_work},
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
