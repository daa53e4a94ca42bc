// What the containers' processes cost, read from this machine's /proc and cgroup (v1, cgroupfs
// driver, as on these machines; v2 paths are tried too): memory as PSS summed over a container's
// processes, pid counts and limit hits, and CPU seconds per process while something runs.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { inspect } from "../lib/fixtures/index.ts";
import type { ProfileLine } from "./results.ts";

const CLK_TCK = 100;

async function cgroupDir(container: string, controller: string): Promise<string> {
  const id = await inspect(container, "{{.Id}}");
  for (const d of [`/sys/fs/cgroup/${controller}/docker/${id}`, `/sys/fs/cgroup/system.slice/docker-${id}.scope`, `/sys/fs/cgroup/docker/${id}`]) {
    if (existsSync(d)) return d;
  }
  throw new Error(`no cgroup directory for ${container} (${controller})`);
}

export async function containerPids(container: string): Promise<number[]> {
  const text = await readFile(`${await cgroupDir(container, "pids")}/cgroup.procs`, "utf8");
  return text.split("\n").filter(Boolean).map(Number);
}

const readOr = (file: string) => readFile(file, "utf8").catch(() => "");

/** PSS (KiB) summed over the container's processes, and how many processes that is. */
export async function containerPss(container: string): Promise<{ kib: number; processes: number }> {
  let kib = 0;
  const pids = await containerPids(container);
  for (const pid of pids) {
    const m = /^Pss:\s+(\d+) kB/m.exec(await readOr(`/proc/${pid}/smaps_rollup`));
    if (m) kib += Number(m[1]);
  }
  return { kib, processes: pids.length };
}

/** PSS (KiB) per kind of process (name and user, as in the CPU profile) and how many of each. */
export async function containerPssBy(container: string): Promise<Map<string, { kib: number; count: number }>> {
  const out = new Map<string, { kib: number; count: number }>();
  for (const pid of await containerPids(container)) {
    const m = /^Pss:\s+(\d+) kB/m.exec(await readOr(`/proc/${pid}/smaps_rollup`));
    const d = await describe(pid);
    if (!m || !d) continue;
    const e = out.get(d.name) ?? { kib: 0, count: 0 };
    e.kib += Number(m[1]);
    e.count += 1;
    out.set(d.name, e);
  }
  return out;
}

/** The container's pid limit, current count, peak (when the kernel keeps one) and refused forks. */
export async function containerPidStats(container: string): Promise<{ max: string; current: number; peak?: number; refused: number }> {
  const dir = await cgroupDir(container, "pids");
  const events = await readOr(`${dir}/pids.events`);
  const peak = (await readOr(`${dir}/pids.peak`)).trim();
  return {
    max: (await readOr(`${dir}/pids.max`)).trim(),
    current: Number((await readOr(`${dir}/pids.current`)).trim()),
    peak: peak ? Number(peak) : undefined,
    refused: Number(/max (\d+)/.exec(events)?.[1] ?? 0),
  };
}

/** CPU time (seconds) the container's processes have used so far, reaped children included (cpuacct). */
export async function containerCpuSeconds(container: string): Promise<number> {
  const dir = await cgroupDir(container, "cpuacct");
  const v1 = (await readOr(`${dir}/cpuacct.usage`)).trim();
  if (v1) return Number(v1) / 1e9;
  const usec = /usage_usec (\d+)/.exec(await readOr(`${dir}/cpu.stat`))?.[1];
  return Number(usec ?? NaN) / 1e6;
}

/** The container's memory cgroup usage in bytes (includes its tmpfs and page cache). */
export async function containerMemoryBytes(container: string): Promise<number> {
  const dir = await cgroupDir(container, "memory");
  const v1 = (await readOr(`${dir}/memory.usage_in_bytes`)).trim();
  return Number(v1 || (await readOr(`${dir}/memory.current`)).trim());
}

const USERS: Record<string, string> = { "0": "root", "2001": "tunnel", "2002": "jump", "2003": "admin", "2004": "rtkeys", "1000": "pi", "999": "rtunnel" };

async function describe(pid: number): Promise<{ name: string; ticks: number; key: string } | undefined> {
  const stat = await readOr(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields after the name start at 3 (state): utime is field 14, stime 15, starttime 22
  const ticks = Number(f[11]) + Number(f[12]);
  const start = f[19] ?? "";
  const cmd = (await readOr(`/proc/${pid}/cmdline`)).split("\0").filter(Boolean);
  const uid = /^Uid:\s+(\d+)/m.exec(await readOr(`/proc/${pid}/status`))?.[1] ?? "?";
  let name = comm;
  if (comm === "ssh") name = cmd.includes("-W") ? "ssh -W (ProxyJump hop)" : cmd.includes("-R") ? "ssh -R (tunnel agent)" : "ssh (client)";
  else if (comm.startsWith("sshd")) name = `${comm} [${USERS[uid] ?? uid}]`;
  return { name, ticks, key: `${pid}:${start}` };
}

/** Samples the containers' processes every `everyMs` until stopped; CPU seconds per (container, process). */
export function cpuSampler(containers: Record<string, string>, everyMs = 200): { stop(): Promise<ProfileLine[]> } {
  const seen = new Map<string, { container: string; name: string; first: number; last: number }>();
  let first = true;
  const sample = async () => {
    for (const [label, c] of Object.entries(containers)) {
      const pids = await containerPids(c).catch(() => []);
      for (const pid of pids) {
        const d = await describe(pid);
        if (!d) continue;
        const prev = seen.get(d.key);
        // a process already running at the first sample counts from there; a new one from 0
        if (prev) prev.last = Math.max(prev.last, d.ticks);
        else seen.set(d.key, { container: label, name: d.name, first: first ? d.ticks : 0, last: d.ticks });
      }
    }
    first = false;
  };
  let running = true;
  const loop = (async () => {
    while (running) {
      await sample();
      await new Promise((r) => setTimeout(r, everyMs));
    }
    await sample();
  })();
  return {
    async stop() {
      running = false;
      await loop;
      const by = new Map<string, ProfileLine>();
      for (const s of seen.values()) {
        const k = `${s.container}\0${s.name}`;
        const line = by.get(k) ?? { container: s.container, process: s.name, cpuSeconds: 0 };
        line.cpuSeconds += (s.last - s.first) / CLK_TCK;
        by.set(k, line);
      }
      return [...by.values()].filter((l) => l.cpuSeconds >= 0.05);
    },
  };
}
