// Measurements for the relay, printed, never asserted:
//   1. memory (PSS) per idle tunnel with N tunnels (default 100);
//   2. seconds from a device's connection silently dying (its packets dropped) to its port
//      being free on the relay.
// Run: npx tsx test/relay/measure.ts [N]   (needs root on the host to read /proc/PID/smaps_rollup)
import { readFile } from "node:fs/promises";
import { docker, exec, Scope, waitFor } from "../bed/index.ts";
import { ensureDocker } from "../bed/index.ts";
import { sshArgv, startRelay } from "./fixture.ts";

async function pssKiB(container: string): Promise<{ total: number; processes: number }> {
  const pids = (await docker(["top", container, "-eo", "pid"])).stdout.split("\n").slice(1).map((l) => l.trim()).filter(Boolean);
  let total = 0;
  for (const pid of pids) {
    const text = await readFile(`/proc/${pid}/smaps_rollup`, "utf8").catch(() => "");
    total += Number(/^Pss:\s+(\d+) kB/m.exec(text)?.[1] ?? 0);
  }
  return { total, processes: pids.length };
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 100);
  await ensureDocker();
  const scope = new Scope("measure");
  try {
    const r = await startRelay(scope);
    const names = Array.from({ length: n }, (_, i) => `m${i}`);
    // Keys in one go, then enrollments in batches (serialized by the relay's lock anyway).
    await exec(r.client, ["sh", "-c", names.map((x) => `ssh-keygen -q -t ed25519 -N '' -f /k/${x}`).join(" && ")]);
    const ports: number[] = [];
    for (let i = 0; i < n; i += 10) {
      const batch = names.slice(i, i + 10);
      const out = await Promise.all(batch.map(async (x) => r.adminJson<{ port: number }>(["add-device", x], (await exec(r.client, ["cat", `/k/${x}.pub`])).stdout)));
      ports.push(...out.map((o) => o.port));
    }
    await new Promise((res) => setTimeout(res, 2000));
    const idle = await pssKiB(r.container);
    for (let i = 0; i < n; i++) {
      await docker(["exec", "-d", r.client, ...sshArgv(r.container, names[i]!, "tunnel", ["-N", "-o", "ExitOnForwardFailure=yes", "-R", `127.0.0.1:${ports[i]}:127.0.0.1:22`])]);
    }
    await waitFor(`${n} tunnels`, async () => {
      const tcp = (await exec(r.container, ["cat", "/proc/net/tcp"])).stdout;
      return (tcp.match(/ 0100007F:[0-9A-F]{4} 00000000:0000 0A /g) ?? []).length >= n;
    }, { tries: 120, intervalMs: 500 });
    await new Promise((res) => setTimeout(res, 3000));
    const busy = await pssKiB(r.container);
    console.log(`relay PSS: ${idle.total} KiB with 0 tunnels (${idle.processes} processes), ${busy.total} KiB with ${n} tunnels (${busy.processes} processes)`);
    console.log(`=> ${((busy.total - idle.total) / n).toFixed(0)} KiB PSS per idle tunnel`);

    // Silent death: a second client container holds one tunnel, then drops all its packets.
    const victim = await scope.run(["--name", scope.name("victim"), "--network", r.network, "--cap-add", "NET_ADMIN", (await docker(["inspect", "--format", "{{.Config.Image}}", r.client])).stdout.trim()]);
    await exec(victim, ["sh", "-c", `cat > /k/known_hosts`], { input: (await exec(r.client, ["cat", "/k/known_hosts"])).stdout });
    await exec(victim, ["sh", "-c", "cat > /k/v && chmod 600 /k/v"], { input: (await exec(r.client, ["cat", `/k/${names[0]}`])).stdout });
    await exec(r.client, ["pkill", "-f", "--", `-R 127.0.0.1:${ports[0]}:`], { check: false });
    await waitFor("port free", async () => !(await exec(r.container, ["cat", "/proc/net/tcp"])).stdout.includes(`0100007F:${ports[0]!.toString(16).toUpperCase()} 00000000:0000 0A`));
    // ServerAlive off on the device side: only the relay's ClientAlive notices the death.
    await docker(["exec", "-d", victim, ...sshArgv(r.container, "v", "tunnel", ["-N", "-o", "ServerAliveInterval=0", "-R", `127.0.0.1:${ports[0]}:127.0.0.1:22`])]);
    const hex = `0100007F:${ports[0]!.toString(16).toUpperCase()} 00000000:0000 0A`;
    await waitFor("victim tunnel", async () => (await exec(r.container, ["cat", "/proc/net/tcp"])).stdout.includes(hex));
    await new Promise((res) => setTimeout(res, 1500));
    await exec(victim, ["sh", "-c", "iptables -A INPUT -j DROP && iptables -A OUTPUT -j DROP"]);
    const died = Date.now();
    await waitFor("the dead tunnel's port to be freed", async () => !(await exec(r.container, ["cat", "/proc/net/tcp"])).stdout.includes(hex), { tries: 600, intervalMs: 100 });
    console.log(`=> port free ${((Date.now() - died) / 1000).toFixed(1)} s after the device's connection silently died (ClientAliveInterval 5, CountMax 2)`);
  } finally {
    await scope.dispose();
  }
}

await main();
