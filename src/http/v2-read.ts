import type Router from '@koa/router';
import type { Context } from 'koa';
import { requireDigest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { isAcceptable, MediaTypes, parseAccept } from '../registry/mediatypes.ts';
import { parseReference, requireName } from '../registry/names.ts';
import { paginate, parsePageSize } from '../registry/pagination.ts';
import { parseRange } from '../registry/range.ts';
import { requireAccess } from './access.ts';
import { cacheOutcome, type RequestEvent } from './events.ts';
import { manifestHeaders, sendBlob, setContentHeaders } from './respond.ts';
import {
  blobPath,
  manifestPath,
  maxPage,
  param,
  queryString,
  referrersPath,
  routeOf,
  setNextLink,
  tagsPath,
  type V2Services,
} from './v2.ts';

function pullEvent(
  repository: string,
  kind: 'manifest' | 'blob',
  digest: string,
  mediaType: string,
  size: number,
  source: string,
  tag: string | undefined,
): RequestEvent {
  const cache = cacheOutcome(source);
  return { action: 'pull', kind, repository, digest, mediaType, size, ...(tag ? { tag } : {}), ...(cache ? { cache } : {}) };
}

function endHead(ctx: Context): void {
  ctx.status = 200;
  ctx.respond = false;
  ctx.res.end();
}

/** GET/HEAD of manifests, blobs, tags and referrers, for local and cached repositories alike. */
export function registerReads(router: Router, services: V2Services): void {
  router.get(manifestPath, async (ctx) => {
    const route = routeOf(ctx, services);
    requireAccess(ctx, services.access, route, 'pull');
    const ref = parseReference(param(ctx, 1));
    const m = route.kind === 'local' ? await services.local.manifests.get(route, ref) : await services.proxy.manifests.get(route, ref);
    if (!isAcceptable(parseAccept(ctx.get('Accept') || undefined), m.mediaType)) {
      throw new RegistryError('MANIFEST_UNKNOWN', {
        message: `manifest is of type ${m.mediaType}, which the request's Accept header does not include`,
        detail: { mediaType: m.mediaType },
      });
    }
    ctx.set(manifestHeaders(m, ref.kind === 'digest'));
    ctx.state.access.source = m.source;
    ctx.state.event = pullEvent(route.accessName, 'manifest', m.digest, m.mediaType, m.size, m.source, ref.kind === 'tag' ? ref.tag : undefined);
    if (ctx.get('If-None-Match') === `"${m.digest}"`) {
      ctx.status = 304;
      return;
    }
    if (ctx.method === 'HEAD') return endHead(ctx);
    ctx.status = 200;
    ctx.body = await m.body();
  });

  router.get(blobPath, async (ctx) => {
    const route = routeOf(ctx, services);
    requireAccess(ctx, services.access, route, 'pull');
    const digest = requireDigest(param(ctx, 1)).value;
    ctx.set('Accept-Ranges', 'bytes');
    if (ctx.method === 'HEAD') {
      const { size, source } = route.kind === 'local' ? await services.local.blobs.stat(route, digest) : await services.proxy.blobs.stat(route, digest);
      setContentHeaders(ctx, { digest, mediaType: 'application/octet-stream', length: size, immutable: true });
      ctx.state.access.source = source;
      return endHead(ctx);
    }
    const rangeHeader = ctx.get('Range') || undefined;
    const choose = (size: number) => parseRange(rangeHeader, size);
    const blob = route.kind === 'local' ? await services.local.blobs.open(route, digest, choose) : await services.proxy.blobs.open(route, digest, choose);
    ctx.state.access.source = blob.source;
    ctx.state.event = pullEvent(route.accessName, 'blob', digest, 'application/octet-stream', blob.size, blob.source, undefined);
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
    const route = routeOf(ctx, services);
    requireAccess(ctx, services.access, route, 'pull');
    const n = parsePageSize(queryString(ctx, 'n'), maxPage);
    const all =
      route.kind === 'local'
        ? await services.local.manifests.tags(route)
        : await services.proxy.manifests.tags(route, services.tagListTtl(route.upstream));
    const page = paginate(all, n, queryString(ctx, 'last'));
    setNextLink(ctx, `/v2/${pathName}/tags/list`, n, page.next);
    ctx.type = 'application/json';
    ctx.body = JSON.stringify({ name: pathName, tags: page.items });
  });

  router.get(referrersPath, async (ctx) => {
    const route = routeOf(ctx, services);
    requireAccess(ctx, services.access, route, 'pull');
    const digest = requireDigest(param(ctx, 1)).value;
    const artifactType = queryString(ctx, 'artifactType');
    const manifests =
      route.kind === 'local'
        ? await services.local.manifests.referrers(route, digest, artifactType)
        : await services.proxy.manifests.referrers(route, digest, artifactType);
    if (artifactType !== undefined) ctx.set('OCI-Filters-Applied', 'artifactType');
    ctx.set('Content-Type', MediaTypes.ociIndex);
    ctx.body = JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests });
  });
}
