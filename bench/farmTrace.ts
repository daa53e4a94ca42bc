// What the simulated devices did in a storm, second by second, from their agents' own logs
// (images/rtunnel/agent: one line per state change, each with its UTC time): how many
// attempts, how many tunnels came up, and why the others failed. Pure: the bench reads the
// logs, this counts them.

/** How an attempt that never came up ended, by what ssh said (the agent's "lost:" line). */
export type Failure = "relay down" | "dropped before the banner" | "timed out" | "other";

export function classifyFailure(reason: string): Failure {
  if (/Connection refused/i.test(reason)) return "relay down";
  // sshd's MaxStartups / PerSourceMaxStartups refusals: it accepts and closes at once.
  if (/Connection (reset|closed) by|kex_exchange_identification|Connection closed by remote host/i.test(reason)) return "dropped before the banner";
  if (/timed out|Timeout/i.test(reason)) return "timed out";
  return "other";
}

export interface TraceBucket {
  /** seconds after `since` at which the bucket starts */
  at: number;
  attempts: number;
  up: number;
  failed: Partial<Record<Failure, number>>;
  /** for the attempts that came up in this bucket: seconds from "connecting" to "up" (whole seconds: the log's resolution) */
  upAfter: number[];
}

const LINE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z) rtunnel: (connecting to|up:|lost:) ?(.*)$/;

/** Buckets of `bucketS` seconds from `sinceMs` (epoch ms) of the agents' log lines. */
export function farmTrace(logText: string, sinceMs: number, bucketS: number): TraceBucket[] {
  const buckets: TraceBucket[] = [];
  const bucket = (t: number) => {
    const i = Math.floor((t - sinceMs) / 1000 / bucketS);
    while (buckets.length <= i) buckets.push({ at: buckets.length * bucketS, attempts: 0, up: 0, failed: {}, upAfter: [] });
    return buckets[i]!;
  };
  // The logs are one device's after another's: an "up" follows that device's own "connecting".
  let connectingAt: number | undefined;
  for (const line of logText.split("\n")) {
    const m = LINE.exec(line);
    if (!m) {
      connectingAt = undefined;
      continue;
    }
    const t = Date.parse(m[1]!);
    const attempt = connectingAt;
    connectingAt = m[2] === "connecting to" ? t : undefined;
    if (!(t >= sinceMs - 999)) continue; // the log's times are whole seconds
    const b = bucket(Math.max(t, sinceMs));
    if (m[2] === "connecting to") b.attempts++;
    else if (m[2] === "up:") {
      b.up++;
      if (attempt !== undefined) b.upAfter.push((t - attempt) / 1000);
    }
    else if (/never up\)$/.test(m[3]!)) {
      const kind = classifyFailure(m[3]!);
      b.failed[kind] = (b.failed[kind] ?? 0) + 1;
    }
  }
  return buckets;
}

/** "0-10 s: 1000 attempts, 12 up, 800 dropped before the banner, ...; 10-20 s: ...". */
export function describeTrace(buckets: readonly TraceBucket[], bucketS: number): string {
  return buckets
    .map((b) => {
      const failed = Object.entries(b.failed).sort((x, y) => y[1] - x[1]).map(([k, n]) => `${n} ${k}`);
      const took = [...b.upAfter].sort((x, y) => x - y);
      const upAfter = took.length ? ` (median ${took[Math.floor((took.length - 1) / 2)]} s, max ${took.at(-1)} s from connecting)` : "";
      return `${b.at}-${b.at + bucketS} s: ${b.attempts} attempts, ${b.up} up${upAfter}${failed.length ? `, ${failed.join(", ")}` : ""}`;
    })
    .join("; ");
}
