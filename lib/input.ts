// Bad input from a person (a flag, a file, a key line): one error class for the whole kit, so
// every command maps it to the same exit (2) and one line, and one way to show the bad value.

/** The message names the parameter, the bad value and the fix. */
export class InputError extends Error {
  override name = "InputError";
}

/** Shows a hostile value safely inside a one-line message. */
export function show(value: unknown): string {
  const s = typeof value === "string" ? value : String(value);
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 77)}...` : s);
}
