import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AddressInfo } from 'node:net';
import { Http1Client, Http1Error, type Http1Response } from '../src/upstream/http1.ts';
import { ResponseParser, ResponseParseError, type ResponseHead } from '../src/upstream/response-parser.ts';
import { makeTls } from './helpers/tls.ts';
import { removeDir, tempDir } from './helpers/tools.ts';

/** Feeds `raw` to a parser in pieces cut at `cuts`, collecting what it reports. */
function parse(method: string, raw: Buffer, cuts: number[] = [], close = false): { head?: ResponseHead; body: Buffer; ended: boolean } {
  let head: ResponseHead | undefined;
  const body: Buffer[] = [];
  let ended = false;
  const p = new ResponseParser(method, {
    head: (h) => (head = h),
    body: (v) => body.push(Buffer.from(v)),
    end: () => (ended = true),
  });
  let at = 0;
  for (const cut of [...cuts, raw.length]) {
    p.feed(raw, at, cut);
    at = cut;
  }
  if (close) p.closed();
  return { ...(head ? { head } : {}), body: Buffer.concat(body), ended };
}

const chunked = Buffer.from(
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n' + '5;ext=1\r\nhello\r\n' + '1\r\n \r\n' + 'A\r\n0123456789\r\n' + '0\r\nTrailer: x\r\n\r\n',
);

