// Parse and validate an AsyncAPI document with the AsyncAPI parser (the one AsyncAPI's own tools
// use). Prints every diagnostic; exits 1 on an error, 0 otherwise.
// Usage: node check-asyncapi.mjs ../../contracts/schemas/asyncapi.json
import { Parser, fromFile } from "@asyncapi/parser";
import path from "node:path";

const file = path.resolve(process.argv[2] ?? "../../contracts/schemas/asyncapi.json");
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, file).parse({
  source: file,
  validateOptions: { allowedSeverity: { error: false, warning: true, info: true, hint: true } },
});
const severities = ["error", "warning", "info", "hint"];
for (const d of diagnostics) {
  console.log(`${severities[d.severity]}\t${d.code}\t${d.path.join(".")}\t${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === 0);
if (document === undefined || errors.length > 0) {
  console.log(`asyncapi: ${errors.length} error(s) in ${file}`);
  process.exit(1);
}
const operations = document.operations().all().map((o) => `${o.action()} ${o.channels().all()[0].address()}`);
console.log(JSON.stringify({ version: document.version(), operations, diagnostics: diagnostics.length }));
