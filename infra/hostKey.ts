// Host key facts the operator pins on laptops and devices. Pure: no Pulumi, no I/O.

import { createHash } from "node:crypto";

/** `type base64` of an OpenSSH public key line (comment and trailing newline dropped). */
export function publicKeyLine(openssh: string): string {
  const [type, body] = openssh.trim().split(/\s+/);
  const bad = () => new TypeError(`not an OpenSSH public key line: ${JSON.stringify(openssh.slice(0, 40))}`);
  if (!type || !body || !/^[a-z0-9@.-]+$/.test(type) || !/^[A-Za-z0-9+/]+={0,3}$/.test(body)) throw bad();
  // The key blob starts with its own type name (RFC 4253 6.6): a cheap check that the line is whole.
  const blob = Buffer.from(body, "base64");
  if (blob.length < 4 + type.length || blob.readUInt32BE(0) !== type.length || blob.subarray(4, 4 + type.length).toString() !== type) throw bad();
  return `${type} ${body}`;
}

/** The fingerprint as `ssh-keygen -lf` prints it: `SHA256:` + unpadded base64 of the blob's SHA-256. */
export function openSshFingerprint(openssh: string): string {
  const body = publicKeyLine(openssh).split(" ")[1]!;
  const digest = createHash("sha256").update(Buffer.from(body, "base64")).digest("base64");
  return `SHA256:${digest.replace(/=+$/, "")}`;
}
