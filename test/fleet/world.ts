// The fleet test's world: the test bed's NAT topology with a fixed `internet` subnet, so a
// replaced relay container can take the address of the one it replaces, as the Elastic IP
// keeps it on AWS.
import { createNatTopology, type Scope, type Site } from "../bed/index.ts";

export interface FleetNet {
  internet: string;
  /** a free address on `internet` for the relay, kept across its replacement */
  relayIp: string;
  home: Site;
  office: Site;
  attach(site: Site, name: string, runArgs: readonly string[]): Promise<string>;
}

export async function createFleetNet(scope: Scope): Promise<FleetNet> {
  const net = await createNatTopology(scope, { fixedInternetSubnet: true });
  return { ...net, relayIp: net.reservedInternetIp! };
}
