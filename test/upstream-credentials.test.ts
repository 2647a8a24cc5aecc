/**
 * Where credentials go and where they never go: Basic to the registry and its
 * own token realm, Bearer to the registry only, nothing to a blob CDN it
 * redirects to, and never into logs or error objects. The servers here are
 * fakes on loopback (a CDN is a true edge a real registry cannot stand in for).
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { text } from 'node:stream/consumers';
import { inspect } from 'node:util';
import pino from 'pino';
import { configSchema } from '../src/config/schema.ts';
import type { MetaStore } from '../src/meta/meta.ts';
import { digestOf } from '../src/registry/digest.ts';
import { createUpstream, type UpstreamClient } from '../src/upstream/client.ts';
import { UpstreamError } from '../src/upstream/types.ts';
import { toReadable } from '../src/upstream/body.ts';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

interface FakeServer {
  url: string;
  seen: Seen[];
  close(): Promise<void>;
}

const servers: FakeServer[] = [];
const clients: UpstreamClient[] = [];
after(async () => {
  clients.forEach((c) => c.close());
  await Promise.all(servers.map((s) => s.close()));
});

async function serve(host: string, handler: (req: IncomingMessage, res: ServerResponse, self: FakeServer) => void): Promise<FakeServer> {
  const self: FakeServer = { url: '', seen: [], close: () => Promise.resolve() };
  const server = createServer((req, res) => {
    self.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    handler(req, res, self);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  self.url = `http://${host}:${(server.address() as AddressInfo).port}`;
  self.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  servers.push(self);
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

/** A client whose debug log lines are captured. */
function client(url: string, extra: Record<string, unknown> = {}): { c: UpstreamClient; logs: string[] } {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(chunk.toString());
      cb();
    },
  });
  const config = configSchema.parse({ upstreams: { fake: { url, retries: 0, ...extra } } }).upstreams.fake!;
  const c = createUpstream('fake', config, { meta: mapMeta(), logger: pino({ level: 'trace' }, sink), maxManifestSize: 1 << 20 });
  clients.push(c);
  return { c, logs };
}

const USER = 'alice';
const PASSWORD = 'pw-secret-456';
const BASIC = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
const TOKEN = 'tok-secret-123';
const SIGNATURE = 'sig-secret-789';
const BLOB = Buffer.from('layer bytes '.repeat(1000));
const BLOB_DIGEST = digestOf(BLOB);
const MANIFEST = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json' }));

function assertNoSecrets(where: string, text: string): void {
  for (const secret of [PASSWORD, BASIC.slice(6), TOKEN, SIGNATURE]) assert.ok(!text.includes(secret), `${where} leaks ${secret}`);
}

/** An error as pino, JSON and util.inspect (console.error, crash reports) would show it, cause chain included. */
function serialized(err: unknown): string {
  const lines: string[] = [];
  const log = pino({ level: 'info', serializers: { err: pino.stdSerializers.errWithCause } }, { write: (s: string) => void lines.push(s) });
  log.error({ err }, 'failed');
  return lines.join('') + String(err) + JSON.stringify(err) + inspect(err, { depth: 20, showHidden: true });
}

