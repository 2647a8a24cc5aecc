import { mkdir, open, readdir, readFile, appendFile, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { RegistryEvent } from './event.ts';
import type { EventQueue, QueuedEvent } from './queue.ts';

/**
 * An `EventQueue` in append-only files under one directory, for one process:
 *
 * - `seg-<first seq>.log`: one JSON line per event, `{"s":<seq>,"e":<event>}`.
 *   `push` appends its lines with one write and `fdatasync`s before it
 *   resolves. A write torn by a crash can only be the end of the newest
 *   segment (older ones were complete and synced before it was created); it
 *   is cut off at open, and its events were never acknowledged to the caller.
 * - `seg-<first seq>.ack`: the sequence numbers acknowledged in that segment,
 *   one per line, appended without a sync: a crash can at worst forget an
 *   acknowledgement, which makes a duplicate, never a loss.
 * - A new segment is started once the current one reaches `segmentBytes`;
 *   older segments are deleted as soon as every event in them is
 *   acknowledged.
 *
 * Two processes must not share a directory.
 */
export class FileQueue implements EventQueue {
  readonly #dir: string;
  readonly #segmentBytes: number;
  /** Oldest first; the last one is the one pushes append to. */
  readonly #segments: Segment[];
  #active: FileHandle;
  /** Parsed entries of recently read segments, by first seq; at most two are kept. */
  readonly #cache = new Map<number, Entry[]>();
  #lock: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(dir: string, segmentBytes: number, segments: Segment[], active: FileHandle) {
    this.#dir = dir;
    this.#segmentBytes = segmentBytes;
    this.#segments = segments;
    this.#active = active;
  }

  /** Opens (creating if needed) the queue in `dir`, recovering from a crash of a previous process. */
  static async open(dir: string, options: { segmentBytes?: number } = {}): Promise<FileQueue> {
    await mkdir(dir, { recursive: true });
    const names = await readdir(dir);
    const starts = names.flatMap((n) => (/^seg-\d{16}\.log$/.test(n) ? [Number(n.slice(4, 20))] : [])).sort((a, b) => a - b);
    const segments: Segment[] = [];
    for (const [i, start] of starts.entries()) {
      segments.push(await loadSegment(dir, start, i === starts.length - 1));
    }
    // Acknowledgement files whose segment is gone (a crash between the two unlinks).
    const live = new Set(starts);
    for (const n of names) {
      if (/^seg-\d{16}\.ack$/.test(n) && !live.has(Number(n.slice(4, 20)))) await unlink(join(dir, n)).catch(() => {});
    }
    const fresh = segments.length === 0;
    if (fresh) segments.push(emptySegment(dir, 0));
    const active = await open(segments.at(-1)!.path, 'a');
    if (fresh) await syncDir(dir);
    const queue = new FileQueue(dir, options.segmentBytes ?? 1024 * 1024, segments, active);
    await queue.#compact();
    return queue;
  }

  push(events: readonly RegistryEvent[]): Promise<void> {
    return this.#serial(async () => {
      if (events.length === 0) return;
      let active = this.#segments.at(-1)!;
      if (active.bytes >= this.#segmentBytes) active = await this.#rotate();
      const entries: Entry[] = [];
      let text = '';
      for (const event of events) {
        const entry = { seq: active.next + entries.length, event };
        entries.push(entry);
        text += `${JSON.stringify({ s: entry.seq, e: event })}\n`;
      }
      const bytes = Buffer.from(text);
      await this.#active.write(bytes);
      await this.#active.datasync();
      active.next += entries.length;
      active.count += entries.length;
      active.bytes += bytes.length;
      this.#cache.get(active.start)?.push(...entries);
    });
  }

  peek(max: number): Promise<QueuedEvent[]> {
    return this.#serial(async () => {
      const out: QueuedEvent[] = [];
      for (const segment of this.#segments) {
        if (out.length >= max) break;
        if (segment.acked.size >= segment.count) continue;
        for (const entry of await this.#entries(segment)) {
          if (out.length >= max) break;
          if (!segment.acked.has(entry.seq)) out.push({ id: String(entry.seq), event: entry.event });
        }
      }
      return out;
    });
  }

  ack(ids: readonly string[]): Promise<void> {
    return this.#serial(async () => {
      const bySegment = new Map<Segment, number[]>();
      for (const id of ids) {
        if (!/^\d{1,15}$/.test(id)) continue;
        const seq = Number(id);
        const segment = this.#segments.findLast((s) => s.start <= seq);
        if (!segment || seq >= segment.next || segment.acked.has(seq)) continue;
        segment.acked.add(seq);
        const seqs = bySegment.get(segment) ?? [];
        seqs.push(seq);
        bySegment.set(segment, seqs);
      }
      for (const [segment, seqs] of bySegment) await appendFile(segment.ackPath, `${seqs.join('\n')}\n`);
      await this.#compact();
    });
  }

  depth(): Promise<number> {
    return this.#serial(async () => this.#segments.reduce((n, s) => n + s.count - s.acked.size, 0));
  }

  async close(): Promise<void> {
    await this.#serial(async () => {
      this.#closed = true;
      await this.#active.close();
    });
  }

  /** Runs operations one at a time, in call order. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(() => {
      if (this.#closed) throw new Error('notification queue is closed');
      return fn();
    });
    this.#lock = run.catch(() => {});
    return run;
  }

  async #rotate(): Promise<Segment> {
    const next = emptySegment(this.#dir, this.#segments.at(-1)!.next);
    const handle = await open(next.path, 'a');
    await syncDir(this.#dir);
    await this.#active.close();
    this.#active = handle;
    this.#segments.push(next);
    await this.#compact();
    return next;
  }

  /** Deletes fully acknowledged segments other than the active one. */
  async #compact(): Promise<void> {
    while (this.#segments.length > 1 && this.#segments[0]!.acked.size >= this.#segments[0]!.count) {
      const done = this.#segments.shift()!;
      this.#cache.delete(done.start);
      await unlink(done.path);
      await unlink(done.ackPath).catch(() => {});
    }
  }

  async #entries(segment: Segment): Promise<Entry[]> {
    let entries = this.#cache.get(segment.start);
    if (!entries) {
      entries = parseLines(await readFile(segment.path, 'utf8')).entries;
      this.#cache.set(segment.start, entries);
      for (const key of this.#cache.keys()) {
        if (this.#cache.size <= 2) break;
        if (key !== segment.start && key !== this.#segments.at(-1)!.start) this.#cache.delete(key);
      }
    }
    return entries;
  }
}

