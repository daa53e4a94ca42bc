// How many tunnels an instance size holds: the one source (rendered into bench/RESULTS.md's
// scale section; infra/README.md and the image README quote that table, and a unit test holds
// them to it). Sized by the relay container's memory cgroup (process memory plus the kernel's
// socket buffers, page tables and stacks, and its /run tmpfs), not by PSS, which leaves the
// kernel's part out; plus what the host itself needs besides the relay.
import type { Section } from "./results.ts";

/** The row of the scale section that sizing reads: the relay's cgroup usage, idle as its baseline. */
export const CGROUP_ROW = "relay cgroup memory usage (includes its tmpfs /run)";

/** Memory of the arm64 sizes the infra offers (EC2's published figures, MiB). */
export const INSTANCE_MEMORY_MIB: Readonly<Record<string, number>> = {
  "t4g.nano": 512,
  "t4g.micro": 1024,
  "t4g.small": 2048,
  "t4g.medium": 4096,
};

/**
 * The host's own, besides the relay (MiB): the kernel's reservations (a 512 MiB instance shows
 * a MemTotal some 60 MiB lower), systemd and journald, amazon-ssm-agent, dockerd and containerd,
 * and page cache for their binaries. An estimate, not measured: there is no EC2 instance here.
 * Round and on the high side, so the table errs towards the larger instance.
 */
export const HOST_OWN_MIB = 250;

export interface SizingRow {
  instanceType: string;
  memoryMiB: number;
  tunnels: number;
}

export interface Sizing {
  /** tunnels up when the cgroup was read */
  measuredTunnels: number;
  idleMiB: number;
  perTunnelMiB: number;
  hostOwnMiB: number;
  rows: SizingRow[];
}

/** The sizing from a scale section's cgroup row and tunnel count; undefined when the section lacks them. */
export function sizing(section: Section, tunnels: number, hostOwnMiB = HOST_OWN_MIB): Sizing | undefined {
  const row = section.rows.find((r) => r.name === CGROUP_ROW);
  const loaded = row?.values[0];
  const idle = row?.baseline?.values[0];
  if (loaded === undefined || idle === undefined || !(tunnels > 0)) return undefined;
  const perTunnelMiB = (loaded - idle) / tunnels;
  if (!(perTunnelMiB > 0)) return undefined;
  const rows = Object.entries(INSTANCE_MEMORY_MIB).map(([instanceType, memoryMiB]) => ({
    instanceType,
    memoryMiB,
    tunnels: Math.max(0, Math.floor((memoryMiB - hostOwnMiB - idle) / perTunnelMiB)),
  }));
  return { measuredTunnels: tunnels, idleMiB: idle, perTunnelMiB, hostOwnMiB, rows };
}

/** The smallest size that holds `tunnels`, or undefined when none of the table does. */
export function smallestFor(s: Sizing, tunnels: number): SizingRow | undefined {
  return s.rows.find((r) => r.tunnels >= tunnels);
}

/** The table RESULTS.md shows under the scale section. */
export function renderSizing(s: Sizing): string[] {
  const fix = (x: number) => x.toFixed(x >= 100 ? 0 : 2);
  const thousand = smallestFor(s, 1000);
  return [
    `Tunnels per instance size (the one source; other READMEs quote it): the relay's cgroup memory, ${fix(s.idleMiB)} MiB idle plus ${fix(s.perTunnelMiB)} MiB per tunnel (measured with ${s.measuredTunnels} up), and ${s.hostOwnMiB} MiB for the host's own (kernel, systemd, amazon-ssm-agent, dockerd, containerd: an estimate, not measured on EC2).`,
    "",
    "| instance | memory | tunnels it holds |",
    "| --- | --- | --- |",
    ...s.rows.map((r) => `| ${r.instanceType} | ${r.memoryMiB} MiB | about ${r.tunnels} |`),
    "",
    thousand ? `1000 tunnels need a ${thousand.instanceType}.` : "1000 tunnels need more than any size in the table.",
  ];
}
