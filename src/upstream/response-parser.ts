import type { IncomingHttpHeaders } from 'node:http';

/** The status line and headers of a response (header names in lower case, repeats as arrays for set-cookie, joined otherwise). */
export interface ResponseHead {
  status: number;
  headers: IncomingHttpHeaders;
  /** The connection may carry another request once this response's body has ended. */
  keepAlive: boolean;
}

export interface ResponseEvents {
  head(head: ResponseHead): void;
  /** A piece of the body: a view into the caller's buffer, valid only during the call. */
  body(view: Buffer): void;
  end(): void;
}

export class ResponseParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ResponseParseError';
  }
}

/** Largest status line + headers accepted (Node's own limit is 16 KiB). */
const maxHead = 64 * 1024;
/** Longest chunk-size line or trailer line accepted. */
const maxLine = 8 * 1024;

type State = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailers' | 'until-close' | 'done';

/**
 * An incremental HTTP/1.1 response parser for one response on a client
 * connection: status line and headers, then a body framed by Content-Length,
 * chunked transfer coding, or the connection's end. Body bytes are passed on
 * as views of the buffer given to `feed`, never copied; only header and
 * chunk-size bytes are collected. Interim 1xx responses are skipped. Bytes
 * after the end of the response are an error (a server may not send them).
 */
export class ResponseParser {
  private state: State = 'head';
  private headBuf = Buffer.alloc(0);
  private line = '';
  private remaining = 0;
  private readonly events: ResponseEvents;
  private readonly method: string;

  constructor(method: string, events: ResponseEvents) {
    this.method = method;
    this.events = events;
  }

  /** Takes the bytes buf[start, end). Throws ResponseParseError on a malformed response. */
  feed(buf: Buffer, start: number, end: number): void {
    let i = start;
    while (i < end) {
      switch (this.state) {
        case 'head':
          i = this.takeHead(buf, i, end);
          break;
        case 'length':
          i = this.takeCounted(buf, i, end);
          if (this.remaining === 0) this.finish();
          break;
        case 'until-close':
          this.events.body(buf.subarray(i, end));
          i = end;
          break;
        case 'chunk-size':
          i = this.takeLine(buf, i, end, (line) => this.chunkSize(line));
          break;
        case 'chunk-data':
          i = this.takeCounted(buf, i, end);
          if (this.remaining === 0) this.state = 'chunk-crlf';
          break;
        case 'chunk-crlf':
          i = this.takeLine(buf, i, end, (line) => {
            if (line !== '') throw new ResponseParseError('chunk data not followed by CRLF');
            this.state = 'chunk-size';
          });
          break;
        case 'trailers':
          i = this.takeLine(buf, i, end, (line) => {
            if (line === '') this.finish();
          });
          break;
        case 'done':
          throw new ResponseParseError('bytes after the end of the response');
      }
    }
  }

  /** The connection ended: completes a body that runs until the close, else it is a truncation. */
  closed(): void {
    if (this.state === 'until-close') {
      this.finish();
      return;
    }
    if (this.state !== 'done') throw new ResponseParseError(this.state === 'head' ? 'connection closed before the response' : 'connection closed before the end of the body');
  }

  /** Passes on up to `remaining` body bytes from buf[start, end); returns where it stopped. */
  private takeCounted(buf: Buffer, start: number, end: number): number {
    const stop = Math.min(end, start + this.remaining);
    this.remaining -= stop - start;
    this.events.body(buf.subarray(start, stop));
    return stop;
  }

  private finish(): void {
    this.state = 'done';
    this.events.end();
  }

