import { bearerChallenge, parseWwwAuthenticate } from './challenge.ts';
import type { CachedToken, KnownChallenge, TokenCache } from './tokens.ts';
import { describe, discard, header, statusError, type Opened, type OpenRequest } from './transport.ts';
import { UpstreamError } from './types.ts';

/** One request to the registry, as the upstream client asks for it. */
export interface ExchangeRequest {
  method: 'GET' | 'HEAD';
  /** The repository whose pull scope the token must carry. */
  repository: string;
  url: URL;
  accept: string;
  blob?: boolean;
  signal?: AbortSignal;
}

export interface ExchangeDeps {
  upstream: string;
  /** config.url's origin: the only origin Authorization is sent to (besides the token realm). */
  origin: string;
  /** `Basic ...` for the configured credentials, if any. */
  basic: string | undefined;
  tokens: TokenCache;
  open(request: OpenRequest): Promise<Opened>;
}

const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** The Authorization sent, and where it came from. */
interface Sent {
  header: string | undefined;
  token?: CachedToken;
  challenge?: KnownChallenge;
}

/**
 * Requests with authentication negotiated and redirects followed by hand.
 * A known Bearer challenge lets a token be sent up front; a 401 is answered
 * once (a token from the challenge's realm, or the configured Basic
 * credentials). Redirects (at most 5) carry Authorization only while they stay
 * on the registry's origin, never to a storage host or CDN. The result is
 * whatever final response arrived (its status unchecked), except a 401 after
 * negotiation, which throws UNAUTHORIZED.
 */
export function createExchange(deps: ExchangeDeps): { request(request: ExchangeRequest): Promise<Opened> } {
  const { upstream, origin, basic, tokens } = deps;
  let basicKnown = false;

  /** Credentials to send before being asked: a token once the upstream's challenge is known. */
  async function upFront(scope: string): Promise<Sent> {
    const known = tokens.challenge;
    if (known) {
      const token = await tokens.token({ ...known, scope });
      return { header: `Bearer ${token.token}`, token, challenge: known };
    }
    return { header: basicKnown ? basic : undefined };
  }

  /** Answers a 401: the Authorization for one more try, or undefined when there is nothing better to send. */
  async function negotiate(res: Opened, scope: string, sent: Sent): Promise<string | undefined> {
    const challenges = parseWwwAuthenticate(header(res.headers, 'www-authenticate') ?? '');
    const bearer = bearerChallenge(challenges);
    if (bearer) {
      const known = { realm: bearer.realm, service: bearer.service };
      const same = sent.challenge?.realm === known.realm && sent.challenge.service === known.service;
      if (same && sent.token?.fresh) return undefined; // a token fetched just now was refused: another would be too
      tokens.rememberChallenge(known);
      const token = await tokens.token({ ...known, scope }, same ? sent.token?.token : undefined);
      return `Bearer ${token.token}`;
    }
    if (basic && challenges.some((c) => c.scheme === 'basic') && sent.header !== basic) {
      basicKnown = true;
      return basic;
    }
    return undefined;
  }

  async function request(req: ExchangeRequest): Promise<Opened> {
    const { method, url, accept, blob, signal } = req;
    const scope = `repository:${req.repository}:pull`;
    const open = (target: URL, authorization: string | undefined): Promise<Opened> =>
      deps.open({
        method,
        url: target,
        headers: { accept, ...(authorization ? { authorization } : {}) },
        ...(blob ? { blob } : {}),
        ...(signal ? { signal } : {}),
      });

    const sent = await upFront(scope);
    let res = await open(url, sent.header);
    if (res.status === 401) {
      discard(res);
      const retry = await negotiate(res, scope, sent);
      if (retry === undefined) throw statusError(upstream, res);
      sent.header = retry;
      res = await open(url, retry);
      if (res.status === 401) {
        discard(res);
        throw statusError(upstream, res);
      }
    }
    for (let hops = 0; REDIRECTS.has(res.status); hops++) {
      const location = header(res.headers, 'location');
      discard(res);
      const target = location ? new URL(location, res.url) : undefined;
      const why = !target
        ? 'redirect without a Location'
        : hops >= MAX_REDIRECTS
          ? 'too many redirects'
          : target.protocol !== 'https:' && target.protocol !== 'http:'
            ? 'redirect to a non-HTTP URL'
            : undefined;
      if (!target || why) throw new UpstreamError('INVALID', upstream, `${describe(upstream, method, res.url)}: ${why}`, { status: res.status });
      res = await open(target, target.origin === origin ? sent.header : undefined);
    }
    return res;
  }

  return { request };
}
