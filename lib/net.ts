// The kernel's TCP socket table (/proc/net/tcp), read the one way: which loopback ports
// listen. The relay's `list` (in Python, rtunneld-admin) reads the same table the same way;
// test/relay-admin.test.ts holds the two to the same answers.

/** Ports in LISTEN state on 127.0.0.1, from the text of /proc/net/tcp. */
export function listeningLoopbackPorts(procNetTcp: string): Set<number> {
  const ports = new Set<number>();
  for (const line of procNetTcp.split("\n").slice(1)) {
    const [, local, , state] = line.trim().split(/\s+/);
    if (state !== "0A" || !local?.startsWith("0100007F:")) continue;
    ports.add(parseInt(local.slice(9), 16));
  }
  return ports;
}
