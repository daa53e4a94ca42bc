import test from "ava";
import { ensureDocker } from "./bed/index.ts";
import { startWorld } from "./agent/world.ts";

test.before(async () => {
  await ensureDocker();
});

test("[docker] tunnel up: a laptop key through jump reaches the raspi's own sshd and runs a command", async (t) => {
  const w = await startWorld(t);
  await w.waitTunnel("the tunnel");
  const r = await w.sshRaspi(["hostname && id -un"]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, "raspi\npi\n");
  const log = await w.agentLog();
  t.regex(log, /rtunnel: up: relay 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:22/);
  t.log(log);
});
