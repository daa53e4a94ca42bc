// shellcheck on every shell script the repository tracks, found by name or shebang, so a
// new entrypoint can't slip past the lint by lacking a `.sh` suffix.
import { readFileSync } from "node:fs";
import path from "node:path";
import { run } from "./bed/docker.ts";
import { ensureCommand } from "./bed/engine.ts";
import { repoRoot } from "./bed/paths.ts";

const SHEBANG = /^#!\s*(\/usr\/bin\/env\s+)?(\/bin\/|\/usr\/bin\/)?(ba|da)?sh\b/;

export function isShellScript(file: string, firstLine: string): boolean {
  return file.endsWith(".sh") || SHEBANG.test(firstLine);
}

async function main(): Promise<void> {
  const tracked = (await run("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: repoRoot }))
    .stdout.split("\0")
    .filter(Boolean);
  const scripts = tracked.filter((f) => {
    try {
      return isShellScript(f, readFileSync(path.join(repoRoot, f), "utf8").split("\n", 1)[0] ?? "");
    } catch {
      return false; // deleted but still in the index, or a directory
    }
  });
  await ensureCommand("shellcheck", "shellcheck");
  const result = await run("shellcheck", ["--external-sources", ...scripts], { check: false, cwd: repoRoot });
  process.stdout.write(result.stdout + result.stderr);
  console.error(`shellcheck: ${scripts.length} scripts, ${result.code === 0 ? "clean" : "findings above"}`);
  process.exitCode = result.code;
}

await main();
