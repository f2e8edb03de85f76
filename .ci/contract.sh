#!/usr/bin/env bash
# Checks the published contract with the standard tools a consumer would use,
# not with Herald's own Go code:
#   - the official AsyncAPI parser (@asyncapi/parser 3.x) parses the exported
#     AsyncAPI document, read as a string from an unrelated working directory
#     so that it must stand alone, with no error diagnostic;
#   - Ajv (the class for the draft the schemas declare, with ajv-formats, in
#     strict mode) compiles every exported JSON Schema, each registered only by
#     its $id, and validates every golden event (pkg/enricher/testdata) and
#     every example of the AsyncAPI document: the whole event against its
#     type's CloudEvent schema and its data against the schema its dataschema
#     names.
# The documented SQL writers' events need a database, so pkg/outbox's
# docs_test.go validates them (with the Go validator) instead.
#
# Idempotent: the npm packages are installed, pinned, into a cache directory
# outside the repository (HERALD_CONTRACT_CACHE, default
# ~/.cache/herald-contract) only when the pins changed. Needs Go, Node and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

cache=${HERALD_CONTRACT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/herald-contract}
# @asyncapi/specs holds the bindings' schemas the parser checks against; it
# is pinned beside the parser so that a new release cannot change the verdict.
pins='{
  "name": "herald-contract-check",
  "private": true,
  "type": "module",
  "dependencies": {
    "@asyncapi/parser": "3.6.6",
    "@asyncapi/specs": "6.11.1",
    "ajv": "8.20.0",
    "ajv-formats": "3.0.1"
  }
}'

mkdir -p "$cache"
if command -v flock >/dev/null; then
  exec 9>"$cache/.lock"
  flock 9 # runs on one machine share the cache: one installs, the others wait
fi
if [ "$(cat "$cache/.installed" 2>/dev/null)" != "$pins" ] || [ ! -d "$cache/node_modules/@asyncapi/parser" ]; then
  echo "contract: installing @asyncapi/parser, ajv and ajv-formats into $cache"
  printf '%s\n' "$pins" >"$cache/package.json"
  # No install scripts: a dependency's postinstall only sends telemetry.
  (cd "$cache" && npm install --no-audit --no-fund --no-save --ignore-scripts --loglevel=error)
  printf '%s' "$pins" >"$cache/.installed"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "contract: go run ./cmd/herald schema export --dir $work/export"
go run ./cmd/herald schema export --dir "$work/export" >/dev/null

cat >"$cache/asyncapi.mjs" <<'EOF'
// Usage: node asyncapi.mjs DOCUMENT EXAMPLES_OUT
// Parses an AsyncAPI document given as a string, with no source location:
// every reference must resolve inside it. Prints every diagnostic; exits 1
// on an error. Writes the messages' examples to EXAMPLES_OUT as JSON.
import fs from 'node:fs';
import { Parser } from '@asyncapi/parser';

const [file, examplesOut] = process.argv.slice(2);
const severity = ['error', 'warning', 'info', 'hint'];
const { document, diagnostics } = await new Parser().parse(fs.readFileSync(file, 'utf8'));
for (const d of diagnostics) {
  console.log(`contract: asyncapi ${severity[d.severity] ?? d.severity}: ${d.code}: ${d.message} at ${d.path.join('.') || '/'}`);
}
const errors = diagnostics.filter((d) => d.severity === 0).length;
if (errors > 0 || !document) {
  console.error(`contract: @asyncapi/parser found ${errors} errors in ${file}`);
  process.exit(1);
}
const examples = document.messages().all().flatMap((m) =>
  m.examples().all().map((ex) => [`asyncapi example ${m.id()}`, ex.payload()]));
fs.writeFileSync(examplesOut, JSON.stringify(examples));
console.log(`contract: @asyncapi/parser: AsyncAPI ${document.version()}, ${document.channels().length} channels, ` +
  `${document.messages().length} messages, ${diagnostics.length} diagnostics, no error`);
EOF

cat >"$cache/schemas.mjs" <<'EOF'
// Usage: node schemas.mjs SCHEMA_DIR EXAMPLES_JSON GOLDEN...
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const [schemaDir, examplesFile, ...goldens] = process.argv.slice(2);
const fail = (msg) => { console.error(`contract: ${msg}`); process.exit(1); };

