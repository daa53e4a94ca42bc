// enrollment: wall time of the real `enroll-device` CLI (provision/cli.ts, run as a person runs
// it) for a device on the LAN, split by step with the CLI's own timings (`--json` → timingsMs).
// The device is the test fixture (test/fixtures/device: sshd + dockerd) behind the home router,
// run as the enrollment test runs it; this process stands on the home bridge like a laptop at
// home. Baseline, on the same fresh device just before: the agent image sent by hand,
// `docker save IMAGE | ssh pi@device sudo docker load`.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { RELAY_CONTAINER_PORT } from "../lib/contract/relay.ts";
import { buildImage, exec, run, waitFor } from "../lib/fixtures/index.ts";
import { runCli } from "../lib/fixtures/index.ts";
import { DEVICE_RUN_FLAGS } from "../lib/fixtures/index.ts";
import type { Row, Section } from "./results.ts";
import type { World } from "./world.ts";
import { med } from "./stats.ts";

/** A step label with its device port taken out, so runs line up ("relay: device port N"). */
export function stepName(label: string): string {
  return label.replace(/port \d+/g, "port N");
}

export async function benchEnroll(w: World, o: { runs: number; log: (l: string) => void }): Promise<Section> {
  const deviceImage = await buildImage("device");
  const tmp = await mkdtemp(path.join(os.tmpdir(), "rtunnel-bench-enroll-"));
  const totals: number[] = [];
  const raw: number[] = [];
  const steps = new Map<string, number[]>();
  let imageBytes: number | undefined;
  try {
    const relayFile = path.join(tmp, "relay.json");
    await writeFile(relayFile, JSON.stringify({ host: w.relayIp, port: RELAY_CONTAINER_PORT, hostKey: w.relayHostKeyPub }));
    imageBytes = Number((await run("docker", ["image", "inspect", "--format", "{{.Size}}", w.images.agent])).stdout.trim());
    for (let i = 0; i < o.runs; i++) {
      const name = `bench-dev${i + 1}`;
      const device = await w.net.attach(w.net.home, w.scope.name(name), ["--hostname", name, ...DEVICE_RUN_FLAGS, deviceImage]);
      const deviceIp = await w.scope.ip(device, w.net.home.network);
      // The operator: the relay's admin key is this laptop's key (as with `pulumi config set adminPublicKeys`).
      const home = path.join(tmp, `home${i}`);
      await mkdir(path.join(home, ".ssh"), { recursive: true, mode: 0o700 });
      const identity = path.join(home, ".ssh", "id_ed25519");
      await writeFile(identity, await readFile(w.adminKeyFile), { mode: 0o600 });
      await writeFile(`${identity}.pub`, `${w.adminKeyPub}\n`);
      await exec(device, ["sh", "-c", "install -d -m 700 -o pi -g pi /home/pi/.ssh && cat > /home/pi/.ssh/authorized_keys && chown pi:pi /home/pi/.ssh/authorized_keys"], { input: `${w.adminKeyPub}\n` });
      await waitFor("the device's dockerd", async () => (await exec(device, ["docker", "info"], { check: false })).code === 0, { tries: 120, intervalMs: 500 });
      await waitFor("the device's sshd", async () => (await exec(device, ["nc", "-z", "127.0.0.1", "22"], { check: false })).code === 0);

      // Baseline: the same image, by hand, over the same LAN hop.
      const ssh = `ssh -F /dev/null -i ${identity} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=${tmp}/kh${i} pi@${deviceIp}`;
      const t0 = Date.now();
      await run("bash", ["-o", "pipefail", "-c", `docker save ${w.images.agent} | ${ssh} sudo docker load`], { timeoutMs: 300_000 });
      raw.push((Date.now() - t0) / 1000);
      await run("bash", ["-c", `${ssh} sudo docker rmi ${w.images.agent}`], { timeoutMs: 60_000 });
      await rm(`${tmp}/kh${i}`, { force: true });

      const args = [name, "--host", deviceIp, "--user", "pi", "--relay", relayFile, "--image", w.images.agent, "--client", "bench-operator", "--accept-new", "--json"];
      const t1 = Date.now();
      const r = await runCli(["enroll-device", ...args], { home, timeoutMs: 300_000 });
      const total = (Date.now() - t1) / 1000;
      if (r.code !== 0) throw new Error(`enroll-device exited ${r.code}: ${r.stderr.trim().split("\n").slice(-3).join(" / ")}`);
      totals.push(total);
      const result = JSON.parse(r.stdout) as { timingsMs?: Record<string, number> };
      let accounted = 0;
      for (const [label, ms] of Object.entries(result.timingsMs ?? {})) {
        const k = stepName(label);
        (steps.get(k) ?? steps.set(k, []).get(k)!).push(ms / 1000);
        accounted += ms / 1000;
      }
      const k = "(outside the steps: node + tsx start, module loading, exit)";
      (steps.get(k) ?? steps.set(k, []).get(k)!).push(total - accounted);
      o.log(`enroll: ${name} in ${total.toFixed(1)} s (image by hand ${raw[raw.length - 1]!.toFixed(1)} s)`);
      const check = await w.onLaptop("true");
      if (check.code !== 0) throw new Error("the laptop container is gone");
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const rows: Row[] = [
    {
      name: "enroll-device, whole command (wall, as a person runs it)", unit: "s", values: totals,
      baseline: { name: "the image alone by hand: docker save | ssh pi@device sudo docker load", values: raw },
      goal: { text: "30 s or less, image transfer included", on: "value", kind: "max", limit: 30 },
    },
  ];
  for (const [label, values] of steps) {
    rows.push({ name: `step: ${label}`, unit: "s", values, ...(/image on the device/.test(label) ? { baseline: { name: "image by hand", values: raw } } : {}) });
  }
  const findings: string[] = [];
  const slowest = [...steps].sort((a, b) => med(b[1]) - med(a[1]))[0];
  if (med(totals) > 30) {
    findings.push(`Enrollment took ${med(totals).toFixed(1)} s; the slowest step was "${slowest?.[0]}" (${med(slowest?.[1] ?? []).toFixed(1)} s).`);
  }
  if (slowest) findings.push(`The slowest step: "${slowest[0]}", ${med(slowest[1]).toFixed(1)} s median; the agent image is ${((imageBytes ?? NaN) / 1e6).toFixed(0)} MB uncompressed (docker save), loaded by a dockerd on vfs storage (the fixture's only choice inside a container; a real Pi with overlay2 loads faster).`);
  return {
    id: "enroll",
    title: "Enrollment: enroll-device on the LAN",
    method: [
      `${o.runs} enrollment(s), each of a fresh device container (test/fixtures/device: sshd + dockerd on vfs, run with the enrollment test's flags) behind the home router; the CLI runs in this process's machine, which sits on the home bridge (a laptop at home), reaching the device by its LAN address and the relay by its internet address.`,
      "Command: `node --import tsx provision/cli.ts enroll-device NAME --host IP --user pi --relay relay.json --image rtunnel/rtunnel:test --client bench-operator --accept-new --json` with HOME set to a fresh directory (the laptop side is written there); the agent image is built beforehand (as after `npm ci`), so the build is not in the figure, its transfer is.",
      "Per step: the CLI's own timings (`timingsMs` of its JSON result; each step's time since the previous one); what is left of the wall time is node's start and module loading.",
      "Baseline: on the same fresh device just before the enrollment, `docker save IMAGE | ssh pi@DEVICE sudo docker load` by hand, then `docker rmi`, so the enrollment sends the image again.",
    ],
    rows,
    findings,
  };
}
