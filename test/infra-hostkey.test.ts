// The host key fingerprint is computed like `ssh-keygen -lf`, checked against the real tool.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { openSshFingerprint, publicKeyLine } from "../infra/hostKey.ts";

function keygen(type: string): { pub: string; fingerprint: string } {
  const dir = mkdtempSync(join(tmpdir(), "rtunnel-fp-"));
  const file = join(dir, "key");
  execFileSync("ssh-keygen", ["-q", "-t", type, "-N", "", "-C", "someone@somewhere", "-f", file]);
  const fingerprint = execFileSync("ssh-keygen", ["-lf", `${file}.pub`], { encoding: "utf8" }).split(" ")[1]!;
  return { pub: readFileSync(`${file}.pub`, "utf8"), fingerprint };
}

for (const type of ["ed25519", "ecdsa", "rsa"]) {
  test(`the fingerprint of a real ${type} key equals ssh-keygen -lf`, (t) => {
    const k = keygen(type);
    t.regex(k.fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
    t.is(openSshFingerprint(k.pub), k.fingerprint);
    t.is(openSshFingerprint(publicKeyLine(k.pub)), k.fingerprint, "the comment does not matter");
  });
}

test("publicKeyLine drops the comment and newline; garbage is a TypeError", (t) => {
  const { pub } = keygen("ed25519");
  const [type, body] = pub.split(" ");
  t.is(publicKeyLine(`${type} ${body}  me@host\n`), `${type} ${body}`);
  for (const bad of ["", "ssh-ed25519", "ssh-ed25519 not*base64", "-----BEGIN OPENSSH PRIVATE KEY-----", `ssh-rsa ${body}`, `${type} ${body!.slice(0, 12)}`]) {
    t.throws(() => openSshFingerprint(bad), { instanceOf: TypeError }, bad);
  }
});