const files = [];
const walk = (dir) => {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p);
    else if (p.endsWith('.json')) files.push(p);
  }
};
walk(schemaDir);
const schemas = files.map((f) => [f, JSON.parse(fs.readFileSync(f, 'utf8'))]);

// One Ajv class per draft; the schemas must all declare the same one.
const classes = {
  'http://json-schema.org/draft-07/schema#': Ajv,
  'https://json-schema.org/draft/2020-12/schema': Ajv2020,
};
const drafts = new Set(schemas.map(([, s]) => s.$schema));
if (drafts.size !== 1 || !classes[[...drafts][0]]) fail(`schemas declare ${[...drafts].join(', ')}: want one of ${Object.keys(classes).join(', ')}`);
const draft = [...drafts][0];
// No loadSchema: a reference that no registered $id answers fails to compile.
const ajv = new classes[draft]({ strict: true, allErrors: true });
addFormats(ajv);

for (const [f, s] of schemas) {
  if (typeof s.$id !== 'string' || s.$id === '') fail(`${f} has no $id`);
  ajv.addSchema(s); // registered by its $id, nothing else
}
for (const [f, s] of schemas) {
  try {
    ajv.getSchema(s.$id);
  } catch (e) {
    fail(`Ajv cannot compile ${f} ($id ${s.$id}): ${e.message}`);
  }
}
console.log(`contract: Ajv (${draft}) compiled ${schemas.length} schemas, each loaded by its $id alone`);

const check = (what, schemaId, value) => {
  const validate = ajv.getSchema(schemaId);
  if (!validate) return `${what}: no schema has the $id ${schemaId}`;
  if (validate(value)) return '';
  return `${what}: invalid against ${schemaId}: ${ajv.errorsText(validate.errors)}`;
};
// The whole event against its type's CloudEvent schema, beside the data
// schema its dataschema names, and the data against that.
const checkEvent = (what, ev) => typeof ev.dataschema !== 'string' ? [`${what}: no dataschema`] : [
  check(what, ev.dataschema.replace(/\.json$/, '.cloudevent.json'), ev),
  check(`${what} data`, ev.dataschema, ev.data),
].filter(Boolean);

// Golden files leave out what is fresh on every run (id) or the same in every
// event; put them back as the enricher does.
const uuidv7 = () => {
  const b = crypto.randomBytes(16);
  b.writeUIntBE(Date.now(), 0, 6);
  b[6] = 0x70 | (b[6] & 0x0f);
  b[8] = 0x80 | (b[8] & 0x3f);
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
};
const events = [];
for (const g of goldens) {
  const n = events.length;
  for (const rec of JSON.parse(fs.readFileSync(g, 'utf8'))) {
    for (const ev of rec.events) {
      events.push([`${path.basename(g)} ${rec.action} ${rec.audit_record_id}`,
        { specversion: '1.0', id: uuidv7(), source: '/portal', datacontenttype: 'application/json', ...ev }]);
    }
  }
  if (events.length === n) fail(`${g} holds no event`);
}
const examples = JSON.parse(fs.readFileSync(examplesFile, 'utf8'));
if (examples.length === 0) fail('the AsyncAPI document has no example');
events.push(...examples);

const problems = events.flatMap(([what, ev]) => checkEvent(what, ev));
// A validator that accepts everything would pass the above too.
const [what, first] = events[0];
if (checkEvent(what, { ...first, type: 'io.herald.portal.nothing.happened' }).length === 0) {
  problems.push(`${what}: still valid with another type: the schemas check nothing`);
}
if (problems.length > 0) fail(`${problems.length} problems:\n  ${problems.join('\n  ')}`);
console.log(`contract: Ajv validated ${events.length} events (${goldens.length} golden files and the AsyncAPI examples)`);
EOF

# Outside the repository and the export: nothing beside the document helps.
mkdir "$work/elsewhere"
(cd "$work/elsewhere" && node "$cache/asyncapi.mjs" "$work/export/docs/asyncapi.yaml" "$work/examples.json")
node "$cache/schemas.mjs" "$work/export/schemas" "$work/examples.json" "$repo"/pkg/enricher/testdata/*.golden.json
echo "contract: ok"
