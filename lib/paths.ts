import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root, whatever the working directory. */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** Where slow-to-make artefacts (the base image tarball) are kept between runs. */
export function cacheDir(): string {
  return process.env.RTUNNEL_CACHE_DIR ?? path.join(os.homedir(), ".cache", "rtunnel");
}
