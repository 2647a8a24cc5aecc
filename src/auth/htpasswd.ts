/**
 * An htpasswd file of `user:hash` lines with bcrypt hashes (`htpasswd -B`,
 * `tender user add`): verification with reload on change, and atomic edits.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import bcrypt from 'bcryptjs';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../log.ts';

const bcryptHash = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;
/** Files are re-checked at most this often (milliseconds). */
const defaultRecheck = 1000;
/** How long a successful verification is remembered (milliseconds). */
const verifiedTtl = 60_000;

interface FileState {
  users: Map<string, string>;
  /** What the loaded file was; a different one means reload. */
  version: string;
}

/**
 * The users of one htpasswd file. Only bcrypt hashes are accepted; other
 * lines are ignored with a warning naming the user (never the hash). The
 * file is re-read when it changes, checked at most once per second; a
 * missing or unreadable file means no users.
 */
export class Htpasswd {
  readonly #file: string;
  readonly #logger: Logger;
  readonly #recheck: number;
  #state: FileState;
  #checkedAt: number;
  #checking: Promise<void> | undefined;
  /** sha256(user NUL password) → the hash it was verified against. */
  readonly #verified = new LRUCache<string, string>({ max: 1000, ttl: verifiedTtl });
  /** Dummy hashes by cost, compared for unknown users so timing does not tell which users exist. */
  readonly #dummies = new Map<number, Promise<string>>();

  constructor(file: string, logger: Logger, opts: { recheckMs?: number } = {}) {
    this.#file = file;
    this.#logger = logger;
    this.#recheck = opts.recheckMs ?? defaultRecheck;
    this.#state = this.#parse(readVersionSync(file), readTextSync(file));
    this.#checkedAt = Date.now();
    void this.#dummy(typicalCost(this.#state.users));
  }

  /** Whether the password is the user's. Takes bcrypt's time whether or not the user exists. */
  async verify(username: string, password: string): Promise<boolean> {
    await this.#refresh();
    const { users } = this.#state;
    const hash = users.get(username);
    const key = createHash('sha256').update(`${username}\0${password}`).digest('hex');
    if (hash !== undefined && this.#verified.get(key) === hash) return true;
    const against = hash ?? (await this.#dummy(typicalCost(users)));
    const ok = await bcrypt.compare(password, against);
    if (!ok || hash === undefined) return false;
    // Only remember it if the file was not reloaded meanwhile.
    if (this.#state.users === users) this.#verified.set(key, hash);
    return true;
  }

  async #refresh(): Promise<void> {
    if (Date.now() - this.#checkedAt < this.#recheck) return;
    this.#checking ??= (async () => {
      try {
        const version = await readVersion(this.#file);
        if (version !== this.#state.version) {
          this.#state = this.#parse(version, version === missing ? undefined : await readText(this.#file));
          this.#verified.clear();
          void this.#dummy(typicalCost(this.#state.users));
          this.#logger.info({ file: this.#file, users: this.#state.users.size }, 'htpasswd file reloaded');
        }
      } finally {
        this.#checkedAt = Date.now();
        this.#checking = undefined;
      }
    })();
    await this.#checking;
  }

  #parse(version: string, text: string | Error | undefined): FileState {
    const users = new Map<string, string>();
    if (text === undefined || text instanceof Error) {
      const reason = text ? text.message : 'no such file';
      this.#logger.warn({ file: this.#file, reason }, 'htpasswd file not readable: no user can log in');
      return { users, version };
    }
    text.split('\n').forEach((raw, i) => {
      const line = raw.replace(/\r$/, '');
      if (line.trim() === '' || line.startsWith('#')) return;
      const colon = line.indexOf(':');
      if (colon <= 0) {
        this.#logger.warn({ file: this.#file, line: i + 1 }, 'htpasswd line ignored: not user:hash');
        return;
      }
      const user = line.slice(0, colon);
      const hash = line.slice(colon + 1);
      if (!bcryptHash.test(hash)) {
        this.#logger.warn({ file: this.#file, user }, 'htpasswd user ignored: not a bcrypt hash (use htpasswd -B)');
      } else if (users.has(user)) {
        this.#logger.warn({ file: this.#file, user, line: i + 1 }, 'htpasswd user listed twice: the first line counts');
      } else {
        users.set(user, hash);
      }
    });
    return { users, version };
  }

  #dummy(cost: number): Promise<string> {
    let dummy = this.#dummies.get(cost);
    if (!dummy) {
      dummy = bcrypt.hash(randomBytes(16).toString('hex'), cost);
      this.#dummies.set(cost, dummy);
    }
    return dummy;
  }
}

