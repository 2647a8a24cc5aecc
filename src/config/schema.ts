import { z } from 'zod';
import { parseDuration, parseSize } from './units.ts';
import { notificationsSchema } from '../notify/config.ts';

/** A duration in the file (`30s`, `5m`, `7d` or milliseconds), in milliseconds once parsed. */
const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a duration: ${JSON.stringify(v)} (use e.g. 30s, 5m, 7d)` });
    return z.NEVER;
  }
  return ms;
});

/** A size in the file (`4MiB`, `10GB` or bytes), in bytes once parsed. */
const size = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const bytes = parseSize(v);
  if (bytes === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a size: ${JSON.stringify(v)} (use e.g. 512KiB, 4MiB, 10GB)` });
    return z.NEVER;
  }
  return bytes;
});

const upstreamSchema = z.strictObject({
  /** Base URL of the upstream registry, e.g. https://registry-1.docker.io */
  url: z.url({ protocol: /^https?$/ }),
  /** Other names clients use for this registry (containerd's `?ns=` value), e.g. docker.io. */
  aliases: z.array(z.string().min(1)).default([]),
  /** Docker Hub naming: single-component names mean `library/<name>`. */
  dockerHub: z.boolean().default(false),
  /** Credentials sent only to this registry and its token realm. */
  username: z.string().optional(),
  password: z.string().optional(),
  /** How long a cached tag is served without asking the upstream. */
  tagTtl: duration.default(300_000),
  /** How long a cached tag list is served without asking the upstream. */
  tagListTtl: duration.default(300_000),
  /** At most this many requests to this upstream at once. */
  concurrency: z.number().int().min(1).max(1024).default(32),
  /** Retries of idempotent requests on network errors and 5xx. */
  retries: z.number().int().min(0).max(10).default(2),
  timeouts: z
    .strictObject({
      connect: duration.default(10_000),
      /** Time to the response headers. */
      response: duration.default(30_000),
      /** Longest pause in a blob download before it is abandoned. */
      idle: duration.default(60_000),
      /** Longest a whole blob download may take. */
      blob: duration.default(3_600_000),
    })
    .prefault({}),
  /** A PEM CA bundle to trust for this upstream (in addition to the system's). */
  ca: z.string().optional(),
  /** Skip TLS verification of this upstream. Never in production. */
  insecureSkipVerify: z.boolean().default(false),
  /**
   * When fewer pulls than this remain of the upstream's quota (its
   * `ratelimit-remaining` header), cached tags are served without
   * revalidation until the quota window resets. 0 turns the guard off.
   */
  quotaGuard: z.number().int().min(0).default(0),
});

/** A subject list in an access rule: `$all`, `$anonymous`, `$authenticated`, user names and group names. */
const subjects = z.array(z.string().min(1));

const accessRuleSchema = z.strictObject({
  /** Repository name pattern: `*` matches within one path component, `**` across components. */
  repositories: z.string().min(1),
  pull: subjects.default(['$all']),
  push: subjects.default([]),
  delete: subjects.default([]),
});

