import type { IncomingMessage, ServerResponse } from 'node:http';
import { isAcceptable, parseAccept } from '../registry/mediatypes.ts';
import { isValidName, parseReference, type Reference } from '../registry/names.ts';
import { authorize } from '../auth/access.ts';
import { resolveRoute, type Route } from '../routing.ts';
import type { StoredManifest } from '../store/content-store.ts';
import type { AccessLog } from './access-log.ts';
import { emitEvent } from './events.ts';
import { manifestHeaders } from './respond.ts';
import { manifestPath, type V2Services } from './v2.ts';

/**
 * Runs before Koa for every request; true when it answered. Synchronous
 * except for tag requests over a metadata store outside the process (Redis).
 */
export type FastPath = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;

/**
 * Warm manifest requests answered without Koa. A GET or HEAD of a manifest
 * whose tag is fresh (or whose digest is known) and whose bytes are in
 * memory is the commonest request a pull-through cache gets, and building a
 * Koa context, running the middleware chain and the router cost more than
 * the answer itself. Anything else, including every error and every
 * conditional request, returns false and goes through the Koa app, which
 * stays the one place that decides everything but this exact hit; the
 * headers come from the same helper the Koa handler uses.
 */
export function createFastPath(services: V2Services, access: AccessLog): FastPath {
  /**
   * What a URL means for anonymous pulls, worked out once: its route and
   * reference, or null when the fast path must not answer it (not a manifest,
   * an invalid name, or a name anonymous clients may not pull). Routing and
   * access rules are fixed at start, so the answer never changes.
   */
  const resolve = memoized(10_000, (url: string): { route: Route; ref: Reference } | null => {
    if (url.includes('%')) return null;
    const q = url.indexOf('?');
    const m = manifestPath.exec(q === -1 ? url : url.slice(0, q));
    if (!m) return null;
    const name = m[1]!;
    const ns = q === -1 ? undefined : (new URLSearchParams(url.slice(q + 1)).get('ns') ?? undefined);
    try {
      if (!isValidName(name)) return null;
      const ref = parseReference(m[2]!);
      const route = resolveRoute(name, ns, services.routing);
      const { rules, groups } = services.access;
      return authorize(undefined, route.accessName, 'pull', rules, groups).allowed ? { route, ref } : null;
    } catch {
      return null;
    }
  });

  return (req, res) => {
    const method = req.method;
    if (method !== 'GET' && method !== 'HEAD') return false;
    if (req.headers['if-none-match'] !== undefined) return false;
    // Authenticated requests go through Koa's checks.
    if (req.headers.authorization !== undefined) return false;
    const target = resolve(req.url ?? '');
    if (!target) return false;
    const { route, ref } = target;
    const started = performance.now();
    // From memory (or the shared metadata store for tags): anything needing the disk or the upstream goes through Koa.
    if (route.kind === 'local') return answer(req, res, route, ref, services.local.manifests.peek(route, ref), started);
    const proxy = services.proxy.manifests;
    if (ref.kind === 'tag' && !proxy.tagsPeekSync) return proxy.peek(route, ref).then((hit) => answer(req, res, route, ref, hit, started));
    return answer(req, res, route, ref, proxy.peekSync(route, ref), started);
  };

  function answer(req: IncomingMessage, res: ServerResponse, route: Route, ref: Reference, hit: StoredManifest | undefined, started: number): boolean {
    const method = req.method;
    if (!hit || !isAcceptable(acceptOf(req.headers.accept), hit.mediaType)) return false;
    const reqId = access.requestId(req);
    const headers = headersFor(hit, ref.kind === 'digest');
    headers[headers.length - 1] = reqId;
    res.writeHead(200, headers);
    const body = method === 'HEAD' ? undefined : hit.body;
    res.end(body);
    access.served(req, res, reqId, { source: 'cache', route: 'manifest', bytes: body?.length ?? 0 }, started);
    if (method === 'GET' && services.notifier.enabled) {
      emitEvent(services.notifier, req, reqId, {
        action: 'pull',
        kind: 'manifest',
        repository: route.accessName,
        digest: hit.digest,
        mediaType: hit.mediaType,
        size: hit.body.length,
        ...(ref.kind === 'tag' ? { tag: ref.tag } : {}),
        ...(route.kind === 'upstream' ? { cache: 'hit' as const } : {}),
      }, undefined);
    }
    return true;
  }
}

/** Parsed Accept headers: clients send the same few strings on every request. */
const parsedAccept = memoized(256, parseAccept);

function acceptOf(header: string | undefined): Set<string> | undefined {
  return header === undefined ? undefined : parsedAccept(header);
}

/** `compute` remembered per key, forgetting everything once `limit` keys are held (the keys here are few and repeat). */
function memoized<V>(limit: number, compute: (key: string) => V): (key: string) => V {
  const known = new Map<string, V>();
  return (key) => {
    let value = known.get(key);
    if (value !== undefined || known.has(key)) return value as V;
    value = compute(key);
    if (known.size >= limit) known.clear();
    known.set(key, value);
    return value;
  };
}

/**
 * Response headers per cached manifest, as the flat array writeHead takes
 * without re-validating an object's keys. Built once per manifest and kind
 * of reference; the last value is the request id slot.
 */
const headerCache = new WeakMap<StoredManifest, { tag?: string[]; digest?: string[] }>();

function headersFor(m: StoredManifest, byDigest: boolean): string[] {
  let entry = headerCache.get(m);
  if (!entry) headerCache.set(m, (entry = {}));
  const kind = byDigest ? 'digest' : 'tag';
  let flat = entry[kind];
  if (!flat) {
    const object = manifestHeaders({ digest: m.digest, mediaType: m.mediaType, size: m.body.length }, byDigest);
    flat = Object.entries({ ...object, 'Docker-Distribution-API-Version': 'registry/2.0' }).flat();
    flat.push('X-Request-Id', '');
    entry[kind] = flat;
  }
  // A copy: the request id slot differs per response.
  return flat.slice();
}
