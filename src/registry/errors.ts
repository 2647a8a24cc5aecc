/**
 * The one catalogue of registry errors. Every OCI / Docker Registry v2 error
 * code is declared here once with its HTTP status and default message; the
 * HTTP error middleware is the only place that turns a RegistryError into the
 * `{"errors":[{code,message,detail}]}` body.
 */

export const errorCatalogue = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: { status: 404, message: 'manifest references a manifest or blob unknown to registry' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  MANIFEST_TOO_LARGE: { status: 413, message: 'manifest exceeds the size limit' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  TAG_INVALID: { status: 400, message: 'manifest tag did not match URI' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  PAGINATION_NUMBER_INVALID: { status: 400, message: 'invalid number of results requested' },
  RANGE_INVALID: { status: 416, message: 'requested range not satisfiable' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  NOT_FOUND: { status: 404, message: 'no such endpoint' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  UNKNOWN: { status: 500, message: 'unknown error' },
  UPSTREAM_UNAVAILABLE: { status: 502, message: 'upstream registry unavailable' },
  UNAVAILABLE: { status: 503, message: 'service unavailable' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

/**
 * An error meant for the client. `detail` is sent to the client (so it must
 * never carry secrets); `cause` is for logs only.
 */
export class RegistryError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: unknown;
  /** Extra response headers (Range, WWW-Authenticate, ...). */
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
    options: { message?: string; detail?: unknown; cause?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(options.message ?? errorCatalogue[code].message, { cause: options.cause });
    this.name = 'RegistryError';
    this.code = code;
    this.status = errorCatalogue[code].status;
    this.detail = options.detail;
    this.headers = options.headers ?? {};
  }
}

export function isRegistryError(err: unknown): err is RegistryError {
  return err instanceof RegistryError;
}

/** The body every error response carries. */
export function errorBody(errors: RegistryError[]): string {
  return JSON.stringify({
    errors: errors.map((e) => ({ code: e.code, message: e.message, detail: e.detail ?? null })),
  });
}
