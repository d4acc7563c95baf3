// What a partner's nats.js client may not do on rujuk's bus (docs/partners.md, section 4):
// each attempt below must fail with a permissions error, while reading its own durable
// consumer works. Prints one JSON object; exits 1 if anything was allowed that should not be.
// Same settings as feed.mjs (RUJUK_NATS_URL, RUJUK_AGENCY, RUJUK_NKEY_SEED_FILE).
import { readFileSync } from "node:fs";
import { connect, nkeyAuthenticator } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";

const env = process.env;
const agency = env.RUJUK_AGENCY;
const nc = await connect({
  servers: env.RUJUK_NATS_URL,
  authenticator: nkeyAuthenticator(new TextEncoder().encode(readFileSync(env.RUJUK_NKEY_SEED_FILE, "utf8").trim())),
  inboxPrefix: `_INBOX_${agency}`,
  timeout: 5000,
});

async function outcome(attempt) {
  try {
    await attempt();
    return "allowed";
  } catch (error) {
    const text = `${error?.name} ${error?.message} ${error?.cause?.message ?? ""}`.toLowerCase();
    return text.includes("permission") ? "denied" : `failed: ${error?.message}`;
  }
}

const js = jetstream(nc, { timeout: 3000 });
const found = {
  own_durable_consumer: await outcome(() => js.consumers.get("RUJUK_PARTNER", `partner-${agency}`)),
  default_jetstream_manager: await outcome(() => jetstreamManager(nc, { timeout: 3000 })),
  ordered_consumer: await outcome(async () => {
    const ordered = await js.consumers.get("RUJUK_PARTNER", { filter_subjects: [`rujuk.partner.${agency}.out.>`] });
    await ordered.next({ expires: 2000 });
  }),
};
await nc.close();
console.log(JSON.stringify(found));
const expected = { own_durable_consumer: "allowed", default_jetstream_manager: "denied", ordered_consumer: "denied" };
process.exit(JSON.stringify(found) === JSON.stringify(expected) ? 0 : 1);
