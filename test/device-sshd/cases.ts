// The device's own sshd and its tunnel, end to end in the NAT topology of DESIGN.md "Test bed",
// for one Debian suite (its OpenSSH): trixie (10.0, with PerSourcePenalties) and bookworm
// (9.2, without). Each test file calls deviceSshdTests(SUITE); the tests of a file share one
// world (relay on `internet`, a device with sshd and dockerd behind the home router, two
// office laptops) and run in order:
//
//   before enrollment, the trap (OpenSSH 10: failed logins from loopback lock out loopback)
//   and the controls (a password works on the LAN address and on loopback);
//   [trixie] a broken drop-in of ours stops the plan, a conflicting config is put back;
//   --dry-run names the drop-in; enrollment writes it before the agent starts, and sshd,
//   reloaded, uses it for new connections; laptop A (a relay client whose key the device
//   does not take) fails in a loop while laptop B logs in; passwords get nowhere through the
//   tunnel and still work on the LAN address; [trixie] without the drop-in the same loop
//   does lock B out (the control, through the tunnel), and enrolling again heals it;
//   enrolling again changes nothing; revoke-device takes it all out again.
//
// The trixie device's sshd_config has no sshd_config.d Include (enrollment adds one for the
// drop-in and revoke takes it out); bookworm's is Debian's own.
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import test from "ava";
import { parsePublicKey } from "../../lib/keys.ts";
import { sh } from "../../lib/shell.ts";
import { INCLUDE_LINES, SSHD_CONFIG, SSHD_CONFIG_BACKUP, SSHD_DROP_IN, SSHD_INCLUDE_MARKER, tunnelConnectionSpec } from "../../provision/device/sshd.ts";
import { renderLaptopFiles } from "../../provision/laptop/model.ts";
import { renderRelayFacts } from "../../provision/relay/facts.ts";
import {
  buildImage,
  copySshDir,
  createNatTopology,
  docker,
  ensureDocker,
  installSshFiles,
  keygen,
  oneLine,
  runCli,
  Scope,
  sharedWorldHooks,
  startDevice,
  startLaptop,
  startRelay,
  waitFor,
  type KeyPair,
  type RelayFixture,
  type Topology,
} from "../bed/index.ts";

/** The device user's password in these tests: a person who set one, as on many a Raspberry Pi. */
const PASSWORD = "correct-horse-battery";
/** More failed logins than OpenSSH 10's penalty needs (authfail 5 s each, refused from 15 s: four). */
const FAILURES = 10;

interface World {
  scope: Scope;
  net: Topology;
  tmp: string;
  home: string;
  relay: RelayFixture;
  relayFile: string;
  device: string;
  deviceIp: string;
  deviceFp: string;
  deviceHostKey: string;
  /** laptop A: a relay client granted raspi, with a key the device does not take */
  laptopA: string;
  keyA: KeyPair;
  /** laptop B: the enrolling laptop's ~/.ssh */
  laptopB: string;
  agentImage: string;
  /** sshd_config as the device had it before enrollment */
  originalConfig: string;
}

