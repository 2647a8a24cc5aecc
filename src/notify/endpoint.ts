import { redactUrl, type Logger } from '../log.ts';
import type { EndpointConfig } from './config.ts';
import { encodeEnvelope, envelopeMediaType, type RegistryEvent } from './event.ts';
import { failureDelay, shouldDeliver, sign, signatureHeader } from './policy.ts';
import type { EventQueue, QueuedEvent } from './queue.ts';

/** What an endpoint reports for metrics and logs. */
export interface EndpointStats {
  name: string;
  /** The endpoint URL without credentials. */
  url: string;
  /** Events waiting in its queue; undefined when the queue cannot be read. */
  depth: number | undefined;
  /** Events delivered (2xx) since start. */
  delivered: number;
  /** Failed POSTs (and queue errors) since start. */
  failures: number;
  /** Failures since the last success. */
  consecutiveFailures: number;
  lastError?: string;
  lastErrorAt?: string;
  lastDeliveredAt?: string;
}

export interface EndpointOptions {
  config: EndpointConfig;
  queue: EventQueue;
  logger: Logger;
  /** How often an idle endpoint looks for events it was not woken for (pushed by other replicas). Default 1 s. */
  pollMs?: number;
}

/**
 * One endpoint's delivery loop: it reads the oldest events from the
 * endpoint's queue, POSTs them in one envelope, and acknowledges them once the
 * endpoint answers 2xx. Anything else (an error, a timeout, a 3xx, 4xx or
 * 5xx) is retried, quickly at first, then with exponential back-off once
 * `threshold` consecutive attempts failed. Events are never dropped; the
 * same batch is retried until it is accepted, so order is kept.
 *
 * Redirects are not followed (a POST turned into a GET would count as
 * delivered): point the endpoint at its final URL.
 */
export class Endpoint {
  readonly #config: EndpointConfig;
  readonly #queue: EventQueue;
  readonly #logger: Logger;
  readonly #pollMs: number;
  readonly #url: string;
  #loop: Promise<void> | undefined;
  #stopping = false;
  /** Ends the current pause early. */
  #interrupt: (() => void) | undefined;
  #idle = false;
  /** A wake-up arrived while not idle: skip the next idle pause. */
  #woken = false;
  #inflight: AbortController | undefined;
  #delivered = 0;
  #failures = 0;
  #consecutive = 0;
  #lastError: string | undefined;
  #lastErrorAt: Date | undefined;
  #lastDeliveredAt: Date | undefined;

  constructor(options: EndpointOptions) {
    this.#config = options.config;
    this.#queue = options.queue;
    this.#url = redactUrl(options.config.url);
    this.#logger = options.logger.child({ endpoint: options.config.name });
    this.#pollMs = options.pollMs ?? 1000;
  }

  get name(): string {
    return this.#config.name;
  }

