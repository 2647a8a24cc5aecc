import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { createNotifier } from './notify/notifier.ts';
import { Metrics } from './metrics/metrics.ts';
import { httpProbe, readinessChecks, startOpsServer } from './metrics/ops-server.ts';
import { observeServices, observeStorage } from './metrics/observe.ts';
import { scanCache } from './cache/inventory.ts';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Config } from './config/schema.ts';
import { createAccessLog } from './http/access-log.ts';
import { createApp } from './http/app.ts';
import { createFastPath } from './http/fast-path.ts';
import type { V2Services } from './http/v2.ts';
import { createAuthenticator } from './auth/authenticator.ts';
import { AccessTimes } from './cache/access-times.ts';
import { startEvictionSchedule, type EvictionSchedule } from './cache/eviction-schedule.ts';
import { Pins } from './cache/pins.ts';
import { createQuotaGuard } from './cache/quota.ts';
import { TrackedProxyBlobs, TrackedProxyManifests } from './cache/tracked.ts';
import { startWarmSchedule } from './cache/warm-schedule.ts';
import { LocalBlobs } from './local/blobs.ts';
import { LocalManifests } from './local/manifests.ts';
import { Uploads } from './local/uploads.ts';
import { createMeta } from './meta/create.ts';
import type { MetaStore } from './meta/meta.ts';
import { ProxyBlobs } from './proxy/blobs.ts';
import { checkedDriver } from './storage/checked.ts';
import { FilesystemDriver } from './storage/filesystem.ts';
import { ContentStore } from './store/content-store.ts';
import { createUpstream } from './upstream/client.ts';
import type { Upstream } from './upstream/types.ts';
import type { UpstreamClient } from './upstream/client.ts';

export interface RunningServer {
  /** The bound port (useful with port 0). */
  port: number;
  /** Base URL, e.g. http://127.0.0.1:5000 */
  url: string;
  server: Server;
  upstreams: ReadonlyMap<string, Upstream>;
  blobs: ProxyBlobs;
  meta: MetaStore;
  /** The server's content store (eviction must use this one: its in-process caches see the removals). */
  store: ContentStore;
  accessTimes: AccessTimes;
  /** Blobs being served or fetched: eviction leaves them alone. */
  pins: Pins;
  /** The eviction schedule, when cache.budget or cache.maxUnused is set. */
  eviction: EvictionSchedule | undefined;
  metrics: Metrics;
  /** The operations listener's base URL, when enabled. */
  opsUrl: string | undefined;
  /** Stops accepting, lets in-flight requests and downloads finish (bounded), closes stores. */
  close(): Promise<void>;
}

