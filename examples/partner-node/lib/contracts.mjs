// rujuk's published contracts, as a partner's code uses them: every event schema from
// contracts/schemas (JSON Schema 2020-12), looked up by the event's `dataschema`.
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

export const CONTENT_TYPE = "application/cloudevents+json";

export function loadContracts(folder) {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormats(ajv);
  const types = new Map(); // event type -> its schema's $id (the dataschema URN)
  for (const name of readdirSync(folder)) {
    if (!name.startsWith("id.rujuk.") || !name.endsWith(".json")) continue;
    const schema = JSON.parse(readFileSync(path.join(folder, name), "utf8"));
    ajv.addSchema(schema);
    types.set(schema.properties.type.const, schema.$id);
  }
  return {
    types,
    /** Problems with an event (a parsed JSON object); an empty list when it is valid. */
    problems(event) {
      const schemaId = types.get(event?.type);
      if (schemaId === undefined) return [`unknown event type ${JSON.stringify(event?.type)}`];
      if (event.dataschema !== schemaId) return [`dataschema is not ${schemaId}`];
      const validate = ajv.getSchema(schemaId);
      if (validate(event)) return [];
      return validate.errors.map((e) => `${e.instancePath || "(event)"} ${e.message}`);
    },
  };
}
