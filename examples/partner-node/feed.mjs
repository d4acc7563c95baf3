// A partner agency's client of rujuk's NATS feed: reads its referrals from its durable
// consumer, validates each CloudEvent against contracts/schemas, acknowledges the message,
// and replies `acknowledge` and then `accept` to each referral. Prints one JSON line per
// message and a summary line ({"summary": …}) at the end.
//
// Settings (environment): RUJUK_NATS_URL, RUJUK_AGENCY, RUJUK_NKEY_SEED_FILE (what
// `rujuk partner creds AGENCY` hands out), RUJUK_TLS_CA_FILE (for tls:// URLs),
// RUJUK_SCHEMAS (contracts/schemas), RUJUK_IDLE_SECONDS (stop after that long without a
// message; unset: run until stopped), RUJUK_REPLIES ("acknowledge,accept" by default; empty:
// read only).
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { connect, headers, nkeyAuthenticator } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { CloudEvent } from "cloudevents";
import { CONTENT_TYPE, loadContracts } from "./lib/contracts.mjs";

const env = process.env;
const agency = env.RUJUK_AGENCY;
const contracts = loadContracts(env.RUJUK_SCHEMAS ?? "../../contracts/schemas");
const replies = (env.RUJUK_REPLIES ?? "acknowledge,accept").split(",").filter(Boolean);
const idleMs = env.RUJUK_IDLE_SECONDS ? Number(env.RUJUK_IDLE_SECONDS) * 1000 : Infinity;
// The reply kind on the subject -> the event it is (contracts/schemas/asyncapi.json).
const REPLY_EVENTS = {
  acknowledge: "referral.acknowledged",
  accept: "referral.accepted",
  decline: "referral.declined",
  complete: "referral.completed",
};

const nc = await connect({
  servers: env.RUJUK_NATS_URL,
  // The seed file holds the nkey seed; the server knows only its public key.
  authenticator: nkeyAuthenticator(new TextEncoder().encode(readFileSync(env.RUJUK_NKEY_SEED_FILE, "utf8").trim())),
  // A partner may subscribe only to its own inbox prefix: JetStream answers there.
  inboxPrefix: `_INBOX_${agency}`,
  ...(env.RUJUK_TLS_CA_FILE ? { tls: { caFile: env.RUJUK_TLS_CA_FILE } } : {}),
});
// jetstream(), not jetstreamManager(): a partner may not read the account's or the stream's
// info, only its own consumer's (CONSUMER.INFO) and its next messages (CONSUMER.MSG.NEXT).
const js = jetstream(nc);
const consumer = await js.consumers.get("RUJUK_PARTNER", `partner-${agency}`);

const summary = { received: 0, valid: 0, invalid: 0, replied: 0, refused: 0 };
let lastMessage = Date.now();
while (Date.now() - lastMessage < idleMs) {
  const messages = await consumer.fetch({ max_messages: 50, expires: 1000 });
  for await (const message of messages) {
    lastMessage = Date.now();
    summary.received += 1;
    await handle(message);
    message.ack(); // after handling: an unacknowledged message comes again after 60 s
  }
}
await nc.drain();
console.log(JSON.stringify({ summary }));

async function handle(message) {
  const contentType = message.headers?.get("Content-Type");
  if (contentType === "application/problem+json") {
    // A reply of ours notify could not read (e.g. not JSON): the reason is in `detail`.
    summary.refused += 1;
    console.log(JSON.stringify({ refused: JSON.parse(message.string()) }));
    return;
  }
  const event = JSON.parse(message.string());
  const problems = contracts.problems(event);
  if (problems.length > 0) {
    summary.invalid += 1; // log and skip it; acknowledging it stops its redelivery
    console.log(JSON.stringify({ invalid: event.id, type: event.type, problems }));
    return;
  }
  summary.valid += 1;
  // The CloudEvents SDK reads the structured JSON event format, checking the envelope.
  const cloudEvent = new CloudEvent(event);
  console.log(JSON.stringify({
    event: cloudEvent.id,
    type: cloudEvent.type,
    subject: cloudEvent.subject,
    referral: cloudEvent.data?.referral_id,
    msgId: message.headers?.get("Nats-Msg-Id"),
  }));
  if (cloudEvent.type === "id.rujuk.referral.reply_refused.v1") {
    summary.refused += 1; // a reply of ours notify or routing refused: data.reason says why
    return;
  }
  if (cloudEvent.type !== "id.rujuk.referral.requested.v1") return; // a type we do not act on
  for (const reply of replies) {
    await sendReply(reply, cloudEvent);
    summary.replied += 1;
  }
}

async function sendReply(reply, referral) {
  const [aggregate, eventName] = REPLY_EVENTS[reply].split(".");
  const reply_event = new CloudEvent({
    id: randomUUID(), // also the Nats-Msg-Id: a retry with the same id is dropped
    source: `/rujuk/partners/${agency}`, // exactly this; another source is refused
    type: `id.rujuk.${aggregate}.${eventName}.v1`,
    subject: referral.subject, // the case id
    datacontenttype: "application/json",
    dataschema: `urn:rujuk:schema:${aggregate}.${eventName}:v1`,
    ...(referral.traceparent ? { traceparent: referral.traceparent } : {}),
    data: { case_id: referral.data.case_id, referral_id: referral.data.referral_id, agency_id: agency },
  });
  const body = JSON.stringify(reply_event); // the JSON event format (structured mode)
  const problems = contracts.problems(JSON.parse(body));
  if (problems.length > 0) throw new Error(`our own ${reply} is invalid: ${problems}`);
  const h = headers();
  h.set("Content-Type", CONTENT_TYPE);
  if (reply_event.traceparent) h.set("traceparent", reply_event.traceparent);
  await js.publish(`rujuk.partner.${agency}.in.${reply}`, body, { msgID: reply_event.id, headers: h });
}
