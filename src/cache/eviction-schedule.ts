import type { Logger } from 'pino';
import type { MetaStore } from '../meta/meta.ts';
import type { ContentStore } from '../store/content-store.ts';
import type { AccessTimes } from './access-times.ts';
import { evict, type EvictResult } from './evictor.ts';
import type { Pins } from './pins.ts';

export interface EvictionScheduleOptions {
  /** The server's own store: its in-process link and manifest caches must see the removals. */
  store: ContentStore;
  accessTimes: AccessTimes;
  pins: Pins;
  meta: MetaStore;
  budgetBytes?: number | undefined;
  maxUnusedMs?: number | undefined;
  /** How often to run. */
  intervalMs: number;
  logger: Logger;
}

export interface EvictionSchedule {
  /** Runs now (or joins the run in progress). */
  runNow(): Promise<EvictResult>;
  /** Stops the timer and waits for a run in progress. */
  stop(): Promise<void>;
}

/** Runs eviction every intervalMs, one run at a time; a failed run is logged and retried at the next tick. */
export function startEvictionSchedule(options: EvictionScheduleOptions): EvictionSchedule {
  const log = options.logger.child({ component: 'eviction' });
  let running: Promise<EvictResult> | undefined;
  const runNow = (): Promise<EvictResult> =>
    (running ??= evict(options.store, options.accessTimes, {
      budgetBytes: options.budgetBytes,
      maxUnusedMs: options.maxUnusedMs,
      pinned: (d) => options.pins.isPinned(d),
      meta: options.meta,
      logger: log,
    }).finally(() => {
      running = undefined;
    }));
  const timer = setInterval(() => {
    runNow().catch((err: unknown) => log.warn({ err }, 'cache eviction failed'));
  }, options.intervalMs);
  timer.unref();
  return {
    runNow,
    async stop() {
      clearInterval(timer);
      await running?.catch(() => undefined);
    },
  };
}
