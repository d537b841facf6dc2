// cose_decrypt.js - opens a COSE_Encrypt (RFC 9052) with ECDH-ES + A128KW (RFC 9053) as a
// device would, with its own private key, and none of keybroker's code:
//
//  - the content layer (Enc_structure, AES-GCM) is cose-js's COSE_Encrypt reader, given the
//    content key;
//  - the recipient layer is written here from RFC 9053 (6.3.1 ECDH-ES, 5.1 HKDF, 5.2
//    COSE_KDF_Context, 6.2.1 AES key wrap) with Node's crypto and the cbor package, and checked
//    first, on every run, against the COSE working group's example p256-wrap-128-01 (public
//    domain): its context, shared secret, KEK and CEK as the example lists them, and its
//    plaintext.  A recipient layer that disagrees with RFC 9053 fails that check, whatever it
//    makes of keybroker's message.
//
//   node cose_decrypt.js DEVICE_KEY.pem COSE_ENCRYPT.b64
//
// prints the decrypted COSE_Key as JSON (integer labels, byte strings in hex) and the
// recipient's kid, or exits 1 naming what failed.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const cbor = require('cbor');
const cose = require('cose-js');

const ECDH_ES_A128KW = -29;
const A128KW = -3;
const A128GCM = 1;

function fail(msg) {
    process.stderr.write('cose_decrypt: ' + msg + '\n');
    process.exit(1);
}

function b64url(s) {
    return Buffer.from(s, 'base64url');
}

// The recipient layer: the content key, and what was derived on the way to it.
function recipientLayer(message, deviceD) {
    let msg = cbor.decodeFirstSync(message);
    if (!(msg instanceof cbor.Tagged) || msg.tag !== 96)
        fail('not a tagged COSE_Encrypt');
    msg = msg.value;
    if (!Array.isArray(msg) || msg.length !== 4 || !Array.isArray(msg[3]) || msg[3].length !== 1)
        fail('not a COSE_Encrypt with one recipient');
    const prot = cbor.decodeFirstSync(msg[0]);
    if (prot.get(1) !== A128GCM)
        fail('content algorithm is ' + prot.get(1) + ', not A128GCM');
    const [rprotBytes, runprot, wrapped] = msg[3][0];
    const rprot = cbor.decodeFirstSync(rprotBytes);
    if (rprot.get(1) !== ECDH_ES_A128KW)
        fail('recipient algorithm is ' + rprot.get(1) + ', not ECDH-ES + A128KW');
    const epk = runprot.get(-1);
    if (!(epk instanceof Map) || epk.get(1) !== 2 || epk.get(-1) !== 1)
        fail('the ephemeral key is not an EC2 P-256 COSE_Key');
    const ecdh = crypto.createECDH('prime256v1');
    ecdh.setPrivateKey(deviceD);
    const secret = ecdh.computeSecret(Buffer.concat([Buffer.from([4]), epk.get(-2), epk.get(-3)]));
    // RFC 9053 5.2: the key is for the key wrap algorithm, 128 bits, bound to the recipient's
    // protected header; no party information.
    const context = cbor.encode([A128KW, [null, null, null], [null, null, null], [128, rprotBytes]]);
    const kek = Buffer.from(crypto.hkdfSync('sha256', secret, Buffer.alloc(0), context, 16));
    const unwrap = crypto.createDecipheriv('id-aes128-wrap', kek, Buffer.from('A6A6A6A6A6A6A6A6', 'hex'));
    const cek = Buffer.concat([unwrap.update(wrapped), unwrap.final()]);
    return {cek, context, secret, kek, kid: runprot.get(4)};
}

async function open(message, deviceD) {
    const r = recipientLayer(message, deviceD);
    const plaintext = await cose.encrypt.read(message, r.cek);
    return {plaintext, r};
}

// The working group's example, every intermediate value it lists.
async function selfCheck() {
    const ex = JSON.parse(fs.readFileSync(path.join(__dirname, 'p256-wrap-128-01.json'), 'utf8'));
    const key = ex.input.enveloped.recipients[0].key;
    const {plaintext, r} = await open(Buffer.from(ex.output.cbor, 'hex'), b64url(key.d));
    const want = ex.intermediates.recipients[0];
    const same = (a, hex) => a.toString('hex').toUpperCase() === hex.toUpperCase();
    if (!same(r.context, want.Context_hex) || !same(r.secret, want.Secret_hex) ||
        !same(r.kek, want.KEK_hex) || !same(r.cek, ex.intermediates.CEK_hex) ||
        plaintext.toString() !== ex.input.plaintext)
        fail('self-check against p256-wrap-128-01 failed');
}

function hexify(v) {
    if (Buffer.isBuffer(v))
        return v.toString('hex');
    return v;
}

async function main() {
    if (process.argv.length !== 4)
        fail('usage: node cose_decrypt.js DEVICE_KEY.pem COSE_ENCRYPT.b64');
    await selfCheck();
    const jwk = crypto.createPrivateKey(fs.readFileSync(process.argv[2])).export({format: 'jwk'});
    if (jwk.kty !== 'EC' || jwk.crv !== 'P-256')
        fail('the device key is not EC P-256');
    const message = Buffer.from(fs.readFileSync(process.argv[3], 'utf8').trim(), 'base64');
    const {plaintext, r} = await open(message, b64url(jwk.d));
    const key = cbor.decodeFirstSync(plaintext);
    if (!(key instanceof Map))
        fail('the plaintext is not a COSE_Key');
    const out = {recipient_kid: hexify(r.kid), key: {}};
    for (const [k, v] of key)
        out.key[String(k)] = hexify(v);
    process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => fail(e.message));
