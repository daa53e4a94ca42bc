// A root filesystem tree turned into an importable tarball, and the check that a tarball or
// an image has the root directory every container's `/` is made from. A debootstrap target
// made with mkdtemp is mode 0700; tarred as it is, its `./` entry becomes `/` in every
// container of an engine that honours it (vfs does, overlay2 hides it), and then no
// non-root process can start there. Small and Docker-free, so a unit test can run it.
import { createReadStream } from "node:fs";
import { chmod, open } from "node:fs/promises";
import { createGunzip } from "node:zlib";
import { run } from "../proc.ts";

/** The mode a root directory must have: what debian:trixie-slim on Docker Hub has. */
export const ROOT_MODE = 0o755;

/** `DIR` (made 0755 first) as a gzip tarball at `target`: `./` is its first entry. */
export async function packRootfs(dir: string, target: string): Promise<void> {
  await chmod(dir, ROOT_MODE);
  await run("sh", ["-c", 'tar --numeric-owner -C "$1" -c . | gzip -1 > "$2"', "sh", dir, target]);
}

export interface TarEntry {
  name: string;
  /** permission bits (and setuid/setgid/sticky) */
  mode: number;
  /** `5` directory, `0` file, ... (ustar typeflag) */
  type: string;
}

/** The first entry of a tar file (gzip or plain), read from its 512-byte ustar header. */
export async function firstTarEntry(file: string): Promise<TarEntry | undefined> {
  const fh = await open(file, "r");
  const magic = Buffer.alloc(2);
  try {
    await fh.read(magic, 0, 2, 0);
  } finally {
    await fh.close();
  }
  const source = createReadStream(file);
  const stream = magic[0] === 0x1f && magic[1] === 0x8b ? source.pipe(createGunzip()) : source;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= 512) break;
    }
  } finally {
    source.destroy();
  }
  const head = Buffer.concat(chunks).subarray(0, 512);
  if (head.length < 512 || head.every((b) => b === 0)) return undefined;
  const field = (from: number, len: number) => head.subarray(from, from + len).toString("latin1").replace(/\0.*$/s, "").trim();
  return { name: field(0, 100), mode: parseInt(field(100, 8), 8), type: field(156, 1) || "0" };
}

/**
 * Why a root filesystem tarball would make a bad base, or undefined when it is fine. A
 * tarball without a root entry is fine: the engine makes `/` 0755 then.
 */
export function rootEntryProblem(entry: TarEntry | undefined): string | undefined {
  if (!entry || !["./", ".", "/"].includes(entry.name)) return undefined;
  if (entry.type !== "5") return `its root entry ${JSON.stringify(entry.name)} is not a directory`;
  if ((entry.mode & 0o777) !== ROOT_MODE) return `its root directory is mode ${(entry.mode & 0o7777).toString(8).padStart(4, "0")}, not 0755 (non-root processes could not start in its containers)`;
  return undefined;
}
