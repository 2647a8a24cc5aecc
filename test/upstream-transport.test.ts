/**
 * The upstream client's transport behaviour against fake loopback servers:
 * timeouts, aborts, the concurrency bound, backpressure, pagination,
 * rate-limit headers, redirect limits and TLS options.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { configSchema } from '../src/config/schema.ts';
import type { MetaStore } from '../src/meta/meta.ts';
import { createUpstream, type UpstreamClient } from '../src/upstream/client.ts';
import { UpstreamError, type UpstreamErrorCode } from '../src/upstream/types.ts';
import { removeDir, run, skipUnlessTools, tempDir } from './helpers/tools.ts';
import { toReadable } from '../src/upstream/body.ts';

interface FakeServer {
  url: string;
  seen: Array<{ method: string; url: string; headers: IncomingHttpHeaders }>;
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse, self: FakeServer) => void;

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const step of cleanups.reverse()) await step();
});

async function serve(handler: Handler, tls?: { key: Buffer; cert: Buffer }): Promise<FakeServer> {
  const self: FakeServer = { url: '', seen: [], close: () => Promise.resolve() };
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    self.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    handler(req, res, self);
  };
  const server = tls ? createHttpsServer(tls, listener) : createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  self.url = `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  self.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  cleanups.push(() => self.close());
  return self;
}

function mapMeta(): MetaStore {
  const data = new Map<string, unknown>();
  return {
    get: <T>(key: string) => Promise.resolve(data.get(key) as T | undefined),
    set: (key, value) => Promise.resolve(void data.set(key, value)),
    delete: (key) => Promise.resolve(data.delete(key)),
    close: () => Promise.resolve(),
  };
}

function client(url: string, extra: Record<string, unknown> = {}, logs?: string[]): UpstreamClient {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs?.push(chunk.toString());
      cb();
    },
  });
  const config = configSchema.parse({ upstreams: { fake: { url, retries: 0, ...extra } } }).upstreams.fake!;
  const c = createUpstream('fake', config, { meta: mapMeta(), logger: pino({ level: 'debug' }, sink), maxManifestSize: 1 << 20 });
  cleanups.push(() => c.close());
  return c;
}

function isCode(code: UpstreamErrorCode): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof UpstreamError, String(e));
    assert.equal(e.code, code, e.message);
    return true;
  };
}

const MANIFEST = Buffer.from('{"schemaVersion":2}');

function manifest(res: ServerResponse, headers: Record<string, string> = {}): void {
  res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': MANIFEST.length, ...headers });
  res.end(MANIFEST);
}

void describe('upstream transport', () => {
  void it('idle timeout: a stalled blob body errors with UNAVAILABLE', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': 1000 });
      res.write(Buffer.alloc(10));
    });
    const c = client(server.url, { timeouts: { idle: '200ms' } });
    const blob = await c.getBlob('a/b', `sha256:${'1'.repeat(64)}`);
    const started = Date.now();
    await assert.rejects(text(toReadable(blob.body)), isCode('UNAVAILABLE'));
    assert.ok(Date.now() - started < 2000);
  });

  void it('response timeout: headers that never come are UNAVAILABLE (and retried)', async () => {
    const server = await serve(() => {});
    const c = client(server.url, { retries: 1, timeouts: { response: '150ms', idle: '10s' } });
    await assert.rejects(c.headManifest('a/b', 'latest'), isCode('UNAVAILABLE'));
    assert.equal(server.seen.length, 2);
  });

  void it('overall blob bound: a slow but steady body is cut at timeouts.blob', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': 1_000_000 });
      const timer = setInterval(() => res.write(Buffer.alloc(10)), 20);
      res.on('close', () => clearInterval(timer));
    });
    const c = client(server.url, { timeouts: { idle: '1s', blob: '300ms' } });
    const blob = await c.getBlob('a/b', `sha256:${'1'.repeat(64)}`);
    await assert.rejects(text(toReadable(blob.body)), isCode('UNAVAILABLE'));
  });

  void it('an AbortSignal ends the stream and frees the concurrency slot', async () => {
    const server = await serve((req, res) => {
      if (req.url?.includes('/blobs/')) {
        res.writeHead(200, { 'content-length': 1_000_000 });
        res.write(Buffer.alloc(1000));
      } else manifest(res);
    });
    const c = client(server.url, { concurrency: 1 });
    const controller = new AbortController();
    const blob = await c.getBlob('a/b', `sha256:${'1'.repeat(64)}`, controller.signal);
    const reading = text(toReadable(blob.body));
    controller.abort();
    await assert.rejects(reading);
    assert.equal((await c.getManifest('a/b', 'latest')).size, MANIFEST.length, 'the slot was released');
    await assert.rejects(c.getBlob('a/b', `sha256:${'1'.repeat(64)}`, controller.signal), { name: 'AbortError' });
  });

  void it('bounds concurrent requests, holding a blob slot until its stream ends', async () => {
    let active = 0;
    let peak = 0;
    const server = await serve((req, res) => {
      active++;
      peak = Math.max(peak, active);
      res.on('close', () => active--);
      if (req.url?.includes('/blobs/')) {
        res.writeHead(200, { 'content-length': 5 });
        res.write('12');
        setTimeout(() => res.end('345'), 150);
      } else setTimeout(() => manifest(res), 30);
    });
    const c = client(server.url, { concurrency: 2 });
    await Promise.all(Array.from({ length: 8 }, () => c.getManifest('a/b', 'latest')));
    assert.equal(peak, 2);

    const blob = await c.getBlob('a/b', `sha256:${'1'.repeat(64)}`);
    const started = Date.now();
    await Promise.all([c.getManifest('a/b', 'latest'), c.getManifest('a/b', 'latest'), text(toReadable(blob.body))]);
    assert.ok(Date.now() - started >= 140, 'the second manifest waited for the blob slot');
    assert.equal(peak, 2);
  });

  void it('backpressure: an unread blob stops the download instead of buffering it', async () => {
    const total = 64 * 1024 * 1024;
    let written = 0;
    let finished = false;
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': total });
      const chunk = Buffer.alloc(64 * 1024);
      const pump = (): void => {
        while (written < total) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        finished = true;
        res.end();
      };
      pump();
    });
    const c = client(server.url);
    const blob = await c.getBlob('a/b', `sha256:${'1'.repeat(64)}`);
    await sleep(300);
    assert.ok(!finished && written < total / 4, `only ${written} of ${total} bytes left the server while nobody read`);
    let received = 0;
    const stream = toReadable(blob.body);
    stream.on('data', (b: Buffer) => (received += b.length));
    await once(stream, 'end');
    assert.equal(received, total);
  });

  void it('follows tag-list pagination links', async () => {
    const server = await serve((req, res) => {
      const url = new URL(req.url!, 'http://x');
      const last = url.searchParams.get('last');
      const pages: Record<string, { tags: string[]; next?: string }> = {
        '': { tags: ['a', 'b'], next: '/v2/team/app/tags/list?last=b&n=2' },
        b: { tags: ['c', 'd'], next: '/v2/team/app/tags/list?last=d&n=2' },
        d: { tags: ['e'] },
      };
      const page = pages[last ?? '']!;
      res.writeHead(200, { 'content-type': 'application/json', ...(page.next ? { link: `<${page.next}>; rel="next"` } : {}) });
      res.end(JSON.stringify({ name: 'team/app', tags: page.tags }));
    });
    const c = client(server.url);
    assert.deepEqual(await c.listTags('team/app'), ['a', 'b', 'c', 'd', 'e']);
    assert.equal(server.seen.length, 3);
  });

  void it('refuses endless pagination and links to other hosts', async () => {
    const endless = await serve((req, res) => {
      const n = Number(new URL(req.url!, 'http://x').searchParams.get('last') ?? 0) + 1;
      res.writeHead(200, { link: `</v2/x/tags/list?last=${n}>; rel="next"` });
      res.end(JSON.stringify({ tags: [String(n)] }));
    });
    await assert.rejects(client(endless.url).listTags('x'), isCode('INVALID'));
    assert.equal(endless.seen.length, 100);
    const away = await serve((_req, res) => {
      res.writeHead(200, { link: '<http://127.0.0.2:1/v2/x/tags/list?last=a>; rel="next"' });
      res.end(JSON.stringify({ tags: ['a'] }));
    });
    await assert.rejects(client(away.url).listTags('x'), isCode('INVALID'));
  });

  void it('tracks rate-limit headers and warns when the quota runs low', async () => {
    let remaining = 50;
    const server = await serve((_req, res) => manifest(res, { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': `${remaining};w=21600` }));
    const logs: string[] = [];
    const c = client(server.url, {}, logs);
    assert.equal(c.stats().rateLimit, undefined);
    await c.headManifest('a/b', 'latest');
    assert.deepEqual(c.stats().rateLimit, { limit: 100, remaining: 50, windowSeconds: 21600 });
    remaining = 5;
    await c.getManifest('a/b', 'latest');
    assert.deepEqual(c.stats().rateLimit, { limit: 100, remaining: 5, windowSeconds: 21600 });
    const warnings = logs.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level === 40);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!.msg, /quota/);
  });

  void it('redirect loops and redirects without a Location are INVALID', async () => {
    const loop = await serve((_req, res) => {
      res.writeHead(302, { location: '/again' });
      res.end();
    });
    await assert.rejects(client(loop.url).getBlob('a/b', `sha256:${'1'.repeat(64)}`), isCode('INVALID'));
    assert.equal(loop.seen.length, 6, 'the first request and 5 redirects');
    const nowhere = await serve((_req, res) => {
      res.writeHead(307);
      res.end();
    });
    await assert.rejects(client(nowhere.url).getBlob('a/b', `sha256:${'1'.repeat(64)}`), isCode('INVALID'));
  });

  void it('HEAD requires the digest asked for, when the upstream names one', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': 10, 'docker-content-digest': `sha256:${'2'.repeat(64)}` });
      res.end();
    });
    const c = client(server.url);
    await assert.rejects(c.headManifest('a/b', `sha256:${'1'.repeat(64)}`), isCode('INVALID'));
    assert.equal((await c.headManifest('a/b', 'latest')).digest, `sha256:${'2'.repeat(64)}`);
  });

  void it('a blob GET naming another digest is INVALID, and its connection is closed at once', async () => {
    let closed = false;
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': 64 * 1024 * 1024, 'docker-content-digest': `sha256:${'2'.repeat(64)}` });
      res.write(Buffer.alloc(64 * 1024));
      res.once('close', () => (closed = true));
    });
    const started = Date.now();
    await assert.rejects(client(server.url).getBlob('a/b', `sha256:${'1'.repeat(64)}`), isCode('INVALID'));
    while (!closed && Date.now() - started < 5000) await sleep(20);
    assert.ok(closed, 'the upstream connection was closed, not left to the idle timeout');
  });

  void describe('TLS', { skip: skipUnlessTools('openssl') }, () => {
    async function certificate(): Promise<{ key: Buffer; cert: Buffer; certFile: string }> {
      const dir = await tempDir('upstream-tls');
      cleanups.push(() => removeDir(dir));
      const keyFile = join(dir, 'key.pem');
      const certFile = join(dir, 'cert.pem');
      await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
      return { key: await readFile(keyFile), cert: await readFile(certFile), certFile };
    }

    void it('trusts config.ca, refuses an unknown CA, and skips verification only when told (control requests and blob bodies)', async () => {
      const { key, cert, certFile } = await certificate();
      const blob = 'blob bytes over TLS';
      const server = await serve(
        (req, res) => {
          if (!req.url?.includes('/blobs/')) return manifest(res);
          res.writeHead(200, { 'content-length': blob.length });
          res.end(blob);
        },
        { key, cert },
      );
      const digest = `sha256:${'1'.repeat(64)}`;
      await assert.rejects(client(server.url).headManifest('a/b', 'latest'), isCode('UNAVAILABLE'));
      await assert.rejects(client(server.url).getBlob('a/b', digest), isCode('UNAVAILABLE'));
      assert.equal((await client(server.url, { ca: certFile }).headManifest('a/b', 'latest')).size, MANIFEST.length);
      assert.equal(await text(toReadable((await client(server.url, { ca: certFile }).getBlob('a/b', digest)).body)), blob);
      assert.equal((await client(server.url, { insecureSkipVerify: true }).headManifest('a/b', 'latest')).size, MANIFEST.length);
      assert.equal(await text(toReadable((await client(server.url, { insecureSkipVerify: true }).getBlob('a/b', digest)).body)), blob);
    });

    void it('never sends credentials to a realm that downgrades https to http', async () => {
      const { key, cert, certFile } = await certificate();
      const realm = await serve((_req, res) => {
        res.writeHead(200);
        res.end(JSON.stringify({ token: 'tok' }));
      });
      const server = await serve(
        (req, res) => {
          if (req.headers.authorization === 'Bearer tok') return manifest(res);
          res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm.url}/token",service="s"` });
          res.end();
        },
        { key, cert },
      );
      const c = client(server.url, { ca: certFile, username: 'u', password: 'secret' });
      await c.headManifest('a/b', 'latest');
      assert.equal(realm.seen.length, 1);
      assert.equal(realm.seen[0]!.headers.authorization, undefined);
    });
  });
});
