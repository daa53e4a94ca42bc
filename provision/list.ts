// `list`: the relay's registry (devices and clients, online, last seen).
import { ExitError, EXIT } from "./errors.ts";
import { laptopPaths } from "./laptop.ts";
import { RelayAdmin, type RelayEntry } from "./relay.ts";
import { loadRelayFacts } from "./relayFacts.ts";
import path from "node:path";

export interface ListOptions {
  relayFile?: string;
  identity?: string;
  agent?: string;
  home?: string;
  sshDir?: string;
  cwd?: string;
}

export async function listRelay(o: ListOptions): Promise<RelayEntry[]> {
  const facts = await loadRelayFacts(o.relayFile, o.cwd);
  const paths = laptopPaths({ home: o.home, sshDir: o.sshDir });
  const identityFile = path.resolve(o.identity ?? path.join(paths.sshDir, "id_ed25519"));
  const relay = await RelayAdmin.connect(facts, { identityFile, agent: o.agent ?? process.env.SSH_AUTH_SOCK });
  try {
    const entries = await relay.list();
    if (!Array.isArray(entries)) throw new ExitError(EXIT.relay, "the relay's list is not an array");
    return entries;
  } finally {
    relay.dispose();
  }
}

/** Pure: the human table. */
export function renderList(entries: readonly RelayEntry[]): string {
  const rows = [["NAME", "KIND", "PORT", "ONLINE", "LAST SEEN", "FINGERPRINT"]];
  for (const e of entries) {
    rows.push([
      e.name,
      e.kind,
      e.port === undefined || e.port === null ? "-" : String(e.port),
      e.kind === "device" ? (e.online ? "yes" : "no") : "-",
      e.lastSeen ?? "-",
      e.fingerprint,
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n")}\n`;
}