export const configSchema = z.strictObject({
  server: z
    .strictObject({
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(5000),
      tls: z
        .strictObject({
          cert: z.string(),
          key: z.string(),
        })
        .optional(),
      /** How long in-flight requests get to finish on SIGTERM. */
      shutdownTimeout: duration.default(30_000),
    })
    .prefault({}),
  /** The operations listener: /metrics (Prometheus), /healthz, /readyz, apart from the registry port. */
  ops: z
    .strictObject({
      enabled: z.boolean().default(true),
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(5001),
    })
    .prefault({}),
  storage: z
    .strictObject({
      driver: z.literal('filesystem').default('filesystem'),
      /** Whether manifests, tags and blobs of local repositories may be deleted through the API. */
      delete: z.strictObject({ enabled: z.boolean().default(false) }).prefault({}),
      filesystem: z
        .strictObject({
          /** Data root: blobs, manifests, tags and temporary downloads live below it. */
          root: z.string().default('./data'),
        })
        .prefault({}),
    })
    .prefault({}),
  meta: z
    .strictObject({
      driver: z.enum(['memory', 'redis']).default('memory'),
      memory: z.strictObject({ maxEntries: z.number().int().min(100).default(100_000) }).prefault({}),
      redis: z
        .strictObject({
          url: z.string().default('redis://127.0.0.1:6379'),
          /** Key prefix, so several tender deployments can share one Redis. */
          namespace: z.string().default('tender'),
        })
        .prefault({}),
    })
    .prefault({}),
  proxy: z
    .strictObject({
      /** Upstream for names with neither a prefix nor `?ns=` (docker's registry-mirrors); empty for none. */
      defaultUpstream: z.string().default('hub'),
      /** Largest manifest accepted from an upstream. */
      maxManifestSize: size.default(4 * 1024 * 1024),
    })
    .prefault({}),
  upstreams: z.record(z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'upstream names are lower-case letters, digits and -'), upstreamSchema).prefault({
    hub: {
      url: 'https://registry-1.docker.io',
      aliases: ['docker.io', 'index.docker.io', 'registry-1.docker.io'],
      dockerHub: true,
    },
  }),
  /** Repositories that accept pushes, by name pattern (`acme/**`, `team/*`); everything else is proxied. */
  local: z
    .strictObject({
      namespaces: z.array(z.string().min(1)).default([]),
    })
    .prefault({}),
  auth: z
    .strictObject({
      /** An htpasswd file with bcrypt hashes (`htpasswd -B`, `tender user add`); without one every client is anonymous. */
      htpasswd: z.string().optional(),
      /** The realm of the Basic challenge. */
      realm: z.string().default('tender'),
      /** Groups of users, usable in access rules by name. */
      groups: z.record(z.string(), z.array(z.string())).default({}),
      /** Failed logins allowed per client address within the window before it is refused (429). */
      failedLogins: z
        .strictObject({
          max: z.number().int().min(1).default(10),
          window: duration.default(300_000),
        })
        .prefault({}),
    })
    .prefault({}),
  /**
   * Who may pull, push and delete, by repository pattern; the first rule whose
   * pattern matches decides. Cached repositories are named `<upstream>/<name>`.
   */
  access: z
    .array(accessRuleSchema)
    .default([{ repositories: '**', pull: ['$all'], push: ['$authenticated'], delete: ['$authenticated'] }]),
  uploads: z
    .strictObject({
      /** Upload sessions untouched for this long are removed. */
      maxAge: duration.default(86_400_000),
    })
    .prefault({}),
  /** The cache of upstream content: its size budget and age limit (local content is never evicted). */
  cache: z
    .strictObject({
      /** Most bytes of cached upstream content to keep; least recently used images go first. Unset: no limit. */
      budget: size.optional(),
      /** Cached content unused for this long is evicted. Unset: no age limit. */
      maxUnused: duration.optional(),
      /** How often eviction runs (when a budget or age limit is set). */
      evictInterval: duration.default(600_000),
      /** How often last-access times are written to storage. */
      accessFlushInterval: duration.default(30_000),
    })
    .prefault({}),
  /** Images kept warm: pulled through tender shortly after start, then on a schedule. */
  warm: z
    .strictObject({
      /** Names as clients pull them from tender, e.g. `hub/library/alpine:3.20`. */
      images: z.array(z.string().min(1)).default([]),
      /** Platforms to warm from multi-platform images (`linux/amd64`, `linux/arm/v7`); empty: all. */
      platforms: z.array(z.string().regex(/^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/, 'a platform is os/arch[/variant]')).default([]),
      /** Time between warm runs. */
      interval: duration.default(21_600_000),
      /** `user:password` for tender's own Basic authentication, when anonymous clients may not pull these images. */
      credentials: z.string().optional(),
    })
    .prefault({}),
  gc: z
    .strictObject({
      /** Blobs younger than this are never collected (they may belong to a push in progress). */
      grace: duration.default(3_600_000),
    })
    .prefault({}),
  /** Webhooks in CNCF Distribution's envelope, delivered from a durable queue. */
  notifications: notificationsSchema.prefault({}),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
});

export type Config = z.output<typeof configSchema>;
export type UpstreamConfig = z.output<typeof upstreamSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type AccessRule = z.output<typeof accessRuleSchema>;
