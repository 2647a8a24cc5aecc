/**
 * Uploads under faults, with tender as a real child process: killed with
 * SIGKILL in the middle of an upload and restarted on the same data root,
 * clients that vanish mid-chunk, and abandoned sessions swept by age. A blob
 * is never visible before its upload completes.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnDaemon, type Daemon } from './helpers/daemon.ts';
import { call, errorCode, randomBlob, type Registry } from './helpers/push.ts';
import { freePort, removeDir, tempDir, teardown, waitFor } from './helpers/tools.ts';

const cli = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');
const MiB = 1024 * 1024;

interface Child {
  registry: Registry;
  daemon: Daemon;
  /** The JSON log lines so far. */
  logs(): Array<Record<string, unknown>>;
  kill(): Promise<void>;
}

/** Starts `tender serve` on a fresh port over `dir/data` and waits for 'tender listening'. */
async function startChild(dir: string, opts: { uploadsMaxAge?: string } = {}): Promise<Child> {
  const port = await freePort();
  const deadUpstream = await freePort();
  const file = join(dir, 'tender.yaml');
  await writeFile(
    file,
    [
      `server: { host: 127.0.0.1, port: ${port}, shutdownTimeout: 2s }`,
      'ops: { enabled: false }',
      'storage: { filesystem: { root: ./data } }',
      'local: { namespaces: ["acme/**"] }',
      'access: [{ repositories: "**", pull: [$all], push: [$all], delete: [$all] }]',
      `upstreams: { hub: { url: "http://127.0.0.1:${deadUpstream}", retries: 0 } }`,
      `uploads: { maxAge: ${opts.uploadsMaxAge ?? '1d'} }`,
      'log: { level: debug }',
      '',
    ].join('\n'),
  );
  const daemon = spawnDaemon(process.execPath, [cli, 'serve', '--config', file]);
  const logs = (): Array<Record<string, unknown>> =>
    daemon
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  await waitFor('tender to listen', async () => {
    if (daemon.child.exitCode !== null) throw new Error(`tender exited: ${daemon.output()}`);
    return logs().some((l) => l.msg === 'tender listening');
  });
  return {
    registry: { url: `http://127.0.0.1:${port}` },
    daemon,
    logs,
    async kill() {
      daemon.child.kill('SIGKILL');
      await daemon.exited();
    },
  };
}

/** Bytes an upload session holds, from GET of its Location (204 with Range 0-<end>). */
async function held(registry: Registry, location: string): Promise<number> {
  const res = await call(registry, 'GET', location);
  assert.equal(res.status, 204);
  const m = /^0-(\d+)$/.exec(res.headers.get('range') ?? '');
  assert.ok(m, `Range: ${res.headers.get('range')}`);
  return Number(m[1]) + 1;
}

/**
 * Starts a PATCH that declares `chunk.length` bytes but sends only `sent` of
 * them; resolves once they are written, with a function that drops the connection.
 */
function partialPatch(registry: Registry, location: string, chunk: Buffer, start: number, sent: number): { abort: () => void; settled: Promise<unknown> } {
  const req = request(new URL(location, registry.url), {
    method: 'PATCH',
    headers: {
      'Content-Type': 'application/octet-stream',
      'Content-Length': String(chunk.length),
      'Content-Range': `${start}-${start + chunk.length - 1}`,
    },
  });
  const settled = new Promise((resolve) => {
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', resolve);
  });
  req.write(chunk.subarray(0, sent));
  return { abort: () => req.destroy(), settled };
}

