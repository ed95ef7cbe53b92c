// The pure parts of the example image: its tag from Debian's scikit-learn version, the content
// digest that decides whether a pushed tag is current, and that the iris manifests name the
// repository and version this module pushes. No root, no network.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EXAMPLE_IMAGE_REPOSITORY, EXAMPLE_IMAGE_VERSION, contentDigest, exampleImageTag } from './example-image.ts';

describe('exampleImageTag', () => {
  // [Debian version of python3-sklearn, tag]
  const cases: Array<[string, string]> = [
    ['1.2.1+dfsg-1', `${EXAMPLE_IMAGE_VERSION}-sklearn1.2.1`],
    ['1.4.2+dfsg-8', `${EXAMPLE_IMAGE_VERSION}-sklearn1.4.2`],
    ['1:1.5.0-1', `${EXAMPLE_IMAGE_VERSION}-sklearn1.5.0`],
    ['1.6.0~rc1-1', `${EXAMPLE_IMAGE_VERSION}-sklearn1.6.0`],
    ['1.3', `${EXAMPLE_IMAGE_VERSION}-sklearn1.3`],
  ];
  for (const [debian, tag] of cases) it(`${debian} → ${tag}`, () => assert.equal(exampleImageTag(debian), tag));
  for (const bad of ['', 'dfsg', '+1'])
    it(`refuses ${JSON.stringify(bad)}`, () => assert.throws(() => exampleImageTag(bad), /cannot make an image tag/));
});

describe('contentDigest', () => {
  const rootfs = { key: 'abc', packages: { 'python3-sklearn': '1.2.1+dfsg-1', python3: '3.11.2-1+b1' } };
  const scripts = [{ name: 'train.py', bytes: Buffer.from('print(1)\n') }];
  const base = contentDigest(rootfs, scripts);

  it('is a sha256 digest, the same for the same content', () => {
    assert.match(base, /^sha256:[a-f0-9]{64}$/);
    assert.equal(contentDigest({ key: 'abc', packages: { python3: '3.11.2-1+b1', 'python3-sklearn': '1.2.1+dfsg-1' } }, scripts), base, 'package order does not matter');
  });
  // [what changed, rootfs, scripts]
  const changes: Array<[string, typeof rootfs, typeof scripts]> = [
    ['a script', rootfs, [{ name: 'train.py', bytes: Buffer.from('print(2)\n') }]],
    ['a script name', rootfs, [{ name: 'fit.py', bytes: Buffer.from('print(1)\n') }]],
    ['another script', rootfs, [...scripts, { name: 'predict.py', bytes: Buffer.from('') }]],
    ['a package version', { ...rootfs, packages: { ...rootfs.packages, python3: '3.11.2-1+b2' } }, scripts],
    ['the rootfs recipe', { ...rootfs, key: 'abd' }, scripts],
  ];
  for (const [what, r, s] of changes) it(`changes with ${what}`, () => assert.notEqual(contentDigest(r, s), base));
});

describe('the iris manifests', () => {
  it('name the example image at the version this module pushes', async () => {
    const dir = fileURLToPath(new URL('../../manifests/examples/iris/', import.meta.url));
    const images = new Set<string>();
    for (const file of (await readdir(dir)).filter((f) => f.endsWith('.yaml'))) {
      for (const match of (await readFile(join(dir, file), 'utf8')).matchAll(/^\s*image:\s*(\S+)\s*$/gm)) images.add(match[1]!);
    }
    assert.ok(images.size > 0);
    for (const image of images) assert.match(image, new RegExp(`^10\\.244\\.0\\.1:5000/${EXAMPLE_IMAGE_REPOSITORY}:${EXAMPLE_IMAGE_VERSION.replaceAll('.', '\\.')}-sklearn[0-9.]+$`));
  });
});
