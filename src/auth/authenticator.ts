/**
 * Who a request comes from: HTTP Basic credentials checked against the
 * htpasswd file, with failed logins limited per client address.
 */
import type { Config } from '../config/schema.ts';
import type { Logger } from '../log.ts';
import { RegistryError } from '../registry/errors.ts';
import { parseBasic } from './basic.ts';
import { Htpasswd } from './htpasswd.ts';
import { FailedLoginLimiter } from './limiter.ts';

export type AuthResult = { kind: 'anonymous' } | { kind: 'user'; name: string };

export interface Authenticator {
  /** False when no htpasswd file is configured: every client is then anonymous. */
  readonly enabled: boolean;
  /** Basic challenge headers for a 401. */
  challenge(): Record<string, string>;
  /**
   * Checks the Authorization header. No header → anonymous. Throws
   * RegistryError UNAUTHORIZED (with the challenge headers) on bad or
   * malformed credentials, TOOMANYREQUESTS when the address has failed too
   * often. Never logs the password or the header.
   */
  authenticate(authorization: string | undefined, addr: string): Promise<AuthResult>;
}

const anonymous: AuthResult = { kind: 'anonymous' };

export function createAuthenticator(config: Config['auth'], logger: Logger): Authenticator {
  const headers = { 'WWW-Authenticate': `Basic realm="${config.realm.replace(/["\\]/g, '\\$&')}"` };
  const challenge = (): Record<string, string> => ({ ...headers });
  if (!config.htpasswd) {
    return { enabled: false, challenge, authenticate: () => Promise.resolve(anonymous) };
  }
  const htpasswd = new Htpasswd(config.htpasswd, logger);
  const limiter = new FailedLoginLimiter({ max: config.failedLogins.max, window: config.failedLogins.window });
  const unauthorized = (detail?: string) => new RegistryError('UNAUTHORIZED', { headers: challenge(), detail });

  return {
    enabled: true,
    challenge,
    async authenticate(authorization, addr) {
      // Some clients (skopeo, containers/image) answer a Basic challenge with empty credentials: anonymous.
      if (!authorization || /^basic\s+(Og==|Og)?\s*$/i.test(authorization)) return anonymous;
      // Another scheme is no password guess: refuse it without counting it.
      if (!/^basic(\s|$)/i.test(authorization)) throw unauthorized('use Basic authentication');
      if (limiter.blocked(addr)) {
        logger.warn({ addr }, 'login refused: too many failed logins from this address');
        const seconds = Math.max(1, Math.ceil(limiter.retryAfter(addr) / 1000));
        throw new RegistryError('TOOMANYREQUESTS', { headers: { 'Retry-After': String(seconds) } });
      }
      const credentials = parseBasic(authorization);
      if (!credentials) {
        limiter.failed(addr);
        logger.warn({ addr }, 'failed login: malformed Basic credentials');
        throw unauthorized();
      }
      if (await htpasswd.verify(credentials.username, credentials.password)) {
        limiter.succeeded(addr);
        return { kind: 'user', name: credentials.username };
      }
      limiter.failed(addr);
      logger.warn({ user: credentials.username, addr }, 'failed login');
      throw unauthorized();
    },
  };
}
