// The laptop side of fleet certificates through the commands (the laptop model's certificate lines in
// `grant` and `login`): `login` names this laptop's certificate with CertificateFile on
// both hops of its own files (and nothing else changes); `grant --out` renders that laptop's
// files with CertificateFile, IdentitiesOnly and a @cert-authority line for a device that has
// a host certificate (its pin for one that has none); `ssh -G` reads them as meant. A
// throwaway CA made with ssh-keygen, held by a real ssh-agent started here.
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { caPaths } from "../lib/contract/ca.ts";
import { keyLine, parsePublicKey, type PublicKey } from "../lib/keys.ts";
import { run } from "../lib/proc.ts";
import { grant, login } from "../provision/commands/grant.ts";
import { emptyModel, renderFragment, renderKnown, withDevice, withRelay } from "../provision/laptop/model.ts";
import { startAgent, tempDir } from "./bed/local.ts";


async function keyPair(file: string, comment: string): Promise<PublicKey> {
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file]);
  return parsePublicKey((await readFile(`${file}.pub`, "utf8")).trim());
}

/** An operator's ssh dir: identity, a relay hop, pi1 trusted through the host CA, pi2 pinned; a CA loaded in a fresh agent. */
async function operator(t: ExecutionContext) {
  const home = await tempDir(t, "home");
  const sshDir = path.join(home, ".ssh");
  const p = caPaths(sshDir);
  await mkdir(p.dir, { recursive: true, mode: 0o700 });
  await mkdir(path.join(sshDir, "config.d"), { recursive: true, mode: 0o700 });
  await keyPair(path.join(sshDir, "id_ed25519"), "operator");
  await keyPair(p.userCa, "rtunnel-user-ca");
  const hostCa = await keyPair(p.hostCa, "rtunnel-host-ca");
  for (const f of [p.userCa, p.hostCa]) await chmod(f, 0o600);
  const relayKey = await keyPair(path.join(home, "relay"), "relay");
  const pinned = await keyPair(path.join(home, "host"), "host");
  let model = withRelay(emptyModel({ identityFile: "~/.ssh/id_ed25519", knownHostsFile: "~/.ssh/known_hosts.rtunnel" }), { host: "127.0.0.1", port: 12345, hostKey: relayKey });
  model = withDevice(model, { name: "pi1", port: 20001, user: "pi", hostCa });
  model = withDevice(model, { name: "pi2", port: 20002, user: "pi", hostKey: pinned });
  await writeFile(path.join(sshDir, "config.d", "rtunnel"), renderFragment(model));
  await writeFile(path.join(sshDir, "known_hosts.rtunnel"), renderKnown(model));
  await writeFile(path.join(sshDir, "config"), "Include ~/.ssh/config.d/rtunnel\n");
  const relayFile = path.join(home, "relay.json");
  await writeFile(relayFile, JSON.stringify({ host: "127.0.0.1", port: 12345, hostKey: keyLine(relayKey) }));
  const sock = await startAgent(t);
  await run("ssh-add", ["-q", p.userCa, p.hostCa], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
  return { home, sshDir, sock, relayFile, hostCa, pinned };
}

test("login: this laptop's own files name its certificate on both hops (CertificateFile after IdentityFile, IdentitiesOnly yes); a second login changes them no further", async (t) => {
  const op = await operator(t);
  const fragment = path.join(op.sshDir, "config.d", "rtunnel");
  const before = await readFile(fragment, "utf8");
  const known = await readFile(path.join(op.sshDir, "known_hosts.rtunnel"), "utf8");
  const r = await login({ sshDir: op.sshDir, home: op.home, name: "laptop-op", agentSock: op.sock });
  t.deepEqual(r.written, [path.join(op.sshDir, "id_ed25519-cert.pub"), fragment]);
  const after = await readFile(fragment, "utf8");
  t.is(after, before.replaceAll("  IdentityFile ~/.ssh/id_ed25519\n", "  IdentityFile ~/.ssh/id_ed25519\n  CertificateFile ~/.ssh/id_ed25519-cert.pub\n"));
  t.is(await readFile(path.join(op.sshDir, "known_hosts.rtunnel"), "utf8"), known, "known_hosts untouched");
  // (ssh -G expands ~ from the passwd entry, not HOME: the fragment is read directly.)
  const g = await run("ssh", ["-G", "-F", fragment, "pi1"]);
  t.true(g.stdout.split("\n").includes("certificatefile ~/.ssh/id_ed25519-cert.pub"), g.stdout);
  t.true(g.stdout.split("\n").includes("identitiesonly yes"));
  const again = await login({ sshDir: op.sshDir, home: op.home, name: "laptop-op", agentSock: op.sock });
  t.deepEqual(again.written, [path.join(op.sshDir, "id_ed25519-cert.pub")]);
  t.is(await readFile(fragment, "utf8"), after);
});

test("grant --out: that laptop's files carry CertificateFile and IdentitiesOnly on both hops, the host CA line for a certified device and the pin for the other", async (t) => {
  const op = await operator(t);
  const out = await tempDir(t, "out");
  const keyFile = path.join(out, "key");
  await keyPair(keyFile, "alice");
  const r = await grant({ sshDir: op.sshDir, home: op.home, name: "alice", key: `${keyFile}.pub`, devices: ["pi1", "pi2"], out, relayFile: op.relayFile, agentSock: op.sock });
  t.true(r.written.includes(path.join(out, "config.d/rtunnel")));
  const fragment = await readFile(path.join(out, "config.d/rtunnel"), "utf8");
  // That laptop's key is named "key" (key.pub given): its files name it and its certificate so.
  t.is(fragment.match(/^ {2}IdentityFile ~\/\.ssh\/key\n {2}CertificateFile ~\/\.ssh\/key-cert\.pub\n {2}IdentitiesOnly yes$/gm)?.length, 3, fragment);
  t.true(r.written.includes(path.join(out, "key-cert.pub")), r.written.join(", "));
  const known = await readFile(path.join(out, "known_hosts.rtunnel"), "utf8");
  t.true(known.includes(`@cert-authority rtunnel-pi1 ssh-ed25519 ${op.hostCa.base64}\n`));
  t.true(known.includes(`rtunnel-pi2 ssh-ed25519 ${op.pinned.base64}\n`));
  t.notRegex(known, /^rtunnel-pi1 /m);
  t.notRegex(known, /\*/);
});
