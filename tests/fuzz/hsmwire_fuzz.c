/*
 * hsmwire_fuzz.c - what the HSM process reads from the network process,
 * and what the network process reads back (pkcs11/wire.c).
 *
 * The input is a frame as it arrives on a connection: the length prefix
 * through kbr_hsmw_frame_len, the body through the request decoder and
 * through the reply decoder for each request type, and the whole input
 * through the control channel's status decoder.  Whatever decodes must be
 * exactly what the encoder makes of the decoded value (so the codec has one
 * spelling per message and nothing is skipped), and must decode again to
 * the same value.
 */
#include "../../pkcs11/wire.h"

#include "fuzz.h"

static kbr_hsmw_buf out;

static void check_req(const unsigned char *body, size_t len)
{
    kbr_hsmw_req r, again;

    if (kbr_hsmw_req_decode(body, len, &r) != KBR_OK)
        return;
    FUZZ_CHECK(r.type >= KBR_HSMW_OPEN && r.type < KBR_HSMW__END);
    FUZZ_CHECK(strlen(r.label) < KBR_HSM_LABEL_MAX);
    FUZZ_CHECK(r.inlen <= KBR_HSMW_SIGN_INPUT_MAX);
    FUZZ_CHECK(r.type != KBR_HSMW_DATA_PUT ||
               (r.inlen >= 1 && r.inlen <= KBR_HSM_DATA_MAX && r.evlen <= KBR_HSM_EVIDENCE_MAX));
    FUZZ_CHECK(kbr_hsmw_req_encode(&r, &out) == KBR_OK);
    FUZZ_CHECK(out.len == len + 4 && memcmp(out.p + 4, body, len) == 0);
    FUZZ_CHECK(kbr_hsmw_req_decode(out.p + 4, out.len - 4, &again) == KBR_OK);
    FUZZ_CHECK(again.type == r.type && strcmp(again.label, r.label) == 0 && again.alg == r.alg &&
               again.fmt == r.fmt && again.hash == r.hash && again.inlen == r.inlen &&
               again.evlen == r.evlen);
    FUZZ_CHECK(again.kdf_context_len == r.kdf_context_len &&
               again.enc_structure_len == r.enc_structure_len &&
               (again.recipient == NULL) == (r.recipient == NULL));
    FUZZ_CHECK(r.type != KBR_HSMW_DELIVER ||
               (r.kdf_context_len >= 1 && r.kdf_context_len <= KBR_HSM_DELIVERY_CONTEXT_MAX &&
                r.enc_structure_len >= 1 && r.enc_structure_len <= KBR_HSM_DELIVERY_CONTEXT_MAX));
}

static void check_resp(const unsigned char *body, size_t len, kbr_hsmw_type type)
{
    kbr_hsmw_resp r, again;

    if (kbr_hsmw_resp_decode(body, len, type, &r) != KBR_OK) {
        kbr_hsmw_resp_clear(&r);
        return;
    }
    FUZZ_CHECK(r.type == type && (unsigned)r.err < KBR_ERR__COUNT);
    FUZZ_CHECK(r.n <= KBR_HSMW_LIST_MAX && r.nvalues <= KBR_HSM_DATA_OBJECTS_MAX);
    for (size_t i = 0; i < r.nvalues; i++)
        FUZZ_CHECK(r.values[i].len >= 1 && r.values[i].len <= KBR_HSM_DATA_MAX);
    FUZZ_CHECK(kbr_hsmw_resp_encode(&r, &out) == KBR_OK);
    FUZZ_CHECK(out.len == len + 4 && memcmp(out.p + 4, body, len) == 0);
    FUZZ_CHECK(kbr_hsmw_resp_decode(out.p + 4, out.len - 4, type, &again) == KBR_OK);
    FUZZ_CHECK(again.err == r.err && again.len == r.len && again.n == r.n &&
               again.nvalues == r.nvalues);
    for (size_t i = 0; i < r.nvalues; i++)
        FUZZ_CHECK(again.values[i].len == r.values[i].len &&
                   memcmp(again.values[i].value, r.values[i].value, r.values[i].len) == 0);
    FUZZ_CHECK(memcmp(&again.info, &r.info, sizeof(r.info)) == 0);
    FUZZ_CHECK(memcmp(&again.delivery, &r.delivery, sizeof(r.delivery)) == 0);
    FUZZ_CHECK(r.n == 0 || memcmp(again.items, r.items, r.n * sizeof(*r.items)) == 0);
    kbr_hsmw_resp_clear(&again);
    kbr_hsmw_resp_clear(&r);
}

static void check_status(const uint8_t *data, size_t size)
{
    kbr_err status = KBR_OK;
    kbr_msg msg = {{0}};

    if (kbr_hsmw_status_decode(data, size, &status, &msg) != KBR_OK)
        return;
    FUZZ_CHECK((unsigned)status < KBR_ERR__COUNT);
    FUZZ_CHECK(strlen(msg.text) == size - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = 0;

    check_status(data, size);
    if (size < 4 || kbr_hsmw_frame_len(data, KBR_HSMW_REQ_MAX, &len) != KBR_OK)
        return 0;
    FUZZ_CHECK(len >= 1 && len <= KBR_HSMW_REQ_MAX);
    /* the body is what follows the prefix, whatever length it announced */
    len = size - 4;
    check_req(data + 4, len);
    for (int t = KBR_HSMW_OPEN; t < KBR_HSMW__END; t++)
        check_resp(data + 4, len, (kbr_hsmw_type)t);
    return 0;
}
