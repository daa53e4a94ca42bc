import { generateKeyPairSync } from "node:crypto";
import sshpk from "sshpk";

/** A fresh ed25519 public key line, as an operator's .pub holds it. */
export function publicKeyLine(comment = "op@laptop"): string {
  const { privateKey } = generateKeyPairSync("ed25519");
  const pub = sshpk.parsePrivateKey(privateKey.export({ type: "pkcs8", format: "pem" }).toString(), "pem").toPublic();
  pub.comment = comment;
  return pub.toString("ssh");
}
