// Host key facts the operator pins on laptops and devices. Pure: no Pulumi, no I/O.

import { createHash } from "node:crypto";

/** `type base64` of an OpenSSH public key line (comment and trailing newline dropped). */
export function publicKeyLine(openssh: string): string {
  const [type, body] = openssh.trim().split(/\s+/);
  if (!type || !body || !/^[A-Za-z0-9+/]+={0,3}$/.test(body)) {
    throw new TypeError(`not an OpenSSH public key line: ${JSON.stringify(openssh.slice(0, 40))}`);
  }
  return `${type} ${body}`;
}

/** The fingerprint as `ssh-keygen -lf` prints it: `SHA256:` + unpadded base64 of the blob's SHA-256. */
export function openSshFingerprint(openssh: string): string {
  const body = publicKeyLine(openssh).split(" ")[1]!;
  const digest = createHash("sha256").update(Buffer.from(body, "base64")).digest("base64");
  return `SHA256:${digest.replace(/=+$/, "")}`;
}
