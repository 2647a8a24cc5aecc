/**
 * A real CNCF Distribution (`docker-registry`, 2.8) on loopback: the upstream that tender
 * pulls through, optionally behind Docker-Hub-like Bearer token auth, or itself a
 * pull-through cache (`proxy.remoteurl`) as the reference system for benchmarks.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { spawnDaemon, type Daemon } from './daemon.ts';
import { startTokenIssuer, type TokenIssuer } from './token-issuer.ts';
import { freePort, removeDir, tempDir, waitFor } from './tools.ts';

export type { TokenIssuer } from './token-issuer.ts';

/** A running Distribution. */
export interface DistributionUpstream {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT */
  host: string;
  /** Its storage.filesystem.rootdirectory. */
  rootDir: string;
  /** The token service, when auth is 'token'. */
  issuer: TokenIssuer | undefined;
  /** Basic credentials the token service grants push (and delete) to. */
  pushCredentials: { username: string; password: string };
  /** Stops the registry and the issuer and removes the temp directory. */
  stop(): Promise<void>;
}

export interface DistributionOptions {
  /** Default 'token'. */
  auth?: 'token' | 'none';
  /** Token lifetime; Distribution still accepts tokens ~60 s past expiry. */
  tokenTtlSeconds?: number;
  /** Makes it a pull-through cache of this registry. */
  proxyRemoteUrl?: string;
  proxyUsername?: string;
  proxyPassword?: string;
  /** storage.delete.enabled */
  deleteEnabled?: boolean;
  /** Serve HTTPS with this certificate and key (PEM paths, e.g. from makeTls); url becomes https://. */
  tls?: { cert: string; key: string };
}

const START_ATTEMPTS = 5;

/** Starts Distribution on a free 127.0.0.1 port and waits until /v2/ answers 200 or 401. */
export async function startDistribution(opts: DistributionOptions = {}): Promise<DistributionUpstream> {
  const dir = await tempDir('distribution');
  const rootDir = join(dir, 'storage');
  await mkdir(rootDir);
  const pushCredentials = { username: 'pusher', password: randomBytes(9).toString('base64url') };
  let issuer: Awaited<ReturnType<typeof startTokenIssuer>> | undefined;
  try {
    if ((opts.auth ?? 'token') === 'token') {
      const ttlSeconds = opts.tokenTtlSeconds;
      issuer = await startTokenIssuer({ dir, credentials: pushCredentials, ...(ttlSeconds ? { ttlSeconds } : {}) });
    }
    const config: Record<string, unknown> = {
      version: 0.1,
      log: { level: 'warn', accesslog: { disabled: true } },
      storage: {
        filesystem: { rootdirectory: rootDir },
        delete: { enabled: opts.deleteEnabled ?? false },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: {
        addr: '',
        secret: randomBytes(16).toString('hex'),
        ...(opts.tls ? { tls: { certificate: opts.tls.cert, key: opts.tls.key } } : {}),
      },
    };
    if (issuer) {
      config.auth = {
        token: { realm: issuer.realm, service: issuer.service, issuer: issuer.issuer, rootcertbundle: issuer.certFile },
      };
    }
    if (opts.proxyRemoteUrl) {
      config.proxy = {
        remoteurl: opts.proxyRemoteUrl,
        ...(opts.proxyUsername !== undefined ? { username: opts.proxyUsername, password: opts.proxyPassword ?? '' } : {}),
      };
    }
    const scheme = opts.tls ? 'https' : 'http';
    const { daemon, port } = await startOnFreePort(dir, config, scheme);
    const iss = issuer;
    return {
      url: `${scheme}://127.0.0.1:${port}`,
      host: `127.0.0.1:${port}`,
      rootDir,
      issuer: iss,
      pushCredentials,
      async stop() {
        await daemon.stop();
        await iss?.stop();
        await removeDir(dir);
      },
    };
  } catch (e) {
    await issuer?.stop();
    await removeDir(dir);
    throw e;
  }
}

async function startOnFreePort(dir: string, config: Record<string, unknown>, scheme: 'http' | 'https'): Promise<{ daemon: Daemon; port: number }> {
  const configFile = join(dir, 'config.yml');
  let lastError = '';
  for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
    const port = await freePort();
    (config.http as Record<string, unknown>).addr = `127.0.0.1:${port}`;
    await writeFile(configFile, stringify(config));
    const daemon = spawnDaemon('docker-registry', ['serve', configFile], { env: registryEnv() });
    let exited = false;
    void daemon.exited().then(() => (exited = true));
    try {
      await waitFor(`docker-registry on port ${port}`, async () => {
        if (exited) throw new Error('exited early');
        const status = await probe(`${scheme}://127.0.0.1:${port}/v2/`);
        return status === 200 || status === 401;
      });
      return { daemon, port };
    } catch (e) {
      lastError = `${e instanceof Error ? e.message : String(e)}\n${daemon.output()}`;
      await daemon.stop();
    }
  }
  throw new Error(`docker-registry did not start after ${START_ATTEMPTS} attempts: ${lastError}`);
}

/** The status of a GET (certificates not verified: this only checks that the server is up). */
function probe(url: string): Promise<number> {
  const get = url.startsWith('https:') ? httpsGet : httpGet;
  return new Promise((resolve, reject) => {
    const req = get(url, { rejectUnauthorized: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('probe timed out')));
    req.on('error', reject);
  });
}

/**
 * The environment without variables that change Distribution's behaviour:
 * REGISTRY_* overrides config keys, and AWS_CA_BUNDLE crashes it at start with S3.
 */
function registryEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('REGISTRY_') && k !== 'AWS_CA_BUNDLE' && !/^(https?|no)_proxy$/i.test(k)) env[k] = v;
  }
  return env;
}
