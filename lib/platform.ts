// The platforms the agent image is built for, and what each is called by the parties that
// name one: Docker (`linux/arm/v7`, and the image config's architecture + variant), Debian
// (`armhf`, debootstrap's --arch), the kernel (`uname -m`), QEMU's binfmt entry, and the
// agent's image tag (the classic image store keeps one platform per tag, so the tag names
// it). Pure: enrollment, the test bed's base images and its emulation all read it here.

export interface PlatformInfo {
  /** Docker's name: linux/arm64 */
  platform: string;
  /** the image config's `architecture` */
  arch: string;
  /** the image config's `variant` */
  variant?: string;
  /** Debian's architecture (debootstrap --arch, dpkg --print-architecture) */
  debian: string;
  /** what `uname -m` says on such a machine (or under QEMU for it) */
  uname: string;
  /** the word in an image tag: rtunnel/rtunnel:latest-arm64 */
  tag: string;
  /** the binfmt_misc entry that runs its programs on another machine */
  qemu: string;
}

export const PLATFORMS: Readonly<Record<string, PlatformInfo>> = {
  "linux/amd64": { platform: "linux/amd64", arch: "amd64", debian: "amd64", uname: "x86_64", tag: "amd64", qemu: "qemu-x86_64" },
  "linux/arm64": { platform: "linux/arm64", arch: "arm64", variant: "v8", debian: "arm64", uname: "aarch64", tag: "arm64", qemu: "qemu-aarch64" },
  "linux/arm/v7": { platform: "linux/arm/v7", arch: "arm", variant: "v7", debian: "armhf", uname: "armv7l", tag: "armv7", qemu: "qemu-arm" },
  // Debian's armel: ARMv5TE code, which ARMv6 (Pi Zero, Pi 1) runs. debian:trixie-slim is not
  // published for linux/arm/v6, and Debian's armhf needs ARMv7.
  "linux/arm/v5": { platform: "linux/arm/v5", arch: "arm", variant: "v5", debian: "armel", uname: "armv5tel", tag: "armv5", qemu: "qemu-arm" },
};

/** Docker's spellings of the same platform, to ours. */
const ALIASES: Record<string, string> = {
  "linux/x86_64": "linux/amd64",
  "linux/arm64/v8": "linux/arm64",
  "linux/aarch64": "linux/arm64",
  "linux/arm": "linux/arm/v7",
  "linux/armhf": "linux/arm/v7",
  "linux/armel": "linux/arm/v5",
};

/** A platform as Docker or a person writes it, or undefined when the agent is not built for it. */
export function platformInfo(name: string): PlatformInfo | undefined {
  const n = name.trim().toLowerCase();
  return PLATFORMS[ALIASES[n] ?? n];
}

/** `uname -m` → the platform the agent image is built for on such a machine. */
export function platformOfMachine(machine: string): string | undefined {
  const m: Record<string, string> = {
    x86_64: "linux/amd64",
    amd64: "linux/amd64",
    aarch64: "linux/arm64",
    arm64: "linux/arm64",
    armv8l: "linux/arm/v7", // a 32-bit process on a 64-bit ARM kernel
    armv7l: "linux/arm/v7",
    armv6l: "linux/arm/v5",
    armv5tel: "linux/arm/v5",
  };
  return m[machine.trim()];
}

/** The agent image's tag for a platform: one platform per tag (`latest` → `latest-arm64`). */
export function platformTag(image: string, platform: string): string {
  const p = platformInfo(platform);
  if (!p) throw new RangeError(`no image tag for platform ${platform}`);
  const slash = image.lastIndexOf("/");
  const colon = image.lastIndexOf(":");
  const [repo, tag] = colon > slash ? [image.slice(0, colon), image.slice(colon + 1)] : [image, "latest"];
  return `${repo}:${tag}-${p.tag}`;
}

/**
 * The smallest program of each architecture: writes "ok\n" and exits 0 (an ELF executable,
 * statically laid out, no libc). An engine that runs it can run that platform's containers;
 * one without emulation for it fails with "exec format error".
 */
