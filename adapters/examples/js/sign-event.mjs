#!/usr/bin/env node
// Reference implementation of the xregion v1 signing recipe (docs/signing-recipe.md) in
// JavaScript, with Node's built-in `crypto` only (Node.js >= 18).
//
//   node sign-event.mjs <seed-hex> [event.json]       signed event JSON on stdout
//   node sign-event.mjs --canonical [event.json]       RFC 8785 form of the input, as is
//
// The unsigned event is read from the file, or from stdin when no file (or "-") is given.
// <seed-hex> is the 32-byte Ed25519 private seed in hex. `keyid` is set from the key and the
// party named in `source` (urn:xregion:<party>:<agency>); pass --keyid <id> to override.
// The output is the canonical form of the signed event (what the xregion adapters send).

import crypto from "node:crypto";
import fs from "node:fs";
import { pathToFileURL } from "node:url";

// PKCS#8 DER header of an Ed25519 private key; the 32-byte seed follows it.
const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
// SPKI DER header of an Ed25519 public key; the 32 raw public key bytes follow it.
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

// RFC 8785 (JCS) canonical JSON, as a string (encode it as UTF-8 to get the bytes).
// Object keys sorted with the default sort (UTF-16 code units, as JCS requires), arrays in
// order, primitives through JSON.stringify, whose string escaping and ECMAScript number
// formatting are JCS's. LIMITATION: correct for what the xregion envelope carries (strings,
// integers within +/-2^53, booleans, objects, arrays); it refuses non-finite numbers and
// unsafe integers, but does not refuse lone surrogates in strings, and a number that
// JSON.parse has already rounded (an integer beyond 2^53) cannot be restored. Use a full
// JCS library for arbitrary JSON.
export function canonicalize(value) {
  if (typeof value === "number" && (!Number.isFinite(value) ||
      (Number.isInteger(value) && !Number.isSafeInteger(value)))) {
    throw new RangeError(`number ${value} cannot be canonicalised exactly`);
  }
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalize).join(",")}]`;
  const members = Object.keys(value).sort()
    .filter((key) => value[key] !== undefined)
    .map((key) => `${JSON.stringify(key)}:${canonicalize(value[key])}`);
  return `{${members.join(",")}}`;
}

// The bytes that are signed: the canonical form of the event without `signature`.
export function signingInput(event) {
  const { signature: _ignored, ...unsigned } = event;
  return Buffer.from(canonicalize(unsigned), "utf8");
}

export function privateKeyFromSeed(seedHex) {
  const seed = Buffer.from(seedHex, "hex");
  if (seed.length !== 32 || seed.toString("hex") !== seedHex.toLowerCase()) {
    throw new Error("the seed must be 32 bytes in hex (64 hex digits)");
  }
  return crypto.createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: "der", type: "pkcs8",
  });
}

export function publicKeyFromRaw(raw) {
  if (raw.length !== 32) throw new Error("an Ed25519 public key has 32 bytes");
  return crypto.createPublicKey({
    key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: "der", type: "spki",
  });
}

export function rawPublicKey(key) {
  const der = crypto.createPublicKey(key).export({ format: "der", type: "spki" });
  return der.subarray(der.length - 32);
}

// `<party>:` + the first 16 hex digits of SHA-256 of the raw public key.
export function keyIdFor(party, rawPublic) {
  return `${party}:${crypto.createHash("sha256").update(rawPublic).digest("hex").slice(0, 16)}`;
}

export function partyOf(event) {
  const match = /^urn:xregion:([A-Z]{2,8}):[a-z][a-z0-9_]{1,31}$/.exec(event.source ?? "");
  if (!match) throw new Error(`source ${JSON.stringify(event.source)} is not urn:xregion:<party>:<agency>`);
  return match[1];
}

// A copy of `event` with `keyid` and `signature` (pure Ed25519, standard base64) attached.
export function signEvent(event, seedHex, keyId) {
  const privateKey = privateKeyFromSeed(seedHex);
  const { signature: _old, ...unsigned } = event;
  unsigned.keyid = keyId ?? keyIdFor(partyOf(event), rawPublicKey(privateKey));
  const signature = crypto.sign(null, signingInput(unsigned), privateKey);
  return { ...unsigned, signature: signature.toString("base64") };
}

// `sha256:` + hex SHA-256 of the canonical form of the complete signed event.
export function eventHash(event) {
  return `sha256:${crypto.createHash("sha256").update(canonicalize(event), "utf8").digest("hex")}`;
}

export function readInput(path) {
  return fs.readFileSync(!path || path === "-" ? 0 : path, "utf8");
}

function main(argv) {
  const args = [...argv];
  const option = (name) => {
    const at = args.indexOf(name);
    if (at < 0) return undefined;
    const [, value] = args.splice(at, 2);
    return value;
  };
  if (args[0] === "--canonical") {
    process.stdout.write(canonicalize(JSON.parse(readInput(args[1]))));
    return 0;
  }
  const keyId = option("--keyid");
  const [seedHex, path] = args;
  if (!seedHex) {
    process.stderr.write("usage: sign-event.mjs <seed-hex> [event.json|-] [--keyid ID]\n");
    return 2;
  }
  const signed = signEvent(JSON.parse(readInput(path)), seedHex, keyId);
  process.stdout.write(canonicalize(signed) + "\n");
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`sign-event: ${error.message}\n`);
    process.exitCode = 1;
  }
}