interface Entry {
  seq: number;
  event: RegistryEvent;
}

interface Segment {
  start: number;
  /** The seq after the last entry. */
  next: number;
  /** Readable entries (a damaged line is skipped and not counted). */
  count: number;
  bytes: number;
  acked: Set<number>;
  path: string;
  ackPath: string;
}

function emptySegment(dir: string, start: number): Segment {
  const base = `seg-${String(start).padStart(16, '0')}`;
  return { start, next: start, count: 0, bytes: 0, acked: new Set(), path: join(dir, `${base}.log`), ackPath: join(dir, `${base}.ack`) };
}

async function loadSegment(dir: string, start: number, newest: boolean): Promise<Segment> {
  const segment = emptySegment(dir, start);
  const text = await readFile(segment.path, 'utf8');
  const { entries, goodBytes } = parseLines(text);
  const byteLength = Buffer.byteLength(text);
  if (newest && goodBytes < byteLength) {
    // A write torn by a crash: cut it off so new lines start on a clean line.
    const handle = await open(segment.path, 'r+');
    try {
      await handle.truncate(goodBytes);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }
  segment.bytes = newest ? goodBytes : byteLength;
  segment.count = entries.length;
  segment.next = entries.length > 0 ? entries.at(-1)!.seq + 1 : start;
  const acks = await readFile(segment.ackPath, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  const present = new Set(entries.map((e) => e.seq));
  for (const line of acks.split('\n')) {
    const seq = Number(line);
    if (line !== '' && present.has(seq)) segment.acked.add(seq);
  }
  return segment;
}

/** The entries of a segment's text, and how many leading bytes are whole, readable lines. */
function parseLines(text: string): { entries: Entry[]; goodBytes: number } {
  const entries: Entry[] = [];
  let offset = 0;
  let goodBytes = 0;
  let bytes = 0;
  while (offset < text.length) {
    const end = text.indexOf('\n', offset);
    if (end < 0) break;
    const line = text.slice(offset, end);
    bytes += Buffer.byteLength(line) + 1;
    offset = end + 1;
    const entry = parseEntry(line);
    if (!entry) continue;
    entries.push(entry);
    goodBytes = bytes;
  }
  return { entries, goodBytes };
}

function parseEntry(line: string): Entry | undefined {
  try {
    const parsed = JSON.parse(line) as { s?: unknown; e?: unknown };
    if (typeof parsed.s !== 'number' || typeof parsed.e !== 'object' || parsed.e === null) return undefined;
    return { seq: parsed.s, event: parsed.e as RegistryEvent };
  } catch {
    return undefined;
  }
}

/** Makes a newly created file's directory entry durable. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
