// The Raspberry Pi end to end, one emulated architecture per test file
// (test/pi-*.emulated.docker.test.ts), in the NAT topology: an ARM device behind the home
// router (lib/fixtures/images/device-arm: its userland and its own dockerd are that
// architecture's programs under QEMU, above the machine's native containerd and runc), enrolled
// with the CLI from the amd64 side on its default build path (no --image: the agent built here
// for the platform the device's Docker reports, on the bed's base of that platform named with
// --base-image, and sent), then reached from the office laptop through the relay.
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { TestFn } from "ava";
import { baseImageTag, imageProblem } from "../../lib/docker/baseImage.ts";
import { platformInfo } from "../../lib/platform.ts";
import { renderRelayFacts } from "../../provision/relay/facts.ts";
import { defaultImage } from "../../provision/device/image.ts";
import { buildImage, copySshDir, createNatTopology, docker, ensureDocker, keygen, runCli, Scope, startDevice, startLaptop, startRelay } from "./index.ts";
import { sharedWorldHooks } from "./scope.ts";

/** One enrollment and the laptop's ssh and scp through the relay, for one emulated platform. */
export function piEndToEnd(test: TestFn, platform: string): void {
  const p = platformInfo(platform);
  if (!p) throw new RangeError(`piEndToEnd: no platform ${platform}`);
  let world: { scope: Scope; dirs: string[] } | undefined;
  sharedWorldHooks(test, () => world);

  test.serial(`[docker] [emulated ${p.platform}] a device whose uname -m says ${p.uname} is enrolled from amd64 with the agent built for ${p.platform} and sent, and the office laptop reaches it through the relay: ssh uname -m, scp both ways`, async (t) => {
    t.timeout(90 * 60_000, "an emulated device: its image build, the agent's build and every program on it run under QEMU");
    await ensureDocker();
    const scope = new Scope(`pi-${p.tag}`);
    const tmp = await mkdtemp(path.join(os.tmpdir(), `rtunnel-pi-${p.tag}-`));
    world = { scope, dirs: [tmp] };
    const phase = (() => {
      let last = Date.now();
      return (what: string) => {
        t.log(`${what}: ${((Date.now() - last) / 1000).toFixed(0)} s`);
        last = Date.now();
      };
    })();

    // The emulated device's image first (minutes under QEMU, cached by Docker after that).
    await buildImage("device-arm", { platform: p.platform, log: (l) => t.log(l) });
    phase(`device image for ${p.platform}`);
    // The bed's base of that platform (made on the way): its config names the platform for
    // real, and its root is 0755.
    const base = baseImageTag(p.platform);
    t.is((await docker(["image", "inspect", "--format", "{{json .}}", base]).then((r) => {
      const j = JSON.parse(r.stdout) as { Os: string; Architecture: string; Variant?: string };
      return `${j.Os}/${j.Architecture}/${j.Variant}`;
    })), `linux/${p.arch}/${p.variant}`);
    t.is(await imageProblem(base), undefined);
    const net = await createNatTopology(scope);
    const home = path.join(tmp, "home");
    await mkdir(path.join(home, ".ssh"), { recursive: true, mode: 0o700 });
    const operator = await keygen(path.join(home, ".ssh", "id_ed25519"), "operator");
    const relay = await startRelay(scope, { network: net.internet, dir: tmp, admin: operator });
    const device = await startDevice({ hostname: "raspi", operatorKey: operator.pub, platform: p.platform, place: (args) => net.attach(net.home, scope.name("device"), args) });
    const laptop = await startLaptop((args) => net.attach(net.office, scope.name("laptop"), args), "laptop");
    const relayFile = path.join(tmp, "relay.json");
    await writeFile(relayFile, renderRelayFacts(relay.facts()));
    const deviceIp = await net.ip(device.container, net.home.network);
    const onDevice = (script: string) => scope.exec(device.container, ["sh", "-c", script], { check: false, timeoutMs: 600_000 });
    const onLaptop = (argv: string[]) => scope.exec(laptop, argv, { check: false, timeoutMs: 600_000 });
    phase("topology, relay, device and laptop up");

    // What the device is, before anyone touches it: its userland and its Docker are ARM.
    t.is((await onDevice("uname -m")).stdout.trim(), p.uname);
    t.is((await onDevice("docker version --format '{{.Server.Arch}}'")).stdout.trim(), p.arch);

    // The person's command, on its default build path: the agent image built here for the
    // platform the device's Docker reports. --base-image names the bed's base of that
    // platform, as a user names a registry mirror's (no registry answers here).
    const r = await runCli(
      ["enroll-device", "raspi", "--host", deviceIp, "--user", "pi", "--relay", relayFile, "--device-host-key", device.hostKeyFingerprint,
        "--client", "office-laptop", "--base-image", base, "--timeout", "900"],
      { home, timeoutMs: 80 * 60_000 },
    );
    phase("enrollment");
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, "ssh raspi\n");
    t.log(r.stderr.split("\n").filter((l) => /^(rtunnel: )?(platform|building| {2}image:)/.test(l) || /\(\d+\.\d s\)$/.test(l)).join("\n"));
    t.regex(r.stderr, new RegExp(`platform ${p.platform.replaceAll("/", "\\/")}: the device's Docker runs ${p.arch}`));
    const image = defaultImage(p.platform);
    t.regex(r.stderr, new RegExp(`building ${image} for ${p.platform.replaceAll("/", "\\/")}`));
    t.regex(r.stderr, /image: [\d.]+ MB sent/);

    // Built here for that platform, and what runs on the device is that image, an ARM process.
    const arch = (ref: string) => `{{.Os}}/{{.Architecture}}${ref}`;
    t.is((await docker(["image", "inspect", "--format", arch(""), image])).stdout.trim(), `linux/${p.arch}`);
    t.is((await onDevice(`docker image inspect --format '${arch("")}' ${image}`)).stdout.trim(), `linux/${p.arch}`);
    t.is((await onDevice("docker exec rtunnel uname -m")).stdout.trim(), p.uname);

    // The office laptop, with nothing but the ~/.ssh enrollment wrote, through the relay.
    await copySshDir(laptop, path.join(home, ".ssh"));
    const uname = await onLaptop(["ssh", "raspi", "uname", "-m"]);
    t.is(uname.code, 0, uname.stderr);
    t.is(uname.stdout.trim(), p.uname);
    const up = `up-${p.tag}-${process.pid}`;
    await onLaptop(["sh", "-c", `echo ${up} > /tmp/up.txt`]);
    const put = await onLaptop(["scp", "/tmp/up.txt", "raspi:/tmp/up.txt"]);
    t.is(put.code, 0, put.stderr);
    t.is((await onDevice("cat /tmp/up.txt")).stdout.trim(), up);
    await onDevice("echo down-from-raspi > /tmp/down.txt");
    const get = await onLaptop(["scp", "raspi:/tmp/down.txt", "/tmp/down.txt"]);
    t.is(get.code, 0, get.stderr);
    t.is((await onLaptop(["cat", "/tmp/down.txt"])).stdout.trim(), "down-from-raspi");
    // Only through the relay: the laptop cannot open the device's port 22 itself.
    t.not((await onLaptop(["nc", "-z", "-w", "3", deviceIp, "22"])).code, 0, "the laptop opened the device's port 22");
    t.truthy(await readFile(path.join(home, ".ssh", "config.d", "rtunnel"), "utf8"));
    phase("ssh and scp from the office laptop");
  });
}