export function probeProgram(platform: string): Buffer {
  const p = platformInfo(platform);
  if (!p) throw new RangeError(`no probe program for platform ${platform}`);
  const base = 0x400000;
  const msg = Buffer.from("ok\n");
  if (p.arch === "arm") {
    // ELF32, ARM mode (ARMv5 and later), EABI syscalls: r7 = number, svc #0.
    const code = words32([
      0xe3a00001, // mov r0, #1
      0xe28f1014, // add r1, pc, #20   (pc reads 8 ahead: the message after the 8 instructions)
      0xe3a02003, // mov r2, #3
      0xe3a07004, // mov r7, #4        (write)
      0xef000000, // svc #0
      0xe3a00000, // mov r0, #0
      0xe3a07001, // mov r7, #1        (exit)
      0xef000000, // svc #0
    ]);
    return elf32(base, 40, 0x05000000, Buffer.concat([code, msg]));
  }
  if (p.arch === "arm64") {
    const code = words32([
      0xd2800020, // mov x0, #1
      0x100000e1, // adr x1, msg       (28 bytes ahead)
      0xd2800062, // mov x2, #3
      0xd2800808, // mov x8, #64       (write)
      0xd4000001, // svc #0
      0xd2800000, // mov x0, #0
      0xd2800ba8, // mov x8, #93       (exit)
      0xd4000001, // svc #0
    ]);
    return elf64(base, 183, Buffer.concat([code, msg]));
  }
  // x86_64: write(1, msg, 3); exit(0)
  const code = Buffer.from([
    0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
    0xbf, 0x01, 0x00, 0x00, 0x00, // mov edi, 1
    0x48, 0x8d, 0x35, 0x10, 0x00, 0x00, 0x00, // lea rsi, [rip + 16]
    0xba, 0x03, 0x00, 0x00, 0x00, // mov edx, 3
    0x0f, 0x05, // syscall
    0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60
    0x31, 0xff, // xor edi, edi
    0x0f, 0x05, // syscall
  ]);
  return elf64(base, 62, Buffer.concat([code, msg]));
}

function words32(ws: number[]): Buffer {
  const b = Buffer.alloc(ws.length * 4);
  ws.forEach((w, i) => b.writeUInt32LE(w >>> 0, i * 4));
  return b;
}

/** ELF64 executable: header, one PT_LOAD (R+X) mapping the whole file, code right after. */
function elf64(base: number, machine: number, body: Buffer): Buffer {
  const h = Buffer.alloc(64 + 56);
  h.write("\x7fELF", 0, "latin1");
  h[4] = 2; // 64-bit
  h[5] = 1; // little endian
  h[6] = 1; // ELF version
  h.writeUInt16LE(2, 16); // ET_EXEC
  h.writeUInt16LE(machine, 18);
  h.writeUInt32LE(1, 20);
  h.writeBigUInt64LE(BigInt(base + h.length), 24); // entry
  h.writeBigUInt64LE(64n, 32); // program headers
  h.writeUInt16LE(64, 52); // header size
  h.writeUInt16LE(56, 54); // program header size
  h.writeUInt16LE(1, 56); // one program header
  const total = BigInt(h.length + body.length);
  h.writeUInt32LE(1, 64); // PT_LOAD
  h.writeUInt32LE(5, 68); // R+X
  h.writeBigUInt64LE(0n, 72); // offset
  h.writeBigUInt64LE(BigInt(base), 80);
  h.writeBigUInt64LE(BigInt(base), 88);
  h.writeBigUInt64LE(total, 96);
  h.writeBigUInt64LE(total, 104);
  h.writeBigUInt64LE(0x1000n, 112);
  return Buffer.concat([h, body]);
}

/** ELF32 executable, the same layout. */
function elf32(base: number, machine: number, flags: number, body: Buffer): Buffer {
  const h = Buffer.alloc(52 + 32);
  h.write("\x7fELF", 0, "latin1");
  h[4] = 1; // 32-bit
  h[5] = 1;
  h[6] = 1;
  h.writeUInt16LE(2, 16);
  h.writeUInt16LE(machine, 18);
  h.writeUInt32LE(1, 20);
  h.writeUInt32LE(base + h.length, 24);
  h.writeUInt32LE(52, 28);
  h.writeUInt32LE(flags, 36);
  h.writeUInt16LE(52, 40);
  h.writeUInt16LE(32, 42);
  h.writeUInt16LE(1, 44);
  const total = h.length + body.length;
  h.writeUInt32LE(1, 52); // PT_LOAD
  h.writeUInt32LE(0, 56);
  h.writeUInt32LE(base, 60);
  h.writeUInt32LE(base, 64);
  h.writeUInt32LE(total, 68);
  h.writeUInt32LE(total, 72);
  h.writeUInt32LE(5, 76);
  h.writeUInt32LE(0x1000, 80);
  return Buffer.concat([h, body]);
}
