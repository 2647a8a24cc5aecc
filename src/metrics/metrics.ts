import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The fixed set of request routes; anything else is `other`. */
export type RouteLabel = 'base' | 'catalog' | 'manifest' | 'blob' | 'upload' | 'tags' | 'referrers' | 'other';
export type CacheKind = 'manifest' | 'blob';
export type CacheResult = 'hit' | 'miss' | 'stale' | 'revalidated' | 'inflight' | 'local';
export type ServedSource = 'cache' | 'upstream' | 'local';
export type StorageKind = 'cached' | 'local';

/** Refreshes gauges just before a scrape (e.g. from `UpstreamClient.stats()`). */
export type CollectFn = () => void | Promise<void>;

export interface MetricsOptions {
  /** Register prom-client's process and Node.js metrics (default true). */
  defaultMetrics?: boolean;
  /** Told when an `onCollect` callback fails; the scrape still succeeds. */
  onCollectError?: (err: unknown) => void;
}

const cacheKinds: readonly CacheKind[] = ['manifest', 'blob'];
const cacheResults: readonly CacheResult[] = ['hit', 'miss', 'stale', 'revalidated', 'inflight', 'local'];
const servedSources: readonly ServedSource[] = ['cache', 'upstream', 'local'];
const knownMethods = new Set(['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE', 'OPTIONS']);

/** Whole requests: cached manifests in a millisecond, large blobs to slow clients in minutes. */
const httpBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/** Upstream calls: token and manifest round trips up to whole blob downloads. */
const upstreamBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];

const name = (n: string): string => `tender_${n}`;

/**
 * tender's Prometheus instruments, on a registry of their own (never
 * prom-client's global one), so several servers in one process (tests,
 * replicas) never share counters. Pass one instance in; there is no global.
 *
 * Every method takes plain values and never throws on odd input: a metric
 * must not fail the request it describes. Methods and statuses are folded
 * into bounded sets so a client cannot grow the label space.
 */
export class Metrics {
  readonly registry: Registry;
  readonly #collectors: CollectFn[] = [];
  readonly #onCollectError: ((err: unknown) => void) | undefined;

  readonly #httpRequests: Counter<'route' | 'method' | 'status'>;
  readonly #httpDuration: Histogram<'route' | 'method'>;
  readonly #cacheRequests: Counter<'kind' | 'result'>;
  readonly #bytesServed: Counter<'source'>;
  readonly #upstreamBytes: Counter<'upstream'>;
  readonly #upstreamRequests: Counter<'upstream' | 'method' | 'status'>;
  readonly #upstreamErrors: Counter<'upstream' | 'code'>;
  readonly #upstreamDuration: Histogram<'upstream'>;
  readonly #tokenFetches: Counter<'upstream'>;
  readonly #rateLimitRemaining: Gauge<'upstream'>;
  readonly #rateLimitLimit: Gauge<'upstream'>;
  readonly #inflightFetches: Gauge;
  readonly #inflightWaiters: Gauge;
  readonly #storageBytes: Gauge<'kind'>;
  readonly #queueDepth: Gauge<'endpoint'>;
  readonly #notifyFailures: Counter<'endpoint'>;
  readonly #notifyDeliveries: Counter<'endpoint'>;

