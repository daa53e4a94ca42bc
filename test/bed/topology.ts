// The NAT topology of DESIGN.md "Test bed": three ordinary bridge networks, `internet`, `home`
// and `office`; home and office each behind a router container that masquerades what leaves
// for `internet`; the device and the laptop use their router as default route. (`--internal`
// networks would drop the frames forwarded to a router on these machines.)
import { randomInt } from "node:crypto";
import { docker } from "./docker.ts";
import { buildImage } from "./images.ts";
import type { Scope } from "./scope.ts";

export interface Site {
  network: string;
  router: string;
  /** The router's address on the site network (the site's default gateway). */
  routerLanIp: string;
  /** The router's address on `internet`: what the internet side sees as the source. */
  routerWanIp: string;
}

export interface Topology {
  internet: string;
  home: Site;
  office: Site;
  /** Address of a container on one of the topology's networks. */
  ip(container: string, network: string): Promise<string>;
  /**
   * An address on `internet` that no container takes unless asked (`--ip`), for a container
   * that must keep its address when replaced, as an Elastic IP does. Only with `fixedInternetSubnet`.
   */
  reservedInternetIp?: string;
  /** Starts a container on a site's network, routed through its router (needs NET_ADMIN). */
  attach(site: Site, name: string, runArgs: readonly string[]): Promise<string>;
}

async function createRouter(scope: Scope, site: string, internet: string, hostImage: string): Promise<Site> {
  const network = await scope.network(site);
  const router = scope.name(`${site}-router`);
  await scope.run([
    "--name", router, "--hostname", `${site}-router`, "--network", network,
    "--cap-add", "NET_ADMIN", "--sysctl", "net.ipv4.ip_forward=1",
    "--entrypoint", "sleep", hostImage, "infinity",
  ]);
  await scope.exec(router, ["true"]); // fail here, clearly, if it did not start
  await docker(["network", "connect", internet, router]);
  const routerLanIp = await scope.ip(router, network);
  const routerWanIp = await scope.ip(router, internet);
  // Masquerade only what leaves through the internet-facing interface.
  const script = [
    "set -e",
    `wan=$(ip -o -4 addr show | awk -v ip="${routerWanIp}" 'index($4, ip"/")==1 {print $2}')`,
    '[ -n "$wan" ]',
    'iptables -t nat -A POSTROUTING -o "$wan" -j MASQUERADE',
  ].join("\n");
  await scope.exec(router, ["sh", "-c", script]);
  return { network, router, routerLanIp, routerWanIp };
}

export interface TopologyOptions {
  /** Give `internet` a /24 of our choosing, so `reservedInternetIp` can be handed out. */
  fixedInternetSubnet?: boolean;
}

/** `internet` on a free random 10.x.y.0/24 (Docker refuses overlapping subnets: try another). */
async function fixedSubnetNetwork(scope: Scope): Promise<{ name: string; prefix: string }> {
  for (let i = 0; i < 20; i++) {
    const prefix = `10.${randomInt(200, 250)}.${randomInt(0, 255)}`;
    const name = scope.name(`internet${i}`);
    const r = await docker(["network", "create", ...scope.flags, "--subnet", `${prefix}.0/24`, "--ip-range", `${prefix}.0/25`, name], { check: false });
    if (r.code === 0) return { name, prefix };
    if (!/overlap/i.test(r.stderr)) throw new Error(r.stderr);
  }
  throw new Error("no free 10.x.y.0/24 subnet for the internet network");
}

export async function createNatTopology(scope: Scope, opts: TopologyOptions = {}): Promise<Topology> {
  const hostImage = await buildImage("host");
  const fixed = opts.fixedInternetSubnet ? await fixedSubnetNetwork(scope) : undefined;
  const internet = fixed?.name ?? (await scope.network("internet"));
  const [home, office] = await Promise.all([
    createRouter(scope, "home", internet, hostImage),
    createRouter(scope, "office", internet, hostImage),
  ]);
  return {
    internet,
    home,
    office,
    // Outside the --ip-range Docker allocates from, so no other container can take it.
    reservedInternetIp: fixed && `${fixed.prefix}.200`,
    ip: (container, network) => scope.ip(container, network),
    async attach(site, name, runArgs) {
      const container = await scope.run(["--name", name, "--network", site.network, "--cap-add", "NET_ADMIN", ...runArgs]);
      await scope.exec(container, ["ip", "route", "replace", "default", "via", site.routerLanIp]);
      return container;
    },
  };
}
