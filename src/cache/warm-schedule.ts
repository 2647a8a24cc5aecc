import type { Logger } from 'pino';
import { warm, type WarmImageResult } from './warm.ts';

export interface WarmScheduleOptions {
  /** The server's own URL (RunningServer.url). */
  baseUrl: string;
  images: string[];
  /** `os/arch[/variant]`; empty for every platform. */
  platforms: string[];
  /** Time between runs; the first run starts `initialDelayMs` (default 1 s) after start. */
  intervalMs: number;
  initialDelayMs?: number;
  /** `user:password` when access rules do not let anonymous clients pull. */
  creds?: string | undefined;
  logger: Logger;
}

export interface WarmSchedule {
  /** Runs now (or joins the run in progress). */
  runNow(): Promise<WarmImageResult[]>;
  /** Stops the timer and aborts a run in progress. */
  stop(): Promise<void>;
}

/**
 * Keeps the configured `warm:` images in the cache: warms them shortly after
 * start and then every intervalMs (tags are revalidated on the way, so a
 * moved tag's new content is fetched ahead of the first pull). One run at a
 * time; failures are logged per image.
 */
export function startWarmSchedule(options: WarmScheduleOptions): WarmSchedule {
  const log = options.logger.child({ component: 'warm' });
  const abort = new AbortController();
  let running: Promise<WarmImageResult[]> | undefined;
  const runNow = (): Promise<WarmImageResult[]> =>
    (running ??= (async () => {
      const started = Date.now();
      const results = await warm({
        baseUrl: options.baseUrl,
        images: options.images,
        platforms: options.platforms,
        signal: abort.signal,
        ...(options.creds ? { creds: options.creds } : {}),
      });
      for (const r of results) {
        if (r.error) log.warn({ image: r.image, error: r.error }, 'warming failed');
        else log.debug({ image: r.image, digest: r.digest, blobs: r.blobs, bytes: r.bytes }, 'image warmed');
      }
      log.info({ images: results.length, failed: results.filter((r) => r.error).length, ms: Date.now() - started }, 'warm run done');
      return results;
    })().finally(() => {
      running = undefined;
    }));
  const tick = (): void => {
    if (abort.signal.aborted) return;
    runNow().catch((err: unknown) => {
      if (!abort.signal.aborted) log.warn({ err }, 'warm run failed');
    });
  };
  const first = setTimeout(tick, options.initialDelayMs ?? 1000);
  const timer = setInterval(tick, options.intervalMs);
  first.unref();
  timer.unref();
  return {
    runNow,
    async stop() {
      clearTimeout(first);
      clearInterval(timer);
      abort.abort();
      await running?.catch(() => undefined);
    },
  };
}
