// How fast does the device agent bring a working `ssh raspi` back? Measured, not asserted:
//   npx tsx bench/agent-recovery.ts [restarts=5]
// 1. The relay container is restarted N times (each after the tunnel was up for a stable
//    period, as in real life): time from `docker restart` returning to the first `ssh raspi
//    true` that works, and from the restart command's start.
// 2. The raspi's uplink is silently cut for 20 s at the home router (dropped, no FIN), then
//    restored: time from the restore to the first working `ssh raspi true`.
// 3. The live session's path dies for good (dropped at the router) and the agent restarts:
//    time until the relay frees the dead session's port and the agent retakes it.
// Plus the size the image adds to its base. Prints a JSON summary on stdout.
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { buildImage, BASE_IMAGE, docker, ensureDocker, inspect, Scope } from "../test/bed/index.ts";
import { startWorld, type World } from "../test/agent/world.ts";

const STABLE_MS = 11_000; // the agent resets its backoff after 10 s up

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Milliseconds from `since` until `ssh raspi true` works (probes back to back). */
async function untilSsh(w: World, since: number, limitMs = 120_000): Promise<number> {
  for (;;) {
    if ((await w.sshRaspi(["true"], 10_000)).code === 0) return performance.now() - since;
    if (performance.now() - since > limitMs) throw new Error(`no working ssh within ${limitMs} ms`);
    await sleep(50);
  }
}

async function main(): Promise<void> {
  const restarts = Number(process.argv[2] ?? 5);
  await ensureDocker();
  const image = await buildImage("rtunnel");
  const added = Number(await inspect(image, "{{.Size}}")) - Number(await inspect(BASE_IMAGE, "{{.Size}}"));
  const scope = new Scope("bench agent-recovery");
  try {
    const w = await startWorld(scope);
    await w.waitTunnel("the tunnel");
    const ip = w.relayIp;
    const afterReturn: number[] = [];
    const afterCommand: number[] = [];
    for (let i = 0; i < restarts; i++) {
      await sleep(STABLE_MS);
      const start = performance.now();
      await docker(["restart", w.relay]);
      const back = performance.now();
      if ((await scope.ip(w.relay, w.net.internet)) !== ip) throw new Error("the relay came back on another address");
      const ms = await untilSsh(w, back);
      afterReturn.push(Math.round(ms));
      afterCommand.push(Math.round(ms + back - start));
      console.error(`restart ${i + 1}: working ssh ${Math.round(ms)} ms after docker restart returned (${Math.round(back - start)} ms restart)`);
    }

    await sleep(STABLE_MS);
    await w.cutUplink(true);
    const cutAt = performance.now();
    await sleep(20_000);
    await w.cutUplink(false);
    const restored = performance.now();
    const cutMs = Math.round(await untilSsh(w, restored));
    console.error(`silent cut of ${Math.round(restored - cutAt)} ms: working ssh ${cutMs} ms after the restore`);
    // 3. The session's path dies for good and the agent starts over: the relay still holds the
    //    port until its keepalives free it. Time from the agent's restart to a working ssh.
    await sleep(STABLE_MS);
    await w.blackholeSession();
    const heldStart = performance.now();
    await docker(["restart", w.agent]);
    const heldMs = Math.round(await untilSsh(w, heldStart));
    console.error(`port held by a dead session: working ssh ${heldMs} ms after the agent restarted`);
    const log = await w.agentLog();
    console.error(log.split("\n").slice(-40).join("\n"));
    console.log(JSON.stringify({
      relayRestart: { afterRestartReturnedMs: afterReturn, medianMs: median(afterReturn), fromRestartCommandMs: afterCommand },
      silentCut20s: { afterRestoreMs: cutMs },
      portHeldByDeadSession: { afterAgentRestartMs: heldMs },
      image: { addedToBaseBytes: added, addedToBaseMB: +(added / 1e6).toFixed(2) },
    }, null, 2));
  } finally {
    await scope.dispose();
  }
}

await main();
