// Builds the CustomResourceDefinitions of the three Ferry kinds from their schemas.
// scripts/generate-crds.ts writes them to crds/; a test fails when that folder is stale.
import { GROUP, VERSION } from './common.ts';
import { ModelVersionSpecSchema, ModelVersionStatusSchema } from './model-version.ts';
import { PipelineRunSpecSchema, PipelineRunStatusSchema } from './pipeline-run.ts';
import { PipelineSpecSchema, PipelineStatusSchema } from './pipeline.ts';
import type { TSchema } from './schema-kit.ts';

interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'date' | 'number' | 'boolean';
  jsonPath: string;
  description?: string;
  priority?: number;
}

interface KindDefinition {
  kind: string;
  plural: string;
  shortNames: string[];
  description: string;
  spec: TSchema;
  status: TSchema;
  columns: PrinterColumn[];
}

const condition = (type: string, field: 'status' | 'reason' | 'message') =>
  `.status.conditions[?(@.type=="${type}")].${field}`;

const age: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };

export const KINDS: KindDefinition[] = [
  {
    kind: 'Pipeline',
    plural: 'pipelines',
    shortNames: ['fpl'],
    description: 'A reusable DAG of containerised steps with typed parameters and artifacts.',
    spec: PipelineSpecSchema,
    status: PipelineStatusSchema,
    columns: [
      { name: 'Ready', type: 'string', jsonPath: condition('Ready', 'status') },
      { name: 'Steps', type: 'integer', jsonPath: '.status.stepCount' },
      age,
      { name: 'Reason', type: 'string', jsonPath: condition('Ready', 'reason'), priority: 1 },
      { name: 'Message', type: 'string', jsonPath: condition('Ready', 'message'), priority: 1 },
    ],
  },
  {
    kind: 'PipelineRun',
    plural: 'pipelineruns',
    shortNames: ['fpr', 'plr'],
    description: 'One execution of a Pipeline with parameter values.',
    spec: PipelineRunSpecSchema,
    status: PipelineRunStatusSchema,
    columns: [
      { name: 'Pipeline', type: 'string', jsonPath: '.spec.pipelineRef.name' },
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
      { name: 'Progress', type: 'string', jsonPath: '.status.progress' },
      age,
      { name: 'Started', type: 'date', jsonPath: '.status.startedAt', priority: 1 },
      { name: 'Configuration', type: 'string', jsonPath: '.status.configuration.digest', priority: 1 },
      { name: 'Finished', type: 'date', jsonPath: '.status.finishedAt', priority: 1 },
      { name: 'Reason', type: 'string', jsonPath: condition('Succeeded', 'reason'), priority: 1 },
      { name: 'Message', type: 'string', jsonPath: condition('Succeeded', 'message'), priority: 1 },
    ],
  },
  {
    kind: 'ModelVersion',
    plural: 'modelversions',
    shortNames: ['mv'],
    description: 'One immutable registered model version with a promotable stage.',
    spec: ModelVersionSpecSchema,
    status: ModelVersionStatusSchema,
    columns: [
      { name: 'Model', type: 'string', jsonPath: '.spec.modelName' },
      { name: 'Version', type: 'integer', jsonPath: '.spec.version' },
      { name: 'Stage', type: 'string', jsonPath: '.spec.stage' },
      { name: 'Aliases', type: 'string', jsonPath: '.spec.aliases', priority: 1 },
      { name: 'Run', type: 'string', jsonPath: '.spec.source.run', priority: 1 },
      age,
    ],
  },
];

/** TypeBox marks schemas with symbol keys; a JSON round trip leaves the plain OpenAPI object. */
const plain = (schema: TSchema): unknown => JSON.parse(JSON.stringify(schema));

export function buildCrd(definition: KindDefinition): Record<string, unknown> {
  const singular = definition.kind.toLowerCase();
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${definition.plural}.${GROUP}`,
      labels: { 'app.kubernetes.io/name': 'ferry', 'app.kubernetes.io/part-of': 'ferry' },
      // Deleting a CRD deletes every object of its kind: every run, model and pipeline of every
      // team. Neither `helm uninstall` nor deleting an Argo CD Application may do that.
      annotations: { 'helm.sh/resource-policy': 'keep', 'argocd.argoproj.io/sync-options': 'Delete=false' },
    },
    spec: {
      group: GROUP,
      names: {
        kind: definition.kind,
        listKind: `${definition.kind}List`,
        plural: definition.plural,
        singular,
        shortNames: definition.shortNames,
        categories: ['ferry'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: definition.columns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: definition.description,
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: plain(definition.spec),
                status: plain(definition.status),
              },
            },
          },
        },
      ],
    },
  };
}
