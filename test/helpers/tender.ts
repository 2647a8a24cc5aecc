/**
 * Starts tender in-process on 127.0.0.1:0 with a config built from a few
 * options, capturing its JSON log lines so tests can assert on them.
 */
import { Writable } from 'node:stream';
import { configSchema, type Config, type ConfigInput } from '../../src/config/schema.ts';
import { createLogger } from '../../src/log.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { removeDir, tempDir } from './tools.ts';

export interface TenderHandle {
  url: string;
  /** 127.0.0.1:PORT, for client image references. */
  host: string;
  root: string;
  config: Config;
  running: RunningServer;
  /** Every log line so far, parsed. */
  logs: Array<Record<string, unknown>>;
  /** The raw log text. */
  logText(): string;
  stop(): Promise<void>;
}

type UpstreamInput = NonNullable<ConfigInput['upstreams']>[string];

export interface TenderOptions {
  upstreams: Record<string, UpstreamInput>;
  defaultUpstream?: string;
  meta?: ConfigInput['meta'];
  tls?: { cert: string; key: string };
  /** Reuse a data root (to test restarts); a new temp dir otherwise. */
  root?: string;
  maxManifestSize?: number;
  /** Local (pushable) namespace patterns. */
  local?: string[];
  auth?: ConfigInput['auth'];
  access?: ConfigInput['access'];
  deleteEnabled?: boolean;
  uploadsMaxAge?: string;
  notifications?: ConfigInput['notifications'];
}

export async function startTender(opts: TenderOptions): Promise<TenderHandle> {
  const root = opts.root ?? (await tempDir('tender-data'));
  const config = configSchema.parse({
    server: { host: '127.0.0.1', port: 0, shutdownTimeout: '5s', ...(opts.tls ? { tls: opts.tls } : {}) },
    ops: { host: '127.0.0.1', port: 0 },
    ...(opts.notifications ? { notifications: opts.notifications } : {}),
    storage: { filesystem: { root }, delete: { enabled: opts.deleteEnabled ?? false } },
    local: { namespaces: opts.local ?? [] },
    ...(opts.auth ? { auth: opts.auth } : {}),
    ...(opts.access ? { access: opts.access } : {}),
    ...(opts.uploadsMaxAge ? { uploads: { maxAge: opts.uploadsMaxAge } } : {}),
    meta: opts.meta ?? { driver: 'memory' },
    proxy: { defaultUpstream: opts.defaultUpstream ?? '', ...(opts.maxManifestSize ? { maxManifestSize: opts.maxManifestSize } : {}) },
    upstreams: opts.upstreams,
    log: { level: 'debug' },
  } satisfies ConfigInput);
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const logger = createLogger({ level: 'debug', destination });
  const running = await startServer(config, logger);
  return {
    url: running.url,
    host: `127.0.0.1:${running.port}`,
    root,
    config,
    running,
    get logs() {
      return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    logText: () => lines.join('\n'),
    async stop() {
      await running.close();
      if (!opts.root) await removeDir(root);
    },
  };
}
