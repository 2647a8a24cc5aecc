import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildEvent, encodeEnvelope, envelopeMediaType, type EventInput } from '../src/notify/event.ts';

const assigned = { id: '320678d8-ca14-430f-8bb6-4ca139cd83f7', now: new Date('2016-03-09T22:44:26.402Z'), source: { addr: 'xtal.local:5000', instanceID: 'a53db899' } };
const request = { id: '6df24a34', addr: '192.168.64.11:42961', host: '192.168.100.227:5000', method: 'GET', useragent: 'curl/7.38.0' };
const digest = 'sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf';

void test("a manifest pull has Distribution's fields, in its order, plus tender.cache", () => {
  const input: EventInput = {
    action: 'pull',
    kind: 'manifest',
    repository: 'hello-world',
    digest,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    size: 708,
    tag: 'latest',
    request,
    cache: 'revalidated',
  };
  const event = buildEvent(input, assigned);
  assert.deepEqual(event, {
    id: assigned.id,
    timestamp: '2016-03-09T22:44:26.402Z',
    action: 'pull',
    target: {
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      digest,
      size: 708,
      length: 708,
      repository: 'hello-world',
      url: `http://192.168.100.227:5000/v2/hello-world/manifests/${digest}`,
      tag: 'latest',
    },
    request,
    actor: {},
    source: { addr: 'xtal.local:5000', instanceID: 'a53db899' },
    tender: { cache: 'revalidated' },
  });
  assert.deepEqual(Object.keys(event.target), ['mediaType', 'digest', 'size', 'length', 'repository', 'url', 'tag']);
  assert.deepEqual(Object.keys(event.request), ['id', 'addr', 'host', 'method', 'useragent']);
});

void test('blob pushes link to the blob under baseUrl and name the actor; only pulls carry tender.cache', () => {
  const event = buildEvent(
    {
      action: 'push',
      kind: 'blob',
      repository: 'acme/app',
      digest,
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      size: 3,
      request: { id: 'r', method: 'PUT' },
      actor: { name: 'ci-bot' },
      cache: 'hit',
      baseUrl: 'https://tender.example:5000/',
    },
    assigned,
  );
  assert.equal(event.target.url, `https://tender.example:5000/v2/acme/app/blobs/${digest}`);
  assert.deepEqual(event.actor, { name: 'ci-bot' });
  assert.deepEqual(event.request, { id: 'r', method: 'PUT', useragent: '' }, 'id, method and useragent are always present');
  assert.equal(event.tender, undefined);
});

void test('delete events carry only repository, digest and tag', () => {
  const event = buildEvent(
    { action: 'delete', kind: 'manifest', repository: 'acme/app', digest, mediaType: 'x', size: 9, tag: 'v1', request },
    assigned,
  );
  assert.deepEqual(event.target, { digest, repository: 'acme/app', tag: 'v1' });
});

void test('v1 envelopes leave out the v2-only fields; v2 envelopes keep them', () => {
  const mount = buildEvent(
    {
      action: 'mount',
      kind: 'blob',
      repository: 'acme/app',
      fromRepository: 'hub/library/alpine',
      digest,
      size: 1,
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      references: [{ mediaType: 'm', digest, size: 1 }],
      request,
    },
    assigned,
  );
  const v1 = JSON.parse(encodeEnvelope([mount], 'v1')) as { events: Array<{ target: Record<string, unknown> }> };
  const v2 = JSON.parse(encodeEnvelope([mount], 'v2')) as { events: Array<{ target: Record<string, unknown> }> };
  assert.equal(v1.events[0]!.target['fromRepository'], undefined);
  assert.equal(v1.events[0]!.target['references'], undefined);
  assert.equal(v2.events[0]!.target['fromRepository'], 'hub/library/alpine');
  assert.equal((v2.events[0]!.target['references'] as unknown[]).length, 1);
  assert.equal(mount.target.fromRepository, 'hub/library/alpine', 'encoding does not change the event');
  assert.equal(envelopeMediaType('v1'), 'application/vnd.docker.distribution.events.v1+json');
  assert.equal(envelopeMediaType('v2'), 'application/vnd.docker.distribution.events.v2+json');
});

void test('without a base URL or host there is no url', () => {
  const event = buildEvent({ action: 'push', kind: 'blob', repository: 'a/b', digest, request: { id: 'r', method: 'PUT' } }, assigned);
  assert.equal(event.target.url, undefined);
});