describe('uploads under faults (tender as a child process)', () => {
  const td = teardown();
  after(() => td.run());

  test('an upload survives SIGKILL mid-chunk: the bytes held resume after a restart, and the blob is only visible once complete', async () => {
    const dir = await tempDir('push-restart');
    td.add(() => removeDir(dir));
    const blob = randomBlob(3 * MiB + 123);
    let tender = await startChild(dir);
    td.add(() => tender.kill());
    const start = await call(tender.registry, 'POST', '/v2/acme/resume/blobs/uploads/');
    assert.equal(start.status, 202);
    const location = start.headers.get('location')!;
    const first = await call(tender.registry, 'PATCH', location, { body: blob.data.subarray(0, MiB), headers: { 'Content-Range': `0-${MiB - 1}` } });
    assert.equal(first.status, 202);
    assert.equal(first.headers.get('range'), `0-${MiB - 1}`);

    // A second chunk is on the wire (a quarter of it sent) when tender is killed.
    const inFlight = partialPatch(tender.registry, location, blob.data.subarray(MiB, 2 * MiB), MiB, 256 * 1024);
    await waitFor('part of the second chunk to be written', async () => (await held(tender.registry, location)) > MiB);
    assert.equal((await call(tender.registry, 'HEAD', `/v2/acme/resume/blobs/${blob.digest}`)).status, 404);
    const before = await held(tender.registry, location);
    await tender.kill();
    await inFlight.settled;

    tender = await startChild(dir);
    const after = await held(tender.registry, location);
    assert.ok(after >= before && after <= MiB + 256 * 1024, `held ${after} (saw ${before} before the kill)`);
    assert.equal((await call(tender.registry, 'HEAD', `/v2/acme/resume/blobs/${blob.digest}`)).status, 404, 'not visible after the restart');

    const rest = await call(tender.registry, 'PATCH', location, {
      body: blob.data.subarray(after),
      headers: { 'Content-Range': `${after}-${blob.data.length - 1}` },
    });
    assert.equal(rest.status, 202);
    assert.equal(rest.headers.get('range'), `0-${blob.data.length - 1}`);
    assert.equal((await call(tender.registry, 'HEAD', `/v2/acme/resume/blobs/${blob.digest}`)).status, 404, 'not visible before the PUT');
    const done = await call(tender.registry, 'PUT', `${location}?digest=${blob.digest}`);
    assert.equal(done.status, 201);
    assert.equal(done.headers.get('docker-content-digest'), blob.digest);
    const got = await call(tender.registry, 'GET', `/v2/acme/resume/blobs/${blob.digest}`);
    assert.equal(got.status, 200);
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(blob.data), 'the blob is intact');
    assert.deepEqual(await readdir(join(dir, 'data', '_uploads')), []);
    await tender.kill();
  });

  test('a client that drops a PATCH or a monolithic POST mid-body leaves nothing visible', async () => {
    const dir = await tempDir('push-drop');
    td.add(() => removeDir(dir));
    const tender = await startChild(dir);
    td.add(() => tender.kill());
    const blob = randomBlob(2 * MiB);

    const start = await call(tender.registry, 'POST', '/v2/acme/drop/blobs/uploads/');
    const location = start.headers.get('location')!;
    const dropped = partialPatch(tender.registry, location, blob.data, 0, 700 * 1024);
    await waitFor('part of the chunk to be written', async () => (await held(tender.registry, location)) > 0);
    dropped.abort();
    await dropped.settled;
    // Settled: the bytes held stop changing.
    let kept = -1;
    await waitFor('the server to settle the dropped chunk', async () => {
      const now = await held(tender.registry, location);
      const stable = now === kept;
      kept = now;
      return stable;
    }, 15_000, 300);
    assert.ok(kept > 0 && kept <= 700 * 1024, `held ${kept}`);
    assert.equal((await call(tender.registry, 'HEAD', `/v2/acme/drop/blobs/${blob.digest}`)).status, 404);
    const rest = await call(tender.registry, 'PUT', `${location}?digest=${blob.digest}`, {
      body: blob.data.subarray(kept),
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    assert.equal(rest.status, 201, 'the client resumes from the Range it was given');

    const other = randomBlob(2 * MiB);
    const req = request(new URL(`/v2/acme/drop/blobs/uploads/?digest=${other.digest}`, tender.registry.url), {
      method: 'POST',
      headers: { 'Content-Length': String(other.data.length), 'Content-Type': 'application/octet-stream' },
    });
    const settled = new Promise((resolve) => req.on('error', resolve).on('response', resolve));
    req.write(other.data.subarray(0, 512 * 1024));
    await sleep(200);
    req.destroy();
    await settled;
    await waitFor('the abandoned monolithic upload to be cleaned up', async () => (await readdir(join(dir, 'data', '_uploads'))).length === 0);
    assert.equal((await call(tender.registry, 'HEAD', `/v2/acme/drop/blobs/${other.digest}`)).status, 404);
    const got = await call(tender.registry, 'GET', `/v2/acme/drop/blobs/${blob.digest}`);
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(blob.data));
    await tender.kill();
  });

  test('sessions older than uploads.maxAge are swept at start, and while running', async () => {
    const dir = await tempDir('push-sweep');
    td.add(() => removeDir(dir));
    let tender = await startChild(dir, { uploadsMaxAge: '1s' });
    td.add(() => tender.kill());
    const start = await call(tender.registry, 'POST', '/v2/acme/old/blobs/uploads/');
    const location = start.headers.get('location')!;
    const patch = await call(tender.registry, 'PATCH', location, { body: Buffer.alloc(1000, 1), headers: { 'Content-Range': '0-999' } });
    assert.equal(patch.status, 202);
    await tender.kill();
    await sleep(1500);

    tender = await startChild(dir, { uploadsMaxAge: '1s' });
    const lines = tender.logs();
    const swept = lines.findIndex((l) => l.msg === 'abandoned uploads removed' && l.removed === 1);
    const listening = lines.findIndex((l) => l.msg === 'tender listening');
    assert.ok(swept >= 0 && swept < listening, 'swept before listening');
    const gone = await call(tender.registry, 'GET', location);
    assert.equal(gone.status, 404);
    assert.equal(await errorCode(gone), 'BLOB_UPLOAD_UNKNOWN');
    assert.deepEqual(await readdir(join(dir, 'data', '_uploads')), []);

    const idle = await call(tender.registry, 'POST', '/v2/acme/old/blobs/uploads/');
    const idleLocation = idle.headers.get('location')!;
    assert.equal((await call(tender.registry, 'GET', idleLocation)).status, 204);
    await waitFor(
      'the running sweeper to remove the idle session',
      async () => {
        const res = await call(tender.registry, 'GET', idleLocation);
        await res.arrayBuffer();
        return res.status === 404;
      },
      10_000,
      250,
    );
    await tender.kill();
  });
});
