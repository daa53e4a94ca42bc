// What `ssh-keygen -L` says about a certificate, read back into a typed object: the CA's own
// reading of what it signed (validity, principals, serial, key id, signature algorithm), used
// to check every certificate right after signing and to report one. Pure: the output in,
// the object out (ssh-keygen runs with TZ=UTC, so its times are UTC).

export interface CertInfo {
  kind: "user" | "host";
  /** the certificate's type, e.g. ssh-ed25519-cert-v01@openssh.com */
  certType: string;
  /** SHA256 fingerprint of the certified key */
  keyFingerprint: string;
  /** the CA key's type as ssh-keygen names it (ED25519, RSA) and its fingerprint */
  caKeyType: string;
  caFingerprint: string;
  /** the signature's algorithm (`ssh-ed25519`, `rsa-sha2-512`), when ssh-keygen prints it */
  signatureAlgorithm?: string;
  keyId: string;
  serial: string;
  /** undefined: from always */
  validAfter?: Date;
  /** undefined: forever */
  validBefore?: Date;
  principals: string[];
  criticalOptions: string[];
  extensions: string[];
}

const utc = (s: string): Date => {
  const d = new Date(`${s}Z`);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/.test(s) || Number.isNaN(d.getTime())) throw new Error(`ssh-keygen -L: unreadable time ${JSON.stringify(s)}`);
  return d;
};

/** The validity line's text: `forever`, `from A to B`, `after A`, `before B`. */
export function parseValidity(text: string): { validAfter?: Date; validBefore?: Date } {
  if (text === "forever") return {};
  let m = /^from (\S+) to (\S+)$/.exec(text);
  if (m) return { validAfter: utc(m[1]!), validBefore: utc(m[2]!) };
  m = /^after (\S+)$/.exec(text);
  if (m) return { validAfter: utc(m[1]!) };
  m = /^before (\S+)$/.exec(text);
  if (m) return { validBefore: utc(m[1]!) };
  throw new Error(`ssh-keygen -L: unreadable validity ${JSON.stringify(text)}`);
}

/** Reads `ssh-keygen -L -f CERT` output (TZ=UTC); throws when it is not one certificate's listing. */
export function parseCertListing(out: string): CertInfo {
  const lines = out.split("\n");
  const field = (name: string): string | undefined => {
    const line = lines.find((l) => l.trimStart().startsWith(`${name}:`));
    return line?.trimStart().slice(name.length + 1).trim();
  };
  /** the indented lines under a section header, or [] for `(none)` */
  const section = (name: string): string[] => {
    const at = lines.findIndex((l) => l.trimStart().startsWith(`${name}:`));
    if (at < 0) throw new Error(`ssh-keygen -L: no ${name}`);
    if (lines[at]!.includes("(none)")) return [];
    const indent = lines[at]!.length - lines[at]!.trimStart().length;
    const out: string[] = [];
    for (const l of lines.slice(at + 1)) {
      if (!l.trim() || l.length - l.trimStart().length <= indent) break;
      out.push(l.trim());
    }
    return out;
  };
  const type = /^(\S+) (user|host) certificate$/.exec(field("Type") ?? "");
  const pub = /^\S+ (SHA256:\S+)$/.exec(field("Public key") ?? "");
  const ca = /^(\S+) (SHA256:\S+)(?: \(using (\S+)\))?$/.exec(field("Signing CA") ?? "");
  const id = /^"(.*)"$/.exec(field("Key ID") ?? "");
  const serial = field("Serial");
  const valid = field("Valid");
  if (!type || !pub || !ca || !id || !serial || !/^\d+$/.test(serial) || valid === undefined) {
    throw new Error(`ssh-keygen -L: not a certificate listing: ${JSON.stringify(out.slice(0, 200))}`);
  }
  return {
    kind: type[2] as "user" | "host",
    certType: type[1]!,
    keyFingerprint: pub[1]!,
    caKeyType: ca[1]!,
    caFingerprint: ca[2]!,
    ...(ca[3] ? { signatureAlgorithm: ca[3] } : {}),
    keyId: id[1]!,
    serial,
    ...parseValidity(valid),
    principals: section("Principals"),
    criticalOptions: section("Critical Options"),
    extensions: section("Extensions"),
  };
}

/** Where a certificate stands at `now`: not yet valid, valid, or expired. */
export function certStatus(info: Pick<CertInfo, "validAfter" | "validBefore">, now: Date): "not-yet-valid" | "valid" | "expired" {
  if (info.validAfter && now.getTime() < info.validAfter.getTime()) return "not-yet-valid";
  if (info.validBefore && now.getTime() >= info.validBefore.getTime()) return "expired";
  return "valid";
}
