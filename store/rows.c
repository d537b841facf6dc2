/*
 * rows.c - the shape of each row the back ends return: the members a row becomes, in the
 * order of its result columns.  Both back ends read with these lists (backend.h), so a
 * view, a key or a device has one shape whichever store it comes from.
 */
#include "backend.h"

const kbr_col_spec kbr_row_batch[8] = {
    {"batch", KBR_COL_TEXT},      {"product", KBR_COL_TEXT},    {"factory", KBR_COL_TEXT},
    {"quantity", KBR_COL_INT},    {"markets", KBR_COL_JSON},    {"created_at", KBR_COL_TEXT},
    {"created_by", KBR_COL_TEXT}, {"provisioned", KBR_COL_INT},
};

const kbr_col_spec kbr_row_batch_count[3] = {
    {"batch", KBR_COL_TEXT},
    {"markets", KBR_COL_JSON},
    {"count", KBR_COL_INT},
};

const kbr_col_spec kbr_row_checkpoint[13] = {
    {"size", KBR_COL_INT},          {"root_hash", KBR_COL_TEXT},
    {"time", KBR_COL_TEXT},         {"signature_b64", KBR_COL_TEXT},
    {"audit_seq", KBR_COL_INT},     {"origin", KBR_COL_TEXT},
    {"note", KBR_COL_TEXT},         {"key_id", KBR_COL_TEXT},
    {"key_label", KBR_COL_TEXT},    {"public_key_pem", KBR_COL_TEXT},
    {"next_key_id", KBR_COL_TEXT},  {"next_key_label", KBR_COL_TEXT},
    {"next_key_pem", KBR_COL_TEXT},
};

const kbr_col_spec kbr_row_component[3] = {
    {"name", KBR_COL_TEXT},
    {"version", KBR_COL_TEXT},
    {"purl", KBR_COL_TEXT},
};

const kbr_col_spec kbr_row_delivery[6] = {
    {"key", KBR_COL_TEXT},
    {"at", KBR_COL_TEXT},
    {"recipient_public_key_sha256", KBR_COL_TEXT},
    {"cose_sha256", KBR_COL_TEXT},
    {"delivered_by", KBR_COL_TEXT},
    {"audit_seq", KBR_COL_INT},
};

const kbr_col_spec kbr_row_device[11] = {
    {"product", KBR_COL_TEXT},
    {"serial", KBR_COL_TEXT},
    {"batch", KBR_COL_TEXT},
    {"factory", KBR_COL_TEXT},
    {"firmware_version", KBR_COL_TEXT},
    {"csr_sha256", KBR_COL_TEXT},
    {"public_key_sha256", KBR_COL_TEXT},
    {"provisioned_at", KBR_COL_TEXT},
    {"audit_seq", KBR_COL_INT},
    {"current_firmware", KBR_COL_TEXT},
    {"current_firmware_at", KBR_COL_TEXT},
};

/* store.c names the revocation's reason_code (revocation_reason). */
const kbr_col_spec kbr_row_device_cert[11] = {
    {"serial_number", KBR_COL_TEXT},
    {"fingerprint", KBR_COL_TEXT},
    {"not_after", KBR_COL_TEXT},
    {"issued_at", KBR_COL_TEXT},
    {"superseded_at", KBR_COL_TEXT},
    {"issuer_key", KBR_COL_TEXT},
    {"pem", KBR_COL_TEXT},
    {"chain_pem", KBR_COL_TEXT},
    {"audit_seq", KBR_COL_INT},
    {"revoked_at", KBR_COL_TEXT},
    {"revocation_reason_code", KBR_COL_INT_OR_NULL},
};

const kbr_col_spec kbr_row_event[4] = {
    {"kind", KBR_COL_TEXT},
    {"at", KBR_COL_TEXT},
    {"detail", KBR_COL_JSON},
    {"audit_seq", KBR_COL_INT},
};

