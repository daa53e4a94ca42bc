// Images made without a Dockerfile or a registry: a `docker save`-format archive (manifest,
// config, layers) loaded with `docker load`. The config carries the platform for real
// (`architecture`, `variant`): Docker 20.10's `docker import --platform` records the
// engine's own architecture whatever it is told, and the classic builder's
// `docker build --platform` then refuses or misuses such a base.
import { createHash } from "node:crypto";
import type { PlatformInfo } from "../platform.ts";
import { tarArchive, type TarFile } from "../tar.ts";
import { docker } from "./docker.ts";

export const sha256 = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");

export interface ArchiveParts {
  /** manifest.json and the config, named as `docker save` names them */
  files: TarFile[];
  /** where each layer goes in the archive (`<diff id>/layer.tar`), in order */
  layerPaths: string[];
}

/**
 * The manifest and config of a one-platform image whose layers (plain tar) have the given
 * sha256 digests. The caller adds each layer at its `layerPaths` entry.
 */
export function imageArchiveParts(o: { tag: string; platform: PlatformInfo; diffIds: readonly string[]; config: Record<string, unknown>; createdBy: string }): ArchiveParts {
  const created = "1970-01-01T00:00:00Z";
  const config = JSON.stringify({
    architecture: o.platform.arch,
    ...(o.platform.variant ? { variant: o.platform.variant } : {}),
    os: "linux",
    created,
    config: o.config,
    rootfs: { type: "layers", diff_ids: o.diffIds.map((d) => `sha256:${d}`) },
    history: [{ created, created_by: o.createdBy }],
  });
  const configName = `${sha256(config)}.json`;
  const layerPaths = o.diffIds.map((d) => `${d}/layer.tar`);
  const manifest = JSON.stringify([{ Config: configName, RepoTags: [o.tag], Layers: layerPaths }]);
  return { files: [{ name: "manifest.json", data: manifest }, { name: configName, data: config }], layerPaths };
}

/** A small image, all in memory: `files` as its one layer. */
export async function loadSmallImage(o: { tag: string; platform: PlatformInfo; files: TarFile[]; config: Record<string, unknown>; createdBy: string }): Promise<void> {
  const layer = tarArchive(o.files);
  const parts = imageArchiveParts({ ...o, diffIds: [sha256(layer)] });
  const archive = tarArchive([...parts.files, { name: parts.layerPaths[0]!, data: layer }]);
  await docker(["load", "--quiet"], { input: archive, timeoutMs: 120_000 });
}
