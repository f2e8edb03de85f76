#!/usr/bin/env node
// Verify a Herald webhook request (Standard Webhooks, HMAC-SHA256).
//
// Node's built-in crypto only. Use verify() in your receiver, on the raw
// request body (a Buffer), before parsing the JSON:
//
//   import { verify } from "./webhook_verify.mjs";
//   try {
//     verify(["whsec_..."], req.headers, rawBody);
//   } catch (err) {
//     res.statusCode = 401; return res.end();
//   }
//
// Command line, exit status 0 if and only if the request is valid:
//
//   WEBHOOK_SECRET=whsec_... node webhook_verify.mjs \
//       --id "$ID" --timestamp "$TS" --signature "$SIG" < body.json
//
// --secret may be given instead of WEBHOOK_SECRET (arguments are visible to
// other users of the machine) and repeated: during a rotation a receiver may
// hold the old and the new secret. WEBHOOK_SECRET may hold several secrets
// separated by spaces.

import { createHmac, timingSafeEqual } from "node:crypto";
import { pathToFileURL } from "node:url";

export const DEFAULT_TOLERANCE_SECONDS = 5 * 60;

export class WebhookVerificationError extends Error {}

function decodeSecret(secret) {
  if (!secret.startsWith("whsec_")) {
    throw new WebhookVerificationError("secret must start with whsec_");
  }
  const encoded = secret.slice("whsec_".length);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(encoded)) {
    throw new WebhookVerificationError("secret is not base64");
  }
  return Buffer.from(encoded, "base64");
}

// verify throws WebhookVerificationError unless the request is valid.
// secrets: the endpoint's secrets ("whsec_..."), any of which may match.
// headers: an object of request headers (any letter case), e.g. req.headers.
// body: the raw request body, a Buffer (or a string, taken as UTF-8).
export function verify(secrets, headers, body, { now = Date.now() / 1000, tolerance = DEFAULT_TOLERANCE_SECONDS } = {}) {
  const keys = (typeof secrets === "string" ? [secrets] : secrets).map(decodeSecret);
  if (keys.length === 0) throw new WebhookVerificationError("no secrets");
  const lower = {};
  for (const [k, v] of Object.entries(headers)) lower[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : String(v);
  const id = lower["webhook-id"] ?? "";
  const timestamp = lower["webhook-timestamp"] ?? "";
  const signatures = lower["webhook-signature"] ?? "";
  if (!id || !timestamp || !signatures) {
    throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature");
  }
  if (!/^[0-9]+$/.test(timestamp)) throw new WebhookVerificationError("invalid webhook-timestamp");
  // The timestamp is signed, so rejecting stale ones is the replay protection.
  if (Math.abs(now - Number(timestamp)) > tolerance) {
    throw new WebhookVerificationError("webhook-timestamp outside tolerance");
  }
  const signed = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), Buffer.isBuffer(body) ? body : Buffer.from(body)]);
  const expected = keys.map((k) => createHmac("sha256", k).update(signed).digest());
  for (const sig of signatures.split(" ")) {
    const comma = sig.indexOf(",");
    if (comma < 0 || sig.slice(0, comma) !== "v1") continue;
    const given = Buffer.from(sig.slice(comma + 1), "base64");
    for (const want of expected) {
      // timingSafeEqual needs equal lengths; a digest's length is no secret.
      if (given.length === want.length && timingSafeEqual(given, want)) return;
    }
  }
  throw new WebhookVerificationError("no matching signature");
}

async function main(argv) {
  const args = { secret: [], tolerance: String(DEFAULT_TOLERANCE_SECONDS) };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, "");
    const value = argv[i + 1];
    if (!["secret", "id", "timestamp", "signature", "tolerance"].includes(name) || value === undefined) {
      console.error("usage: node webhook_verify.mjs [--secret whsec_...] --id ID --timestamp TS --signature SIG [--tolerance SECONDS] < body");
      return 2;
    }
    if (name === "secret") args.secret.push(value);
    else args[name] = value;
  }
  const secrets = args.secret.length ? args.secret : (process.env.WEBHOOK_SECRET ?? "").split(/\s+/).filter(Boolean);
  if (!secrets.length || !args.id || !args.timestamp || !args.signature) {
    console.error("need a secret (--secret or WEBHOOK_SECRET), --id, --timestamp and --signature");
    return 2;
  }
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const headers = { "webhook-id": args.id, "webhook-timestamp": args.timestamp, "webhook-signature": args.signature };
  try {
    verify(secrets, headers, Buffer.concat(chunks), { tolerance: Number(args.tolerance) });
  } catch (err) {
    if (!(err instanceof WebhookVerificationError)) throw err;
    console.error(`invalid: ${err.message}`);
    return 1;
  }
  console.log("valid");
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
