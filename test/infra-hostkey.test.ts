// Public keys and their fingerprints (lib/keys.ts, what infra/, provision/ and the fixtures
// all use) are checked against the real ssh-keygen.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { InputError } from "../lib/input.ts";
import { fingerprintOf, keyLine, parsePublicKey, publicKeyFromBlob } from "../lib/keys.ts";

function keygen(type: string, bits?: number): { pub: string; fingerprint: string } {
  const dir = mkdtempSync(join(tmpdir(), "rtunnel-fp-"));
  const file = join(dir, "key");
  execFileSync("ssh-keygen", ["-q", "-t", type, ...(bits ? ["-b", String(bits)] : []), "-N", "", "-C", "someone@somewhere", "-f", file]);
  const fingerprint = execFileSync("ssh-keygen", ["-lf", `${file}.pub`], { encoding: "utf8" }).split(" ")[1]!;
  return { pub: readFileSync(`${file}.pub`, "utf8"), fingerprint };
}

for (const [type, bits] of [["ed25519"], ["ecdsa", 256], ["ecdsa", 384], ["ecdsa", 521], ["rsa", 3072]] as const) {
  test(`the fingerprint of a real ${type}${bits ? `-${bits}` : ""} key equals ssh-keygen -lf; the line reads back the same`, (t) => {
    const k = keygen(type, bits);
    t.regex(k.fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
    const parsed = parsePublicKey(k.pub);
    t.is(parsed.fingerprint, k.fingerprint);
    t.is(parsePublicKey(keyLine(parsed)).fingerprint, k.fingerprint, "the comment does not matter");
    t.is(publicKeyFromBlob(Buffer.from(parsed.base64, "base64")).fingerprint, k.fingerprint);
    t.is(fingerprintOf(Buffer.from(parsed.base64, "base64")), k.fingerprint);
  });
}

test("FIDO keys (sk-*), which sshpk does not know, are checked by their wire format", (t) => {
  // ssh-keygen -t ed25519-sk needs a token; these are public halves made with one.
  const sk = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIFKc6R/rKAlpC+Vp5+iRzjTTBM4rJ3sk8DJf2ym+IL0JAAAABHNzaDo= me";
  t.is(parsePublicKey(sk).type, "sk-ssh-ed25519@openssh.com");
  const blob = Buffer.from(sk.split(" ")[1]!, "base64");
  t.throws(() => publicKeyFromBlob(blob.subarray(0, blob.length - 3)), { instanceOf: InputError });
});

test("a key line with options, a second line, a body of another type or too few RSA bits is refused", (t) => {
  const { pub } = keygen("ed25519");
  const [type, body] = pub.split(" ");
  t.is(keyLine(parsePublicKey(`${type} ${body} me@host\n`)), `${type} ${body}`);
  const rsa2048 = keygen("rsa", 2048).pub;
  for (const bad of ["", "ssh-ed25519", "ssh-ed25519 not*base64", "-----BEGIN OPENSSH PRIVATE KEY-----", `ssh-rsa ${body}`, `${type} ${body!.slice(0, 12)}`, `restrict ${pub}`, `${pub.trim()}\n${pub}`, rsa2048, "ssh-dss AAAAB3NzaC1kc3M="]) {
    t.throws(() => parsePublicKey(bad), { instanceOf: InputError }, bad);
  }
  t.regex(String((() => { try { parsePublicKey(rsa2048); } catch (e) { return (e as Error).message; } })()), /2048-bit RSA key; at least 3072 bits/);
  t.is(parsePublicKey(rsa2048, "a pinned host key", { minRsaBits: 0 }).type, "ssh-rsa", "a host key pin may be smaller");
});
