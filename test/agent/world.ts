// The agent tests' world: the fixture library's tunnel world (NAT topology, relay, a raspi
// with the real agent beside it, an office laptop), plus the faults these tests inject at the
// home router: a dead session, a silently cut uplink.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RELAY_CONTAINER_PORT } from "../../lib/contract/relay.ts";
import { startTunnelWorld, type Scope, type TunnelWorld } from "../bed/index.ts";

export interface World extends TunnelWorld {
  /**
   * Makes the agent's current relay session a dead one for good (its packets dropped at the
   * home router from now on, as when a NAT mapping is lost or the device loses power) and
   * returns its local port. New sessions pass.
   */
  blackholeSession(): Promise<number>;
  /** Silently cuts (drops, no FIN/RST) or restores the raspi's uplink at the home router. */
  cutUplink(cut: boolean): Promise<void>;
}

/** Builds the world in `scope` (a test's `useScope(t)`). */
export async function startWorld(scope: Scope): Promise<World> {
  const w = await startTunnelWorld(scope, { dir: mkdtempSync(join(tmpdir(), "rtunnel-agent-")) });
  const router = w.net.home.router;
  return {
    ...w,
    async cutUplink(cut) {
      await scope.exec(router, ["iptables", cut ? "-I" : "-D", "FORWARD", "-s", w.raspiIp, "-j", "DROP"]);
      await scope.exec(router, ["iptables", cut ? "-I" : "-D", "FORWARD", "-d", w.raspiIp, "-j", "DROP"]);
    },
    async blackholeSession() {
      const ss = await scope.exec(w.raspi, ["ss", "-tnH", "state", "established", `dst ${w.relay.ip}`, "dport", `= :${RELAY_CONTAINER_PORT}`]);
      // Columns with a state filter: Recv-Q Send-Q Local:Port Peer:Port
      const ports = ss.stdout.split("\n").filter(Boolean).map((l) => Number(l.trim().split(/\s+/)[2]?.split(":").pop()));
      if (ports.length !== 1 || !(ports[0]! > 0)) throw new Error(`expected one session to the relay, ss says:\n${ss.stdout}`);
      const port = String(ports[0]);
      await scope.exec(router, ["iptables", "-I", "FORWARD", "-s", w.raspiIp, "-p", "tcp", "--sport", port, "-j", "DROP"]);
      await scope.exec(router, ["iptables", "-I", "FORWARD", "-d", w.raspiIp, "-p", "tcp", "--dport", port, "-j", "DROP"]);
      return ports[0]!;
    },
  };
}
