import type { Notifier } from '../notify/notifier.ts';
import type { ProxyBlobs } from '../proxy/blobs.ts';
import type { UpstreamClient } from '../upstream/client.ts';
import type { Metrics } from './metrics.ts';

/**
 * Refreshes, at scrape time, what services count themselves: token fetches,
 * Docker Hub's remaining pull quota, downloads in progress, notification
 * queues. Counters the services keep as totals are turned into increments.
 */
export function observeServices(
  metrics: Metrics,
  services: { upstreams: ReadonlyMap<string, UpstreamClient>; blobs: ProxyBlobs; notifier: Notifier },
): void {
  const seen = new Map<string, number>();
  const delta = (key: string, total: number): number => {
    const before = seen.get(key) ?? 0;
    seen.set(key, total);
    return Math.max(0, total - before);
  };
  metrics.onCollect(async () => {
    for (const [name, up] of services.upstreams) {
      const stats = up.stats();
      const fetched = delta(`token:${name}`, stats.tokenFetches);
      if (fetched > 0) metrics.tokenFetch(name, fetched);
      if (stats.rateLimit) metrics.setRateLimit(name, stats.rateLimit.limit, stats.rateLimit.remaining);
    }
    metrics.setInflightFetches(services.blobs.inflight);
    metrics.setInflightWaiters(services.blobs.waiters);
    for (const e of (await services.notifier.stats()).endpoints) {
      metrics.setNotificationQueueDepth(e.name, e.depth ?? 0);
      const delivered = delta(`delivered:${e.name}`, e.delivered);
      if (delivered > 0) metrics.notificationDelivered(e.name, delivered);
      const failed = delta(`failed:${e.name}`, e.failures);
      if (failed > 0) metrics.notificationFailed(e.name, failed);
    }
  });
}

/**
 * Measures storage by kind every `intervalMs` (a walk of the cache
 * inventory: too slow for every scrape): bytes of cached upstream content
 * and of local content. Returns a stop function.
 */
export function observeStorage(
  metrics: Metrics,
  measure: () => Promise<{ cached: number; local: number }>,
  intervalMs: number,
  onError: (err: unknown) => void,
): () => void {
  const run = (): void => {
    measure().then(
      (bytes) => {
        metrics.setStorageBytes('cached', bytes.cached);
        metrics.setStorageBytes('local', bytes.local);
      },
      onError,
    );
  };
  run();
  const timer = setInterval(run, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
