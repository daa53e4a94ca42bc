// Where the relay is and which host key it must show: `pulumi stack output --json` when the
// Pulumi CLI is installed, else a JSON file `{host, port, hostKey}` (`--relay FILE`; the demo
// writes one).
import { readFile } from "node:fs/promises";
import { ExitError, EXIT } from "./errors.ts";
import { runLocal } from "./proc.ts";
import { InputError, parsePublicKey, show, validateHost, validatePort, type PublicKey } from "./validate.ts";

export interface RelayFacts {
  host: string;
  port: number;
  hostKey: PublicKey;
  /** where the facts came from, for messages */
  source: string;
}

/** Pure: checks the three facts, whichever names they came under. */
export function parseRelayFacts(raw: unknown, source: string): RelayFacts {
  if (typeof raw !== "object" || raw === null) throw new InputError(`${source}: expected a JSON object {host, port, hostKey}`);
  const o = raw as Record<string, unknown>;
  const host = o.host ?? o.relayHost;
  const port = o.port ?? o.relayPort;
  const hostKey = o.hostKey ?? o.relayHostKey;
  if (typeof host !== "string") throw new InputError(`${source}: "host" (or relayHost) must be a string (got ${show(host)})`);
  if (typeof port !== "number" && typeof port !== "string") throw new InputError(`${source}: "port" (or relayPort) must be a number (got ${show(port)})`);
  if (typeof hostKey !== "string") throw new InputError(`${source}: "hostKey" (or relayHostKey) must be a public key line (got ${show(hostKey)})`);
  return {
    host: validateHost(host, `${source}: relay host`),
    port: validatePort(typeof port === "number" ? port : port.trim(), `${source}: relay port`),
    hostKey: parsePublicKey(hostKey, `${source}: relay host key`),
    source,
  };
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
    out = await runLocal("pulumi", ["stack", "output", "--json"], { cwd, timeoutMs: 60_000 });
  } catch {
    throw new ExitError(EXIT.usage, "no relay facts: pass --relay FILE (JSON {host, port, hostKey}) or install the Pulumi CLI and run from the stack's directory");
  }
  if (out.code !== 0) throw new ExitError(EXIT.usage, `pulumi stack output failed: ${out.stderr.trim().split("\n").pop() ?? ""} (or pass --relay FILE)`);
  return parseRelayFacts(JSON.parse(out.stdout) as unknown, "pulumi stack output");
}
