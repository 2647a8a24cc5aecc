import { pino } from 'pino';

export type Logger = pino.Logger;

const censor = '[Redacted]';

/**
 * Where credentials can sit in what we log. pino's `*` matches one level, so
 * `*.password` covers `{ upstream: { password } }` but not deeper; log
 * credentials-bearing objects at these shapes (or not at all).
 */
const redactPaths = [
  'password',
  'token',
  'authorization',
  '*.password',
  '*.token',
  '*.authorization',
  '*.accessToken',
  '*.access_token',
  '*.refreshToken',
  '*.refresh_token',
  'headers.authorization',
  'headers.cookie',
  'headers["proxy-authorization"]',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["proxy-authorization"]',
  '*.headers["set-cookie"]',
  'req.headers.authorization',
  'err.options.headers.authorization',
  'config.upstreams.*.password',
  'upstreams.*.password',
];

/** A JSON (pino) logger that never writes credentials. Pass it in; there is no global one. */
export function createLogger(opts: { level: string; destination?: pino.DestinationStream }): Logger {
  const options: pino.LoggerOptions = {
    level: opts.level,
    redact: { paths: redactPaths, censor },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

/** Query parameters that carry credentials: tokens, signatures (S3, GCS, Azure, CDNs), keys. */
const secretParam = /token|sig|secret|passw|credential|key|auth|policy|session|jwt|code/i;

/** A URL safe to log: no userinfo, and token-like query values replaced. */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not a URL we can take apart: drop anything that could be userinfo or a query.
    return url.replace(/\/\/[^/?#]*@/, '//').replace(/[?#].*$/, '');
  }
  parsed.username = '';
  parsed.password = '';
  for (const name of new Set(parsed.searchParams.keys())) {
    if (secretParam.test(name)) parsed.searchParams.set(name, 'REDACTED');
  }
  return parsed.toString();
}
