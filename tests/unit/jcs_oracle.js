// jcs_oracle.js - RFC 8785 canonical JSON written with the ECMAScript engine itself, as the
// RFC defines it: JSON.stringify for strings and numbers, object members sorted by the
// default comparison of JavaScript strings (UTF-16 code units).  test_common.c checks the
// broker's C implementation against it, one JSON value per line on stdin and stdout.
'use strict';

function canonical(v) {
    if (v === null || typeof v !== 'object')
        return JSON.stringify(v);
    if (Array.isArray(v))
        return '[' + v.map(canonical).join(',') + ']';
    return '{' + Object.keys(v).sort().map(k => JSON.stringify(k) + ':' + canonical(v[k])).join(',') + '}';
}

const lines = require('fs').readFileSync(0, 'utf8').split('\n');
const out = [];
for (const line of lines)
    if (line.length > 0)
        out.push(canonical(JSON.parse(line)));
process.stdout.write(out.join('\n') + '\n');
