/**
 * Pushing to a registry over plain HTTP (fetch), as the OCI Distribution
 * push API describes it: blobs by monolithic POST, manifests by PUT. Images
 * are built in memory; their layers are random bytes (registries never look
 * inside them).
 */
import { randomBytes } from 'node:crypto';
import { sha256 } from './images.ts';

export const MEDIA_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MEDIA_OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MEDIA_OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const MEDIA_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';

/** Base URL and an Authorization header value (or none). */
export interface Registry {
  url: string;
  authorization?: string;
}

export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

/** fetch against `registry` with its credentials; `path` starts with /v2/ or is a Location. */
export function call(registry: Registry, method: string, path: string, init: { body?: Buffer | string; headers?: Record<string, string> } = {}): Promise<Response> {
  const headers: Record<string, string> = { ...init.headers };
  if (registry.authorization) headers.Authorization ??= registry.authorization;
  return fetch(new URL(path, registry.url), { method, headers, ...(init.body !== undefined ? { body: init.body } : {}) });
}

export interface Blob {
  digest: string;
  data: Buffer;
}

export function blobOf(data: Buffer | string): Blob {
  const bytes = Buffer.from(data);
  return { digest: sha256(bytes), data: bytes };
}

export function randomBlob(size: number): Blob {
  return blobOf(randomBytes(size));
}

/** Monolithic upload (POST ?digest=); throws unless 201. */
export async function pushBlob(registry: Registry, name: string, blob: Blob): Promise<void> {
  const res = await call(registry, 'POST', `/v2/${name}/blobs/uploads/?digest=${blob.digest}`, {
    body: blob.data,
    headers: { 'Content-Type': 'application/octet-stream' },
  });
  await res.arrayBuffer();
  if (res.status !== 201) throw new Error(`push of blob ${blob.digest} to ${name}: ${res.status}`);
}

/** PUT of a manifest by tag or digest; returns the response (body unread). */
export function putManifest(registry: Registry, name: string, ref: string, body: Buffer | string, mediaType: string): Promise<Response> {
  return call(registry, 'PUT', `/v2/${name}/manifests/${ref}`, { body: Buffer.from(body), headers: { 'Content-Type': mediaType } });
}

export interface MemoryImage {
  config: Blob;
  layers: Blob[];
  manifest: Blob;
  /** Every blob the manifest references (config first). */
  blobs: Blob[];
}

/** An OCI image manifest over a config and the given layers (new random ones of `sizes` when not given). */
export function memoryImage(opts: { layers?: Blob[]; sizes?: number[]; extra?: Record<string, unknown> } = {}): MemoryImage {
  const layers = opts.layers ?? (opts.sizes ?? [4096]).map((n) => randomBlob(n));
  const config = blobOf(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, nonce: randomBytes(8).toString('hex') }));
  const manifest = blobOf(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_OCI_MANIFEST,
      config: { mediaType: MEDIA_OCI_CONFIG, digest: config.digest, size: config.data.length },
      layers: layers.map((l) => ({ mediaType: MEDIA_LAYER, digest: l.digest, size: l.data.length })),
      ...opts.extra,
    }),
  );
  return { config, layers, manifest, blobs: [config, ...layers] };
}

/** Pushes every blob of the image, then its manifest as `ref`; returns the manifest digest. */
export async function pushMemoryImage(registry: Registry, name: string, ref: string, image: MemoryImage): Promise<string> {
  for (const blob of image.blobs) await pushBlob(registry, name, blob);
  const res = await putManifest(registry, name, ref, image.manifest.data, MEDIA_OCI_MANIFEST);
  await res.arrayBuffer();
  if (res.status !== 201) throw new Error(`push of manifest ${name}:${ref}: ${res.status}`);
  return image.manifest.digest;
}

/** The OCI error code of a response (and checks the body's shape). */
export async function errorCode(res: Response): Promise<string | undefined> {
  const body = (await res.json()) as { errors?: Array<{ code: string; message: string }> };
  return body.errors?.[0]?.code;
}
