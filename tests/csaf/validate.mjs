// validate.mjs FILE... - checks each CSAF 2.0 document against the CSAF 2.0 JSON schema
// (strict: no member the schema does not define) and every mandatory test of the
// specification (section 6.1), with the BSI's csaf-validator-lib (tests/csaf/install.sh).
// Prints each failed test with its errors and exits 1 if any document fails, 2 on misuse.
import { readFileSync } from 'node:fs'
import validateStrict from '@secvisogram/csaf-validator-lib/validateStrict.js'
import * as mandatory from '@secvisogram/csaf-validator-lib/mandatoryTests.js'
import { csaf_2_0_strict } from '@secvisogram/csaf-validator-lib/schemaTests.js'

const files = process.argv.slice(2)
if (files.length === 0) {
  console.error('usage: node tests/csaf/validate.mjs FILE...')
  process.exit(2)
}
const tests = [csaf_2_0_strict, ...Object.values(mandatory)]
let failed = 0
for (const file of files) {
  const doc = JSON.parse(readFileSync(file, 'utf8'))
  const result = await validateStrict(tests, doc)
  const bad = result.tests.filter((t) => !t.isValid || t.errors.length > 0)
  for (const t of bad)
    for (const e of t.errors) console.log(`${file}: ${t.name}: ${e.instancePath} ${e.message}`)
  if (!result.isValid || bad.length > 0) failed++
  else console.log(`${file}: valid CSAF 2.0 (${tests.length} tests)`)
}
process.exit(failed > 0 ? 1 : 0)
