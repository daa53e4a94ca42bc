// The NAT topology of DESIGN.md "Test bed": three ordinary bridge networks, `internet`, `home`
// and `office`; home and office each behind a router container that masquerades what leaves
// for `internet`; the device and the laptop use their router as default route. (`--internal`
// networks would drop the frames forwarded to a router on these machines.)
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

export async function createNatTopology(scope: Scope): Promise<Topology> {
  const hostImage = await buildImage("host");
  const internet = await scope.network("internet");
  const [home, office] = await Promise.all([
    createRouter(scope, "home", internet, hostImage),
    createRouter(scope, "office", internet, hostImage),
  ]);
  return {
    internet,
    home,
    office,
    ip: (container, network) => scope.ip(container, network),
    async attach(site, name, runArgs) {
      const container = await scope.run(["--name", name, "--network", site.network, "--cap-add", "NET_ADMIN", ...runArgs]);
      await scope.exec(container, ["ip", "route", "replace", "default", "via", site.routerLanIp]);
      return container;
    },
  };
}
