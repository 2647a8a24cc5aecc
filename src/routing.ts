import { RegistryError } from './registry/errors.ts';
import { matchesPattern } from './auth/patterns.ts';
import { cacheRepo, localRepo } from './store/layout.ts';

/** What routing needs to know of each configured upstream. */
export interface RouteUpstream {
  url: string;
  aliases: readonly string[];
  dockerHub: boolean;
}

export interface RoutingConfig {
  upstreams: Readonly<Record<string, RouteUpstream>>;
  /** Name patterns of local (pushable) repositories. */
  localNamespaces: readonly string[];
  /** Upstream for names with neither prefix nor ns; '' for none. */
  defaultUpstream: string;
}

/** A request name resolved to cached content of one upstream. */
export interface UpstreamRoute {
  kind: 'upstream';
  /** The configured upstream's key. */
  upstream: string;
  /** The repository name at the upstream (Docker Hub single names mapped to library/). */
  name: string;
  /** The store's repository key for this content. */
  repo: string;
  /** The name access rules see: `<upstream>/<name>`, however the request reached it. */
  accessName: string;
}

/** A request name resolved to a local repository that accepts pushes. */
export interface LocalRoute {
  kind: 'local';
  name: string;
  repo: string;
  accessName: string;
}

export type Route = UpstreamRoute | LocalRoute;

function hostOf(url: string): string {
  return new URL(url).host.toLowerCase();
}

/** Finds the upstream a containerd `ns` value names: its key, an alias or its URL's host. */
export function upstreamForNamespace(ns: string, config: RoutingConfig): string | undefined {
  const wanted = ns.toLowerCase();
  for (const [key, up] of Object.entries(config.upstreams)) {
    if (key === wanted || up.aliases.some((a) => a.toLowerCase() === wanted) || hostOf(up.url) === wanted) return key;
  }
  return undefined;
}

function toUpstream(upstream: string, name: string, config: RoutingConfig): UpstreamRoute {
  const up = config.upstreams[upstream]!;
  const mapped = up.dockerHub && !name.includes('/') ? `library/${name}` : name;
  return { kind: 'upstream', upstream, name: mapped, repo: cacheRepo(upstream, mapped), accessName: `${upstream}/${mapped}` };
}

/**
 * Resolves a repository name from the request path (and containerd's `ns`
 * query parameter) to the upstream that serves it. Pure: values in, route
 * out. Never invents an upstream: names that match no configured upstream are
 * refused, so tender cannot be used as an open proxy.
 *
 * Order: `?ns=` (containerd mirrors send the upstream's own name) ▸ a local
 * namespace pattern (`acme/**`) ▸ a path prefix equal to an upstream key
 * (`hub/library/nginx`) ▸ the default upstream.
 */
export function resolveRoute(name: string, ns: string | undefined, config: RoutingConfig): Route {
  if (ns !== undefined && ns !== '') {
    const upstream = upstreamForNamespace(ns, config);
    if (!upstream) {
      throw new RegistryError('NAME_UNKNOWN', {
        message: `registry ${ns} is not configured as an upstream`,
        detail: { ns },
      });
    }
    return toUpstream(upstream, name, config);
  }
  if (config.localNamespaces.some((p) => matchesPattern(name, p))) {
    return { kind: 'local', name, repo: localRepo(name), accessName: name };
  }
  const slash = name.indexOf('/');
  if (slash > 0) {
    const prefix = name.slice(0, slash);
    if (Object.hasOwn(config.upstreams, prefix)) return toUpstream(prefix, name.slice(slash + 1), config);
  }
  if (config.defaultUpstream && Object.hasOwn(config.upstreams, config.defaultUpstream)) {
    return toUpstream(config.defaultUpstream, name, config);
  }
  throw new RegistryError('NAME_UNKNOWN', {
    message: 'no configured upstream serves this name (use an upstream prefix or ?ns=)',
    detail: { name },
  });
}
