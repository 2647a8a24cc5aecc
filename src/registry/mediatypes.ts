/** Manifest media types tender knows how to store, serve and walk. */
export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifestV1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  dockerManifestV1: 'application/vnd.docker.distribution.manifest.v1+json',
} as const;

/** Every manifest media type, in the order tender asks upstreams for them. */
export const manifestMediaTypes: readonly string[] = [
  MediaTypes.ociIndex,
  MediaTypes.ociManifest,
  MediaTypes.dockerManifestList,
  MediaTypes.dockerManifest,
  MediaTypes.dockerManifestV1Signed,
  MediaTypes.dockerManifestV1,
];

export function isIndexMediaType(mediaType: string): boolean {
  return mediaType === MediaTypes.ociIndex || mediaType === MediaTypes.dockerManifestList;
}

/**
 * Parses an Accept header into the list of media types the client takes.
 * Returns undefined when the client accepts anything (no header, or a wildcard).
 */
export function parseAccept(header: string | string[] | undefined): Set<string> | undefined {
  if (header === undefined) return undefined;
  const values = Array.isArray(header) ? header : [header];
  const types = new Set<string>();
  for (const value of values) {
    for (const part of value.split(',')) {
      const type = part.split(';')[0]!.trim().toLowerCase();
      if (type === '') continue;
      if (type === '*/*' || type === 'application/*') return undefined;
      types.add(type);
    }
  }
  return types.size === 0 ? undefined : types;
}

/**
 * Whether a client with the given Accept set can read a manifest of the given
 * type. As Distribution does, a client that names no manifest type at all
 * (for example only `application/json`) is served anything, and the legacy
 * schema 1 types are always acceptable.
 */
export function isAcceptable(accept: Set<string> | undefined, mediaType: string): boolean {
  if (accept === undefined || accept.has(mediaType)) return true;
  return ![...accept].some((t) => manifestMediaTypes.includes(t));
}