const kbr_col_spec kbr_row_expiring[5] = {
    {"product", KBR_COL_TEXT},     {"serial", KBR_COL_TEXT},    {"serial_number", KBR_COL_TEXT},
    {"fingerprint", KBR_COL_TEXT}, {"not_after", KBR_COL_TEXT},
};

const kbr_col_spec kbr_row_exposed_build[4] = {
    {"digest", KBR_COL_TEXT},
    {"signed_at", KBR_COL_TEXT},
    {"key", KBR_COL_TEXT},
    {"audit_seq", KBR_COL_INT},
};

const kbr_col_spec kbr_row_exposed_component[5] = {
    {"product", KBR_COL_TEXT},  {"version", KBR_COL_TEXT}, {"name", KBR_COL_TEXT},
    {"cversion", KBR_COL_TEXT}, {"purl", KBR_COL_TEXT},
};

const kbr_col_spec kbr_row_firmware[10] = {
    {"product", KBR_COL_TEXT},     {"version", KBR_COL_TEXT},   {"digest", KBR_COL_TEXT},
    {"hash", KBR_COL_TEXT},        {"key", KBR_COL_TEXT},       {"name", KBR_COL_TEXT},
    {"build_id", KBR_COL_TEXT},    {"signed_at", KBR_COL_TEXT}, {"audit_seq", KBR_COL_INT},
    {"sbom_sha256", KBR_COL_TEXT},
};

const kbr_col_spec kbr_row_firmware_history[5] = {
    {"version", KBR_COL_TEXT},  {"status", KBR_COL_TEXT},   {"at", KBR_COL_TEXT},
    {"campaign", KBR_COL_TEXT}, {"audit_seq", KBR_COL_INT},
};

const kbr_col_spec kbr_row_found[4] = {
    {"product", KBR_COL_TEXT},
    {"serial", KBR_COL_TEXT},
    {"batch", KBR_COL_TEXT},
    {"factory", KBR_COL_TEXT},
};

const kbr_col_spec kbr_row_history[1] = {
    {"history", KBR_COL_INT},
};

const kbr_col_spec kbr_row_history_batch[3] = {
    {"firmware", KBR_COL_TEXT},
    {"batch", KBR_COL_TEXT},
    {"count", KBR_COL_INT},
};

const kbr_col_spec kbr_row_identity[2] = {
    {"product", KBR_COL_TEXT},
    {"serial", KBR_COL_TEXT},
};

const kbr_col_spec kbr_row_incident[17] = {
    {"id", KBR_COL_TEXT},
    {"title", KBR_COL_TEXT},
    {"product", KBR_COL_TEXT},
    {"component", KBR_COL_TEXT},
    {"query", KBR_COL_JSON},
    {"aware_at", KBR_COL_TEXT},
    {"actively_exploited", KBR_COL_BOOL},
    {"severity", KBR_COL_TEXT},
    {"cve", KBR_COL_TEXT},
    {"created_at", KBR_COL_TEXT},
    {"created_by", KBR_COL_TEXT},
    {"exposure", KBR_COL_JSON},
    {"fixed_version", KBR_COL_TEXT},
    {"fix_available_at", KBR_COL_TEXT},
    {"fix_recorded_at", KBR_COL_TEXT},
    {"fix_seq", KBR_COL_INT_OR_NULL},
    {"audit_seq", KBR_COL_INT},
};

const kbr_col_spec kbr_row_incident_build[3] = {
    {"product", KBR_COL_TEXT},
    {"version", KBR_COL_TEXT},
    {"audit_seq", KBR_COL_INT},
};

const kbr_col_spec kbr_row_issuer[7] = {
    {"kid", KBR_COL_TEXT},
    {"hsm_label", KBR_COL_TEXT},
    {"public_key_pem", KBR_COL_TEXT},
    {"public_key_sha256", KBR_COL_TEXT},
    {"activated_at", KBR_COL_TEXT},
    {"replaced_at", KBR_COL_TEXT},
    {"audit_seq", KBR_COL_INT},
};