  constructor(options: MetricsOptions = {}) {
    this.registry = new Registry();
    const registers = [this.registry];
    this.#onCollectError = options.onCollectError;
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });

    this.#httpRequests = new Counter({
      name: name('http_requests_total'),
      help: 'Registry API requests answered, by route, method and status.',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.#httpDuration = new Histogram({
      name: name('http_request_duration_seconds'),
      help: 'Time from request to the end of the response, by route and method.',
      labelNames: ['route', 'method'],
      buckets: httpBuckets,
      registers,
    });
    this.#cacheRequests = new Counter({
      name: name('cache_requests_total'),
      help: 'Manifest and blob lookups by outcome: hit, miss (fetched upstream), stale, revalidated, inflight (joined a download), local.',
      labelNames: ['kind', 'result'],
      registers,
    });
    this.#bytesServed = new Counter({
      name: name('bytes_served_total'),
      help: 'Response body bytes sent to clients, by where they came from.',
      labelNames: ['source'],
      registers,
    });
    this.#upstreamBytes = new Counter({
      name: name('upstream_bytes_fetched_total'),
      help: 'Body bytes received from each upstream.',
      labelNames: ['upstream'],
      registers,
    });
    this.#upstreamRequests = new Counter({
      name: name('upstream_requests_total'),
      help: 'HTTP requests sent to each upstream, by method and response status.',
      labelNames: ['upstream', 'method', 'status'],
      registers,
    });
    this.#upstreamErrors = new Counter({
      name: name('upstream_errors_total'),
      help: 'Failed upstream calls, by error code.',
      labelNames: ['upstream', 'code'],
      registers,
    });
    this.#upstreamDuration = new Histogram({
      name: name('upstream_request_duration_seconds'),
      help: 'Duration of upstream requests.',
      labelNames: ['upstream'],
      buckets: upstreamBuckets,
      registers,
    });
    this.#tokenFetches = new Counter({
      name: name('upstream_token_fetches_total'),
      help: 'Bearer token requests sent to each upstream token realm.',
      labelNames: ['upstream'],
      registers,
    });
    this.#rateLimitRemaining = new Gauge({
      name: name('upstream_ratelimit_remaining'),
      help: 'Pulls left in the current window, as the upstream last reported it.',
      labelNames: ['upstream'],
      registers,
    });
    this.#rateLimitLimit = new Gauge({
      name: name('upstream_ratelimit_limit'),
      help: 'Pull quota per window, as the upstream last reported it.',
      labelNames: ['upstream'],
      registers,
    });
    this.#inflightFetches = new Gauge({
      name: name('inflight_fetches'),
      help: 'Blob downloads from upstreams in progress.',
      registers,
    });
    this.#inflightWaiters = new Gauge({
      name: name('inflight_waiters'),
      help: 'Client responses reading a download in progress.',
      registers,
    });
    this.#storageBytes = new Gauge({
      name: name('storage_bytes'),
      help: 'Bytes held in storage, cached (pulled through) or local (pushed).',
      labelNames: ['kind'],
      registers,
    });
    this.#queueDepth = new Gauge({
      name: name('notification_queue_depth'),
      help: 'Notification events waiting for delivery, per endpoint.',
      labelNames: ['endpoint'],
      registers,
    });
    this.#notifyFailures = new Counter({
      name: name('notification_failures_total'),
      help: 'Failed notification delivery attempts, per endpoint.',
      labelNames: ['endpoint'],
      registers,
    });
    this.#notifyDeliveries = new Counter({
      name: name('notification_deliveries_total'),
      help: 'Notification events delivered, per endpoint.',
      labelNames: ['endpoint'],
      registers,
    });

    // Bounded label sets start at zero, so rate() and absent() work from the first scrape.
    for (const kind of cacheKinds) for (const result of cacheResults) this.#cacheRequests.inc({ kind, result }, 0);
    for (const source of servedSources) this.#bytesServed.inc({ source }, 0);
  }

  /** A finished registry API request. */
  httpRequest(route: RouteLabel, method: string, status: number, seconds: number): void {
    const m = methodLabel(method);
    this.#httpRequests.inc({ route, method: m, status: statusLabel(status) });
    if (seconds >= 0) this.#httpDuration.observe({ route, method: m }, seconds);
  }

  /** A manifest or blob lookup and how it was answered. */
  cacheRequest(kind: CacheKind, result: CacheResult): void {
    this.#cacheRequests.inc({ kind, result });
  }

  /** Body bytes sent to a client. */
  served(source: ServedSource, bytes: number): void {
    if (bytes > 0) this.#bytesServed.inc({ source }, bytes);
  }

  /** Body bytes received from an upstream. */
  upstreamFetched(upstream: string, bytes: number): void {
    if (bytes > 0) this.#upstreamBytes.inc({ upstream }, bytes);
  }

  /** One HTTP exchange with an upstream (any status). */
  upstreamRequest(upstream: string, method: string, status: number, seconds: number): void {
    this.#upstreamRequests.inc({ upstream, method: methodLabel(method), status: statusLabel(status) });
    if (seconds >= 0) this.#upstreamDuration.observe({ upstream }, seconds);
  }

  /** An upstream call that failed, by its stable error code (e.g. `UNAVAILABLE`, `TIMEOUT`). */
  upstreamError(upstream: string, code: string): void {
    this.#upstreamErrors.inc({ upstream, code });
  }

  /** A token request sent to an upstream's realm; `count` for feeding cumulative stats. */
  tokenFetch(upstream: string, count = 1): void {
    if (count > 0) this.#tokenFetches.inc({ upstream }, count);
  }

  /** The upstream's pull quota from its last rate-limit headers. */
  setRateLimit(upstream: string, limit: number, remaining: number): void {
    this.#rateLimitLimit.set({ upstream }, limit);
    this.#rateLimitRemaining.set({ upstream }, remaining);
  }

  setInflightFetches(n: number): void {
    this.#inflightFetches.set(n);
  }

  setInflightWaiters(n: number): void {
    this.#inflightWaiters.set(n);
  }

  setStorageBytes(kind: StorageKind, bytes: number): void {
    this.#storageBytes.set({ kind }, bytes);
  }

  setNotificationQueueDepth(endpoint: string, depth: number): void {
    this.#queueDepth.set({ endpoint }, depth);
  }

  notificationDelivered(endpoint: string, count = 1): void {
    if (count > 0) this.#notifyDeliveries.inc({ endpoint }, count);
  }

  notificationFailed(endpoint: string, count = 1): void {
    if (count > 0) this.#notifyFailures.inc({ endpoint }, count);
  }

  /** Runs `fn` before every scrape to refresh gauges. A failing callback is reported, never fails the scrape. */
  onCollect(fn: CollectFn): void {
    this.#collectors.push(fn);
  }

  /** The Content-Type of `text()`. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Runs the collect callbacks, then renders every metric in Prometheus text format. */
  async text(): Promise<string> {
    const results = await Promise.allSettled(this.#collectors.map(async (fn) => fn()));
    for (const r of results) if (r.status === 'rejected') this.#onCollectError?.(r.reason);
    return this.registry.metrics();
  }
}

