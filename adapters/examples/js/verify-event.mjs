#!/usr/bin/env node
// Verifies the signature of an xregion v1 event (docs/signing-recipe.md), with Node's
// built-in `crypto` only (Node.js >= 18).
//
//   node verify-event.mjs <public-key-base64> [event.json]
//
// The signed event is read from the file, or from stdin when no file (or "-") is given.
// Exit status 0 and "OK <keyid>" when the signature verifies with the given public key and
// `keyid` names that key; exit status 1 and the reason otherwise. Checking that the key is in
// the roster, belongs to the sender and is valid at the event's time is the caller's job.

import crypto from "node:crypto";
import fs from "node:fs";
import { pathToFileURL } from "node:url";

import { keyIdFor, partyOf, publicKeyFromRaw, readInput, signingInput } from "./sign-event.mjs";

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

// Returns null when `event` verifies, else the reason it does not.
export function verifyEvent(event, publicKeyBase64) {
  const raw = Buffer.from(publicKeyBase64, "base64");
  const publicKey = publicKeyFromRaw(raw);
  const expectedKeyId = keyIdFor(partyOf(event), raw);
  if (event.keyid !== expectedKeyId) {
    return `keyid ${JSON.stringify(event.keyid)} does not name this key (${expectedKeyId})`;
  }
  if (typeof event.signature !== "string" || !BASE64.test(event.signature)) {
    return `event has no standard base64 signature (key ${event.keyid})`;
  }
  const signature = Buffer.from(event.signature, "base64");
  if (signature.length !== 64 || !crypto.verify(null, signingInput(event), publicKey, signature)) {
    return `signature does not verify with key ${event.keyid}`;
  }
  return null;
}

function main([publicKeyBase64, path]) {
  if (!publicKeyBase64) {
    process.stderr.write("usage: verify-event.mjs <public-key-base64> [event.json|-]\n");
    return 2;
  }
  const event = JSON.parse(readInput(path));
  const problem = verifyEvent(event, publicKeyBase64);
  if (problem) {
    process.stdout.write(`BAD ${problem}\n`);
    return 1;
  }
  process.stdout.write(`OK ${event.keyid}\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`verify-event: ${error.message}\n`);
    process.exitCode = 1;
  }
}
