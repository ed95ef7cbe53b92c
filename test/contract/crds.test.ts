// Contract: the CRDs in crds/ are exactly what scripts/generate-crds.ts renders from the
// TypeBox schemas, and every CRD has what `kubectl` users and the API conventions expect.
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { load } from 'js-yaml';
import { renderCrds } from '../../scripts/generate-crds.ts';

const CRD_DIR = join(import.meta.dirname, '..', '..', 'crds');
const rendered = renderCrds();

interface Crd {
  spec: {
    names: { kind: string; shortNames?: string[]; categories?: string[] };
    versions: Array<{
      name: string;
      subresources?: { status?: object };
      additionalPrinterColumns?: Array<{ name: string; jsonPath: string; priority?: number }>;
      schema: { openAPIV3Schema: Schema };
    }>;
  };
}
type Schema = { [key: string]: unknown; properties?: Record<string, Schema>; items?: Schema; additionalProperties?: Schema | boolean };

/** Paths (a.b[].c) under `schema` that set x-kubernetes-preserve-unknown-fields. */
function preserveUnknownFieldPaths(schema: Schema, path: string): string[] {
  const found = schema['x-kubernetes-preserve-unknown-fields'] === true ? [path] : [];
  for (const [name, child] of Object.entries(schema.properties ?? {})) found.push(...preserveUnknownFieldPaths(child, `${path}.${name}`));
  if (schema.items) found.push(...preserveUnknownFieldPaths(schema.items, `${path}[]`));
  if (typeof schema.additionalProperties === 'object') found.push(...preserveUnknownFieldPaths(schema.additionalProperties, `${path}{}`));
  for (const key of ['anyOf', 'allOf', 'oneOf'] as const) {
    const list = schema[key];
    if (Array.isArray(list)) for (const s of list as Schema[]) found.push(...preserveUnknownFieldPaths(s, path));
  }
  return found;
}

describe('CRDs', () => {
  it('crds/ holds exactly the generated files (run npm run generate when this fails)', async () => {
    const onDisk = (await readdir(CRD_DIR)).filter((f) => f.endsWith('.yaml')).sort();
    assert.deepEqual(onDisk, [...rendered.keys()].sort());
    for (const [name, text] of rendered) {
      assert.equal(await readFile(join(CRD_DIR, name), 'utf8'), text, `${name} is out of date`);
    }
  });

  for (const [file, text] of rendered) {
    describe(file, () => {
      const crd = load(text) as Crd;
      const version = crd.spec.versions[0]!;

      it('has a status subresource', () => assert.deepEqual(version.subresources?.status, {}));

      it("is in the 'ferry' category and has short names", () => {
        assert.deepEqual(crd.spec.names.categories, ['ferry']);
        assert.ok((crd.spec.names.shortNames ?? []).length > 0);
      });

      it('has printer columns, with details at priority 1', () => {
        const columns = version.additionalPrinterColumns ?? [];
        assert.ok(columns.some((c) => c.name === 'Age' && c.jsonPath === '.metadata.creationTimestamp'));
        assert.ok(columns.some((c) => !c.priority && c.name !== 'Age'), 'a column shown by default besides Age');
        assert.ok(columns.some((c) => c.priority === 1), 'a detail column for -o wide');
      });

      it('keeps unknown fields only on parameter values and forEach items', () => {
        const root = version.schema.openAPIV3Schema;
        const spec = root.properties?.spec;
        assert.ok(spec, 'a spec schema');
        const allowed = new Set(['spec.parameters[].default', 'spec.parameters[].value', 'spec.schedules[].parameters[].value', 'spec.steps[].forEach.items[]', 'spec.finally[].forEach.items[]']);
        for (const path of preserveUnknownFieldPaths(spec, 'spec')) assert.ok(allowed.has(path), `${path} preserves unknown fields`);
        assert.deepEqual(preserveUnknownFieldPaths(root.properties?.status ?? {}, 'status'), [], 'status is fully typed');
      });
    });
  }

  it('the walk finds the parameter fields it allows (it would notice others)', () => {
    const paths = [...rendered.values()].flatMap((text) => {
      const crd = load(text) as Crd;
      return preserveUnknownFieldPaths(crd.spec.versions[0]!.schema.openAPIV3Schema.properties?.spec ?? {}, 'spec');
    });
    assert.deepEqual(paths.sort(), ['spec.finally[].forEach.items[]', 'spec.parameters[].default', 'spec.parameters[].value', 'spec.schedules[].parameters[].value', 'spec.steps[].forEach.items[]']);
  });
});