/** Maps a manifest or blob service's `source` to a cache result (`cache` is a hit, `upstream` a miss). */
export function cacheResultOf(source: 'cache' | 'upstream' | 'stale' | 'revalidated' | 'inflight' | 'local'): CacheResult {
  if (source === 'cache') return 'hit';
  if (source === 'upstream') return 'miss';
  return source;
}

const routes: ReadonlyArray<readonly [RegExp, RouteLabel]> = [
  [/^\/v2\/?$/, 'base'],
  [/^\/v2\/_catalog\/?$/, 'catalog'],
  [/^\/v2\/.+\/manifests\/[^/]+$/, 'manifest'],
  [/^\/v2\/.+\/blobs\/uploads\/[^/]*$/, 'upload'],
  [/^\/v2\/.+\/blobs\/[^/]+$/, 'blob'],
  [/^\/v2\/.+\/tags\/list$/, 'tags'],
  [/^\/v2\/.+\/referrers\/[^/]+$/, 'referrers'],
];

/** The route label of a request path (a query string is ignored). Pure. */
export function routeLabel(path: string): RouteLabel {
  const q = path.indexOf('?');
  const p = q === -1 ? path : path.slice(0, q);
  if (!p.startsWith('/v2')) return 'other';
  for (const [pattern, label] of routes) if (pattern.test(p)) return label;
  return 'other';
}

function methodLabel(method: string): string {
  return knownMethods.has(method) ? method : 'other';
}

function statusLabel(status: number): string {
  return Number.isInteger(status) && status >= 100 && status <= 599 ? String(status) : 'other';
}
