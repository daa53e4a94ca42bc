import test from "ava";
import { buildImage, createNatTopology, docker, ensureDocker, useScope, waitFor } from "./bed/index.ts";

test.before(async () => {
  await ensureDocker();
});

test("[docker] the NAT topology hides the home network: only the home router's address is seen outside", async (t) => {
  const scope = useScope(t);
  const host = await buildImage("host");
  const net = await createNatTopology(scope);

  const device = await net.attach(net.home, scope.name("device"), ["--hostname", "raspi", host]);
  const laptop = await net.attach(net.office, scope.name("laptop"), ["--entrypoint", "sleep", host, "infinity"]);
  const outside = await scope.run([
    "--name", scope.name("outside"), "--network", net.internet, "--entrypoint", "nc", host, "-lvn", "9000",
  ]);
  const deviceIp = await net.ip(device, net.home.network);
  const outsideIp = await net.ip(outside, net.internet);

  // Positive control: the device's sshd really listens (its own LAN reaches it), so the
  // refusals below are the network's doing, not a dead sshd.
  await waitFor("the device's sshd", async () => (await scope.exec(net.home.router, ["nc", "-z", "-w", "2", deviceIp, "22"], { check: false })).code === 0);

  // The device reaches the internet side, and what arrives there comes from the home router.
  await scope.exec(device, ["sh", "-c", `echo hello-from-home | nc -N -w 5 ${outsideIp} 9000`]);
  let log = "";
  await waitFor("the outside listener's log", async () => {
    const l = await docker(["logs", outside]);
    log = l.stdout + l.stderr;
    return log.includes("hello-from-home");
  });
  const source = /Connection received on (\S+)/.exec(log)?.[1];
  t.is(source, net.home.routerWanIp, `the internet side saw ${source}`);
  t.not(source, deviceIp);

  // Neither the office nor the internet side can open the device's port 22.
  const fromOffice = await scope.exec(laptop, ["nc", "-z", "-w", "3", deviceIp, "22"], { check: false });
  t.not(fromOffice.code, 0, "the office laptop opened the device's port 22");
  const prober = await scope.run([
    "--name", scope.name("prober"), "--network", net.internet, "--entrypoint", "sleep", host, "infinity",
  ]);
  const fromInternet = await scope.exec(prober, ["nc", "-z", "-w", "3", deviceIp, "22"], { check: false });
  t.not(fromInternet.code, 0, "the internet side opened the device's port 22");
  // Nor through the home router's public address: nothing is forwarded inward.
  const viaRouter = await scope.exec(prober, ["nc", "-z", "-w", "3", net.home.routerWanIp, "22"], { check: false });
  t.not(viaRouter.code, 0, "the home router's public address answers on port 22");
});