  private takeHead(buf: Buffer, start: number, end: number): number {
    const previous = this.headBuf.length;
    // Body bytes often share the read with the head: copy no more than a head can be.
    const piece = buf.subarray(start, Math.min(end, start + maxHead + 4 - previous));
    this.headBuf = Buffer.concat([this.headBuf, piece]);
    const at = this.headBuf.indexOf('\r\n\r\n', Math.max(0, previous - 3));
    if (at < 0) {
      if (this.headBuf.length > maxHead) throw new ResponseParseError(`response head larger than ${maxHead} bytes`);
      return start + piece.length;
    }
    if (at > maxHead) throw new ResponseParseError(`response head larger than ${maxHead} bytes`);
    const consumed = at + 4 - previous;
    const text = this.headBuf.toString('latin1', 0, at);
    this.headBuf = Buffer.alloc(0);
    const head = parseHead(text);
    if (head.status >= 100 && head.status < 200) {
      if (head.status === 101) throw new ResponseParseError('unexpected protocol switch');
      return start + consumed; // interim response: the real one follows
    }
    this.frame(head);
    this.events.head(head);
    if (this.state === 'done') this.events.end();
    return start + consumed;
  }

  /** Chooses the body framing (RFC 9112 section 6.3). */
  private frame(head: ResponseHead): void {
    const { status, headers } = head;
    if (this.method === 'HEAD' || status === 204 || status === 304) {
      this.state = 'done';
      return;
    }
    const te = headers['transfer-encoding'];
    if (te !== undefined) {
      const codings = String(te).toLowerCase().split(',').map((s) => s.trim());
      if (codings.at(-1) !== 'chunked') {
        head.keepAlive = false;
        this.state = 'until-close';
        return;
      }
      this.state = 'chunk-size';
      return;
    }
    const cl = headers['content-length'];
    if (cl !== undefined) {
      const values = new Set(String(cl).split(',').map((s) => s.trim()));
      const [only] = values;
      if (values.size !== 1 || only === undefined || !/^\d{1,15}$/.test(only)) throw new ResponseParseError(`bad Content-Length ${String(cl)}`);
      this.remaining = Number(only);
      this.state = this.remaining === 0 ? 'done' : 'length';
      return;
    }
    head.keepAlive = false;
    this.state = 'until-close';
  }

  private chunkSize(line: string): void {
    const m = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
    if (!m) throw new ResponseParseError('bad chunk size line');
    this.remaining = parseInt(m[1]!, 16);
    this.state = this.remaining === 0 ? 'trailers' : 'chunk-data';
  }

  /** Collects one CRLF-terminated line (the CRLF itself may be split across reads). */
  private takeLine(buf: Buffer, start: number, end: number, onLine: (line: string) => void): number {
    const nl = buf.indexOf(10, start);
    if (nl < 0 || nl >= end) {
      this.line += buf.toString('latin1', start, end);
      if (this.line.length > maxLine) throw new ResponseParseError('line too long in a chunked body');
      return end;
    }
    const line = this.line + buf.toString('latin1', start, nl);
    this.line = '';
    if (!line.endsWith('\r')) throw new ResponseParseError('bare LF in a chunked body');
    onLine(line.slice(0, -1));
    return nl + 1;
  }
}

function parseHead(text: string): ResponseHead {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (!m) throw new ResponseParseError('bad status line');
  const headers: IncomingHttpHeaders = {};
  for (let k = 1; k < lines.length; k++) {
    const l = lines[k]!;
    const colon = l.indexOf(':');
    if (colon <= 0 || /[\s]/.test(l[colon - 1]!) || /^[\t ]/.test(l)) throw new ResponseParseError('bad header line');
    const name = l.slice(0, colon).toLowerCase();
    const value = l.slice(colon + 1).trim();
    const prev = headers[name];
    if (name === 'set-cookie') headers[name] = [...(prev as string[] | undefined ?? []), value];
    else headers[name] = prev === undefined ? value : `${String(prev)}, ${value}`;
  }
  const connection = String(headers.connection ?? '').toLowerCase();
  const keepAlive = m[1] === '1' ? !/\bclose\b/.test(connection) : /\bkeep-alive\b/.test(connection);
  return { status: Number(m[2]), headers, keepAlive };
}