  /** Starts delivering (once). */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** New events were queued: if idle, look now rather than at the next poll. A backing-off endpoint keeps waiting. */
  wake(): void {
    if (this.#idle) this.#interrupt?.();
    else this.#woken = true;
  }

  async stats(): Promise<EndpointStats> {
    const depth = await this.#queue.depth().catch(() => undefined);
    return {
      name: this.#config.name,
      url: this.#url,
      depth,
      delivered: this.#delivered,
      failures: this.#failures,
      consecutiveFailures: this.#consecutive,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}),
      ...(this.#lastErrorAt ? { lastErrorAt: this.#lastErrorAt.toISOString() } : {}),
      ...(this.#lastDeliveredAt ? { lastDeliveredAt: this.#lastDeliveredAt.toISOString() } : {}),
    };
  }

  /**
   * Stops the loop. A POST in flight gets up to `timeoutMs` (default: the
   * endpoint's timeout) to finish; after that it is aborted and its events
   * stay queued, to be sent again on the next start.
   */
  async stop(timeoutMs = this.#config.timeout): Promise<void> {
    this.#stopping = true;
    this.#interrupt?.();
    if (!this.#loop) return;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), timeoutMs);
    });
    const overdue = await Promise.race([this.#loop.then(() => false), timedOut]);
    clearTimeout(timer);
    if (overdue) {
      this.#inflight?.abort(new Error('endpoint stopped'));
      await this.#loop;
    }
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      try {
        await this.#step();
      } catch (err) {
        // Not expected (queue and HTTP errors are handled in #step); keep the loop alive regardless.
        this.#fail(errorText(err));
        await this.#pause(this.#backoff(), false);
      }
    }
  }

  /** One round: read the oldest batch, deliver it, acknowledge it. */
  async #step(): Promise<void> {
    let batch: QueuedEvent[];
    try {
      batch = await this.#queue.peek(this.#config.batchSize);
    } catch (err) {
      this.#fail(`queue: ${errorText(err)}`);
      await this.#pause(this.#backoff(), false);
      return;
    }
    if (batch.length === 0) {
      await this.#pause(this.#pollMs, true);
      return;
    }
    this.#woken = false;
    const wanted: RegistryEvent[] = [];
    for (const queued of batch) {
      if (!wellFormed(queued.event)) {
        this.#logger.error({ queueId: queued.id }, 'unreadable entry in the notification queue; skipping it');
        continue;
      }
      // Filters are applied again here, so events queued before a filter changed are not sent.
      if (shouldDeliver(queued.event, this.#config)) wanted.push(queued.event);
    }
    if (wanted.length > 0 && !(await this.#post(wanted))) {
      await this.#pause(this.#backoff(), false);
      return;
    }
    try {
      await this.#queue.ack(batch.map((queued) => queued.id));
    } catch (err) {
      // Delivered but not acknowledged: the batch is sent again (a duplicate, never a loss).
      this.#fail(`queue: ${errorText(err)}`);
      await this.#pause(this.#backoff(), false);
    }
  }

  /** POSTs one envelope; true when the endpoint accepted it. */
  async #post(events: RegistryEvent[]): Promise<boolean> {
    const controller = new AbortController();
    this.#inflight = controller;
    const timer = setTimeout(() => controller.abort(new Error(`timed out after ${this.#config.timeout} ms`)), this.#config.timeout);
    try {
      const body = encodeEnvelope(events, this.#config.mediaType);
      const headers = new Headers();
      for (const [name, value] of Object.entries(this.#config.headers)) {
        for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
      }
      headers.set('content-type', envelopeMediaType(this.#config.mediaType));
      headers.set('user-agent', 'tender-notifications');
      if (this.#config.secret) headers.set(signatureHeader, sign(body, this.#config.secret));
      const res = await fetch(this.#config.url, { method: 'POST', body, headers, redirect: 'manual', signal: controller.signal });
      // The answer's body is not needed (and could be large): discard it.
      await res.body?.cancel();
      if (res.status < 200 || res.status > 299) {
        const location = res.headers.get('location');
        this.#fail(`HTTP ${res.status}${location ? ` (redirect to ${redactUrl(location)} not followed)` : ''}`);
        return false;
      }
    } catch (err) {
      this.#fail(errorText(controller.signal.aborted ? controller.signal.reason : err));
      return false;
    } finally {
      clearTimeout(timer);
      this.#inflight = undefined;
    }
    this.#succeed(events.length);
    return true;
  }

  #succeed(count: number): void {
    if (this.#consecutive > 0) {
      this.#logger.info({ failures: this.#consecutive, url: this.#url }, 'notification endpoint reachable again');
    }
    this.#consecutive = 0;
    this.#delivered += count;
    this.#lastDeliveredAt = new Date();
  }

  #fail(message: string): void {
    this.#failures++;
    this.#consecutive++;
    this.#lastError = message;
    this.#lastErrorAt = new Date();
    const fields = { err: message, failures: this.#consecutive, url: this.#url };
    if (this.#consecutive === 1) this.#logger.warn(fields, 'notification delivery failed; retrying');
    else if (this.#consecutive === this.#config.threshold) this.#logger.warn(fields, 'notification endpoint keeps failing; backing off');
    else this.#logger.debug(fields, 'notification delivery failed');
  }

  #backoff(): number {
    return failureDelay(this.#consecutive, { threshold: this.#config.threshold, backoffMs: this.#config.backoff, maxMs: this.#config.maxBackoff });
  }

  /** Waits `ms`, or less when stopped (or, if `idle`, woken). */
  async #pause(ms: number, idle: boolean): Promise<void> {
    if (this.#stopping) return;
    if (idle && this.#woken) {
      this.#woken = false;
      return;
    }
    this.#idle = idle;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#interrupt = done;
    });
    this.#interrupt = undefined;
    this.#idle = false;
  }
}

/** Whether a queued entry has what filtering and encoding need (queues hold JSON written by any version). */
function wellFormed(event: RegistryEvent): boolean {
  const candidate = event as Partial<RegistryEvent> | null;
  return typeof candidate?.action === 'string' && typeof candidate.target?.repository === 'string';
}

/** A short description of a delivery error (fetch hides the network error in `cause`). */
function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause;
  if (cause instanceof Error) return (cause as NodeJS.ErrnoException).code ?? cause.message;
  return err.message;
}
