import { RegistryError } from '../registry/errors.ts';
import { UpstreamError } from '../upstream/types.ts';

/**
 * Turns an upstream failure into the error the client sees. The upstream's
 * name is safe to show; its messages and credentials are not.
 */
export function toRegistryError(err: unknown, notFound: 'MANIFEST_UNKNOWN' | 'BLOB_UNKNOWN' | 'NAME_UNKNOWN'): RegistryError {
  if (err instanceof RegistryError) return err;
  if (!(err instanceof UpstreamError)) return new RegistryError('UNKNOWN', { cause: err });
  const detail = { upstream: err.upstream, status: err.status ?? null };
  switch (err.code) {
    case 'NOT_FOUND':
      return new RegistryError(notFound, { detail, cause: err });
    case 'UNAUTHORIZED':
    case 'DENIED':
      return new RegistryError('DENIED', { message: `upstream ${err.upstream} refused access`, detail, cause: err });
    case 'TOO_MANY_REQUESTS':
      return new RegistryError('TOOMANYREQUESTS', {
        message: `upstream ${err.upstream} is rate limiting and the content is not cached`,
        detail,
        cause: err,
        headers: err.retryAfter !== undefined ? { 'Retry-After': String(err.retryAfter) } : {},
      });
    default:
      return new RegistryError('UPSTREAM_UNAVAILABLE', {
        message: `upstream ${err.upstream} is unavailable and the content is not cached`,
        detail,
        cause: err,
      });
  }
}
