// Where the relay is and which host key it must show: `pulumi stack output --json` when the
// Pulumi CLI is installed, else a JSON file `{host, port, hostKey[, deviceSide]}` (`--relay
// FILE`; the demo writes one).
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { repoRoot } from "../../lib/paths.ts";
import { ExitError, EXIT } from "../errors.ts";
import type { RelayEndpoint } from "../../lib/contract/relay.ts";
import { run } from "../../lib/proc.ts";
import { InputError, show } from "../../lib/input.ts";
import { parsePublicKey, type PublicKey } from "../../lib/keys.ts";
import { validateHost, validatePort } from "../validate.ts";

export interface RelayFacts {
  /** where laptops (and this CLI) reach the relay */
  host: string;
  port: number;
  hostKey: PublicKey;
  /**
   * where devices reach it, when that differs (the demo: the laptop side goes through a port
   * published on 127.0.0.1, a device by the relay's address on the demo network); else host/port
   */
  deviceSide: RelayEndpoint;
  /** where the facts came from, for messages */
  source: string;
}

const endpoint = (raw: unknown, source: string, what: string): RelayEndpoint => {
  const o = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  if (typeof o.host !== "string") throw new InputError(`${source}: ${what} "host" must be a string (got ${show(o.host)})`);
  if (typeof o.port !== "number" && typeof o.port !== "string") throw new InputError(`${source}: ${what} "port" must be a number (got ${show(o.port)})`);
  return {
    host: validateHost(o.host, `${source}: ${what} host`),
    port: validatePort(typeof o.port === "number" ? o.port : o.port.trim(), `${source}: ${what} port`),
  };
};

/**
 * Pure: checks the facts, whichever names they came under: `{host, port, hostKey}` (or the
 * stack outputs relayHost, relayPort, relayHostKey), and optionally `deviceSide: {host, port}`.
 */
export function parseRelayFacts(raw: unknown, source: string): RelayFacts {
  if (typeof raw !== "object" || raw === null) throw new InputError(`${source}: expected a JSON object {host, port, hostKey}`);
  const o = raw as Record<string, unknown>;
  const hostKey = o.hostKey ?? o.relayHostKey;
  const laptopSide = endpoint({ host: o.host ?? o.relayHost, port: o.port ?? o.relayPort }, source, "relay");
  if (typeof hostKey !== "string") throw new InputError(`${source}: "hostKey" (or relayHostKey) must be a public key line (got ${show(hostKey)})`);
  return {
    ...laptopSide,
    hostKey: parsePublicKey(hostKey, `${source}: relay host key`),
    deviceSide: o.deviceSide === undefined ? laptopSide : endpoint(o.deviceSide, source, "deviceSide"),
    source,
  };
}

/** What a relay facts file (`--relay FILE`) holds, before it is checked. */
export interface RelayFactsFile {
  host: string;
  port: number;
  hostKey: string;
  deviceSide?: RelayEndpoint;
}

/** The JSON of a relay facts file: what parseRelayFacts reads back. */
export function renderRelayFacts(f: RelayFactsFile): string {
  const side = f.deviceSide;
  const same = !side || (side.host === f.host && side.port === f.port);
  return `${JSON.stringify({ host: f.host, port: f.port, hostKey: f.hostKey, ...(same ? {} : { deviceSide: side }) }, null, 2)}\n`;
}

/** The demo's default instance keeps its facts here (provision/demo.ts). */
export const DEMO_DIR = path.join(repoRoot, ".rtunnel-demo");

/**
 * When `npm run demo` is up, the way to point a command at it. Only a hint: the demo's facts
 * are never used unasked, so a real stack's always win.
 */
function demoHint(): string {
  if (!existsSync(path.join(DEMO_DIR, "relay.json"))) return "";
  const rel = path.relative(process.cwd(), DEMO_DIR) || ".";
  return `; for the running demo: --relay ${rel}/relay.json --ssh-dir ${rel}/ssh`;
}

export async function loadRelayFacts(relayFile: string | undefined, cwd = process.cwd()): Promise<RelayFacts> {
  if (relayFile) {
    let text: string;
    try {
      text = await readFile(relayFile, "utf8");
    } catch (e) {
      throw new ExitError(EXIT.usage, `can't read --relay ${relayFile}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new ExitError(EXIT.usage, `--relay ${relayFile} is not JSON: expected {"host", "port", "hostKey"}`);
    }
    return parseRelayFacts(json, relayFile);
  }
  let out;
  try {
    out = await run("pulumi", ["stack", "output", "--json"], { cwd, timeoutMs: 60_000, check: false });
  } catch {
    throw new ExitError(EXIT.usage, `no relay facts: pass --relay FILE (JSON {host, port, hostKey}) or install the Pulumi CLI and run from the stack's directory${demoHint()}`);
  }
  if (out.code !== 0) throw new ExitError(EXIT.usage, `pulumi stack output failed: ${out.stderr.trim().split("\n").pop() ?? ""} (or pass --relay FILE)`);
  return parseRelayFacts(JSON.parse(out.stdout) as unknown, "pulumi stack output");
}
