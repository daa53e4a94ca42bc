// A cross-process lock (ava runs each test file in its own process): building the base image
// or a project image twice at once would only waste minutes, and two `docker import`s of the
// same tag race. mkdir is atomic on every filesystem we care about.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { cacheDir } from "../paths.ts";
import { alive } from "../proc.ts";

export async function withLock<T>(name: string, fn: () => Promise<T>, timeoutMs = 20 * 60_000): Promise<T> {
  const dir = path.join(cacheDir(), "locks", name);
  await mkdir(path.dirname(dir), { recursive: true });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await mkdir(dir);
      await writeFile(path.join(dir, "pid"), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const owner = Number(await readFile(path.join(dir, "pid"), "utf8").catch(() => "0"));
      if (owner > 0 && !alive(owner)) {
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`lock ${dir} still held by pid ${owner} after ${timeoutMs} ms`, { cause: e });
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