/** The composition root: builds every service from the config and starts listening. */
export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const root = config.storage.filesystem.root;
  const driver = checkedDriver(new FilesystemDriver({ root }));
  const store = new ContentStore(driver);
  const meta = await createMeta(config.meta);
  const metrics = new Metrics();
  const upstreams = new Map<string, UpstreamClient>();
  for (const [name, upstreamConfig] of Object.entries(config.upstreams)) {
    upstreams.set(
      name,
      createUpstream(name, upstreamConfig, {
        meta,
        logger: logger.child({ upstream: name }),
        maxManifestSize: config.proxy.maxManifestSize,
        observe: {
          request: (method, status, seconds) => metrics.upstreamRequest(name, method, status, seconds),
          error: (code) => metrics.upstreamError(name, code),
        },
      }),
    );
  }
  const ttlOf = (key: 'tagTtl' | 'tagListTtl') => (upstream: string) => config.upstreams[upstream]?.[key] ?? 0;
  const accessTimes = new AccessTimes({ store, logger });
  await accessTimes.load();
  accessTimes.start(config.cache.accessFlushInterval);
  const pins = new Pins();
  const quotaGuard = createQuotaGuard({ upstreams, threshold: (u) => config.upstreams[u]?.quotaGuard ?? 0 });
  const manifests = new TrackedProxyManifests({ store, meta, upstreams, tagTtl: ttlOf('tagTtl'), logger, quotaGuard, accessTimes });
  const blobs = new TrackedProxyBlobs({
    store,
    upstreams,
    spoolDir: join(root, '_spool'),
    logger,
    onFetched: (upstream, bytes) => metrics.upstreamFetched(upstream, bytes),
    accessTimes,
    pins,
  });
  await blobs.init();
  const { budget, maxUnused, evictInterval } = config.cache;
  const eviction =
    budget !== undefined || maxUnused !== undefined
      ? startEvictionSchedule({ store, accessTimes, pins, meta, budgetBytes: budget, maxUnusedMs: maxUnused, intervalMs: evictInterval, logger })
      : undefined;

  const uploads = new Uploads({ dir: join(root, '_uploads'), store, logger });
  await uploads.init();
  await uploads.sweep(config.uploads.maxAge);
  const sweeper = setInterval(() => {
    uploads.sweep(config.uploads.maxAge).catch((err: unknown) => logger.warn({ err }, 'upload sweep failed'));
  }, Math.min(config.uploads.maxAge, 3_600_000));
  sweeper.unref();

  const routing = {
    upstreams: config.upstreams,
    defaultUpstream: config.proxy.defaultUpstream,
    localNamespaces: config.local.namespaces,
  };
  const notifier = await createNotifier(config.notifications, {
    dataDir: root,
    redisUrl: config.meta.redis.url,
    redisPrefix: config.meta.redis.namespace,
    logger: logger.child({ component: 'notify' }),
    instanceId: randomUUID(),
    sourceAddr: `${hostname()}:${config.server.port}`,
  });
  const services: V2Services = {
    proxy: { manifests, blobs },
    local: { manifests: new LocalManifests(store), blobs: new LocalBlobs(store), uploads },
    store,
    routing,
    access: {
      authenticator: createAuthenticator(config.auth, logger),
      rules: config.access,
      groups: config.auth.groups,
      localNamespaces: config.local.namespaces,
    },
    tagListTtl: ttlOf('tagListTtl'),
    deleteEnabled: config.storage.delete.enabled,
    maxManifestSize: config.proxy.maxManifestSize,
    notifier,
  };
  observeServices(metrics, { upstreams, blobs, notifier });
  const stopStorageGauge = observeStorage(
    metrics,
    async () => {
      const inventory = await scanCache(store, undefined);
      let cached = 0;
      let local = 0;
      for (const [digest, size] of inventory.sizes) if (!inventory.local.has(digest)) cached += size;
      for (const digest of inventory.local) local += (await store.statBlob(digest))?.size ?? 0;
      return { cached, local };
    },
    300_000,
    (err) => logger.warn({ err }, 'storage size measurement failed'),
  );
  const access = createAccessLog(logger, metrics);
  const app = createApp(services, logger, access.track);
  const koa = app.callback();
  const fast = createFastPath(services, access);
  const fallBack = (req: IncomingMessage, res: ServerResponse, err: unknown): void => {
    logger.error({ err }, 'fast path failed; falling back');
    if (res.headersSent) res.destroy();
    else void koa(req, res);
  };
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    let handled: boolean | Promise<boolean>;
    try {
      handled = fast(req, res);
    } catch (err) {
      return fallBack(req, res, err);
    }
    if (handled === true) return;
    if (handled === false) return void koa(req, res);
    handled.then(
      (done) => {
        if (!done) void koa(req, res);
      },
      (err: unknown) => fallBack(req, res, err),
    );
  };
  const tls = config.server.tls;
  const server = tls
    ? createHttpsServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, handler)
    : createHttpServer(handler);
  server.keepAliveTimeout = 65_000;
  // Large blobs to slow clients: no whole-request timeout, only the socket's idle bound.
  server.requestTimeout = 0;
  server.timeout = 10 * 60_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.server.port, config.server.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
  const url = `${tls ? 'https' : 'http'}://${host}:${port}`;
  logger.info({ url, storage: root, meta: config.meta.driver, upstreams: [...upstreams.keys()] }, 'tender listening');

  const ops = config.ops.enabled
    ? await startOpsServer({
        host: config.ops.host,
        port: config.ops.port,
        metrics,
        logger: logger.child({ component: 'ops' }),
        ready: readinessChecks({
          storageRoot: root,
          ...(config.meta.driver === 'redis' ? { redis: { ping: async () => void (await meta.get('ping')) } } : {}),
          upstreams: Object.entries(config.upstreams).map(([name, up]) => ({
            name,
            probe: httpProbe(up.url, { ...(up.ca ? { ca: up.ca } : {}), insecureSkipVerify: up.insecureSkipVerify }),
          })),
        }),
      })
    : undefined;
  if (ops) logger.info({ url: ops.url }, 'operations listener (metrics, health)');
  const warmer =
    config.warm.images.length > 0
      ? startWarmSchedule({
          baseUrl: url,
          images: config.warm.images,
          platforms: config.warm.platforms,
          intervalMs: config.warm.interval,
          creds: config.warm.credentials,
          logger,
        })
      : undefined;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      const deadline = config.server.shutdownTimeout;
      await warmer?.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), deadline);
      await closed;
      await Promise.race([blobs.drain(), new Promise((r) => setTimeout(r, deadline).unref())]);
      clearTimeout(timer);
      clearInterval(sweeper);
      stopStorageGauge();
      await eviction?.stop();
      await accessTimes.close().catch((err: unknown) => logger.warn({ err }, 'access times flush failed'));
      await ops?.close();
      await notifier.close();
      for (const up of upstreams.values()) up.close();
      await meta.close();
      logger.info('tender stopped');
    })());

  return { port, url, server, upstreams, blobs, meta, store, accessTimes, pins, eviction, metrics, opsUrl: ops?.url, close };
}
