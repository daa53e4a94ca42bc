// QEMU user emulation for the test bed's ARM devices and base images: the kernel's binfmt_misc
// runs an ARM program through qemu-aarch64/qemu-arm (Debian's qemu-user-static), in
// containers and nested containers too, because the entries carry the F flag (the
// interpreter is opened once, at registration, not looked up in each container's files).
// Setuid programs (sudo, as the kit runs on a device) also need the C flag: the interpreter
// then runs with the program's credentials. Debian registers `PF`; the bed re-registers
// with `POCF`. Every one of these steps changes the whole machine (one kernel, every
// process and container on it), so each is said in one line when it is taken, and taken
// only as root on Debian; anywhere else the line says what to run instead.
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { platformInfo } from "../platform.ts";
import { run } from "../proc.ts";
import { ensureCommand } from "./engine.ts";
import { withLock } from "./lock.ts";

const BINFMT = "/proc/sys/fs/binfmt_misc";

export interface BinfmtEntry {
  enabled: boolean;
  interpreter: string;
  flags: string;
  offset: string;
  magic: string;
  mask: string;
}

/** /proc/sys/fs/binfmt_misc/NAME, parsed. */
export function parseBinfmtEntry(text: string): BinfmtEntry {
  const field = (k: string) => new RegExp(`^${k} (.*)$`, "m").exec(text)?.[1]?.trim() ?? "";
  return {
    enabled: /^enabled$/m.test(text),
    interpreter: field("interpreter"),
    flags: /^flags: ?(.*)$/m.exec(text)?.[1]?.trim() ?? "",
    offset: field("offset") || "0",
    magic: field("magic"),
    mask: field("mask"),
  };
}

/** The line written to binfmt_misc/register to make `name` again with `flags`. */
export function registerLine(name: string, e: BinfmtEntry, flags: string): string {
  const hex = (h: string) => h.replace(/(..)/g, "\\x$1");
  return `:${name}:M:${e.offset}:${hex(e.magic)}:${hex(e.mask)}:${e.interpreter}:${flags}`;
}

const isRoot = () => process.getuid?.() === 0;
const howTo = (entry: string) =>
  `as root: apt-get install qemu-user-static binfmt-support (Debian/Ubuntu), mount -t binfmt_misc binfmt_misc ${BINFMT} if it is not mounted, update-binfmts --enable ${entry}`;

async function readEntry(name: string): Promise<BinfmtEntry | undefined> {
  const text = await readFile(`${BINFMT}/${name}`, "utf8").catch(() => undefined);
  return text === undefined ? undefined : parseBinfmtEntry(text);
}

export interface EmulationOptions {
  /** the C flag too (setuid programs such as sudo under emulation) */
  credentials?: boolean;
  log?: (line: string) => void;
}

/**
 * Makes this machine run `platform`'s programs (nothing for its own platform). Throws one line
 * saying what to run when it may not (not root, not Debian).
 */
export async function ensureEmulation(platform: string, o: EmulationOptions = {}): Promise<void> {
  const p = platformInfo(platform);
  if (!p) throw new Error(`no emulation known for platform ${platform}`);
  const native = (await run("uname", ["-m"])).stdout.trim();
  if (p.uname === native) return;
  const log = o.log ?? (() => {});
  const want = o.credentials ? ["P", "O", "C", "F"] : ["P", "F"];
  const good = (e: BinfmtEntry | undefined) => !!e && e.enabled && want.every((f) => e.flags.includes(f));
  if (good(await readEntry(p.qemu))) return;
  await withLock("binfmt", async () => {
    if (good(await readEntry(p.qemu))) return;
    const mayChange = isRoot() && existsSync("/etc/debian_version");
    if (!mayChange) throw new Error(`this machine cannot run ${platform} programs (binfmt entry ${p.qemu} ${(await readEntry(p.qemu)) ? `lacks flags ${want.join("")}` : "missing"}): ${howTo(p.qemu)}${o.credentials ? `, then re-register it with flags POCF (echo -1 > ${BINFMT}/${p.qemu}, then its line with :POCF into ${BINFMT}/register)` : ""}`);
    if (!existsSync(`${BINFMT}/register`)) {
      log(`mounting binfmt_misc on ${BINFMT} (for the whole machine)`);
      await run("mount", ["-t", "binfmt_misc", "binfmt_misc", BINFMT]);
    }
    if (!(await readEntry(p.qemu))) {
      await ensureCommand("qemu-aarch64-static", "qemu-user-static");
      await ensureCommand("update-binfmts", "binfmt-support");
      log(`registering the binfmt entry ${p.qemu} (update-binfmts --enable ${p.qemu}): this machine now runs ${platform} programs through QEMU, in every container too`);
      await run("update-binfmts", ["--enable", p.qemu], { check: false });
    }
    let e = await readEntry(p.qemu);
    if (!e) throw new Error(`update-binfmts did not register ${p.qemu}: ${howTo(p.qemu)}`);
    if (!e.enabled) {
      log(`enabling the binfmt entry ${p.qemu} (for the whole machine)`);
      await writeFile(`${BINFMT}/${p.qemu}`, "1");
      e = (await readEntry(p.qemu))!;
    }
    if (!good(e)) {
      const flags = [...new Set([...e.flags.split(""), ...want])].filter((f) => "POCF".includes(f)).sort((a, b) => "POCF".indexOf(a) - "POCF".indexOf(b)).join("");
      log(
        `re-registering the binfmt entry ${p.qemu} with flags ${flags} (was ${e.flags || "none"}): this changes the whole machine, every process and container on this kernel, until reboot or update-binfmts;` +
          `${flags.includes("C") ? " C runs setuid programs (sudo) under QEMU with their owner's credentials, which sudo needs on an emulated device" : ""}`,
      );
      await writeFile(`${BINFMT}/${p.qemu}`, "-1");
      await writeFile(`${BINFMT}/register`, registerLine(p.qemu, e, flags));
    }
    if (!good(await readEntry(p.qemu))) throw new Error(`the binfmt entry ${p.qemu} still lacks flags ${want.join("")}: ${howTo(p.qemu)}`);
  });
}
