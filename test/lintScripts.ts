// shellcheck on every shell script the repository tracks, and pyflakes on every Python one,
// found by name or shebang, so a new entrypoint can't slip past the lint by lacking a suffix.
import { readFileSync } from "node:fs";
import path from "node:path";
import { run } from "../lib/proc.ts";
import { ensureCommand } from "../lib/docker/engine.ts";
import { repoRoot } from "../lib/paths.ts";

const SHEBANG = /^#!\s*(\/usr\/bin\/env\s+)?(\/bin\/|\/usr\/bin\/)?(ba|da)?sh\b/;

const PYTHON_SHEBANG = /^#!\s*(\/usr\/bin\/env\s+)?(\/usr\/bin\/)?python3?\b/;

export function isShellScript(file: string, firstLine: string): boolean {
  return file.endsWith(".sh") || SHEBANG.test(firstLine);
}

export function isPythonScript(file: string, firstLine: string): boolean {
  return file.endsWith(".py") || PYTHON_SHEBANG.test(firstLine);
}

async function main(): Promise<void> {
  const tracked = (await run("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: repoRoot }))
    .stdout.split("\0")
    .filter(Boolean);
  const firstLine = (f: string) => {
    try {
      return readFileSync(path.join(repoRoot, f), "utf8").split("\n", 1)[0] ?? "";
    } catch {
      return undefined; // deleted but still in the index, or a directory
    }
  };
  const scripts = tracked.filter((f) => firstLine(f) !== undefined && isShellScript(f, firstLine(f)!));
  const python = tracked.filter((f) => firstLine(f) !== undefined && isPythonScript(f, firstLine(f)!));
  await ensureCommand("shellcheck", "shellcheck");
  await ensureCommand("pyflakes3", "pyflakes3");
  const sc = await run("shellcheck", ["--external-sources", ...scripts], { check: false, cwd: repoRoot });
  process.stdout.write(sc.stdout + sc.stderr);
  console.error(`shellcheck: ${scripts.length} scripts, ${sc.code === 0 ? "clean" : "findings above"}`);
  const py = await run("pyflakes3", python, { check: false, cwd: repoRoot });
  process.stdout.write(py.stdout + py.stderr);
  console.error(`pyflakes3: ${python.length} Python scripts, ${py.code === 0 ? "clean" : "findings above"}`);
  process.exitCode = sc.code || py.code;
}

await main();
