/**
 * A real webhook receiver on 127.0.0.1 that records every POST, for the
 * notification tests. It can answer with any status, hang, or stop listening
 * (connection refused) and come back on the same port.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Envelope, RegistryEvent } from '../../src/notify/event.ts';
import { waitFor } from './tools.ts';

export interface ReceivedPost {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

/** `ok` answers 202; a number answers that status; `hang` never answers; `{ delayMs }` answers 202 late. */
export type ReceiverMode = 'ok' | number | 'hang' | { delayMs: number };

export interface WebhookReceiver {
  readonly url: string;
  readonly port: number;
  /** Every request received, answered or not. */
  readonly attempts: ReceivedPost[];
  /** The requests answered 2xx. */
  accepted(): ReceivedPost[];
  /** The events of accepted requests, in arrival order (duplicates included). */
  events(): RegistryEvent[];
  respond(mode: ReceiverMode): void;
  /** Stops listening: connections are refused until `up`. */
  down(): Promise<void>;
  up(): Promise<void>;
  waitForEvents(count: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(options: { port?: number; mode?: ReceiverMode } = {}): Promise<WebhookReceiver> {
  let mode: ReceiverMode = options.mode ?? 'ok';
  const attempts: ReceivedPost[] = [];
  let server: Server | undefined;

  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const s = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const current = mode;
          const status = current === 'ok' || typeof current === 'object' ? 202 : current === 'hang' ? 0 : current;
          const post: ReceivedPost = {
            method: req.method ?? '',
            path: req.url ?? '',
            headers: req.headers,
            body: Buffer.concat(chunks).toString('utf8'),
            status,
          };
          attempts.push(post);
          if (current === 'hang') return;
          const answer = () => res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'no');
          if (typeof current === 'object') setTimeout(answer, current.delayMs);
          else answer();
        });
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        server = s;
        resolve((s.address() as AddressInfo).port);
      });
    });

  const stop = async () => {
    const s = server;
    server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  };

  const port = await listen(options.port ?? 0);
  const accepted = () => attempts.filter((p) => p.status >= 200 && p.status < 300);
  const events = () => accepted().flatMap((p) => (JSON.parse(p.body) as Envelope).events);
  return {
    url: `http://127.0.0.1:${port}/hook`,
    port,
    attempts,
    accepted,
    events,
    respond(next) {
      mode = next;
    },
    down: stop,
    async up() {
      if (!server) await listen(port);
    },
    async waitForEvents(count, timeoutMs = 15_000) {
      await waitFor(`${count} events at the receiver (have ${events().length})`, async () => events().length >= count, timeoutMs, 20);
    },
    close: stop,
  };
}