/**
 * Adds the user, or replaces their password, with a bcrypt hash of the given
 * cost. The file is rewritten atomically (temporary file, then rename),
 * keeping its mode; a new file is created with mode 0600. Concurrent edits
 * of the same file by two processes are not serialised: the last one wins.
 */
export async function setPassword(file: string, username: string, password: string, cost = 10): Promise<void> {
  checkUsername(username);
  if (password === '') throw new Error('the password is empty');
  if (bcrypt.truncates(password)) throw new Error('the password is longer than 72 bytes, which bcrypt would ignore');
  // bcryptjs writes $2b$; $2y$ is the same algorithm and what Apache's htpasswd writes and reads.
  const hash = (await bcrypt.hash(password, cost)).replace(/^\$2b\$/, '$2y$');
  await rewrite(file, (lines) => {
    const at = lines.findIndex((line) => userOf(line) === username);
    const entry = `${username}:${hash}`;
    if (at < 0) return [...lines, entry];
    return lines.flatMap((line, i) => (i === at ? [entry] : userOf(line) === username ? [] : [line]));
  });
}

/** Removes the user; false when they were not in the file. Atomic like setPassword. */
export async function removeUser(file: string, username: string): Promise<boolean> {
  let found = false;
  await rewrite(file, (lines) => {
    const kept = lines.filter((line) => userOf(line) !== username);
    found = kept.length !== lines.length;
    return found ? kept : undefined;
  });
  return found;
}

function checkUsername(username: string): void {
  // eslint-disable-next-line no-control-regex
  if (username === '' || /[:\s\u0000-\u001f\u007f]/.test(username)) {
    throw new Error('a user name must be non-empty, without spaces, control characters or ":"');
  }
  if (username.startsWith('$') || username.startsWith('#')) throw new Error('a user name must not start with "$" or "#"');
}

function userOf(line: string): string | undefined {
  const colon = line.indexOf(':');
  return colon > 0 && !line.startsWith('#') ? line.slice(0, colon) : undefined;
}

/** Rewrites the file's lines through `edit` (undefined: leave the file alone) via a temporary file and rename. */
async function rewrite(file: string, edit: (lines: string[]) => string[] | undefined): Promise<void> {
  let text = '';
  let mode = 0o600;
  try {
    [text, mode] = await Promise.all([readFile(file, 'utf8'), stat(file).then((s) => s.mode & 0o777)]);
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
  const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
  if (lines.at(-1) === '') lines.pop();
  const edited = edit(lines);
  if (!edited) return;
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', mode);
  try {
    await handle.writeFile(edited.map((l) => `${l}\n`).join(''));
    await handle.chmod(mode);
    await handle.sync();
    await handle.close();
    await rename(temp, file);
  } catch (err) {
    await handle.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw err;
  }
}

/** The most common cost among the users (10 when there are none). */
function typicalCost(users: Map<string, string>): number {
  const counts = new Map<number, number>();
  for (const hash of users.values()) {
    const cost = Number(bcryptHash.exec(hash)![1]);
    counts.set(cost, (counts.get(cost) ?? 0) + 1);
  }
  let best = 10;
  let bestCount = 0;
  for (const [cost, count] of counts) {
    if (count > bestCount) [best, bestCount] = [cost, count];
  }
  return best;
}

const missing = 'missing';

function versionOf(s: { ino: number; size: number; mtimeMs: number }): string {
  return `${s.ino}:${s.size}:${s.mtimeMs}`;
}

async function readVersion(file: string): Promise<string> {
  try {
    return versionOf(await stat(file));
  } catch {
    return missing;
  }
}

function readVersionSync(file: string): string {
  try {
    return versionOf(statSync(file));
  } catch {
    return missing;
  }
}

async function readText(file: string): Promise<string | Error | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    return isMissing(err) ? undefined : asError(err);
  }
}

function readTextSync(file: string): string | Error | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    return isMissing(err) ? undefined : asError(err);
  }
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