const kbr_col_spec kbr_row_live_token[5] = {
    {"jti", KBR_COL_TEXT},
    {"sub", KBR_COL_TEXT},
    {"expires_at", KBR_COL_TEXT},
    {"uses", KBR_COL_INT},
    {"max_uses", KBR_COL_INT_OR_NULL},
};

const kbr_col_spec kbr_row_month[2] = {
    {"month", KBR_COL_TEXT},
    {"count", KBR_COL_INT},
};

const kbr_col_spec kbr_row_operation[6] = {
    {"sub", KBR_COL_TEXT},  {"op", KBR_COL_TEXT},      {"outcome", KBR_COL_TEXT},
    {"count", KBR_COL_INT}, {"last_at", KBR_COL_TEXT}, {"last_seq", KBR_COL_INT},
};

const kbr_col_spec kbr_row_pending[4] = {
    {"product", KBR_COL_TEXT},
    {"serial", KBR_COL_TEXT},
    {"current_firmware", KBR_COL_TEXT},
    {"batch", KBR_COL_TEXT},
};

const kbr_col_spec kbr_row_product[7] = {
    {"product", KBR_COL_TEXT},       {"placed_on_market", KBR_COL_TEXT},
    {"support_until", KBR_COL_TEXT}, {"created_at", KBR_COL_TEXT},
    {"created_by", KBR_COL_TEXT},    {"updated_at", KBR_COL_TEXT},
    {"audit_seq", KBR_COL_INT},
};

const kbr_col_spec kbr_row_query[3] = {
    {"id", KBR_COL_TEXT},
    {"product", KBR_COL_TEXT},
    {"query", KBR_COL_JSON},
};

const kbr_col_spec kbr_row_relation[2] = {
    {"key", KBR_COL_TEXT},
    {"role", KBR_COL_TEXT},
};

const kbr_col_spec kbr_row_report[5] = {
    {"stage", KBR_COL_TEXT}, {"sha256", KBR_COL_TEXT},   {"at", KBR_COL_TEXT},
    {"by", KBR_COL_TEXT},    {"audit_seq", KBR_COL_INT},
};

const kbr_col_spec kbr_row_revocation[5] = {
    {"at", KBR_COL_TEXT},         {"reason", KBR_COL_TEXT},   {"reason_code", KBR_COL_INT},
    {"revoked_by", KBR_COL_TEXT}, {"audit_seq", KBR_COL_INT},
};

const kbr_col_spec kbr_row_revoked[4] = {
    {"serial_number", KBR_COL_TEXT},
    {"fingerprint", KBR_COL_TEXT},
    {"revoked_at", KBR_COL_TEXT},
    {"reason_code", KBR_COL_INT},
};

const kbr_col_spec kbr_row_series[4] = {
    {"day", KBR_COL_TEXT},
    {"batch", KBR_COL_TEXT},
    {"firmware", KBR_COL_TEXT},
    {"delta", KBR_COL_INT},
};

const kbr_col_spec kbr_row_token[15] = {
    {"jti", KBR_COL_TEXT},        {"sub", KBR_COL_TEXT},           {"scope", KBR_COL_JSON},
    {"issued_at", KBR_COL_TEXT},  {"not_before", KBR_COL_TEXT},    {"expires_at", KBR_COL_TEXT},
    {"revoked_at", KBR_COL_TEXT}, {"revoke_reason", KBR_COL_TEXT}, {"issued_by", KBR_COL_TEXT},
    {"cnf_x5t", KBR_COL_TEXT},    {"uses", KBR_COL_INT},           {"last_used_at", KBR_COL_TEXT},
    {"parent_jti", KBR_COL_TEXT}, {"orphan", KBR_COL_BOOL},        {"kid", KBR_COL_TEXT},
};
