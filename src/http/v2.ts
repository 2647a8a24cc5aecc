import Router from '@koa/router';
import type { Context } from 'koa';
import { RegistryError } from '../registry/errors.ts';
import { requireName } from '../registry/names.ts';
import { paginate, parsePageSize } from '../registry/pagination.ts';
import type { LocalBlobs } from '../local/blobs.ts';
import type { LocalManifests } from '../local/manifests.ts';
import type { Uploads } from '../local/uploads.ts';
import type { ProxyBlobs } from '../proxy/blobs.ts';
import type { ProxyManifests } from '../proxy/manifests.ts';
import { resolveRoute, type Route, type RoutingConfig } from '../routing.ts';
import type { ContentStore } from '../store/content-store.ts';
import type { Notifier } from '../notify/notifier.ts';
import { mayAccess, requireAccess, type AccessPolicy } from './access.ts';
import { registerReads } from './v2-read.ts';
import { registerWrites } from './v2-write.ts';

export interface V2Services {
  proxy: { manifests: ProxyManifests; blobs: ProxyBlobs };
  local: { manifests: LocalManifests; blobs: LocalBlobs; uploads: Uploads };
  store: ContentStore;
  routing: RoutingConfig;
  access: AccessPolicy;
  tagListTtl: (upstream: string) => number;
  deleteEnabled: boolean;
  maxManifestSize: number;
  notifier: Notifier;
}

const name = '(.+?)';
export const manifestPath = new RegExp(`^/v2/${name}/manifests/([^/]+)$`);
export const blobPath = new RegExp(`^/v2/${name}/blobs/([^/]+)$`);
export const uploadPath = new RegExp(`^/v2/${name}/blobs/uploads/([^/]*)$`);
export const tagsPath = new RegExp(`^/v2/${name}/tags/list$`);
export const referrersPath = new RegExp(`^/v2/${name}/referrers/([^/]+)$`);

const maxPage = 10_000;

/** A capture of the route's regular expression. */
export function param(ctx: Context, i: number): string {
  const value = (ctx.captures as string[] | undefined)?.[i];
  if (value === undefined) throw new RegistryError('NOT_FOUND');
  return value;
}

export function queryString(ctx: Context, key: string): string | undefined {
  const v = ctx.query[key];
  return typeof v === 'string' ? v : undefined;
}

/** The route of the request's repository name (and containerd's ns). */
export function routeOf(ctx: Context, services: V2Services): Route {
  return resolveRoute(requireName(param(ctx, 0)), queryString(ctx, 'ns'), services.routing);
}

/** Sets a `Link: <...>; rel="next"` header for lexical pagination. */
export function setNextLink(ctx: Context, path: string, n: number | undefined, next: string | undefined): void {
  if (next === undefined || n === undefined) return;
  const q = new URLSearchParams({ n: String(n), last: next });
  const ns = queryString(ctx, 'ns');
  if (ns) q.set('ns', ns);
  ctx.set('Link', `<${path}?${q}>; rel="next"`);
}

/** Repository names as clients see them: local names, and `<upstream>/<name>` for cached ones. */
async function catalogNames(store: ContentStore): Promise<string[]> {
  const names: string[] = [];
  for (const repo of await store.listRepositories()) {
    if (repo.startsWith('local/')) names.push(repo.slice('local/'.length));
    else if (repo.startsWith('cache/')) names.push(repo.slice('cache/'.length));
  }
  return names;
}

/**
 * The Distribution v2 / OCI API. Handlers parse, check access, call one
 * service, set headers; routes without a matching method answer UNSUPPORTED.
 */
export function v2Router(services: V2Services): Router {
  const router = new Router();

  router.get('/v2/', (ctx) => {
    const { authenticator } = services.access;
    if (authenticator.enabled && ctx.state.principal?.kind !== 'user') {
      throw new RegistryError('UNAUTHORIZED', { headers: authenticator.challenge() });
    }
    ctx.type = 'application/json';
    ctx.body = '{}';
  });

  router.get('/v2/_catalog', async (ctx) => {
    const n = parsePageSize(queryString(ctx, 'n'), maxPage);
    const visible = (await catalogNames(services.store)).filter((repo) => mayAccess(ctx, services.access, repo, 'pull'));
    const page = paginate(visible, n, queryString(ctx, 'last'));
    setNextLink(ctx, '/v2/_catalog', n, page.next);
    ctx.type = 'application/json';
    ctx.body = JSON.stringify({ repositories: page.items });
  });

  registerReads(router, services);
  registerWrites(router, services);

  router.all('/v2/', () => {
    throw new RegistryError('UNSUPPORTED');
  });
  for (const path of [manifestPath, blobPath, uploadPath, tagsPath, referrersPath]) {
    router.all(path, () => {
      throw new RegistryError('UNSUPPORTED');
    });
  }
  return router;
}

export { maxPage, requireAccess };
