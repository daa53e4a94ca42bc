// POSIX shell text, with one quoting rule for the whole kit (the device's commands over SSH,
// cloud-init's scripts, the tests' commands in containers). A Script can only be made by the
// `sh` tag, which quotes every interpolated value: an unquoted interpolation cannot be
// written. A Script interpolated into another goes in as it is (it is already shell).

/** Characters that never need quoting in a POSIX shell word. */
const BARE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** One word for a POSIX shell: bare when that is safe, else in single quotes. */
export function quote(word: string | number): string {
  const s = String(word);
  return BARE.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export class Script {
  // Only `sh`, `Script.join` and `Script.lines` make one.
  private constructor(readonly text: string) {}

  /** @internal */
  static of(text: string): Script {
    return new Script(text);
  }

  /** Scripts joined by `separator` (a literal: " && ", "; ", "\n"). */
  static join(parts: readonly Script[], separator: string): Script {
    return new Script(parts.map((p) => p.text).join(separator));
  }

  /** One command per line. */
  static lines(...parts: readonly Script[]): Script {
    return Script.join(parts, "\n");
  }

  toString(): string {
    return this.text;
  }
}

export type ShellValue = string | number | Script | readonly (string | number)[];

/**
 * sh`docker inspect --format ${format} ${name}`: strings and numbers are quoted as one word
 * each, arrays as one word per element, Scripts go in as they are.
 */
export function sh(strings: TemplateStringsArray, ...values: readonly ShellValue[]): Script {
  let out = strings[0]!;
  values.forEach((v, i) => {
    out += v instanceof Script ? v.text : Array.isArray(v) ? v.map(quote).join(" ") : quote(v as string | number);
    out += strings[i + 1]!;
  });
  return Script.of(out);
}
