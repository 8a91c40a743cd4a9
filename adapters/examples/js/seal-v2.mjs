#!/usr/bin/env node
// Sealing v2 of personal-data fields (docs/signing-recipe.md §8), with Node's built-in
// `crypto` only (Node.js >= 18): one X25519 agreement per event and recipient, a key per field
// from HKDF-SHA256 bound to the event id, field path and recipient key id, one
// ChaCha20-Poly1305 box per field.
//
//   node seal-v2.mjs seal <event-id> <field-path> <key-id> <recipient-ed25519-public-base64>
//   node seal-v2.mjs open <event-id> <field-path> <key-id> <own-ed25519-seed-hex>
//
// `seal` reads a plain JSON value on stdin and prints its sealed value
// {"v":2,"epk":...,"sealed":{<key-id>: box}} (a fresh ephemeral key: in an event, make one
// sealing with newSealing() and seal every field with it, so the event has one epk); `open`
// reads a sealed value and prints the plain JSON value. Field paths are written as the
// receiver names them: "data.suspects.0.name".

import crypto from "node:crypto";
import fs from "node:fs";
import { pathToFileURL } from "node:url";

const P = (1n << 255n) - 19n;
const LABEL = Buffer.from("xregion-seal-v2");
const ZERO_NONCE = Buffer.alloc(12);
const X25519_SPKI = Buffer.from("302a300506032b656e032100", "hex");
const X25519_PKCS8 = Buffer.from("302e020100300506032b656e04220420", "hex");

function modPow(base, exp) {
  let result = 1n;
  base %= P;
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % P;
    base = (base * base) % P;
    exp >>= 1n;
  }
  return result;
}

function toLittleEndian(n) {
  const out = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

// libsodium's crypto_sign_ed25519_pk_to_curve25519: u = (1 + y) / (1 - y) mod p.
export function x25519PublicOfEd25519(ed25519Public) {
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(i === 31 ? ed25519Public[i] & 0x7f : ed25519Public[i]);
  const u = ((1n + y) * modPow((1n - y + P) % P, P - 2n)) % P;
  return toLittleEndian(u);
}

// libsodium's crypto_sign_ed25519_sk_to_curve25519: the first half of SHA-512(seed).
export function x25519SecretOfEd25519Seed(seed) {
  return crypto.createHash("sha512").update(seed).digest().subarray(0, 32);
}

function publicKeyObject(raw) {
  return crypto.createPublicKey({ key: Buffer.concat([X25519_SPKI, raw]), format: "der", type: "spki" });
}

function privateKeyObject(raw) {
  return crypto.createPrivateKey({ key: Buffer.concat([X25519_PKCS8, raw]), format: "der", type: "pkcs8" });
}

function x25519(secretRaw, publicRaw) {
  const shared = crypto.diffieHellman({ privateKey: privateKeyObject(secretRaw), publicKey: publicKeyObject(publicRaw) });
  if (shared.every((b) => b === 0)) throw new Error("low-order X25519 key");
  return shared;
}

const hmac = (key, data) => crypto.createHmac("sha256", key).update(data).digest();

export function fieldInfo(eventId, path, keyId) {
  return Buffer.concat([LABEL, Buffer.from([0]), Buffer.from(eventId), Buffer.from([0]), Buffer.from(path),
    Buffer.from([0]), Buffer.from(keyId)]);
}

// The field key: HKDF-Expand(prk, info, 32) = HMAC(prk, info || 0x01).
export function fieldKey(prk, info) {
  return hmac(prk, Buffer.concat([info, Buffer.from([1])]));
}

function canonicalText(value) {
  // The value's JSON text: any JSON encoding opens the same (the receiver parses it). Personal
  // data are strings; JSON.stringify writes them as RFC 8785 does.
  return Buffer.from(JSON.stringify(value), "utf8");
}

// One event's sealing: an ephemeral key and, per recipient, HKDF-Extract(epk || R, X25519(e, R)).
export function newSealing(eventId, recipients /* [{keyId, ed25519Public: Buffer}] */) {
  const secret = crypto.randomBytes(32);
  const epk = crypto.createPublicKey(privateKeyObject(secret)).export({ format: "der", type: "spki" }).subarray(-32);
  const keys = recipients.map(({ keyId, ed25519Public }) => {
    const r = x25519PublicOfEd25519(ed25519Public);
    return { keyId, prk: hmac(Buffer.concat([epk, r]), x25519(secret, r)) };
  });
  return {
    seal(value, path) {
      const sealed = {};
      for (const { keyId, prk } of keys) {
        const info = fieldInfo(eventId, path, keyId);
        const cipher = crypto.createCipheriv("chacha20-poly1305", fieldKey(prk, info), ZERO_NONCE, { authTagLength: 16 });
        const text = canonicalText(value);
        cipher.setAAD(info, { plaintextLength: text.length });
        sealed[keyId] = Buffer.concat([cipher.update(text), cipher.final(), cipher.getAuthTag()]).toString("base64");
      }
      return { v: 2, epk: epk.toString("base64"), sealed };
    },
  };
}

// The plain value of a v2 sealed value, with your Ed25519 seed and key id.
export function openValue(value, eventId, path, keyId, seed) {
  if (value.v !== 2) throw new Error("not a v2 sealed value");
  const box = value.sealed?.[keyId];
  if (typeof box !== "string") throw new Error(`not sealed to ${keyId}`);
  const secret = x25519SecretOfEd25519Seed(seed);
  const own = crypto.createPublicKey(privateKeyObject(secret)).export({ format: "der", type: "spki" }).subarray(-32);
  const epk = Buffer.from(value.epk, "base64");
  const prk = hmac(Buffer.concat([epk, own]), x25519(secret, epk));
  const info = fieldInfo(eventId, path, keyId);
  const bytes = Buffer.from(box, "base64");
  const decipher = crypto.createDecipheriv("chacha20-poly1305", fieldKey(prk, info), ZERO_NONCE, { authTagLength: 16 });
  decipher.setAAD(info, { plaintextLength: bytes.length - 16 });
  decipher.setAuthTag(bytes.subarray(bytes.length - 16));
  const text = Buffer.concat([decipher.update(bytes.subarray(0, bytes.length - 16)), decipher.final()]);
  return JSON.parse(text.toString("utf8"));
}

function main([command, eventId, path, keyId, key]) {
  const input = JSON.parse(fs.readFileSync(0, "utf8"));
  if (command === "seal" && key) {
    const sealing = newSealing(eventId, [{ keyId, ed25519Public: Buffer.from(key, "base64") }]);
    process.stdout.write(JSON.stringify(sealing.seal(input, path)) + "\n");
    return 0;
  }
  if (command === "open" && key) {
    process.stdout.write(JSON.stringify(openValue(input, eventId, path, keyId, Buffer.from(key, "hex"))) + "\n");
    return 0;
  }
  process.stderr.write("usage: seal-v2.mjs seal|open <event-id> <field-path> <key-id> <key>\n");
  return 2;
}

if (process.argv[1] && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`seal-v2: ${error.message}\n`);
    process.exitCode = 1;
  }
}