void describe('HTTP/1.1 response parser', () => {
  void it('parses a Content-Length body cut at every byte', () => {
    const raw = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello world');
    for (let cut = 0; cut <= raw.length; cut++) {
      const r = parse('GET', raw, [cut]);
      assert.equal(r.head?.status, 200);
      assert.equal(r.head?.headers['content-type'], 'text/plain');
      assert.equal(r.head?.keepAlive, true);
      assert.equal(r.body.toString(), 'hello world');
      assert.ok(r.ended);
    }
  });

  void it('decodes chunked bodies (extensions, trailers) cut anywhere, and joins repeated headers', () => {
    for (let a = 0; a <= chunked.length; a += 3) {
      for (let b = a; b <= chunked.length; b += 7) {
        const r = parse('GET', chunked, [a, b]);
        assert.equal(r.body.toString(), 'hello 0123456789', `cuts ${a},${b}`);
        assert.ok(r.ended);
        assert.equal(r.head?.headers['x-a'], '1, 2');
      }
    }
  });

  void it('skips interim 1xx responses, and gives HEAD, 204 and 304 no body', () => {
    const r = parse('GET', Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    assert.equal(r.head?.status, 200);
    assert.equal(r.body.toString(), 'ok');
    const head = parse('HEAD', Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n'));
    assert.ok(head.ended);
    assert.equal(head.body.length, 0);
    assert.ok(parse('GET', Buffer.from('HTTP/1.1 204 No Content\r\n\r\n')).ended);
    assert.ok(parse('GET', Buffer.from('HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n')).ended);
  });

  void it('runs a body without framing until the close, and never reuses that connection', () => {
    const r = parse('GET', Buffer.from('HTTP/1.1 200 OK\r\n\r\nuntil the end'), [], true);
    assert.equal(r.body.toString(), 'until the end');
    assert.ok(r.ended);
    assert.equal(r.head?.keepAlive, false);
    assert.equal(parse('GET', Buffer.from('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n')).head?.keepAlive, false);
    assert.equal(parse('GET', Buffer.from('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')).head?.keepAlive, false);
  });

  void it('refuses malformed responses and truncated bodies', () => {
    const bad = [
      'HTTP/2 200 OK\r\n\r\n',
      'HTTP/1.1 2000 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA',
      'HTTP/1.1 101 Switching Protocols\r\n\r\n',
    ];
    for (const raw of bad) assert.throws(() => parse('GET', Buffer.from(raw)), ResponseParseError, JSON.stringify(raw));
    assert.throws(() => parse('GET', Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort'), [], true), /before the end of the body/);
    assert.throws(() => parse('GET', Buffer.from('HTTP/1.1 200 OK\r\n'), [], true), /before the response/);
    assert.throws(() => parse('GET', Buffer.from(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(70_000)}\r\n\r\n`)), /larger than/);
  });
});

/** Reads a whole body through its ByteSource, optionally pausing for `pauseMs` after each piece. */
function readAll(res: Http1Response, pauseMs = 0): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    res.body.start({
      data(view) {
        parts.push(Buffer.from(view));
        if (pauseMs > 0) {
          setTimeout(() => res.body.resume(), pauseMs);
          return false;
        }
        return true;
      },
      end: () => resolve(Buffer.concat(parts)),
      error: reject,
    });
  });
}

const timeouts = { connect: 5000, response: 5000, idle: 5000, total: 0 };

void describe('lean HTTP/1.1 client', () => {
  const big = randomBytes(5 * 1024 * 1024 + 17);
  let server: http.Server;
  let base: string;
  const sockets = new Set<net.Socket>();
  let connections = 0;

  before(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/big') {
        res.writeHead(200, { 'content-length': big.length, 'x-echo': req.headers['x-test'] ?? '' });
        res.end(big);
      } else if (req.url === '/chunked') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        let i = 0;
        const step = (): void => {
          if (i >= big.length) return void res.end();
          const part = big.subarray(i, i + 300_000);
          i += part.length;
          if (res.write(part)) setImmediate(step);
          else res.once('drain', step);
        };
        step();
      } else if (req.url === '/truncated') {
        res.writeHead(200, { 'content-length': big.length });
        res.write(big.subarray(0, 1000), () => res.destroy());
      } else if (req.url === '/silent') {
        // never answers
      } else if (req.url === '/stall') {
        res.writeHead(200, { 'content-length': 100 });
        res.write('x'.repeat(10));
      } else if (req.url === '/redirect') {
        res.writeHead(307, { location: '/big', 'content-length': 5 });
        res.end('moved');
      } else {
        res.writeHead(404, { 'content-length': 0 });
        res.end();
      }
    });
    server.on('connection', (s: net.Socket) => {
      connections++;
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  void it('downloads a body whole (Content-Length and chunked), sending the given headers', async () => {
    const client = new Http1Client({ rejectUnauthorized: true });
    try {
      const res = await client.request({ method: 'GET', url: new URL(`${base}/big`), headers: { 'x-test': 'yes' }, timeouts });
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-echo'], 'yes');
      assert.ok((await readAll(res)).equals(big));
      const chunkedRes = await client.request({ method: 'GET', url: new URL(`${base}/chunked`), headers: {}, timeouts });
      assert.equal(chunkedRes.headers['transfer-encoding'], 'chunked');
      assert.ok((await readAll(chunkedRes)).equals(big));
    } finally {
      client.close();
    }
  });

  void it('reuses a kept-alive connection, and a body read late or with pauses still arrives whole', async () => {
    const client = new Http1Client({ rejectUnauthorized: true });
    try {
      const before = connections;
      const first = await client.request({ method: 'GET', url: new URL(`${base}/redirect`), headers: {}, timeouts });
      assert.equal(first.status, 307);
      assert.equal((await readAll(first)).toString(), 'moved');
      const second = await client.request({ method: 'GET', url: new URL(`${base}/big`), headers: {}, timeouts });
      await sleep(200); // bytes arrive before the consumer starts
      assert.ok((await readAll(second, 1)).equals(big));
      const third = await client.request({ method: 'HEAD', url: new URL(`${base}/big`), headers: {}, timeouts });
      assert.equal(third.headers['content-length'], String(big.length));
      assert.equal((await readAll(third)).length, 0);
      assert.equal(connections - before, 1, 'one connection for three requests');
    } finally {
      client.close();
    }
  });

  void it('retries once on a new connection when the server closed a kept-alive one unanswered', async () => {
    // Answers the first request of each connection and closes it, unanswered, on the second.
    let opened = 0;
    const raw = net.createServer((socket) => {
      opened++;
      let requests = 0;
      socket.on('data', (d) => {
        requests += d.toString('latin1').split('\r\n\r\n').length - 1;
        if (requests === 1) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        else socket.destroy();
      });
    });
    raw.listen(0, '127.0.0.1');
    await once(raw, 'listening');
    const url = new URL(`http://127.0.0.1:${(raw.address() as AddressInfo).port}/`);
    const client = new Http1Client({ rejectUnauthorized: true });
    try {
      assert.equal((await readAll(await client.request({ method: 'GET', url, headers: {}, timeouts }))).toString(), 'ok');
      assert.equal((await readAll(await client.request({ method: 'GET', url, headers: {}, timeouts }))).toString(), 'ok');
      assert.equal(opened, 2, 'the second request went to a new connection after the kept-alive one failed');
    } finally {
      client.close();
      raw.close();
    }
  });

  void it('reports a body cut short as an error, never as an end', async () => {
    const client = new Http1Client({ rejectUnauthorized: true });
    try {
      const res = await client.request({ method: 'GET', url: new URL(`${base}/truncated`), headers: {}, timeouts });
      await assert.rejects(readAll(res), (err: Http1Error) => err instanceof Http1Error && /closed|ECONNRESET/.test(`${err.code} ${err.message}`));
    } finally {
      client.close();
    }
  });

  void it('times out waiting for the head, between reads, and on the whole exchange', async () => {
    const client = new Http1Client({ rejectUnauthorized: true });
    try {
      await assert.rejects(
        client.request({ method: 'GET', url: new URL(`${base}/silent`), headers: {}, timeouts: { ...timeouts, response: 200 } }),
        (err: Http1Error) => err.code === 'ETIMEDOUT' && /response timeout/.test(err.message),
      );
      const stalled = await client.request({ method: 'GET', url: new URL(`${base}/stall`), headers: {}, timeouts: { ...timeouts, idle: 200 } });
      await assert.rejects(readAll(stalled), (err: Http1Error) => err.code === 'ETIMEDOUT' && /idle/.test(err.message));
      const slow = await client.request({ method: 'GET', url: new URL(`${base}/stall`), headers: {}, timeouts: { ...timeouts, total: 200 } });
      await assert.rejects(readAll(slow), (err: Http1Error) => err.code === 'ETIMEDOUT' && /total/.test(err.message));
    } finally {
      client.close();
    }
  });

  void it('stops on an abort signal, refuses CR/LF in header values, and reports refused connections', async () => {
    const client = new Http1Client({ rejectUnauthorized: true });
    try {
      const controller = new AbortController();
      const pending = client.request({ method: 'GET', url: new URL(`${base}/silent`), headers: {}, signal: controller.signal, timeouts });
      setTimeout(() => controller.abort(new Error('stop')), 50);
      await assert.rejects(pending, /stop/);
      await assert.rejects(client.request({ method: 'GET', url: new URL(`${base}/big`), headers: { 'x-a': 'b\r\nX-Injected: 1' }, timeouts }), {
        code: 'ERR_INVALID_CHAR',
      });
      const closed = net.createServer();
      closed.listen(0, '127.0.0.1');
      await once(closed, 'listening');
      const port = (closed.address() as AddressInfo).port;
      closed.close();
      await assert.rejects(client.request({ method: 'GET', url: new URL(`http://127.0.0.1:${port}/`), headers: {}, timeouts }), { code: 'ECONNREFUSED' });
    } finally {
      client.close();
    }
  });

  void it('pauses the socket while the consumer asks, so the server cannot run ahead', async () => {
    const client = new Http1Client({ rejectUnauthorized: true });
    const huge = 64 * 1024 * 1024;
    let sent = 0;
    const pushy = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': huge });
      const chunk = Buffer.alloc(256 * 1024);
      const pump = (): void => {
        while (sent < huge) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    pushy.listen(0, '127.0.0.1');
    await once(pushy, 'listening');
    try {
      const res = await client.request({ method: 'GET', url: new URL(`http://127.0.0.1:${(pushy.address() as AddressInfo).port}/`), headers: {}, timeouts });
      let received = 0;
      const done = new Promise<void>((resolve, reject) => {
        res.body.start({
          data(view) {
            received += view.length;
            return false; // pause after every piece until resumed below
          },
          end: resolve,
          error: reject,
        });
      });
      await sleep(300);
      assert.ok(sent < huge / 2, `the server sent ${sent} of ${huge} bytes while the consumer was paused`);
      const timer = setInterval(() => res.body.resume(), 1);
      await done;
      clearInterval(timer);
      assert.equal(received, huge);
    } finally {
      client.close();
      pushy.closeAllConnections();
      pushy.close();
    }
  });

  void it('speaks TLS with a configured CA and refuses an unknown one', async () => {
    const dir = await tempDir('http1-tls');
    const files = await makeTls(dir);
    const tlsServer = https.createServer({ cert: await readFile(files.cert), key: await readFile(files.key) }, (_req, res) => {
      res.writeHead(200, { 'content-length': big.length });
      res.end(big);
    });
    tlsServer.listen(0, '127.0.0.1');
    await once(tlsServer, 'listening');
    const url = new URL(`https://127.0.0.1:${(tlsServer.address() as AddressInfo).port}/`);
    const trusting = new Http1Client({ rejectUnauthorized: true, ca: [files.caPem] });
    const strict = new Http1Client({ rejectUnauthorized: true });
    try {
      const res = await trusting.request({ method: 'GET', url, headers: {}, timeouts });
      const body = await readAll(res);
      assert.equal(createHash('sha256').update(body).digest('hex'), createHash('sha256').update(big).digest('hex'));
      await assert.rejects(strict.request({ method: 'GET', url, headers: {}, timeouts }), (err: Http1Error) => /certificate/i.test(err.message));
    } finally {
      trusting.close();
      strict.close();
      tlsServer.closeAllConnections();
      tlsServer.close();
      await removeDir(dir);
    }
  });
});
