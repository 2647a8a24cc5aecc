import { RegistryError } from './errors.ts';
import { MediaTypes, isIndexMediaType, manifestMediaTypes } from './mediatypes.ts';
import { parseDigest } from './digest.ts';

/** A content descriptor as found in manifests and indexes. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** What tender needs to know of a manifest: what it points at. */
export interface ParsedManifest {
  mediaType: string;
  /** Child manifests (for an index). */
  manifests: Descriptor[];
  /** Config and layers (for an image manifest). */
  blobs: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

function invalid(reason: string): RegistryError {
  return new RegistryError('MANIFEST_INVALID', { detail: { reason } });
}

function descriptor(value: unknown, where: string): Descriptor {
  if (typeof value !== 'object' || value === null) throw invalid(`${where} is not an object`);
  const d = value as Record<string, unknown>;
  if (typeof d.mediaType !== 'string') throw invalid(`${where}.mediaType is missing`);
  if (typeof d.digest !== 'string' || !parseDigest(d.digest)) throw invalid(`${where}.digest is invalid`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw invalid(`${where}.size is invalid`);
  }
  return d as unknown as Descriptor;
}

/**
 * Parses manifest bytes. `declaredType` is the Content-Type the bytes came
 * with; when the JSON carries a mediaType it must agree.
 */
export function parseManifest(bytes: Uint8Array, declaredType: string | undefined): ParsedManifest {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw invalid('not valid JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw invalid('not a JSON object');
  const m = json as Record<string, unknown>;
  const inner = typeof m.mediaType === 'string' ? m.mediaType : undefined;
  if (declaredType && inner && declaredType !== inner) {
    throw invalid(`Content-Type ${declaredType} does not match the manifest's mediaType ${inner}`);
  }
  const mediaType = declaredType ?? inner ?? (Array.isArray(m.manifests) ? manifestMediaTypes[0]! : manifestMediaTypes[1]!);
  if (!manifestMediaTypes.includes(mediaType)) throw invalid(`unsupported manifest media type ${mediaType}`);

  const result: ParsedManifest = { mediaType, manifests: [], blobs: [] };
  if (typeof m.artifactType === 'string') result.artifactType = m.artifactType;
  if (m.annotations && typeof m.annotations === 'object') result.annotations = m.annotations as Record<string, string>;
  if (m.subject !== undefined) result.subject = descriptor(m.subject, 'subject');

  if (isIndexMediaType(mediaType)) {
    if (!Array.isArray(m.manifests)) throw invalid('index has no manifests array');
    result.manifests = m.manifests.map((d, i) => descriptor(d, `manifests[${i}]`));
  } else if (mediaType === MediaTypes.dockerManifestV1Signed || mediaType === MediaTypes.dockerManifestV1) {
    // Schema 1: layers are listed as fsLayers[].blobSum without sizes.
    const layers = Array.isArray(m.fsLayers) ? m.fsLayers : [];
    for (const l of layers as Array<{ blobSum?: unknown }>) {
      if (typeof l.blobSum === 'string' && parseDigest(l.blobSum)) {
        result.blobs.push({ mediaType: 'application/octet-stream', digest: l.blobSum, size: -1 });
      }
    }
  } else {
    if (m.config !== undefined) result.blobs.push(descriptor(m.config, 'config'));
    if (!Array.isArray(m.layers)) throw invalid('manifest has no layers array');
    m.layers.forEach((d, i) => result.blobs.push(descriptor(d, `layers[${i}]`)));
  }
  return result;
}
