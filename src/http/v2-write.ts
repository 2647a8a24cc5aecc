import type Router from '@koa/router';
import type { Context } from 'koa';
import { requireDigest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { parseReference, requireName } from '../registry/names.ts';
import { resolveRoute, type LocalRoute, type Route } from '../routing.ts';
import { rangeHeaders } from '../local/uploads.ts';
import { requireAccess } from './access.ts';
import type { RequestEvent } from './events.ts';
import { hasBody, readBody } from './body.ts';
import { blobPath, manifestPath, param, queryString, routeOf, uploadPath, type V2Services } from './v2.ts';

/** The route of a push or delete: a local repository the principal may `action`. */
function localRoute(ctx: Context, services: V2Services, action: 'push' | 'delete'): LocalRoute {
  const route = routeOf(ctx, services);
  requireAccess(ctx, services.access, route, action);
  if (route.kind !== 'local') throw new RegistryError('DENIED');
  return route;
}

function requireDeletes(services: V2Services): void {
  if (!services.deleteEnabled) {
    throw new RegistryError('UNSUPPORTED', { message: 'deletes are disabled (storage.delete.enabled)' });
  }
}

/** Content-Range of a PATCH: `<start>-<end>`; undefined when absent. */
function chunkStart(ctx: Context): number | undefined {
  const header = ctx.get('Content-Range');
  if (!header) return undefined;
  const m = /^(?:bytes )?(\d+)-(\d+)$/.exec(header.trim());
  if (!m || Number(m[2]) < Number(m[1])) {
    throw new RegistryError('BLOB_UPLOAD_INVALID', { message: 'invalid Content-Range', detail: { contentRange: header } });
  }
  const length = ctx.get('Content-Length');
  if (length !== '' && Number(length) !== Number(m[2]) - Number(m[1]) + 1) {
    throw new RegistryError('RANGE_INVALID', {
      message: `Content-Range ${header} does not match Content-Length ${length}`,
      detail: { contentRange: header, contentLength: length },
    });
  }
  return Number(m[1]);
}

function blobPushed(route: LocalRoute, digest: string): RequestEvent {
  return { action: 'push', kind: 'blob', repository: route.name, digest, mediaType: 'application/octet-stream' };
}

function created(ctx: Context, location: string, digest: string): void {
  ctx.status = 201;
  ctx.set({ Location: location, 'Docker-Content-Digest': digest, 'Content-Length': '0' });
  ctx.body = '';
}

function accepted(ctx: Context, route: LocalRoute, id: string, offset: number, status = 202): void {
  ctx.status = status;
  ctx.set({ ...rangeHeaders(route, id, offset), 'Content-Length': '0' });
  ctx.body = '';
}

/** Pushes (uploads, mounts, manifest PUT) and deletes of local repositories. */
export function registerWrites(router: Router, services: V2Services): void {
  const { uploads } = services.local;

  router.post(uploadPath, async (ctx) => {
    if (param(ctx, 1) !== '') throw new RegistryError('UNSUPPORTED');
    const route = localRoute(ctx, services, 'push');
    const mount = queryString(ctx, 'mount');
    const from = queryString(ctx, 'from');
    if (mount && from) {
      const digest = requireDigest(mount).value;
      let source: Route | undefined;
      try {
        source = resolveRoute(requireName(from), undefined, services.routing);
      } catch {
        source = undefined;
      }
      if (source) {
        requireAccess(ctx, services.access, source, 'pull');
        if (await services.local.blobs.mount(route, digest, source)) {
          ctx.state.event = { action: 'mount', kind: 'blob', repository: route.name, digest, fromRepository: source.accessName } satisfies RequestEvent;
          return created(ctx, `/v2/${route.name}/blobs/${digest}`, digest);
        }
      }
    }
    const id = await uploads.start(route);
    const digest = queryString(ctx, 'digest');
    if (digest !== undefined) {
      try {
        await uploads.complete(route, id, digest, ctx.req);
      } catch (err) {
        await uploads.cancel(route, id).catch(() => undefined);
        throw err;
      }
      ctx.state.event = blobPushed(route, digest);
      return created(ctx, `/v2/${route.name}/blobs/${digest}`, digest);
    }
    accepted(ctx, route, id, 0);
  });

  router.patch(uploadPath, async (ctx) => {
    const route = localRoute(ctx, services, 'push');
    const id = param(ctx, 1);
    const offset = await uploads.append(route, id, ctx.req, chunkStart(ctx));
    accepted(ctx, route, id, offset);
  });

  router.put(uploadPath, async (ctx) => {
    const route = localRoute(ctx, services, 'push');
    const id = param(ctx, 1);
    const digest = queryString(ctx, 'digest');
    if (!digest) throw new RegistryError('DIGEST_INVALID', { message: 'the digest query parameter is required' });
    await uploads.complete(route, id, digest, hasBody(ctx) ? ctx.req : undefined);
    ctx.state.event = blobPushed(route, digest);
    created(ctx, `/v2/${route.name}/blobs/${digest}`, digest);
  });

  router.get(uploadPath, async (ctx) => {
    const route = localRoute(ctx, services, 'push');
    const id = param(ctx, 1);
    accepted(ctx, route, id, await uploads.offset(route, id), 204);
  });

  router.delete(uploadPath, async (ctx) => {
    const route = localRoute(ctx, services, 'push');
    await uploads.cancel(route, param(ctx, 1));
    ctx.status = 204;
    ctx.body = '';
  });

  router.put(manifestPath, async (ctx) => {
    const route = localRoute(ctx, services, 'push');
    const ref = parseReference(param(ctx, 1));
    const body = await readBody(ctx, services.maxManifestSize);
    const contentType = ctx.get('Content-Type').split(';')[0]!.trim() || undefined;
    const pushed = await services.local.manifests.put(route, ref, body, contentType);
    if (pushed.subject) ctx.set('OCI-Subject', pushed.subject);
    ctx.state.event = {
      action: 'push',
      kind: 'manifest',
      repository: route.name,
      digest: pushed.digest,
      mediaType: pushed.mediaType,
      size: body.length,
      ...(ref.kind === 'tag' ? { tag: ref.tag } : {}),
      references: pushed.references,
    } satisfies RequestEvent;
    created(ctx, `/v2/${route.name}/manifests/${pushed.digest}`, pushed.digest);
  });

  router.delete(manifestPath, async (ctx) => {
    const route = localRoute(ctx, services, 'delete');
    requireDeletes(services);
    const ref = parseReference(param(ctx, 1));
    await services.local.manifests.delete(route, ref);
    ctx.state.event = {
      action: 'delete',
      kind: 'manifest',
      repository: route.name,
      ...(ref.kind === 'digest' ? { digest: ref.digest } : { tag: ref.tag }),
    } satisfies RequestEvent;
    ctx.status = 202;
    ctx.body = '';
  });

  router.delete(blobPath, async (ctx) => {
    const route = localRoute(ctx, services, 'delete');
    requireDeletes(services);
    const digest = requireDigest(param(ctx, 1)).value;
    await services.local.blobs.delete(route, digest);
    ctx.state.event = { action: 'delete', kind: 'blob', repository: route.name, digest } satisfies RequestEvent;
    ctx.status = 202;
    ctx.body = '';
  });
}
