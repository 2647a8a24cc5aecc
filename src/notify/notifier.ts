import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../log.ts';
import type { NotificationsConfig } from './config.ts';
import { Endpoint, type EndpointStats } from './endpoint.ts';
import { buildEvent, type EventInput, type RegistryEvent, type SourceRecord } from './event.ts';
import { FileQueue } from './file-queue.ts';
import { shouldDeliver } from './policy.ts';
import type { EventQueue } from './queue.ts';
import { RedisQueue } from './redis-queue.ts';
import { QueueWriter } from './writer.ts';

export interface NotifierDeps {
  /** File queues live in `<dataDir>/_notify/<endpoint name>/`; one process per directory. */
  dataDir: string;
  /** Required when `queue: redis`. */
  redisUrl?: string;
  /** Redis key prefix (the deployment's namespace); default `tender`. */
  redisPrefix?: string;
  logger: Logger;
  /** Identifies this running process in `source.instanceID`; a new one per start. */
  instanceId: string;
  /** `source.addr`: this instance's host name and port; default the host name. */
  sourceAddr?: string;
  /** How often idle endpoints look for events queued by other replicas (default 1 s). */
  pollMs?: number;
  /** How long a dead replica's Redis delivery lease blocks the others (default 30 s). */
  redisLeaseMs?: number;
}

export interface NotifierStats {
  endpoints: Array<EndpointStats & { unqueued: number; dropped: number }>;
}

export interface Notifier {
  /**
   * Records an event: builds it (new UUID, current time) and hands it to every
   * endpoint whose filters want it. Never blocks and never throws; the event
   * reaches the durable queues moments later (`flush` waits for that).
   * Returns the event, or undefined when no endpoint wants it.
   */
  emit(input: EventInput): RegistryEvent | undefined;
  /** False when no endpoint is configured: callers may skip building events. */
  readonly enabled: boolean;
  /** Resolves once every event emitted so far is in its durable queues. */
  flush(): Promise<void>;
  stats(): Promise<NotifierStats>;
  /**
   * Queues what was emitted and lets POSTs in flight finish (each up to its
   * endpoint's timeout), all within `timeoutMs` (default 5 s), then closes
   * the queues. Undelivered events stay queued for the next start.
   */
  close(timeoutMs?: number): Promise<void>;
}

interface Route {
  endpoint: Endpoint;
  queue: EventQueue;
  writer: QueueWriter;
  config: NotificationsConfig['endpoints'][number];
}

/** Opens the queues of the enabled endpoints and starts delivering what they hold. */
export async function createNotifier(config: NotificationsConfig, deps: NotifierDeps): Promise<Notifier> {
  const logger = deps.logger.child({ component: 'notify' });
  const enabled = config.endpoints.filter((e) => !e.disabled);
  if (config.queue === 'redis' && enabled.length > 0 && !deps.redisUrl) {
    throw new Error('notifications.queue is redis but no Redis URL is configured');
  }
  const source: SourceRecord = { addr: deps.sourceAddr ?? hostname(), instanceID: deps.instanceId };
  const routes: Route[] = [];
  try {
    for (const endpointConfig of enabled) {
      const queue = await openQueue(config.queue, endpointConfig.name, deps, logger);
      const endpoint = new Endpoint({ config: endpointConfig, queue, logger, ...(deps.pollMs ? { pollMs: deps.pollMs } : {}) });
      const writer = new QueueWriter({ queue, logger: logger.child({ endpoint: endpointConfig.name }), onPushed: () => endpoint.wake() });
      routes.push({ endpoint, queue, writer, config: endpointConfig });
    }
  } catch (err) {
    await Promise.all(routes.map((r) => r.queue.close().catch(() => {})));
    throw err;
  }
  for (const route of routes) route.endpoint.start();
  if (routes.length > 0) logger.info({ endpoints: routes.map((r) => r.config.name), queue: config.queue }, 'notifications enabled');

  let closed = false;
  return {
    enabled: routes.length > 0,
    emit(input) {
      if (closed || routes.length === 0) return undefined;
      try {
        const event = buildEvent(input, { id: randomUUID(), now: new Date(), source });
        let wanted = false;
        for (const route of routes) {
          if (!shouldDeliver(event, route.config)) continue;
          route.writer.add(event);
          wanted = true;
        }
        return wanted ? event : undefined;
      } catch (err) {
        logger.error({ err }, 'cannot record notification event');
        return undefined;
      }
    },

    async flush() {
      await Promise.all(routes.map((r) => r.writer.flush()));
    },

    async stats() {
      const endpoints = await Promise.all(
        routes.map(async (r) => ({ ...(await r.endpoint.stats()), unqueued: r.writer.pending, dropped: r.writer.dropped })),
      );
      return { endpoints };
    },

    async close(timeoutMs = 5000) {
      if (closed) return;
      closed = true;
      const deadline = Date.now() + timeoutMs;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(routes.map((r) => r.writer.flush())),
        new Promise((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      for (const route of routes) route.writer.close();
      const left = Math.max(0, deadline - Date.now());
      await Promise.all(routes.map((r) => r.endpoint.stop(Math.min(r.config.timeout, left))));
      await Promise.all(routes.map((r) => r.queue.close().catch((err: unknown) => logger.warn({ err }, 'closing notification queue failed'))));
    },
  };
}

async function openQueue(kind: NotificationsConfig['queue'], name: string, deps: NotifierDeps, logger: Logger): Promise<EventQueue> {
  if (kind === 'file') return FileQueue.open(join(deps.dataDir, '_notify', name));
  let lastLogged = 0;
  return RedisQueue.open({
    url: deps.redisUrl!,
    prefix: deps.redisPrefix ?? 'tender',
    name,
    ...(deps.redisLeaseMs ? { leaseMs: deps.redisLeaseMs } : {}),
    onError: (err) => {
      // The client reconnects by itself; say so now and then, not on every attempt.
      if (Date.now() - lastLogged < 30_000) return;
      lastLogged = Date.now();
      logger.warn({ endpoint: name, err: err.message }, 'notification queue: Redis connection error');
    },
  });
}
