/**
 * Parsing of Distribution v2 API paths. Repository names contain slashes, so
 * the endpoint kind is found from the right: `/v2/<name>/manifests/<ref>`,
 * `/v2/<name>/blobs/<digest>`, `/v2/<name>/blobs/uploads/[<id>]`,
 * `/v2/<name>/tags/list`, `/v2/<name>/referrers/<digest>`.
 */
export type V2Route =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'upload'; name: string; id: string | undefined }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string };

const routePattern =
  /^\/v2\/(.+?)\/(?:(manifests)\/([^/]+)|(blobs)\/uploads\/([^/]*)|(blobs)\/([^/]+)|(tags)\/list|(referrers)\/([^/]+))\/?$/;

export function parseV2Path(path: string): V2Route | undefined {
  if (path === '/v2/' || path === '/v2') return { kind: 'base' };
  if (path === '/v2/_catalog') return { kind: 'catalog' };
  const m = routePattern.exec(path);
  if (!m) return undefined;
  const name = m[1]!;
  if (m[2]) return { kind: 'manifest', name, reference: m[3]! };
  if (m[4]) return { kind: 'upload', name, id: m[5] || undefined };
  if (m[6]) return { kind: 'blob', name, digest: m[7]! };
  if (m[8]) return { kind: 'tags', name };
  return { kind: 'referrers', name, digest: m[10]! };
}
