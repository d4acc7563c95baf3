// A partner agency's webhook endpoint for rujuk: verifies each delivery's Standard Webhooks
// signature (webhook-id, webhook-timestamp, webhook-signature) with the agency's whsec_
// secret, drops a repeat by its webhook-id (= the CloudEvent id), validates the event against
// contracts/schemas, and answers 204 (any 2xx tells notify it arrived). Prints one JSON line
// per request.
//
// Settings (environment): RUJUK_WEBHOOK_SECRET (`rujuk partner webhook-secret AGENCY`),
// PORT (default 8090), RUJUK_SCHEMAS (contracts/schemas).
import http from "node:http";
import { Webhook } from "standardwebhooks";
import { loadContracts } from "./lib/contracts.mjs";

const webhook = new Webhook(process.env.RUJUK_WEBHOOK_SECRET);
const contracts = loadContracts(process.env.RUJUK_SCHEMAS ?? "../../contracts/schemas");
const seen = new Set(); // webhook-ids handled; keep them in your database in real life

const server = http.createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const [status, outcome] = receive(Buffer.concat(chunks).toString("utf8"), request.headers);
    console.log(JSON.stringify({ status, ...outcome }));
    response.writeHead(status).end();
  });
});

function receive(body, requestHeaders) {
  let event;
  try {
    // Verify the exact bytes received, before parsing: a re-serialised body would not match.
    event = webhook.verify(body, requestHeaders);
  } catch (error) {
    return [401, { rejected: String(error.message ?? error) }];
  }
  const id = requestHeaders["webhook-id"];
  if (seen.has(id)) return [200, { duplicate: id }]; // 2xx: notify stops sending it
  const problems = contracts.problems(event);
  if (problems.length > 0) return [400, { invalid: id, problems }];
  seen.add(id);
  return [204, { delivered: id, type: event.type, referral: event.data.referral_id }];
}

server.listen(Number(process.env.PORT ?? 8090), "127.0.0.1", () => {
  console.log(JSON.stringify({ listening: server.address().port }));
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
