// How the "device" fixture (test/fixtures/device: sshd + dockerd) must be run on these
// machines: dockerd inside a container without --privileged, which fails here (one capability
// is withheld). Shared by the enrollment tests and `npm run demo`.
export const DEVICE_RUN_FLAGS: readonly string[] = [
  "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
  "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
  "-v", "/sys/fs/cgroup:/sys/fs/cgroup",
];
