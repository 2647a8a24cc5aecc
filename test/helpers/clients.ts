/**
 * Real registry clients (skopeo, podman, containerd's ctr), each working in its own temp
 * directories so tests never touch the machine's image stores or configuration.
 */
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnDaemon } from './daemon.ts';
import { removeDir, run, skopeo, tempDir, waitFor } from './tools.ts';

export interface SkopeoOptions {
  /** Default false (plain HTTP or unverified TLS). */
  tlsVerify?: boolean;
  /** Directory with ca.crt (and client certs) for the registry. */
  certDir?: string;
  /** 'user:password' */
  creds?: string;
}

export interface SkopeoPullResult {
  /** The OCI layout written (remove it with removeDir). */
  dir: string;
  /**
   * Digest of the top-level manifest in the layout. Equals the registry's digest for OCI
   * sources; skopeo converts Docker (v2s2) manifests and lists to OCI, which changes it.
   */
  manifestDigest: string;
  /** Media type of that manifest in the layout. */
  mediaType: string;
  /** Every blob digest present in the copied layout (layers, configs, manifests). */
  blobs: string[];
}

/** `skopeo copy [--all] docker://REF oci:DIR:latest` ('HOST/NAME:TAG' or '...@sha256:...'). */
export async function skopeoPull(ref: string, opts: SkopeoOptions & { all?: boolean; overrideArch?: string } = {}): Promise<SkopeoPullResult> {
  const dir = await tempDir('skopeo-pull');
  const args = opts.overrideArch ? ['--override-arch', opts.overrideArch, 'copy'] : ['copy'];
  if (opts.all) args.push('--all');
  args.push(`--src-tls-verify=${opts.tlsVerify ?? false}`);
  if (opts.certDir) args.push('--src-cert-dir', opts.certDir);
  if (opts.creds) args.push('--src-creds', opts.creds);
  try {
    await skopeo([...args, `docker://${ref}`, `oci:${dir}:latest`], { timeoutMs: 300_000 });
  } catch (e) {
    await removeDir(dir);
    throw e;
  }
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; mediaType: string }> };
  const top = index.manifests[0];
  if (!top) throw new Error(`skopeo wrote an empty layout for ${ref}`);
  const blobs = (await readdir(join(dir, 'blobs', 'sha256'))).map((hex) => `sha256:${hex}`);
  return { dir, manifestDigest: top.digest, mediaType: top.mediaType, blobs };
}

/** The manifest bytes exactly as the registry serves them (`skopeo inspect --raw`). */
export async function skopeoInspectRaw(ref: string, opts: SkopeoOptions = {}): Promise<Buffer> {
  const args = ['inspect', '--raw', `--tls-verify=${opts.tlsVerify ?? false}`];
  if (opts.certDir) args.push('--cert-dir', opts.certDir);
  if (opts.creds) args.push('--creds', opts.creds);
  return (await skopeo([...args, `docker://${ref}`])).stdoutBytes;
}

export interface PodmanPullResult {
  /** Podman's image ID: the config digest's hex. */
  imageId: string;
  /** The temp dir holding storage.conf, registries.conf and the vfs store. */
  dir: string;
  /** Removes the store. */
  cleanup(): Promise<void>;
}

/**
 * `podman pull --tls-verify=false REF` into a fresh vfs store. `registriesConf` is the
 * text of a registries.conf (see mirrorRegistriesConf); by default an empty one.
 */
