/**
 * Registry events in CNCF Distribution's notification envelope
 * (distribution/distribution `notifications/event.go`), so receivers written
 * for Distribution work unchanged. Field names and omissions follow its JSON
 * tags: `request.id`, `request.method` and `request.useragent` are always
 * present; the other fields are left out when empty.
 *
 * tender adds one field Distribution does not have: `tender.cache` on pulls of
 * cached content (`hit`, `revalidated`, `miss`, `stale`). Receivers that do
 * not know it ignore it.
 */

/** Distribution's original envelope media type; the default. */
export const eventsMediaTypeV1 = 'application/vnd.docker.distribution.events.v1+json';
/** The media type Distribution 3 sends; its events may carry `fromRepository` and `references`. */
export const eventsMediaTypeV2 = 'application/vnd.docker.distribution.events.v2+json';

export type EnvelopeVersion = 'v1' | 'v2';

/** The Content-Type of an envelope of the given version. */
export function envelopeMediaType(version: EnvelopeVersion): string {
  return version === 'v2' ? eventsMediaTypeV2 : eventsMediaTypeV1;
}

export type EventAction = 'push' | 'pull' | 'delete' | 'mount';
export const eventActions: readonly EventAction[] = ['push', 'pull', 'delete', 'mount'];

/** How a pull of cached content was served (tender's extension). */
export type CacheOutcome = 'hit' | 'revalidated' | 'miss' | 'stale';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface EventTarget {
  mediaType?: string;
  digest?: string;
  size?: number;
  /** Same as `size`; Distribution keeps it for older receivers. */
  length?: number;
  repository: string;
  /** The repository a mounted blob came from (v2). */
  fromRepository?: string;
  /** A direct link to the content. */
  url?: string;
  tag?: string;
  /** The descriptors a manifest refers to (v2). */
  references?: Descriptor[];
}

export interface RequestRecord {
  id: string;
  /** The client's address (and port). */
  addr?: string;
  /** The Host header of the request: the registry's externally visible name. */
  host?: string;
  method: string;
  useragent: string;
}

export interface ActorRecord {
  /** The authenticated user, when there is one. */
  name?: string;
}

export interface SourceRecord {
  /** Host name and port of the tender instance that generated the event. */
  addr?: string;
  /** Identifies a running instance; changes on every restart. */
  instanceID?: string;
}

export interface RegistryEvent {
  id: string;
  /** RFC 3339 time at which the event occurred. */
  timestamp: string;
  action: EventAction;
  target: EventTarget;
  request: RequestRecord;
  actor: ActorRecord;
  source: SourceRecord;
  tender?: { cache: CacheOutcome };
}

export interface Envelope {
  events: RegistryEvent[];
}

/** What the registry knows when something happens; `buildEvent` turns it into an event. */
export interface EventInput {
  action: EventAction;
  repository: string;
  /** Decides the path of `target.url`. */
  kind: 'manifest' | 'blob';
  digest?: string;
  mediaType?: string;
  size?: number;
  tag?: string;
  /** For mounts: the repository the blob was mounted from. */
  fromRepository?: string;
  /** For manifest pushes: the descriptors the manifest refers to (sent in v2 envelopes only). */
  references?: Descriptor[];
  request: { id: string; addr?: string; host?: string; method: string; useragent?: string };
  actor?: ActorRecord;
  /** For pulls of cached content: how it was served. */
  cache?: CacheOutcome;
  /**
   * Externally visible base URL of the registry (`https://tender.example:5000`)
   * for `target.url`; without it, `http://<request.host>` is used, and no URL
   * at all when the host is unknown too.
   */
  baseUrl?: string;
}

/**
 * The event for an input, with the id and time the caller assigns (a random
 * UUID and the current time, in production). Delete events carry only the
 * repository, digest and tag, as Distribution's do.
 */
export function buildEvent(input: EventInput, assigned: { id: string; now: Date; source: SourceRecord }): RegistryEvent {
  const deleted = input.action === 'delete';
  const url = deleted ? undefined : targetUrl(input);
  // Key order as Distribution writes them (the descriptor's fields first).
  const target: EventTarget = {
    ...(!deleted && input.mediaType ? { mediaType: input.mediaType } : {}),
    ...(input.digest ? { digest: input.digest } : {}),
    ...(!deleted && input.size !== undefined ? { size: input.size, length: input.size } : {}),
    repository: input.repository,
    ...(input.fromRepository ? { fromRepository: input.fromRepository } : {}),
    ...(url ? { url } : {}),
    ...(input.tag ? { tag: input.tag } : {}),
    ...(input.references && input.references.length > 0 ? { references: input.references } : {}),
  };

  const request: RequestRecord = {
    id: input.request.id,
    ...(input.request.addr ? { addr: input.request.addr } : {}),
    ...(input.request.host ? { host: input.request.host } : {}),
    method: input.request.method,
    useragent: input.request.useragent ?? '',
  };

  const source: SourceRecord = {};
  if (assigned.source.addr) source.addr = assigned.source.addr;
  if (assigned.source.instanceID) source.instanceID = assigned.source.instanceID;

  const event: RegistryEvent = {
    id: assigned.id,
    timestamp: assigned.now.toISOString(),
    action: input.action,
    target,
    request,
    actor: input.actor?.name ? { name: input.actor.name } : {},
    source,
  };
  if (input.action === 'pull' && input.cache) event.tender = { cache: input.cache };
  return event;
}

/** The link to the content an event is about, or undefined when it cannot be known. */
function targetUrl(input: EventInput): string | undefined {
  const base = input.baseUrl ?? (input.request.host ? `http://${input.request.host}` : undefined);
  const reference = input.digest ?? input.tag;
  if (!base || !reference) return undefined;
  const kind = input.kind === 'manifest' ? 'manifests' : 'blobs';
  return `${base.replace(/\/+$/, '')}/v2/${input.repository}/${kind}/${reference}`;
}

/**
 * The JSON body of an envelope. v1 envelopes leave out the fields Distribution
 * added with v2 (`fromRepository`, `references`), so strict v1 receivers see
 * only what they know.
 */
export function encodeEnvelope(events: readonly RegistryEvent[], version: EnvelopeVersion): string {
  const out = version === 'v2' ? [...events] : events.map(stripV2Fields);
  return JSON.stringify({ events: out } satisfies Envelope);
}

function stripV2Fields(event: RegistryEvent): RegistryEvent {
  if (event.target.fromRepository === undefined && event.target.references === undefined) return event;
  const { fromRepository: _from, references: _refs, ...target } = event.target;
  return { ...event, target };
}