export function deviceSshdTests(suite: "trixie" | "bookworm"): void {
  const penalties = suite === "trixie";
  let w: World;
  const on = (c: string, script: string, timeoutMs = 180_000) => w.scope.exec(c, ["bash", "-c", script], { check: false, timeoutMs });
  const onDevice = (script: string) => on(w.device, script);

  test.before(async () => {
    await ensureDocker();
    const agentImage = await buildImage("rtunnel");
    const scope = new Scope(`sshd-${suite}`);
    const net = await createNatTopology(scope);
    const tmp = await mkdtemp(path.join(os.tmpdir(), `rtunnel-sshd-${suite}-`));
    const home = path.join(tmp, "home");
    await mkdir(path.join(home, ".ssh"), { recursive: true, mode: 0o700 });
    const operator = await keygen(path.join(home, ".ssh", "id_ed25519"), "operator");
    const relay = await startRelay(scope, { network: net.internet, dir: tmp, admin: operator });
    const [device, laptopA, laptopB] = await Promise.all([
      startDevice({ suite, hostname: "raspi", operatorKey: operator.pub, place: (args) => net.attach(net.home, scope.name("device"), args) }),
      startLaptop((args) => net.attach(net.office, scope.name("laptop-a"), args), "laptop-a"),
      startLaptop((args) => net.attach(net.office, scope.name("laptop-b"), args), "laptop-b"),
    ]);
    const relayFile = path.join(tmp, "relay.json");
    await writeFile(relayFile, renderRelayFacts(relay.facts()));
    w = {
      scope, net, tmp, home, relay, relayFile, device: device.container, deviceIp: await net.ip(device.container, net.home.network),
      deviceFp: device.hostKeyFingerprint, deviceHostKey: device.hostKey, laptopA, laptopB, agentImage,
      keyA: await keygen(path.join(tmp, "laptop-a"), "laptop-a"), originalConfig: "",
    };
    // The device user has a password, and a key of root's on the device may log in as pi (to try loopback from inside).
    await onDevice(sh`echo ${`pi:${PASSWORD}`} | chpasswd && ssh-keygen -q -t ed25519 -N '' -f /root/good && ssh-keygen -q -t ed25519 -N '' -f /root/wrong && cat /root/good.pub >> /home/pi/.ssh/authorized_keys`.text);
    for (const c of [w.device, net.home.router, laptopA]) await installAskpass(c);
    if (suite === "trixie") {
      // An sshd_config that reads no sshd_config.d: enrollment must add an Include for its drop-in.
      await onDevice(sh`sed -i 's|^Include /etc/ssh/sshd_config.d/\\*.conf$|#&|' ${SSHD_CONFIG}`.text);
    }
    w.originalConfig = (await onDevice(sh`cat ${SSHD_CONFIG}`.text)).stdout;
  });
  sharedWorldHooks(test, () => w && { scope: w.scope, dirs: [w.tmp] });

  /** An SSH_ASKPASS program that answers the password, and notes each time it is asked. */
  async function installAskpass(container: string) {
    await on(container, sh`printf '%s\n' '#!/bin/sh' 'echo asked >> /tmp/askpass.log' ${`echo '${PASSWORD}'`} > /usr/local/bin/askpass && chmod 755 /usr/local/bin/askpass`.text);
  }
  /** A password login (no keys) with the askpass above: `ssh -v ... DEST true`. */
  const passwordLogin = (dest: string, extra = "") =>
    `rm -f /tmp/askpass.log; SSH_ASKPASS=/usr/local/bin/askpass SSH_ASKPASS_REQUIRE=force setsid ssh -v ${extra} -o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive -o NumberOfPasswordPrompts=1 ${dest} true </dev/null`;
  const asked = async (c: string) => (await on(c, "cat /tmp/askpass.log 2>/dev/null")).stdout.trim().split("\n").filter(Boolean).length;
  const lan = (ip: string) => `-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null pi@${ip}`;
  /** ssh as pi to the device's own sshd from inside the device (source 127.0.0.1) with root's key `good` or `wrong`. */
  const fromLoopback = (key: "good" | "wrong") => onDevice(`ssh -i /root/${key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null pi@127.0.0.1 true`);
  const deviceLog = async () => {
    const l = await docker(["logs", w.device], { check: false });
    return l.stdout + l.stderr;
  };
  const enroll = (extra: string[] = []) =>
    runCli(["enroll-device", "raspi", "--host", w.deviceIp, "--user", "pi", "--relay", w.relayFile, "--image", w.agentImage, "--client", "office-laptop", "--device-host-key", w.deviceFp, ...extra], { home: w.home });
  /** The listener's listening sockets, by inode: they change when sshd reloads (it re-executes itself). */
  const listenerSockets = async () => (await onDevice("ls -l /proc/$(cat /run/sshd.pid)/fd | grep -o 'socket:.*' | sort")).stdout;
  /** Every file of the device's ssh and rtunnel directories (name, mode, owner, sha256) and its sshd's listening sockets. */
  const deviceFiles = async () =>
    (await onDevice("for f in $(find /etc/ssh /etc/rtunnel -type f 2>/dev/null | sort); do printf '%s %s\\n' \"$(stat -c '%n %a %U' \"$f\")\" \"$(sha256sum < \"$f\" | cut -c1-16)\"; done; stat -c '%n %a %U' /etc/ssh/sshd_config.d /etc/rtunnel 2>&1")).stdout;
  const snapshot = async () => ({ files: await deviceFiles(), sockets: await listenerSockets(), registry: await w.relay.registry() });
  const effective = async (address: string) => (await onDevice(sh`sshd -T -C ${tunnelConnectionSpec("pi", address)}`.text)).stdout;
  test.serial(`[docker] ${suite}: before enrollment, ${penalties ? "failed logins from loopback lock loopback out (the trap)" : "failed logins from loopback lock nothing out (OpenSSH 9.2 has no penalties)"}; a password works on the LAN address`, async (t) => {
    t.regex((await onDevice("ssh -V 2>&1")).stdout, penalties ? /^OpenSSH_10\./ : /^OpenSSH_9\.2/);
    for (let i = 0; i < FAILURES; i++) t.not((await fromLoopback("wrong")).code, 0);
    if (penalties) {
      t.not((await fromLoopback("good")).code, 0, "the right key from loopback, refused");
      t.regex(await deviceLog(), /drop connection #\d+ from \[127\.0\.0\.1\]:\d+ on \[127\.0\.0\.1\]:22 penalty: failed authentication/);
    } else {
      const good = await fromLoopback("good");
      t.is(good.code, 0, good.stderr);
      t.notRegex(await deviceLog(), /penalty/);
    }
    const viaLan = await on(w.net.home.router, passwordLogin(lan(w.deviceIp)));
    t.is(viaLan.code, 0, viaLan.stderr);
    t.is(await asked(w.net.home.router), 1);
  });

  if (suite === "bookworm") {
    // (On the trixie device, whose sshd_config reads no sshd_config.d, a broken file there is not read: enrollment replaces it.)
    test.serial("[docker] bookworm: a broken drop-in of ours (sshd -t fails) stops enrollment in its plan with one line naming it; nothing changes anywhere", async (t) => {
      await onDevice(sh`mkdir -p /etc/ssh/sshd_config.d && printf 'NoSuchOption yes\n' > ${SSHD_DROP_IN}`.text);
      t.teardown(() => onDevice(sh`rm -f ${SSHD_DROP_IN}`.text).then(() => undefined));
      const before = await snapshot();
      const r = await enroll();
      t.is(r.code, 5, r.stderr);
      oneLine(t, r.stderr, /^rtunnel: the sshd configuration of the device raspi fails `sshd -t` already \(\/etc\/ssh\/sshd_config\.d\/rtunnel\.conf: line 1: Bad configuration option: NoSuchOption\): rtunnel's own \/etc\/ssh\/sshd_config\.d\/rtunnel\.conf is broken \(edited by hand\?\): remove it .*; nothing was changed$/);
      t.deepEqual(await snapshot(), before);
    });
  }

  if (suite === "trixie") {
    test.serial("[docker] trixie: a config whose sshd_config.d is read only inside a Match block makes sshd -t refuse the drop-in: everything is put back, one line, non-zero exit", async (t) => {
      // The global PerSourcePenaltyExemptList is not allowed inside a Match block, where this Include would read it too.
      await onDevice(sh`printf 'Match User pi\n\tInclude /etc/ssh/sshd_config.d/*.conf\n' >> ${SSHD_CONFIG} && sshd -t`.text);
      t.teardown(() => onDevice(sh`printf '%s' ${w.originalConfig} > ${SSHD_CONFIG}`.text).then(() => undefined));
      const before = await snapshot();
      const r = await enroll();
      t.is(r.code, 5, r.stderr);
      oneLine(t, r.stderr, /^rtunnel: on the device raspi, sshd -t refused the new configuration: \/etc\/ssh\/sshd_config\.d\/rtunnel\.conf line \d+: Directive 'PerSourcePenaltyExemptList' is not allowed within a Match block; the device's sshd configuration is as it was$/);
      t.notRegex(r.stderr, /device key|image on the device|relay: device port/, "it went on after the sshd step");
      t.deepEqual(await snapshot(), before, "files, the running sshd (not reloaded) and the relay's registry as they were");
    });
  }

  test.serial(`[docker] ${suite}: --dry-run lists the drop-in as a planned device change, with what it takes away, and changes nothing`, async (t) => {
    const before = await snapshot();
    const r = await enroll(["--dry-run"]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, new RegExp(`\\n {2}device {2}sshd: write ${SSHD_DROP_IN.replace(/\./g, "\\.")} for OpenSSH_${penalties ? "10" : "9\\.2"}[^:]*: ${penalties ? "PerSourcePenaltyExemptList 127\\.0\\.0\\.1,::1; " : ""}from 127\\.0\\.0\\.1,::1: PubkeyAuthentication yes, AuthenticationMethods publickey, PasswordAuthentication no, KbdInteractiveAuthentication no\\n`));
    t.regex(r.stdout, /\n {2}device {2}sshd: checked with sshd -t \(or put back\), then reloaded; sessions stay; a password \(or keyboard-interactive\) login through the tunnel or to localhost on the device no longer works: keys only; logins to the device's other addresses \(its LAN address\) are unchanged\n/);
    if (suite === "trixie") t.regex(r.stdout, /\n {2}device {2}sshd: add "Include \/etc\/ssh\/sshd_config\.d\/rtunnel\.conf" at the top of \/etc\/ssh\/sshd_config/);
    else t.notRegex(r.stdout, /add "Include/);
    // The sshd step comes before anything else on the device.
    const deviceLines = r.stdout.split("\n").filter((l) => l.startsWith("  device"));
    t.regex(deviceLines[0]!, /sshd: write/);
    const plan = JSON.parse((await enroll(["--dry-run", "--json"])).stdout) as { sshd: { dropIn: string; unchanged: boolean; directives: { keyword: string; value: string; scope: string }[] } };
    t.is(plan.sshd.dropIn, SSHD_DROP_IN);
    t.false(plan.sshd.unchanged);
    t.is(plan.sshd.directives.some((d) => d.keyword === "PerSourcePenaltyExemptList"), penalties);
    t.deepEqual(await snapshot(), before);
  });

  test.serial(`[docker] ${suite}: enrollment writes the drop-in before the agent starts, says what it changes, and sshd (reloaded, this session kept) uses it for new connections`, async (t) => {
    const sockets = await listenerSockets();
    const r = await enroll(["--json"]);
    t.is(r.code, 0, r.stderr);
    const steps = r.stderr.split("\n");
    const sshdStep = steps.findIndex((l) => /device sshd set for tunnel connections \(kill -HUP \d+\)/.test(l));
    t.true(sshdStep >= 0, r.stderr);
    t.true(sshdStep < steps.findIndex((l) => /agent configured and running/.test(l)), "before the agent starts");
    t.regex(r.stderr, /device sshd: a password \(or keyboard-interactive\) login through the tunnel or to localhost on the device no longer works/);
    const result = JSON.parse(r.stdout) as { port: number; changed: { device: string[] } };
    t.true(result.changed.device.includes(SSHD_DROP_IN));
    t.not(await listenerSockets(), sockets, "sshd was reloaded");
    t.regex(await deviceLog(), /Received SIGHUP; restarting\./);
    for (const address of ["127.0.0.1", "::1"]) {
      const eff = await effective(address);
      for (const l of ["authenticationmethods publickey", "passwordauthentication no", "kbdinteractiveauthentication no", "pubkeyauthentication yes"]) t.true(eff.split("\n").includes(l), `${address}: ${l}`);
    }
    const global = (await onDevice("sshd -T")).stdout;
    if (penalties) t.regex(global, /^persourcepenaltyexemptlist 127\.0\.0\.1,::1$/m);
    t.regex(global, /^passwordauthentication yes$/m, "other addresses keep the device's own setting");
    const config = (await onDevice(sh`cat ${SSHD_CONFIG}`.text)).stdout;
    if (suite === "trixie") {
      t.is(config, `${INCLUDE_LINES.join("\n")}\n${w.originalConfig}`);
      t.is((await onDevice(sh`cat ${SSHD_CONFIG_BACKUP}`.text)).stdout, w.originalConfig);
      t.is((await onDevice(sh`cat ${SSHD_INCLUDE_MARKER}`.text)).stdout, `${INCLUDE_LINES.join("\n")}\n`);
      t.true(result.changed.device.includes(SSHD_CONFIG));
    } else {
      t.is(config, w.originalConfig, "Debian's sshd_config reads sshd_config.d already: untouched");
      t.is((await onDevice(sh`test -e ${SSHD_INCLUDE_MARKER} || test -e ${SSHD_CONFIG_BACKUP} || echo none`.text)).stdout.trim(), "none");
    }
    // Laptop B is the enrolling laptop; laptop A a relay client whose key the device does not take.
    await copySshDir(w.laptopB, path.join(w.home, ".ssh"));
    const b = await on(w.laptopB, "ssh raspi hostname");
    t.is(b.stdout.trim(), "raspi", b.stderr);
    await w.relay.adminJson(["add-client", "laptop-a", "--devices", "raspi"], `${w.keyA.pub}\n`);
    const files = renderLaptopFiles({
      relay: { host: w.relay.ip, port: w.relay.facts("network").port, hostKey: parsePublicKey(w.relay.hostKey) },
      devices: [{ name: "raspi", port: result.port, user: "pi", hostKey: parsePublicKey(w.deviceHostKey) }],
      multiplex: false,
    });
    await installSshFiles(w.laptopA, { ...files, id_ed25519: await readFile(w.keyA.file) });
  });

  /** Laptop A logs in `n` times in a row through the tunnel, in the background; each try's exit code and last line go to files. */
  async function startFailingLoop(n: number, parallel = 1) {
    await on(w.laptopA, "rm -f /tmp/a.codes /tmp/a.err /tmp/a.done /tmp/a.last.*");
    const loop = (j: number) => `(for i in $(seq ${n}); do ssh -o BatchMode=yes raspi true 2>/tmp/a.last.${j}; echo $? >> /tmp/a.codes; tail -n 1 /tmp/a.last.${j} >> /tmp/a.err; done) &`;
    await docker(["exec", "-d", w.laptopA, "bash", "-c", `${Array.from({ length: parallel }, (_, j) => loop(j)).join(" ")} wait; touch /tmp/a.done`]);
  }
  const loopCodes = async () => (await on(w.laptopA, "cat /tmp/a.codes 2>/dev/null")).stdout.split("\n").filter(Boolean);
  const loopDone = () => waitFor("laptop A's loop to end", async () => (await on(w.laptopA, "test -e /tmp/a.done")).code === 0, { tries: 720, intervalMs: 500 });

  test.serial(`[docker] ${suite}: one laptop failing through the tunnel in a loop (more failures than the penalty needs) locks out no other laptop`, async (t) => {
    const logBefore = (await deviceLog()).length;
    await startFailingLoop(FAILURES * 2);
    await waitFor(`laptop A's first ${FAILURES} failures`, async () => (await loopCodes()).length >= FAILURES, { tries: 720, intervalMs: 500 });
    for (let i = 0; i < 3; i++) {
      const b = await on(w.laptopB, "ssh -o BatchMode=yes raspi true");
      t.is(b.code, 0, `laptop B, try ${i + 1}, while laptop A keeps failing: ${b.stderr}`);
    }
    await loopDone();
    t.deepEqual(new Set(await loopCodes()), new Set(["255"]));
    const errors = (await on(w.laptopA, "sort -u /tmp/a.err")).stdout.trim();
    t.regex(errors, /^\S+: Permission denied \(publickey\)\.$/, "every failure was the device refusing the key, none a dropped connection");
    const log = (await deviceLog()).slice(logBefore);
    t.true((log.match(/Connection closed by authenticating user pi 127\.0\.0\.1 port \d+ \[preauth\]/g) ?? []).length >= FAILURES * 2, "the device saw every failure, from 127.0.0.1");
    t.notRegex(log, /penalty/, "and penalised none");
    t.regex(log, /Accepted publickey for pi from 127\.0\.0\.1 port \d+ ssh2/);
    const back = await on(w.laptopB, "ssh -o BatchMode=yes raspi true");
    t.is(back.code, 0, back.stderr);
  });

  test.serial(`[docker] ${suite}: a password guesser through the tunnel gets nowhere (publickey is all the device offers from loopback); the LAN address takes the password as before`, async (t) => {
    const guess = await on(w.laptopA, passwordLogin("raspi"));
    t.not(guess.code, 0);
    t.regex(guess.stderr, /debug1: Host 'rtunnel-raspi' is known and matches the ED25519 host key\./, "it reached the device's sshd through the tunnel");
    const offered = [...guess.stderr.matchAll(/Authentications that can continue: (\S+)/g)].map((m) => m[1]);
    t.true(offered.length >= 2, guess.stderr); // the relay's hop and the device
    t.deepEqual(new Set(offered), new Set(["publickey"]));
    t.regex(guess.stderr, /Permission denied \(publickey\)\./);
    t.is(await asked(w.laptopA), 0, "no password was ever asked for");
    const loopback = await on(w.device, passwordLogin(lan("127.0.0.1")));
    t.not(loopback.code, 0);
    t.regex(loopback.stderr, /Permission denied \(publickey\)\./);
    t.is(await asked(w.device), 0);
    const viaLan = await on(w.net.home.router, passwordLogin(lan(w.deviceIp)));
    t.is(viaLan.code, 0, viaLan.stderr);
    t.is(await asked(w.net.home.router), 1);
  });

  if (penalties) {
    test.serial("[docker] trixie: the control through the tunnel: without the drop-in laptop A's failures (four loops at once) lock laptop B out; enrolling again puts it back and B logs in", async (t) => {
      const sockets = await listenerSockets();
      await onDevice(sh`rm ${SSHD_DROP_IN} && kill -HUP "$(cat /run/sshd.pid)"`.text);
      await waitFor("the device's sshd to reload", async () => (await listenerSockets()) !== sockets && (await listenerSockets()) !== "", { tries: 240, intervalMs: 250 });
      t.regex(await effective("127.0.0.1"), /^passwordauthentication yes$/m);
      // A penalty (authfail 5 s each) decays in real time and refuses from 15 s: on a loaded
      // machine one client failing every few seconds may never reach it, so A fails in four
      // loops at once, and B tries for as long as they run.
      await startFailingLoop(FAILURES, 4);
      await waitFor(`laptop A's first ${FAILURES} tries`, async () => (await loopCodes()).length >= FAILURES, { tries: 720, intervalMs: 500 });
      await waitFor("laptop B to be refused while laptop A keeps failing", async () => (await on(w.laptopB, "ssh -o BatchMode=yes raspi true")).code !== 0, { tries: 240, intervalMs: 500 });
      t.regex(await deviceLog(), /drop connection #\d+ from \[127\.0\.0\.1\]:\d+ on \[127\.0\.0\.1\]:22 penalty: failed authentication/);
      await loopDone();
      const healed = await enroll();
      t.is(healed.code, 0, healed.stderr);
      t.regex(healed.stderr, /device sshd: write \/etc\/ssh\/sshd_config\.d\/rtunnel\.conf/);
      const b = await on(w.laptopB, "ssh -o BatchMode=yes raspi true");
      t.is(b.code, 0, b.stderr);
    });
  }

  test.serial(`[docker] ${suite}: enrolling again changes nothing: the drop-in, sshd_config, the marker, and the running sshd (not reloaded)`, async (t) => {
    const before = await snapshot();
    const r = await enroll();
    t.is(r.code, 0, r.stderr);
    t.regex(r.stderr, /raspi was already enrolled: nothing changed/);
    t.notRegex(r.stderr, /device sshd:/);
    t.deepEqual(await snapshot(), before);
  });

  test.serial(`[docker] ${suite}: revoke-device removes the drop-in${suite === "trixie" ? " and the Include line it added (sshd_config byte for byte as before)" : ""}; loopback takes a password again`, async (t) => {
    const r = await runCli(["revoke-device", "raspi", "--relay", w.relayFile, "--json"], { home: w.home });
    t.is(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as { deviceCleaned: boolean; deviceSshd: string[] };
    t.true(result.deviceCleaned, r.stderr);
    t.deepEqual(result.deviceSshd, suite === "trixie" ? [SSHD_DROP_IN, SSHD_CONFIG, SSHD_INCLUDE_MARKER] : [SSHD_DROP_IN]);
    t.is((await onDevice(sh`test -e ${SSHD_DROP_IN} || test -e ${SSHD_INCLUDE_MARKER} || echo gone`.text)).stdout.trim(), "gone");
    t.is((await onDevice(sh`cat ${SSHD_CONFIG}`.text)).stdout, w.originalConfig);
    t.regex(await effective("127.0.0.1"), /^passwordauthentication yes$/m);
    await waitFor("a password login on loopback to work again (sshd reloaded)", async () => (await on(w.device, passwordLogin(lan("127.0.0.1")))).code === 0, { tries: 480, intervalMs: 250 });
    t.is(await asked(w.device), 1);
  });
}
