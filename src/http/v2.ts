import Router from '@koa/router';
import type { Context } from 'koa';
import { requireDigest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { isAcceptable, parseAccept } from '../registry/mediatypes.ts';
import { parseReference, requireName } from '../registry/names.ts';
import { paginate, parsePageSize } from '../registry/pagination.ts';
import { parseRange } from '../registry/range.ts';
import type { ProxyBlobs } from '../proxy/blobs.ts';
import type { ProxyManifests } from '../proxy/manifests.ts';
import { resolveRoute, type RoutingConfig, type UpstreamRoute } from '../routing.ts';
import { manifestHeaders, sendBlob, setContentHeaders } from './respond.ts';

export interface V2Services {
  manifests: ProxyManifests;
  blobs: ProxyBlobs;
  routing: RoutingConfig;
  tagListTtl: (upstream: string) => number;
}

const name = '(.+?)';
export const manifestPath = new RegExp(`^/v2/${name}/manifests/([^/]+)$`);
const blobPath = new RegExp(`^/v2/${name}/blobs/([^/]+)$`);
const uploadPath = new RegExp(`^/v2/${name}/blobs/uploads/([^/]*)$`);
const tagsPath = new RegExp(`^/v2/${name}/tags/list$`);

const maxTagsPage = 10_000;

function param(ctx: Context, i: number): string {
  const value = (ctx.captures as string[] | undefined)?.[i];
  if (value === undefined) throw new RegistryError('NOT_FOUND');
  return value;
}

function routeOf(ctx: Context): UpstreamRoute {
  const pathName = requireName(param(ctx, 0));
  const ns = typeof ctx.query.ns === 'string' ? ctx.query.ns : undefined;
  return resolveRoute(pathName, ns, ctx.state.v2.routing);
}

function readOnly(): never {
  throw new RegistryError('UNSUPPORTED', {
    message: 'this repository is a read-only cache of an upstream registry; pushes and deletes are not accepted',
  });
}

/** The Distribution v2 / OCI read API over the pull-through services. Handlers parse, call one service, set headers. */
export function v2Router(services: V2Services): Router {
  const router = new Router();
  router.use(async (ctx, next) => {
    ctx.state.v2 = services;
    await next();
  });

  router.get('/v2/', (ctx) => {
    ctx.type = 'application/json';
    ctx.body = '{}';
  });

  router.get(manifestPath, async (ctx) => {
    const route = routeOf(ctx);
    const ref = parseReference(param(ctx, 1));
    const m = await services.manifests.get(route, ref);
    if (!isAcceptable(parseAccept(ctx.get('Accept') || undefined), m.mediaType)) {
      throw new RegistryError('MANIFEST_UNKNOWN', {
        message: `manifest is of type ${m.mediaType}, which the request's Accept header does not include`,
        detail: { mediaType: m.mediaType },
      });
    }
    ctx.set(manifestHeaders(m, ref.kind === 'digest'));
    ctx.state.access.source = m.source;
    if (ctx.get('If-None-Match') === `"${m.digest}"`) {
      ctx.status = 304;
      return;
    }
    ctx.status = 200;
    if (ctx.method === 'HEAD') {
      ctx.respond = false;
      ctx.res.end();
      return;
    }
    ctx.body = await m.body();
  });

  router.get(blobPath, async (ctx) => {
    const route = routeOf(ctx);
    const digest = requireDigest(param(ctx, 1)).value;
    ctx.set('Accept-Ranges', 'bytes');
    if (ctx.method === 'HEAD') {
      const { size, source } = await services.blobs.stat(route, digest);
      setContentHeaders(ctx, { digest, mediaType: 'application/octet-stream', length: size, immutable: true });
      ctx.state.access.source = source;
      ctx.status = 200;
      ctx.respond = false;
      ctx.res.end();
      return;
    }
    const rangeHeader = ctx.get('Range') || undefined;
    const blob = await services.blobs.open(route, digest, (size) => parseRange(rangeHeader, size));
    ctx.state.access.source = blob.source;
    const { range } = blob;
    if (range) {
      ctx.status = 206;
      ctx.set('Content-Range', `bytes ${range.start}-${range.end}/${blob.size}`);
    } else {
      ctx.status = 200;
    }
    setContentHeaders(ctx, {
      digest,
      mediaType: 'application/octet-stream',
      length: range ? range.end - range.start + 1 : blob.size,
      immutable: true,
    });
    await sendBlob(ctx, blob);
  });

  router.get(tagsPath, async (ctx) => {
    const pathName = requireName(param(ctx, 0));
    const route = routeOf(ctx);
    const n = parsePageSize(typeof ctx.query.n === 'string' ? ctx.query.n : undefined, maxTagsPage);
    const last = typeof ctx.query.last === 'string' ? ctx.query.last : undefined;
    const page = paginate(await services.manifests.tags(route, services.tagListTtl(route.upstream)), n, last);
    if (page.next !== undefined && n !== undefined) {
      const q = new URLSearchParams({ n: String(n), last: page.next });
      if (typeof ctx.query.ns === 'string') q.set('ns', ctx.query.ns);
      ctx.set('Link', `</v2/${pathName}/tags/list?${q}>; rel="next"`);
    }
    ctx.type = 'application/json';
    ctx.body = JSON.stringify({ name: pathName, tags: page.items });
  });

  router.all('/v2/', () => {
    throw new RegistryError('UNSUPPORTED');
  });
  router.all(manifestPath, readOnly);
  router.all(blobPath, readOnly);
  router.all(uploadPath, readOnly);
  return router;
}
