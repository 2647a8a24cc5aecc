import { z } from 'zod';
import { parseDuration } from '../config/units.ts';
import type { EventAction } from './event.ts';

/** A duration in the file (`30s`, `5m` or milliseconds), in milliseconds once parsed. */
const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a duration: ${JSON.stringify(v)} (use e.g. 500ms, 1s, 5m)` });
    return z.NEVER;
  }
  return ms;
});

const headerValue = z.string().regex(/^[^\r\n\0]*$/, 'header values cannot contain line breaks');

/** Distribution spells these keys in lower case; accept its spelling so its config blocks paste in. */
function distributionSpellings(value: unknown, renames: Record<string, string>): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  for (const [from, to] of Object.entries(renames)) {
    if (from in out && !(to in out)) {
      out[to] = out[from];
      delete out[from];
    }
  }
  return out;
}

const ignoreSchema = z.preprocess(
  (v) => distributionSpellings(v, { mediatypes: 'mediaTypes' }),
  z.strictObject({
    /** Events with these actions are not sent to this endpoint. */
    actions: z.array(z.enum(['push', 'pull', 'delete', 'mount'] satisfies EventAction[])).default([]),
    /** Events whose target has one of these media types are not sent to this endpoint. */
    mediaTypes: z.array(z.string().min(1)).default([]),
  }),
);

const endpointSchema = z.preprocess(
  (v) => distributionSpellings(v, { ignoredmediatypes: 'ignoredMediaTypes' }),
  z.strictObject({
    /** Names the endpoint in logs and stats, and its queue on disk or in Redis: keep it stable. */
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'endpoint names are letters, digits, ".", "_" and "-"'),
    url: z.url({ protocol: /^https?$/ }),
    /** Skip this endpoint; its queue is left as it is. */
    disabled: z.boolean().default(false),
    /** Extra request headers, e.g. `Authorization: [Bearer …]`; a list sends the header once per value. */
    headers: z
      .record(z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'not a valid header name'), z.union([headerValue, z.array(headerValue)]))
      .default({}),
    /** How long one POST may take. */
    timeout: duration.default(1000),
    /** Consecutive failures retried quickly before backing off. */
    threshold: z.number().int().min(1).default(10),
    /** The first back-off; it doubles with every further failure up to `maxBackoff`. */
    backoff: duration.default(1000),
    maxBackoff: duration.default(60_000),
    /** At most this many events in one envelope (Distribution sends one). */
    batchSize: z.number().int().min(1).max(1000).default(10),
    /** Events whose target has one of these media types are not sent (Distribution's `ignoredmediatypes`). */
    ignoredMediaTypes: z.array(z.string().min(1)).default([]),
    ignore: ignoreSchema.prefault({}),
    /** Only events of repositories matching one of these patterns are sent (`acme/**`, `hub/library/*`). */
    repositories: z.array(z.string().min(1)).default(['**']),
    /** When set, every POST carries `X-Tender-Signature-256: sha256=<HMAC-SHA256 of the body>`. */
    secret: z.string().min(1).optional(),
    /** Envelope media type: `v1` (`…events.v1+json`) or `v2` (`…events.v2+json`, Distribution 3). */
    mediaType: z.enum(['v1', 'v2']).default('v1'),
  }),
);

/** The `notifications` section of the config. */
export const notificationsSchema = z
  .strictObject({
    /** Where events wait for delivery: files under the data root, or Redis (shared by replicas). */
    queue: z.enum(['file', 'redis']).default('file'),
    endpoints: z.array(endpointSchema).default([]),
  })
  .superRefine((value, ctx) => {
    const seen = new Set<string>();
    value.endpoints.forEach((endpoint, i) => {
      if (seen.has(endpoint.name)) {
        ctx.addIssue({ code: 'custom', path: ['endpoints', i, 'name'], message: `duplicate endpoint name ${JSON.stringify(endpoint.name)}` });
      }
      seen.add(endpoint.name);
    });
  });

export type NotificationsConfig = z.output<typeof notificationsSchema>;
export type NotificationsConfigInput = z.input<typeof notificationsSchema>;
export type EndpointConfig = z.output<typeof endpointSchema>;
