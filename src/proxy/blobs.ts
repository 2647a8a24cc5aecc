import { mkdir, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { requireDigest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { closingWith, type ByteRange, type ObjectHandle } from '../storage/driver.ts';
import type { ContentStore } from '../store/content-store.ts';
import type { Upstream } from '../upstream/types.ts';
import type { UpstreamRoute } from '../routing.ts';
import { Spool } from './spool.ts';
import { toRegistryError } from './upstream-errors.ts';

/** Where a blob response's bytes come from. */
export type BlobSource = 'cache' | 'upstream' | 'inflight' | 'local';

/** A blob ready to send: the whole size, the range chosen, and its bytes as a stream or an open handle. */
export interface BlobBody {
  /** Size of the whole blob. */
  size: number;
  /** The inclusive range being sent, or undefined for the whole blob. */
  range: ByteRange | undefined;
  source: BlobSource;
  /** The requested bytes, as a stream (downloads, drivers without handles) or an open handle (the fast path). */
  bytes: { kind: 'stream'; stream: Readable } | { kind: 'handle'; handle: ObjectHandle };
}

/** Picks the range for a blob of a known size (may throw RANGE_INVALID). */
export type RangeChooser = (size: number) => ByteRange | undefined;

/** What a flight knows once the upstream answered: the size, and the spool to follow (none when the blob turned out to be stored already). */
interface FlightReady {
  size: number | undefined;
  spool: Spool | undefined;
}

/** An in-flight download, shared by every client asking for the digest. */
interface Flight {
  /** The repository (store key) the download was started for. */
  repo: string;
  ready: Promise<FlightReady>;
  /** Settles when the download is verified and committed, or failed. */
  done: Promise<void>;
  /** Clients currently reading it. */
  readers: number;
}

export interface ProxyBlobsOptions {
  store: ContentStore;
  upstreams: ReadonlyMap<string, Upstream>;
  /** A local folder for downloads in progress. */
  spoolDir: string;
  logger: Logger;
  /** Told how many bytes each download took from its upstream (for metrics). */
  onFetched?: (upstream: string, bytes: number) => void;
}

/**
 * The pull-through blob service: serves blobs from the store, and fetches
 * missing ones from the upstream exactly once however many clients ask,
 * streaming to all of them while the download is written and verified.
 */
export class ProxyBlobs {
  private readonly store: ContentStore;
  private readonly upstreams: ReadonlyMap<string, Upstream>;
  private readonly spoolDir: string;
  private readonly logger: Logger;
  private readonly flights = new Map<string, Flight>();
  private readonly onFetched: ((upstream: string, bytes: number) => void) | undefined;

  constructor(options: ProxyBlobsOptions) {
    this.store = options.store;
    this.upstreams = options.upstreams;
    this.spoolDir = options.spoolDir;
    this.logger = options.logger;
    this.onFetched = options.onFetched;
  }

  /** Prepares the spool folder, removing downloads a previous process left behind. */
  async init(): Promise<void> {
    await mkdir(this.spoolDir, { recursive: true });
    for (const name of await readdir(this.spoolDir)) await unlink(join(this.spoolDir, name)).catch(() => undefined);
  }

  /** Downloads in progress (for metrics and tests). */
  get inflight(): number {
    return this.flights.size;
  }

  /** Clients reading downloads in progress (for metrics). */
  get waiters(): number {
    let n = 0;
    for (const f of this.flights.values()) n += f.readers;
    return n;
  }

  /** Waits for every download in progress to settle. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.flights.values()].map((f) => f.done));
  }

  private upstream(route: UpstreamRoute): Upstream {
    const up = this.upstreams.get(route.upstream);
    if (!up) throw new RegistryError('NAME_UNKNOWN', { detail: { upstream: route.upstream } });
    return up;
  }

  /**
   * Makes sure the blob is readable in this repository: linked, or present
   * in the store and confirmed by the upstream for this repository.
   */
  private async cachedSize(route: UpstreamRoute, digest: string): Promise<number | undefined> {
    const info = await this.store.statBlob(digest);
    if (!info) return undefined;
    await this.ensureLinked(route, digest);
    return info.size;
  }

  /** A blob stored for another repository is linked here only once the upstream confirms this repository has it. */
  private async ensureLinked(route: UpstreamRoute, digest: string): Promise<void> {
    if (await this.store.hasLayerLink(route.repo, digest)) return;
    try {
      await this.upstream(route).headBlob(route.name, digest);
    } catch (err) {
      throw toRegistryError(err, 'BLOB_UNKNOWN');
    }
    await this.store.linkLayer(route.repo, digest);
  }

  /** The size of a blob, fetching nothing but a HEAD on a miss. */
  async stat(route: UpstreamRoute, digest: string): Promise<{ size: number; source: BlobSource }> {
    requireDigest(digest);
    const size = await this.cachedSize(route, digest);
    if (size !== undefined) return { size, source: 'cache' };
    const flight = this.flights.get(digest);
    if (flight && flight.repo === route.repo) {
      const { size: known } = await flight.ready;
      if (known !== undefined) return { size: known, source: 'inflight' };
    }
    try {
      const head = await this.upstream(route).headBlob(route.name, digest);
      if (head.size === undefined) throw new RegistryError('BLOB_UNKNOWN', { detail: { digest, reason: 'upstream sent no size' } });
      return { size: head.size, source: 'upstream' };
    } catch (err) {
      throw toRegistryError(err, 'BLOB_UNKNOWN');
    }
  }

  /** Opens a stored blob this repository may read, or undefined when it is not stored. */
  private async openCached(route: UpstreamRoute, digest: string, choose?: RangeChooser): Promise<BlobBody | undefined> {
    if (this.store.offersHandles) {
      const handle = await this.store.openBlobHandle(digest);
      if (!handle) return undefined;
      try {
        await this.ensureLinked(route, digest);
        const range = choose?.(handle.size);
        return { size: handle.size, range, source: 'cache', bytes: { kind: 'handle', handle } };
      } catch (err) {
        await handle.close();
        throw err;
      }
    }
    const size = await this.cachedSize(route, digest);
    if (size === undefined) return undefined;
    const range = choose?.(size);
    const stream = await this.store.openBlob(digest, range);
    return stream ? { size, range, source: 'cache', bytes: { kind: 'stream', stream } } : undefined;
  }

  /**
   * Opens a blob, or the byte range `choose` picks once the size is known:
   * from the store, by joining a download in progress, or by starting one.
   */
  async open(route: UpstreamRoute, digest: string, choose?: RangeChooser): Promise<BlobBody> {
    const parsed = requireDigest(digest);
    const cached = await this.openCached(route, digest, choose);
    if (cached) return cached;
    let flight = this.flights.get(digest);
    let source: BlobSource = 'inflight';
    if (flight && flight.repo !== route.repo) {
      // Another repository started it: this one must be allowed to read it too.
      try {
        await this.upstream(route).headBlob(route.name, digest);
      } catch (err) {
        throw toRegistryError(err, 'BLOB_UNKNOWN');
      }
    }
    if (!flight) {
      flight = this.start(route, parsed.value);
      source = 'upstream';
    }
    const { size: total, spool } = await flight.ready;
    if (!spool || total === undefined || !spool.open) {
      // Stored meanwhile (also when the download ended while this reader was on its way),
      // or no Content-Length (rare: then serve once complete).
      await flight.done;
      const stored = await this.openCached(route, digest, choose);
      if (!stored) throw new RegistryError('UPSTREAM_UNAVAILABLE', { detail: { digest } });
      return stored;
    }
    const range = choose?.(total);
    const reading = flight;
    reading.readers++;
    const handle = closingWith(spool.handle(range ? range.end + 1 : total), () => reading.readers--);
    return { size: total, range, source, bytes: { kind: 'handle', handle } };
  }

  /**
   * Registers a flight for the digest synchronously (so nobody else starts
   * one), then checks the store once more (a flight may have committed it
   * since the caller looked) before fetching from the upstream.
   */
  private start(route: UpstreamRoute, digest: string): Flight {
    const parsed = requireDigest(digest);
    let resolveReady!: (r: FlightReady) => void;
    let rejectReady!: (err: unknown) => void;
    const ready = new Promise<FlightReady>((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    // The flight's own failure reaches clients through `ready` and the readers.
    ready.catch(() => undefined);
    const flight: Flight = { repo: route.repo, ready, done: Promise.resolve(), readers: 0 };
    this.flights.set(digest, flight);
    const log = this.logger.child({ digest, upstream: route.upstream, repository: route.name });
    flight.done = (async () => {
      let spool: Spool | undefined;
      try {
        const stored = await this.store.statBlob(digest);
        if (stored) {
          await this.store.linkLayer(route.repo, digest);
          resolveReady({ size: stored.size, spool: undefined });
          return;
        }
        spool = await Spool.create(parsed, join(this.spoolDir, `${parsed.hex}.${randomUUID()}`));
        let blob;
        try {
          blob = await this.upstream(route).getBlob(route.name, digest);
        } catch (err) {
          spool.fail(err instanceof Error ? err : new Error(String(err)));
          throw toRegistryError(err, 'BLOB_UNKNOWN');
        }
        resolveReady({ size: blob.size, spool });
        const started = Date.now();
        await spool.fill(blob.body, blob.size);
        await this.store.commitBlobFile(digest, spool.path);
        await this.store.linkLayer(route.repo, digest);
        log.info({ size: spool.size, ms: Date.now() - started }, 'blob cached from upstream');
      } catch (err) {
        rejectReady(err);
        log.warn({ err }, 'blob download failed; nothing cached');
        if (spool) await unlink(spool.path).catch(() => undefined);
      } finally {
        this.flights.delete(digest);
        if (spool) this.onFetched?.(route.upstream, spool.bytesWritten);
        spool?.release();
      }
    })();
    return flight;
  }
}