void describe('upstream credentials', () => {
  void it('Bearer: Basic to its own realm, the token to the registry, nothing to the CDN it redirects to', async () => {
    const cdn = await serve('127.0.0.2', (_req, res) => {
      res.writeHead(200, { 'content-length': BLOB.length });
      res.end(BLOB);
    });
    const registry = await serve('127.0.0.1', (req, res, self) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ token: TOKEN, expires_in: 300 }));
      } else if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="${self.url}/token",service="fake"` });
        res.end();
      } else if (req.url?.includes('/blobs/')) {
        res.writeHead(307, { location: `${cdn.url}/cdn/blob?X-Amz-Signature=${SIGNATURE}` });
        res.end();
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    const { c, logs } = client(registry.url, { username: USER, password: PASSWORD });
    const blob = await c.getBlob('team/app', BLOB_DIGEST);
    assert.equal(blob.size, BLOB.length);
    assert.equal(await text(toReadable(blob.body)), BLOB.toString());

    const token = registry.seen.find((s) => s.url.startsWith('/token'));
    assert.equal(token?.headers.authorization, BASIC, 'the realm named by the registry gets the configured credentials');
    assert.equal(new URL(token.url, registry.url).searchParams.get('scope'), 'repository:team/app:pull');
    assert.equal(new URL(token.url, registry.url).searchParams.get('service'), 'fake');
    const blobs = registry.seen.filter((s) => s.url.includes('/blobs/'));
    assert.deepEqual(
      blobs.map((s) => s.headers.authorization),
      [undefined, `Bearer ${TOKEN}`],
    );
    assert.equal(cdn.seen.length, 1);
    assert.equal(cdn.seen[0]!.headers.authorization, undefined, 'the CDN gets no Authorization');
    assert.ok(!JSON.stringify(cdn.seen[0]!.headers).includes(PASSWORD));
    assert.ok(logs.length > 0, 'debug logs were written');
    assertNoSecrets('the log', logs.join(''));
    assert.ok(logs.join('').includes(`${cdn.url}/cdn/blob"`), 'the CDN URL is logged without its query');
  });

  void it('keeps Authorization on a redirect within the registry origin', async () => {
    const registry = await serve('127.0.0.1', (req, res, self) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(200);
        res.end(JSON.stringify({ token: TOKEN }));
      } else if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="${self.url}/token"` });
        res.end();
      } else if (req.url?.startsWith('/v2/')) {
        res.writeHead(302, { location: '/storage/blob' });
        res.end();
      } else {
        res.writeHead(200, { 'content-length': BLOB.length });
        res.end(BLOB);
      }
    });
    const { c } = client(registry.url);
    assert.equal(await text(toReadable((await c.getBlob('team/app', BLOB_DIGEST)).body)), BLOB.toString());
    const storage = registry.seen.find((s) => s.url === '/storage/blob');
    assert.equal(storage?.headers.authorization, `Bearer ${TOKEN}`);
    const token = registry.seen.find((s) => s.url.startsWith('/token'));
    assert.equal(token?.headers.authorization, undefined, 'no credentials configured, none sent');
  });

  void it('Basic: answers the challenge with the configured credentials, then sends them up front', async () => {
    const registry = await serve('127.0.0.1', (req, res) => {
      if (req.headers.authorization !== BASIC) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="fake registry"' });
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': MANIFEST.length });
      res.end(req.method === 'HEAD' ? undefined : MANIFEST);
    });
    const { c, logs } = client(registry.url, { username: USER, password: PASSWORD });
    const m = await c.getManifest('team/app', 'latest');
    assert.deepEqual(m.body, MANIFEST);
    assert.equal(m.digest, digestOf(MANIFEST));
    assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.deepEqual(
      registry.seen.map((s) => s.headers.authorization),
      [undefined, BASIC],
    );
    await c.headManifest('team/app', 'latest');
    assert.equal(registry.seen.length, 3, 'Basic is sent up front once the challenge is known');
    assert.equal(registry.seen[2]!.headers.authorization, BASIC);
    assert.equal(c.stats().tokenFetches, 0);
    assertNoSecrets('the log', logs.join(''));
  });

  void it('wrong credentials are UNAUTHORIZED, and the error carries no secret', async () => {
    const registry = await serve('127.0.0.1', (_req, res) => {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="fake registry"' });
      res.end();
    });
    const { c, logs } = client(`http://${USER}:${PASSWORD}@${new URL(registry.url).host}`);
    const err = await c.getManifest('team/app', 'latest').then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof UpstreamError && err.code === 'UNAUTHORIZED', String(err));
    assert.equal(registry.seen.length, 2, 'one try without, one with the URL userinfo as credentials');
    assert.equal(registry.seen[1]!.headers.authorization, BASIC);
    assertNoSecrets('the error', serialized(err));
    assertNoSecrets('the log', logs.join(''));
  });

  void it('a network error carries no request headers into logs', async () => {
    const registry = await serve('127.0.0.1', (req, res, self) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(200);
        res.end(JSON.stringify({ token: TOKEN }));
      } else if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="${self.url}/token"` });
        res.end();
      } else {
        req.socket.destroy();
      }
    });
    const { c, logs } = client(registry.url, { username: USER, password: PASSWORD });
    const err = await c.getManifest('team/app', 'latest').then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof UpstreamError && err.code === 'UNAVAILABLE', String(err));
    assertNoSecrets('the error', serialized(err));
    assertNoSecrets('the log', logs.join(''));
  });

  void it('no Bearer challenge and no credentials: a 401 is UNAUTHORIZED after one request', async () => {
    const registry = await serve('127.0.0.1', (_req, res) => {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="x"' });
      res.end();
    });
    const { c } = client(registry.url);
    await assert.rejects(c.headManifest('team/app', 'latest'), (e: unknown) => e instanceof UpstreamError && e.code === 'UNAUTHORIZED');
    assert.equal(registry.seen.length, 1);
  });
});
