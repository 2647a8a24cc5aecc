import type { IncomingMessage, ServerResponse } from 'node:http';
import { isAcceptable, parseAccept } from '../registry/mediatypes.ts';
import { isValidName, parseReference, type Reference } from '../registry/names.ts';
import { resolveRoute } from '../routing.ts';
import type { TrackRequest } from './access-log.ts';
import { manifestHeaders } from './respond.ts';
import { manifestPath, type V2Services } from './v2.ts';

/** Runs before Koa for every request; true when it answered. */
export type FastPath = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

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
export function createFastPath(services: V2Services, track: TrackRequest): FastPath {
  return async (req, res) => {
    const method = req.method;
    if (method !== 'GET' && method !== 'HEAD') return false;
    if (req.headers['if-none-match'] !== undefined) return false;
    const url = req.url ?? '';
    if (url.includes('%')) return false;
    const q = url.indexOf('?');
    const m = manifestPath.exec(q === -1 ? url : url.slice(0, q));
    if (!m) return false;
    const name = m[1]!;
    let ns: string | undefined;
    if (q !== -1) {
      const params = new URLSearchParams(url.slice(q + 1));
      ns = params.get('ns') ?? undefined;
    }
    let ref: Reference;
    let route;
    try {
      if (!isValidName(name)) return false;
      ref = parseReference(m[2]!);
      route = resolveRoute(name, ns, services.routing);
    } catch {
      return false;
    }
    const hit = await services.manifests.peek(route, ref);
    if (!hit || !isAcceptable(parseAccept(req.headers.accept), hit.mediaType)) return false;
    const access = track(req, res);
    access.source = 'cache';
    res.writeHead(200, {
      ...manifestHeaders({ digest: hit.digest, mediaType: hit.mediaType, size: hit.body.length }, ref.kind === 'digest'),
      'Docker-Distribution-API-Version': 'registry/2.0',
    });
    res.end(method === 'HEAD' ? undefined : hit.body);
    return true;
  };
}
