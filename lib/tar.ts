// A small ustar writer: the agent's build context (sent to `docker build -` on the laptop or
// on the device) and the test bed's tiny image archives (`docker load`). Deterministic: the
// same files give the same bytes (fixed owner, mtime and order), so a hash of the tar names
// its content. Pure, no I/O, no dependency; portable to macOS and Windows laptops, whose tar
// programs lack GNU tar's --sort/--mtime/--owner.

export interface TarFile {
  /** a relative path with forward slashes, at most 100 bytes */
  name: string;
  data: Buffer | string;
  /** permission bits (default 0644) */
  mode?: number;
}

const BLOCK = 512;

function header(name: string, size: number, mode: number, mtime: number): Buffer {
  const h = Buffer.alloc(BLOCK, 0);
  const nameBytes = Buffer.from(name, "utf8");
  if (nameBytes.length > 100 || !name || name.startsWith("/") || name.split("/").includes("..")) {
    throw new RangeError(`tar: a member name must be relative, without "..", at most 100 bytes (got ${JSON.stringify(name)})`);
  }
  const octal = (value: number, width: number) => `${value.toString(8).padStart(width - 1, "0")}\0`;
  nameBytes.copy(h, 0);
  h.write(octal(mode & 0o7777, 8), 100, "latin1");
  h.write(octal(0, 8), 108, "latin1"); // uid
  h.write(octal(0, 8), 116, "latin1"); // gid
  h.write(octal(size, 12), 124, "latin1");
  h.write(octal(mtime, 12), 136, "latin1");
  h.write("        ", 148, "latin1"); // checksum field counts as spaces while summing
  h.write("0", 156, "latin1"); // regular file
  h.write("ustar\0", 257, "latin1");
  h.write("00", 263, "latin1");
  h.write("root", 265, "latin1");
  h.write("root", 297, "latin1");
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return h;
}

/** The files as one tar archive (sorted by name; owner root, mtime `mtime`, default 0). */
export function tarArchive(files: readonly TarFile[], mtime = 0): Buffer {
  const parts: Buffer[] = [];
  for (const f of [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const data = typeof f.data === "string" ? Buffer.from(f.data, "utf8") : f.data;
    parts.push(header(f.name, data.length, f.mode ?? 0o644, mtime), data);
    const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
    if (pad) parts.push(Buffer.alloc(pad, 0));
  }
  parts.push(Buffer.alloc(2 * BLOCK, 0));
  return Buffer.concat(parts);
}
