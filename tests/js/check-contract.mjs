// A second, independent check of the committed contract, with tools a JavaScript team uses:
//
// * every JSON Schema of schemas/v<N>/ (the envelope and each event's data; index.json is a
//   list, not a schema) is compiled by Ajv for draft 2020-12 in strict mode (`strict: true`:
//   an unknown keyword, format or an ambiguous type refuses the schema; any warning counts as
//   a failure), with ajv-formats for `date` and `date-time`;
// * each schema's own `examples` are validated by it;
// * optional instances (a JSON file: [{"label", "schema": "<$id>", "instance", "valid"}])
//   are validated by the schema with that `$id` and compared with the expected outcome;
// * schemas/asyncapi.json is validated against the AsyncAPI 3.0.0 specification schema
//   (@asyncapi/specs, with Ajv as the AsyncAPI parser runs it).
//
// Usage: node tests/js/check-contract.mjs <schemas dir> [instances.json] [--json]
// Exit 0 when everything holds; the report (or JSON with --json) says what does not.
// Install the tools once with `npm ci --prefix tests/js`.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import Ajv from "ajv";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const asJson = args.includes("--json");
const [root, casesFile] = args.filter((a) => a !== "--json");
if (!root) {
  console.error("usage: node check-contract.mjs <schemas dir> [instances.json] [--json]");
  process.exit(2);
}

const report = { schemas: [], examples: [], instances: [], asyncapi: null, warnings: [] };
const logger = {
  log() {},
  warn: (...a) => report.warnings.push(a.join(" ")),
  error: (...a) => report.warnings.push(a.join(" ")),
};
const read = (file) => JSON.parse(fs.readFileSync(file, "utf8"));
const errorsOf = (validate) => (validate.errors || []).map((e) => `${e.instancePath || "(root)"} ${e.message}`);

// --- the JSON Schemas ------------------------------------------------------------------------
const ajv = new Ajv2020({ strict: true, allErrors: true, logger });
addFormats(ajv);
const files = [];
for (const version of fs.readdirSync(root).filter((d) => /^v[1-9][0-9]*$/.test(d)).sort()) {
  const base = path.join(root, version);
  for (const name of fs.readdirSync(base).sort()) {
    if (name.endsWith(".json") && name !== "index.json") files.push(path.join(base, name));
  }
  const data = path.join(base, "data");
  if (fs.existsSync(data)) {
    for (const name of fs.readdirSync(data).sort()) if (name.endsWith(".json")) files.push(path.join(data, name));
  }
}
const compiled = new Map();
for (const file of files) {
  const rel = path.relative(root, file);
  const schema = read(file);
  try {
    const validate = ajv.compile(schema);
    compiled.set(schema.$id, validate);
    report.schemas.push({ file: rel, id: schema.$id, error: null });
    (schema.examples || []).forEach((example, i) => {
      const valid = validate(example);
      report.examples.push({ file: rel, index: i, valid, errors: valid ? [] : errorsOf(validate) });
    });
  } catch (exc) {
    report.schemas.push({ file: rel, id: schema.$id, error: String(exc.message || exc) });
  }
}

// --- given instances ---------------------------------------------------------------------------
if (casesFile) {
  for (const item of read(casesFile)) {
    const validate = compiled.get(item.schema);
    if (!validate) {
      report.instances.push({ label: item.label, ok: false, valid: null, errors: [`no schema ${item.schema}`] });
      continue;
    }
    const valid = validate(item.instance);
    report.instances.push({ label: item.label, ok: valid === item.valid, valid, errors: errorsOf(validate) });
  }
}

// --- the AsyncAPI document ---------------------------------------------------------------------
const asyncapiFile = path.join(root, "asyncapi.json");
if (fs.existsSync(asyncapiFile)) {
  const doc = read(asyncapiFile);
  const specs = require("@asyncapi/specs");
  const spec = specs.schemas[doc.asyncapi];
  if (!spec) {
    report.asyncapi = { version: doc.asyncapi, valid: false, errors: [`no specification schema for ${doc.asyncapi}`] };
  } else {
    // As @asyncapi/parser validates a document's structure: its Ajv options (the
    // specification schema is draft-07 with keywords Ajv's strict mode does not know), and
    // without the copies of the JSON Schema meta-schemas Ajv already holds.
    const copy = JSON.parse(JSON.stringify(spec));
    delete copy.definitions["http://json-schema.org/draft-07/schema"];
    delete copy.definitions["http://json-schema.org/draft-04/schema"];
    const specAjv = new Ajv({ allErrors: true, strict: false, allowUnionTypes: true, unicodeRegExp: false, logger });
    addFormats(specAjv);
    const validate = specAjv.compile(copy);
    const valid = validate(doc);
    report.asyncapi = { version: doc.asyncapi, valid, errors: valid ? [] : errorsOf(validate).slice(0, 50) };
  }
}

const failed =
  report.warnings.length > 0 ||
  report.schemas.some((s) => s.error) ||
  report.examples.some((e) => !e.valid) ||
  report.instances.some((i) => !i.ok) ||
  (report.asyncapi !== null && !report.asyncapi.valid);

if (asJson) {
  process.stdout.write(JSON.stringify(report) + "\n");
} else {
  for (const s of report.schemas) console.log(`${s.error ? "REFUSED " : "compiled"} ${s.file}${s.error ? ": " + s.error : ""}`);
  for (const e of report.examples.filter((x) => !x.valid)) console.log(`example ${e.file}#${e.index} invalid: ${e.errors.join("; ")}`);
  for (const i of report.instances.filter((x) => !x.ok)) console.log(`instance ${i.label}: valid=${i.valid} ${i.errors.join("; ")}`);
  if (report.asyncapi) console.log(`asyncapi ${report.asyncapi.version}: ${report.asyncapi.valid ? "valid" : report.asyncapi.errors.join("; ")}`);
  for (const w of report.warnings) console.log(`warning: ${w}`);
  console.log(failed ? "FAILED" : `ok: ${report.schemas.length} schemas, ${report.examples.length} examples, ${report.instances.length} instances`);
}
process.exit(failed ? 1 : 0);
