// The fleet test's world: the NAT topology of DESIGN.md "Test bed" (as test/bed/topology.ts
// builds it), except that `internet` has a fixed subnet, so a replaced relay container can
// take the address of the one it replaces, as the Elastic IP keeps it on AWS.
import { randomInt } from "node:crypto";
import { docker, type Scope } from "../bed/index.ts";
import type { Site } from "../bed/topology.ts";

export interface FleetNet {
  internet: string;
  /** a free address on `internet` for the relay, kept across its replacement */
  relayIp: string;
  home: Site;
  office: Site;
  attach(site: Site, name: string, runArgs: readonly string[]): Promise<string>;
}

async function router(scope: Scope, site: string, internet: string, hostImage: string): Promise<Site> {
  const network = await scope.network(site);
  const name = scope.name(`${site}-router`);
  await scope.run(["--name", name, "--hostname", `${site}-router`, "--network", network, "--cap-add", "NET_ADMIN", "--sysctl", "net.ipv4.ip_forward=1", "--entrypoint", "sleep", hostImage, "infinity"]);
  await docker(["network", "connect", internet, name]);
  const routerLanIp = await scope.ip(name, network);
  const routerWanIp = await scope.ip(name, internet);
  const script = `set -e\nwan=$(ip -o -4 addr show | awk -v ip="${routerWanIp}" 'index($4, ip"/")==1 {print $2}')\n[ -n "$wan" ]\niptables -t nat -A POSTROUTING -o "$wan" -j MASQUERADE`;
  await scope.exec(name, ["sh", "-c", script]);
  return { network, router: name, routerLanIp, routerWanIp };
}

export async function createFleetNet(scope: Scope, hostImage: string): Promise<FleetNet> {
  let internet: string | undefined;
  let prefix = "";
  for (let i = 0; i < 20 && !internet; i++) {
    prefix = `10.${randomInt(200, 250)}.${randomInt(0, 255)}`;
    const name = scope.name(`internet${i}`);
    const r = await docker(["network", "create", ...scope.flags, "--subnet", `${prefix}.0/24`, name], { check: false });
    if (r.code === 0) internet = name;
    else if (!/overlap/i.test(r.stderr)) throw new Error(r.stderr);
  }
  if (!internet) throw new Error("no free 10.x.y.0/24 subnet for the internet network");
  const [home, office] = await Promise.all([router(scope, "home", internet, hostImage), router(scope, "office", internet, hostImage)]);
  return {
    internet,
    relayIp: `${prefix}.200`,
    home,
    office,
    async attach(site, name, runArgs) {
      const c = await scope.run(["--name", name, "--network", site.network, "--cap-add", "NET_ADMIN", ...runArgs]);
      await scope.exec(c, ["ip", "route", "replace", "default", "via", site.routerLanIp]);
      return c;
    },
  };
}
