/**
 * A Docker-Hub-like Bearer token service for CNCF Distribution's `auth.token` mode.
 * Signs RS256 JWTs whose header carries `x5c` with a self-signed certificate that
 * Distribution trusts through `rootcertbundle`.
 */
import { createSign, generateKeyPairSync, randomUUID, X509Certificate } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './tools.ts';

/** A running token service. */
export interface TokenIssuer {
  /** Base URL, http://127.0.0.1:PORT */
  url: string;
  /** The token endpoint given to registries as `realm`. */
  realm: string;
  /** The `service` (and JWT audience) the registry expects. */
  service: string;
  /** How many tokens have been issued so far. */
  tokensIssued(): number;
  stop(): Promise<void>;
}

/** A token service with the extra details Distribution needs and tests may inspect. */
export interface TokenIssuerHandle extends TokenIssuer {
  /** JWT `iss`. */
  issuer: string;
  /** PEM file with the signing certificate, for Distribution's `rootcertbundle`. */
  certFile: string;
  /** Every grant, in order: who asked and what they got. */
  grants: Array<{ subject: string; access: Access[] }>;
}

/** One entry of the JWT `access` claim. */
export interface Access {
  type: string;
  name: string;
  actions: string[];
}

export interface TokenIssuerOptions {
  /** Directory for the key and certificate. */
  dir: string;
  /** Basic credentials that get every action; anonymous callers get `pull` only. */
  credentials: { username: string; password: string };
  /** Token lifetime; default 300 s. */
  ttlSeconds?: number;
  service?: string;
}

const ANONYMOUS_ACTIONS = new Set(['pull']);
const USER_ACTIONS = new Set(['pull', 'push', 'delete', '*']);

/** Starts a token service on 127.0.0.1, port 0. */
export async function startTokenIssuer(opts: TokenIssuerOptions): Promise<TokenIssuerHandle> {
  const service = opts.service ?? 'tender-test-registry';
  const issuer = 'tender-test-issuer';
  const ttl = opts.ttlSeconds ?? 300;
  const keyFile = join(opts.dir, 'issuer.key');
  const certFile = join(opts.dir, 'issuer.crt');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  await writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  await run('openssl', ['req', '-x509', '-new', '-key', keyFile, '-subj', '/CN=issuer', '-days', '2', '-out', certFile]);
  const certDer = new X509Certificate(await readFile(certFile)).raw;
  const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
  const grants: TokenIssuerHandle['grants'] = [];

  const sign = (subject: string, access: Access[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: issuer, sub: subject, aud: service, exp: now + ttl, nbf: now - 1, iat: now, jti: randomUUID(), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(input).sign(privateKey);
    grants.push({ subject, access });
    return `${input}.${b64url(signature)}`;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://issuer');
    let scopes = url.searchParams.getAll('scope');
    let user = parseBasic(req.headers.authorization);
    if (req.method === 'POST') {
      // OAuth2 password grant, as containerd tries first when it has credentials.
      const form = new URLSearchParams(await readBody(req));
      scopes = scopes.concat(form.getAll('scope'));
      if (form.get('username') !== null) user = { username: form.get('username') ?? '', password: form.get('password') ?? '' };
    } else if (req.method !== 'GET') {
      return send(res, 405, { errors: [{ code: 'UNSUPPORTED', message: 'method not allowed' }] });
    }
    let allowed = ANONYMOUS_ACTIONS;
    let subject = '';
    if (user) {
      if (user.username !== opts.credentials.username || user.password !== opts.credentials.password) {
        res.setHeader('WWW-Authenticate', 'Basic realm="tender-test-issuer"');
        return send(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] });
      }
      allowed = USER_ACTIONS;
      subject = user.username;
    }
    const access = parseScopes(scopes, allowed);
    const token = sign(subject, access);
    send(res, 200, { token, access_token: token, expires_in: ttl, issued_at: new Date().toISOString() });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => send(res, 500, { errors: [{ code: 'UNKNOWN', message: String(e) }] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    realm: `${url}/token`,
    service,
    issuer,
    certFile,
    grants,
    tokensIssued: () => grants.length,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Parses `type:name:actions` scopes (several params, or space-separated) granting only `allowed`. */
export function parseScopes(scopes: string[], allowed: Set<string>): Access[] {
  const out: Access[] = [];
  for (const scope of scopes.flatMap((s) => s.split(' ')).filter(Boolean)) {
    const first = scope.indexOf(':');
    const last = scope.lastIndexOf(':');
    if (first < 0 || last <= first) continue;
    const requested = scope.slice(last + 1).split(',').filter(Boolean);
    out.push({ type: scope.slice(0, first), name: scope.slice(first + 1, last), actions: requested.filter((a) => allowed.has(a)) });
  }
  return out;
}

function parseBasic(header: string | undefined): { username: string; password: string } | undefined {
  const m = /^Basic\s+(\S+)$/i.exec(header ?? '');
  if (!m?.[1]) return undefined;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i < 0 ? { username: text, password: '' } : { username: text.slice(0, i), password: text.slice(i + 1) };
}

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
  res.end(data);
}