export async function podmanPull(ref: string, opts: { registriesConf?: string; tlsVerify?: boolean } = {}): Promise<PodmanPullResult> {
  const dir = await tempDir('podman');
  const cleanup = (): Promise<void> => removeDir(dir);
  try {
    const storageConf = join(dir, 'storage.conf');
    const registriesConf = join(dir, 'registries.conf');
    const policy = join(dir, 'policy.json');
    await writeFile(storageConf, `[storage]\ndriver = "vfs"\nrunroot = "${dir}/run"\ngraphroot = "${dir}/graph"\n`);
    await writeFile(registriesConf, opts.registriesConf ?? 'unqualified-search-registries = []\n');
    await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    const env = { CONTAINERS_STORAGE_CONF: storageConf, CONTAINERS_REGISTRIES_CONF: registriesConf, TMPDIR: dir };
    const global = ['--cgroup-manager=cgroupfs', '--events-backend=file', `--tmpdir=${dir}/tmp`];
    const pull = ['pull', '--quiet', `--tls-verify=${opts.tlsVerify ?? false}`, `--signature-policy=${policy}`, ref];
    const { stdout } = await run('podman', [...global, ...pull], { env, timeoutMs: 300_000 });
    const imageId = stdout.trim().split('\n').pop() ?? '';
    return { imageId, dir, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** A registries.conf that sends pulls for `prefix` (e.g. 'docker.io') to `mirrorHost` first. */
export function mirrorRegistriesConf(prefix: string, location: string, mirrorHost: string): string {
  return [
    'unqualified-search-registries = []',
    '[[registry]]',
    `prefix = "${prefix}"`,
    `location = "${location}"`,
    '[[registry.mirror]]',
    `location = "${mirrorHost}"`,
    'insecure = true',
    '',
  ].join('\n');
}

/** A private containerd daemon. */
export interface Containerd {
  socket: string;
  dir: string;
  stop(): Promise<void>;
}

/** Starts containerd with root, state and sockets in a temp dir (CRI disabled); waits until it answers. */
export async function startContainerd(): Promise<Containerd> {
  const dir = await tempDir('containerd');
  const socket = join(dir, 'containerd.sock');
  const config = [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]',
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${socket}.ttrpc"`,
    '[debug]',
    '  address = ""',
    '  level = "warn"',
    '[metrics]',
    '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${dir}/opt"`,
    '',
  ].join('\n');
  await writeFile(join(dir, 'config.toml'), config);
  const daemon = spawnDaemon('containerd', ['--config', join(dir, 'config.toml')]);
  const stop = async (): Promise<void> => {
    await daemon.stop(10_000);
    await removeDir(dir);
  };
  try {
    await waitFor('containerd to answer', async () => {
      if (daemon.child.exitCode !== null) throw new Error(`containerd exited: ${daemon.output()}`);
      return (await run('ctr', ['-a', socket, 'version'], { allowFail: true, timeoutMs: 5000 })).code === 0;
    }, 30_000, 200);
  } catch (e) {
    await stop();
    throw e;
  }
  return { socket, dir, stop };
}

/** `ctr images pull --hosts-dir DIR --snapshotter native IMAGE` (fetch and unpack). */
export async function ctrPull(daemon: Containerd, image: string, hostsDir: string, opts: { platform?: string; allPlatforms?: boolean } = {}): Promise<void> {
  const args = ['-a', daemon.socket, 'images', 'pull', '--hosts-dir', hostsDir, '--snapshotter', 'native'];
  if (opts.platform) args.push('--platform', opts.platform);
  if (opts.allPlatforms) args.push('--all-platforms');
  await run('ctr', [...args, image], { timeoutMs: 300_000 });
}

/** The images containerd knows: reference, media type and digest of the top manifest. */
export async function ctrImageList(daemon: Containerd): Promise<Array<{ ref: string; mediaType: string; digest: string }>> {
  const { stdout } = await run('ctr', ['-a', daemon.socket, 'images', 'ls']);
  return stdout
    .trim()
    .split('\n')
    .slice(1)
    .filter(Boolean)
    .map((line) => {
      const [ref = '', mediaType = '', digest = ''] = line.split(/\s+/);
      return { ref, mediaType, digest };
    });
}

/**
 * Writes DIR/NAMESPACE/hosts.toml: pulls for `namespace` (e.g. docker.io) try `mirror`
 * (e.g. http://127.0.0.1:PORT) before `server`, as Kubernetes nodes are set up.
 */
export async function writeHostsToml(dir: string, opts: { server: string; mirror: string; namespace: string; ca?: string; skipVerify?: boolean }): Promise<string> {
  const nsDir = join(dir, opts.namespace);
  await mkdir(nsDir, { recursive: true });
  const lines = [`server = "${opts.server}"`, '', `[host."${opts.mirror}"]`, '  capabilities = ["pull", "resolve"]'];
  if (opts.ca) lines.push(`  ca = "${opts.ca}"`);
  if (opts.skipVerify) lines.push('  skip_verify = true');
  const file = join(nsDir, 'hosts.toml');
  await writeFile(file, lines.join('\n') + '\n');
  return file;
}
