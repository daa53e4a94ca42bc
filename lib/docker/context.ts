// A Docker build context as one deterministic tar (lib/tar.ts), for `docker build -` here or on
// a device over SSH, with the base image optionally replaced. The Dockerfiles say
// `FROM debian:trixie-slim`, what a user builds with Docker Hub; a user behind a registry
// mirror, or the test bed with its per-platform bases, names another base and only the
// context's copy of the Dockerfile changes. The context's sha256 names what is built: the
// agent image carries it as a label, so a device can tell an unchanged image without
// comparing ids (a device-built image's id never equals a laptop-built one's).
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { tarArchive, type TarFile } from "../tar.ts";
import { sha256 } from "./archive.ts";

/** The base every project Dockerfile names. */
export const DOCKERFILE_BASE = "debian:trixie-slim";
/** The label that carries the build context's hash. */
export const CONTEXT_LABEL = "rtunnel.context";

const FROM_LINE = /^([ \t]*FROM[ \t]+)(?:--platform=\S+[ \t]+)?debian:trixie-slim([ \t]+AS[ \t]+\S+)?[ \t]*$/gim;

/** The Dockerfile with every `FROM debian:trixie-slim` naming `base` instead. */
export function rebase(dockerfile: string, base: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/.test(base)) throw new RangeError(`a base image must be an image reference like registry.example.com/library/debian:trixie-slim (got ${JSON.stringify(base)})`);
  if (!dockerfile.match(FROM_LINE)) throw new Error(`the Dockerfile has no "FROM ${DOCKERFILE_BASE}" line to replace`);
  return dockerfile.replace(FROM_LINE, (_m, from: string, as?: string) => `${from}${base}${as ?? ""}`);
}

export interface BuildContext {
  /** the tar to send to `docker build -` */
  tar: Buffer;
  /** sha256:HEX of that tar */
  hash: string;
}

/** The build context of `dir` (its files, not its README), the base replaced when `base` is given. */
export async function buildContext(dir: string, base?: string): Promise<BuildContext> {
  const files: TarFile[] = [];
  for (const name of (await readdir(dir)).sort()) {
    if (/\.md$/i.test(name)) continue; // documentation is not built
    const file = path.join(dir, name);
    const s = await stat(file);
    if (!s.isFile()) continue;
    let data: Buffer | string = await readFile(file);
    if (name === "Dockerfile" && base) data = rebase(data.toString("utf8"), base);
    files.push({ name, data, mode: s.mode & 0o111 ? 0o755 : 0o644 });
  }
  const tar = tarArchive(files);
  return { tar, hash: `sha256:${sha256(tar)}` };
}
