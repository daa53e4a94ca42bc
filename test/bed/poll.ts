/** Polls `probe` until it returns true: bounded tries, never a bare sleep. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  { tries = 60, intervalMs = 500 }: { tries?: number; intervalMs?: number } = {},
): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${what} (${tries} tries, ${intervalMs} ms apart)`);
}
