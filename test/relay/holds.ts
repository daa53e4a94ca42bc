// ssh clients held open against a test relay from its client container, each with its log and
// exit code under /tmp/hold: what the limit and certificate tests watch become held, refused or cut.
import { sh } from "../../lib/shell.ts";
import { docker, exec, waitFor } from "../bed/index.ts";
import { type Relay, sshArgv } from "./fixture.ts";

export type HoldState = "pending" | "held" | "refused" | "cut" | "failed";

/** ssh clients held open in the client container, each with its log and exit code under /tmp/hold. */
export function holds(r: Relay) {
  const dir = "/tmp/hold";
  const stateOf = async (tag: string): Promise<HoldState> => {
    const res = await exec(r.client, ["sh", "-c", sh`cat ${`${dir}/${tag}.log`} 2>/dev/null; echo; echo "exit:$(cat ${`${dir}/${tag}.exit`} 2>/dev/null)"`.text], { check: false });
    const done = !/exit:$/m.test(res.stdout);
    const authenticated = /Authenticated to /.test(res.stdout);
    if (!done) return authenticated ? "held" : "pending";
    if (authenticated) return "cut";
    return /Permission denied \(publickey\)/.test(res.stdout) ? "refused" : "failed";
  };
  return {
    /** Starts `ssh -v -N [opts] user@relay` with /k/KEY; returns at once. */
    async start(tag: string, key: string, user: string, opts: readonly string[] = []) {
      const argv = sshArgv(r.container, key, user, ["-v", "-N", "-o", "ServerAliveInterval=5", ...opts]);
      const script = sh`mkdir -p ${dir}; ${argv} >${`${dir}/${tag}.log`} 2>&1 </dev/null & echo $! >${`${dir}/${tag}.pid`}; wait $!; echo $? >${`${dir}/${tag}.exit`}`;
      await docker(["exec", "-d", r.client, "sh", "-c", script.text]);
    },
    stateOf,
    /** Waits until the client is no longer pending, and returns what became of it. */
    async settled(tag: string): Promise<HoldState> {
      let s: HoldState = "pending";
      await waitFor(`ssh ${tag} to be let in or refused`, async () => (s = await stateOf(tag)) !== "pending", { tries: 480, intervalMs: 250 });
      return s;
    },
    async stop(tags: readonly string[]) {
      await exec(r.client, ["sh", "-c", tags.map((t) => sh`kill $(cat ${`${dir}/${t}.pid`}) 2>/dev/null;`.text).join(" ") + " true"], { check: false });
    },
  };
}
