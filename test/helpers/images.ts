/**
 * Real, unpackable images built as OCI layouts on disk (no tool needed), and pushed to a
 * registry with skopeo.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeRandomLayer } from './layer.ts';
import { skopeo, tempDir } from './tools.ts';

export const MEDIA_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MEDIA_OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MEDIA_OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';

/** Layers at least this big are stored uncompressed unless `compress` says otherwise. */
export const LARGE_LAYER_BYTES = 50 * 1000 * 1000;

export interface BuiltLayer {
  digest: string;
  size: number;
  mediaType: string;
}

export interface BuiltImage {
  layoutDir: string;
  tag: string;
  manifestDigest: string;
  mediaType: string;
  /** '' for an index. */
  configDigest: string;
  /** For an index: every child's layers, in platform order. */
  layers: BuiltLayer[];
  /** for an index: the per-platform images */
  children?: BuiltImage[];
  /** Size of the manifest (or index) bytes. */
  manifestSize: number;
  /** For an image: its platform. */
  platform?: Platform;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface BuildImageOptions {
  /** One layer per entry, each a tar holding one file of that many random bytes. */
  layerSizes: number[];
  /** Default 'amd64'. */
  arch?: string;
  /** Default 'linux'. */
  os?: string;
  variant?: string;
  /** gzip layers; default: gzip only layers under LARGE_LAYER_BYTES. */
  compress?: boolean;
  /** Default 'latest'. */
  tag?: string;
  /** Layout directory; default a new temp dir. */
  dir?: string;
}

/** Builds an image (OCI image manifest) in an OCI layout, tagged `tag`. */
export async function buildImage(opts: BuildImageOptions): Promise<BuiltImage> {
  const layoutDir = opts.dir ?? (await tempDir('image'));
  const tag = opts.tag ?? 'latest';
  await initLayout(layoutDir);
  const platform: Platform = { os: opts.os ?? 'linux', architecture: opts.arch ?? 'amd64', ...(opts.variant ? { variant: opts.variant } : {}) };
  const image = await writeImageBlobs(layoutDir, tag, opts.layerSizes, platform, opts.compress);
  await writeLayoutIndex(layoutDir, image.manifestDigest, image.manifestSize, MEDIA_OCI_MANIFEST, tag);
  return image;
}

/** Builds an OCI index with one image per platform ('amd64', 'arm64', 'linux/arm/v7'), all in one layout. */
export async function buildIndex(opts: { platforms: string[]; layerSizes: number[]; tag?: string; compress?: boolean; dir?: string }): Promise<BuiltImage> {
  const layoutDir = opts.dir ?? (await tempDir('index'));
  const tag = opts.tag ?? 'latest';
  await initLayout(layoutDir);
  const children: BuiltImage[] = [];
  for (const p of opts.platforms) {
    children.push(await writeImageBlobs(layoutDir, '', opts.layerSizes, parsePlatform(p), opts.compress));
  }
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA_OCI_INDEX,
    manifests: children.map((c) => ({ mediaType: c.mediaType, digest: c.manifestDigest, size: c.manifestSize, platform: c.platform })),
  };
  const { digest, size } = await writeBlob(layoutDir, JSON.stringify(index));
  await writeLayoutIndex(layoutDir, digest, size, MEDIA_OCI_INDEX, tag);
  return {
    layoutDir,
    tag,
    manifestDigest: digest,
    manifestSize: size,
    mediaType: MEDIA_OCI_INDEX,
    configDigest: '',
    layers: children.flatMap((c) => c.layers),
    children,
  };
}

/**
 * Pushes a built image (with `--all` for an index) to `upstream` as `ref` ('name:tag') and
 * returns the manifest digest the registry now serves (`v2s2` conversion changes it).
 */
export async function pushImage(
  image: BuiltImage,
  upstream: { host: string; pushCredentials: { username: string; password: string } },
  ref: string,
  opts: { format?: 'oci' | 'v2s2' } = {},
): Promise<{ manifestDigest: string }> {
  const creds = `${upstream.pushCredentials.username}:${upstream.pushCredentials.password}`;
  const dest = `docker://${upstream.host}/${ref}`;
  const args = ['copy', '--dest-tls-verify=false', '--dest-creds', creds];
  if (image.children) args.push('--all');
  if (opts.format) args.push('--format', opts.format);
  // Without this skopeo gzips uncompressed layers on the way to a registry (new digests).
  if (opts.format !== 'v2s2') args.push('--preserve-digests');
  await skopeo([...args, `oci:${image.layoutDir}:${image.tag}`, dest], { timeoutMs: 300_000 });
  const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', '--creds', creds, dest]);
  return { manifestDigest: sha256(raw.stdoutBytes) };
}

/** Parses 'arm64', 'linux/arm64' or 'linux/arm/v7'. */
export function parsePlatform(p: string): Platform {
  const parts = p.split('/');
  if (parts.length === 1) return { os: 'linux', architecture: p };
  const [os = 'linux', architecture = 'amd64', variant] = parts;
  return { os, architecture, ...(variant ? { variant } : {}) };
}

/** `sha256:<hex>` of some bytes. */
export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

async function writeImageBlobs(layoutDir: string, tag: string, layerSizes: number[], platform: Platform, compress: boolean | undefined): Promise<BuiltImage> {
  const blobsDir = join(layoutDir, 'blobs', 'sha256');
  const layers = [];
  for (const size of layerSizes) layers.push(await writeRandomLayer(blobsDir, size, compress ?? size < LARGE_LAYER_BYTES));
  const config = {
    created: new Date().toISOString(),
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map(() => ({ created_by: 'tender test harness' })),
  };
  const configBlob = await writeBlob(layoutDir, JSON.stringify(config));
  const builtLayers = layers.map(({ digest, size, mediaType }) => ({ digest, size, mediaType }));
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_OCI_MANIFEST,
    config: { mediaType: MEDIA_OCI_CONFIG, digest: configBlob.digest, size: configBlob.size },
    layers: builtLayers,
  };
  const m = await writeBlob(layoutDir, JSON.stringify(manifest));
  return { layoutDir, tag, manifestDigest: m.digest, manifestSize: m.size, mediaType: MEDIA_OCI_MANIFEST, configDigest: configBlob.digest, layers: builtLayers, platform };
}

async function initLayout(layoutDir: string): Promise<void> {
  await mkdir(join(layoutDir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
}

async function writeBlob(layoutDir: string, text: string): Promise<{ digest: string; size: number }> {
  const data = Buffer.from(text);
  const digest = sha256(data);
  await writeFile(join(layoutDir, 'blobs', 'sha256', digest.slice('sha256:'.length)), data);
  return { digest, size: data.length };
}

/** Writes the layout's index.json with one tagged entry (one image or index per layout). */
async function writeLayoutIndex(layoutDir: string, digest: string, size: number, mediaType: string, tag: string): Promise<void> {
  const index = {
    schemaVersion: 2,
    manifests: [{ mediaType, digest, size, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  };
  await writeFile(join(layoutDir, 'index.json'), JSON.stringify(index));
}
