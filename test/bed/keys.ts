import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { run } from "./docker.ts";

/** An ed25519 key pair at FILE (kept when it is already there); returns the public key line. */
export async function keygen(file: string, comment: string): Promise<string> {
  if (!existsSync(file)) await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file]);
  return (await readFile(`${file}.pub`, "utf8")).trim();
}
