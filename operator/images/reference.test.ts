// Table tests for image reference parsing: the normalisations the container tooling applies
// (docker.io, library/, latest) and the references it refuses.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatReference, InvalidImageReferenceError, parseImageReference, pinnedReference, type ImageReference } from './reference.ts';

const sha = `sha256:${'a'.repeat(64)}`;
const ref = (registry: string, repository: string, tag: string | undefined, digest?: string): ImageReference =>
  ({ registry, repository, tag, digest });

describe('parseImageReference', () => {
  const cases: Array<[input: string, expected: ImageReference]> = [
    ['busybox', ref('docker.io', 'library/busybox', 'latest')],
    ['busybox:1.36', ref('docker.io', 'library/busybox', '1.36')],
    ['docker.io/busybox', ref('docker.io', 'library/busybox', 'latest')],
    ['index.docker.io/busybox:1', ref('docker.io', 'library/busybox', '1')],
    ['docker.io/library/busybox:1', ref('docker.io', 'library/busybox', '1')],
    ['team/train:2.0', ref('docker.io', 'team/train', '2.0')],
    ['team/sub/train', ref('docker.io', 'team/sub/train', 'latest')],
    ['registry.example.com/team/train:1.4', ref('registry.example.com', 'team/train', '1.4')],
    ['registry.example.com/train', ref('registry.example.com', 'train', 'latest')],
    ['127.0.0.1:5000/ferry/test-step:1.0', ref('127.0.0.1:5000', 'ferry/test-step', '1.0')],
    ['localhost/train', ref('localhost', 'train', 'latest')],
    ['localhost:5000/train:v1', ref('localhost:5000', 'train', 'v1')],
    ['myhost:5000/train', ref('myhost:5000', 'train', 'latest')],
    ['[::1]:5000/train:x', ref('[::1]:5000', 'train', 'x')],
    ['Registry/train', ref('Registry', 'train', 'latest')], // upper case can only be a host
    // Without a '/', "localhost:5000" is image localhost with tag 5000, as in `docker pull`.
    ['localhost:5000', ref('docker.io', 'library/localhost', '5000')],
    [`busybox@${sha}`, ref('docker.io', 'library/busybox', undefined, sha)],
    [`registry.example.com/team/train@${sha}`, ref('registry.example.com', 'team/train', undefined, sha)],
    [`registry.example.com/team/train:1.4@${sha}`, ref('registry.example.com', 'team/train', '1.4', sha)],
    [`127.0.0.1:5000/a/b:c@${sha}`, ref('127.0.0.1:5000', 'a/b', 'c', sha)],
    [`x@sha512:${'b'.repeat(128)}`, ref('docker.io', 'library/x', undefined, `sha512:${'b'.repeat(128)}`)],
    ['ns/a_b.c-d__e---f:T_a.g-1', ref('docker.io', 'ns/a_b.c-d__e---f', 'T_a.g-1')],
    // A '.' in the first component makes it a host, even where a repository was meant.
    ['a.b/c', ref('a.b', 'c', 'latest')],
  ];
  for (const [input, expected] of cases) {
    it(`parses ${input}`, () => assert.deepEqual(parseImageReference(input), expected));
  }

  const invalid: Array<[input: string, reason: RegExp]> = [
    ['', /empty/],
    ['busy box', /whitespace/],
    ['BusyBox', /lowercase/],
    ['registry.example.com/Team/train', /lowercase/],
    ['registry.example.com/', /repository name is empty/],
    [':tag', /repository name is empty/],
    ['a//b', /not a valid repository name/],
    ['a/-b', /not a valid repository name/],
    ['train:', /not a valid tag/],
    ['train:-x', /not a valid tag/],
    [`train:${'t'.repeat(129)}`, /not a valid tag/],
    ['train@', /not a valid digest/],
    ['train@sha256:abc', /not a valid digest/],
    [`train@sha256:${'A'.repeat(64)}`, /64 lowercase hexadecimal/],
    [`train@sha256:${'a'.repeat(63)}`, /64 lowercase hexadecimal/],
    [`train@md5:${'a'.repeat(32)}`, /not supported/],
    ['-bad.host/train', /not a valid registry host/],
    ['a'.repeat(64), /image ID/],
    [`registry.example.com/${'a'.repeat(250)}`, /longer than 255/],
  ];
  for (const [input, reason] of invalid) {
    it(`refuses ${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input)}`, () => {
      assert.throws(() => parseImageReference(input), (err: unknown) => {
        assert.ok(err instanceof InvalidImageReferenceError);
        assert.match(err.message, reason);
        assert.equal(err.reference, input);
        return true;
      });
    });
  }
});

describe('formatting', () => {
  it('qualifies a familiar name fully', () => {
    assert.equal(formatReference(parseImageReference('busybox')), 'docker.io/library/busybox:latest');
  });
  it('keeps tag and digest together', () => {
    assert.equal(formatReference(parseImageReference(`r.io/a:1@${sha}`)), `r.io/a:1@${sha}`);
  });
  it('pins by digest alone, dropping the tag', () => {
    assert.equal(pinnedReference(parseImageReference('127.0.0.1:5000/ferry/test-step:1.0'), sha), `127.0.0.1:5000/ferry/test-step@${sha}`);
    assert.equal(pinnedReference(parseImageReference('busybox:1'), sha), `docker.io/library/busybox@${sha}`);
  });
});
