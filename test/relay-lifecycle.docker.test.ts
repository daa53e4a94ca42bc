// The relay over time: recreated on its volume, a removal that cuts a live tunnel, a revoked
// device hammering from a shared address, and an outside audit of its algorithms.
import test from "ava";
import { docker, ensureDocker, exec, useScope, waitFor } from "./bed/index.ts";
import { sshArgv, startRelay } from "./relay/fixture.ts";

test.before(async () => {
  await ensureDocker();
});

interface Row { name: string; kind: string; port: number | null; fingerprint: string }

test("[docker] a relay recreated on the same volume keeps its devices, ports, clients and generated host key", async (t) => {
  const scope = useScope(t);
  // No host key mounted: the relay generates one into the state volume and must keep it.
  const r = await startRelay(scope, { mountHostKey: false });
  for (const n of ["a", "b", "c"]) await r.adminJson(["add-device", n], await r.key(n));
  await r.adminJson(["remove", "b"]);
  await r.adminJson(["add-client", "lap", "--devices", "a,c"], await r.key("lap"));
  const before = await r.adminJson<Row[]>(["list"]);
  const hostKey = (await r.admin(["host-key"])).stdout;

  await docker(["rm", "-f", r.container]);
  await r.restart();
  // The client pins the old host key (StrictHostKeyChecking yes): any new key fails here.
  const after = await r.adminJson<Row[]>(["list"]);
  t.deepEqual(after.map((x) => [x.name, x.kind, x.port, x.fingerprint]), before.map((x) => [x.name, x.kind, x.port, x.fingerprint]));
  t.is((await r.admin(["host-key"])).stdout, hostKey);
  t.regex((await docker(["logs", r.container])).stderr, /host key SHA256:\S+ from \/var\/lib\/rtunneld\/ssh_host_ed25519_key/);
  // The rendered keys came back too: a device and its client work without re-enrolling.
  await r.tunnel("c", before.find((x) => x.name === "c")!.port!);
  const w = await r.ssh("lap", "jump", ["-W", `127.0.0.1:${before.find((x) => x.name === "c")!.port}`], [], "");
  t.regex(w.stdout, /^SSH-2\.0-/);
});

test("[docker] remove cuts a device's live tunnel within 2 s, and the device cannot come back", async (t) => {
  const scope = useScope(t);
  const r = await startRelay(scope);
  const { port } = await r.adminJson<{ port: number }>(["add-device", "raspi"], await r.key("raspi"));
  const other = await r.adminJson<{ port: number }>(["add-device", "other"], await r.key("other"));
  await r.tunnel("raspi", port);
  await r.tunnel("other", other.port);

  const started = Date.now();
  t.deepEqual(await r.adminJson(["remove", "raspi"]), { removed: "raspi" });
  await waitFor("the removed device's port to close", async () => !(await r.listening(port)), { tries: 40, intervalMs: 50 });
  const seconds = (Date.now() - started) / 1000;
  t.log(`tunnel cut ${seconds.toFixed(2)} s after remove was called`);
  t.true(seconds <= 2, `took ${seconds} s`);
  // Its ssh process saw the connection end (it exits rather than hanging on).
  await waitFor("the device's ssh to exit", async () =>
    !(await exec(r.client, ["pgrep", "-f", "--", `-R 127.0.0.1:${port}:`], { check: false })).stdout.trim(), { tries: 20, intervalMs: 250 });

  const again = await r.ssh("raspi", "tunnel", ["-N", "-o", "ExitOnForwardFailure=yes", "-R", `127.0.0.1:${port}:127.0.0.1:22`]);
  t.is(again.code, 255);
  t.regex(again.stderr, /Permission denied \(publickey\)/);
  t.false(await r.listening(port));
  t.true(await r.listening(other.port), "the other device's tunnel was not touched");
});

test("[docker] a revoked device retrying in a loop from a shared address does not lock out its neighbours", async (t) => {
  const scope = useScope(t);
  const r = await startRelay(scope);
  const revoked = await r.adminJson<{ port: number }>(["add-device", "revoked"], await r.key("revoked"));
  const steady = await r.adminJson<{ port: number }>(["add-device", "steady"], await r.key("steady"));
  const late = await r.adminJson<{ port: number }>(["add-device", "late"], await r.key("late"));
  await r.adminJson(["remove", "revoked"]);
  await r.tunnel("steady", steady.port);

  // The same client container (one source address) hammers with the revoked key for 10 s:
  // with OpenSSH's default PerSourcePenalties (authfail 5 s, enforced past 15 s) the address
  // would be refused after a handful of attempts.
  const loop = sshArgv(r.container, "revoked", "tunnel", ["-N", "-R", `127.0.0.1:${revoked.port}:127.0.0.1:22`]).map((a) => `'${a}'`).join(" ");
  const hammer = exec(r.client, ["sh", "-c", `n=0; end=$(($(date +%s) + 10)); while [ $(date +%s) -lt $end ]; do ${loop} 2>/dev/null; n=$((n+1)); done; echo $n`], { timeoutMs: 60_000 });
  await new Promise((res) => setTimeout(res, 6000));
  // While it hammers, a neighbour connects from the same address and gets its tunnel.
  await r.tunnel("late", late.port);
  const attempts = Number((await hammer).stdout.trim());
  t.log(`the revoked key tried ${attempts} times in 10 s`);
  t.true(attempts >= 10, `only ${attempts} attempts: the loop did not hammer`);
  t.true(await r.listening(steady.port), "the established tunnel survived");
  t.true(await r.listening(late.port), "the neighbour connected");
  t.false(await r.listening(revoked.port));
  const log = (await docker(["logs", r.container])).stderr;
  t.notRegex(log, /penalty: .* (refused|blocked)|drop connection .* penalty/i, "no source was penalised");
});

test("[docker] ssh-audit finds no failure and no warning on the running relay", async (t) => {
  const scope = useScope(t);
  const r = await startRelay(scope);
  const res = await exec(r.client, ["ssh-audit", "--skip-rate-test", "-j", "-p", "2222", r.container], { check: false, timeoutMs: 120_000 });
  const report = JSON.parse(res.stdout) as { recommendations?: Record<string, unknown>; banner?: { software?: string } };
  t.log(`ssh-audit exit ${res.code}; banner ${JSON.stringify(report.banner)}`);
  const text = await exec(r.client, ["ssh-audit", "--skip-rate-test", "--no-colors", "-l", "warn", "-p", "2222", r.container], { check: false, timeoutMs: 120_000 });
  t.notRegex(text.stdout, /\(\w+\) .*-- \[(fail|warn)\]/, text.stdout);
  t.is(res.code, 0, `ssh-audit exit code (0 = all good):\n${text.stdout}`);
  t.deepEqual(report.recommendations ?? {}, {}, "ssh-audit recommends no change");
});
