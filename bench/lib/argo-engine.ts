// Argo Workflows as a benchmark engine: the real workflow-controller (built from its Go module,
// see test/tools/argo/) with its default settings, a WorkflowTemplate with a DAG per shape and
// a Workflow per run. Why it completes under KWOK, and the few settings changed, are in
// docs/performance.md ("Argo Workflows under KWOK").
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { KubeObject } from '../../operator/api/v1alpha1/common.ts';
import { isAlreadyExists } from '../../operator/kube/errors.ts';
import type { Pod } from '../../operator/kube/pod.ts';
import type { Resource } from '../../operator/kube/resources.ts';
import type { ApiServer } from '../../test/harness/api-server.ts';
import { TEST_IMAGE } from '../../test/builders.ts';
import { installCrds } from '../../test/harness/crds.ts';
import { waitFor } from './cluster.ts';
import { itemList, type Controller, type Engine, type EngineContext, type Shape } from './engine.ts';
import { trackProcess } from './kwok.ts';
import { ensureArgo } from './tools.ts';
import { quiet } from './workloads.ts';

const GROUP = 'argoproj.io';
export const WORKFLOWS: Resource = { group: GROUP, version: 'v1alpha1', plural: 'workflows', kind: 'Workflow', namespaced: true };
const WORKFLOW_TEMPLATES: Resource = { group: GROUP, version: 'v1alpha1', plural: 'workflowtemplates', kind: 'WorkflowTemplate', namespaced: true };
const CONFIG_MAPS: Resource = { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true };
const LEASES: Resource = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease', namespaced: true };

const LABEL_WORKFLOW = 'workflows.argoproj.io/workflow';
const ANNOTATION_NODE_NAME = 'workflows.argoproj.io/node-name';
/** Argo's pprof/healthz server listens on :6060 on every interface, hard-coded; see guardPort. */
const ARGO_DEBUG_PORT = 6060;
const IDENTITY = 'ferry-bench-argo';

export async function argoEngine(ctx: EngineContext, server: ApiServer, log: (line: string) => void, extraArgs: string[] = [], extraEnv: Record<string, string> = {}): Promise<Engine> {
  const { client, namespace } = ctx;
  log('Argo Workflows: building workflow-controller if needed (a large Go build, cached) ...');
  const argo = await ensureArgo();
  await installCrds(server, argo.crdDir);
  // The controller's settings: its defaults, except what must differ here (docs/performance.md).
  await client.create(CONFIG_MAPS, namespace, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'workflow-controller-configmap', namespace },
    data: {
      // Its metrics server binds every interface (no host setting) and panics if it cannot: off.
      // The API server's own counters are what the benchmark compares anyway.
      metricsConfig: 'enabled: false\n',
      telemetryConfig: 'enabled: false\n',
    },
  });

  return {
    name: 'argo',
    version: argo.version,
    runResource: WORKFLOWS,
    settings: {
      namespaces: `${namespace} (--namespaced --managed-namespace)`,
      metrics: 'metricsConfig/telemetryConfig enabled: false (its server binds all interfaces; the API server counts its requests)',
      pprof: `port ${ARGO_DEBUG_PORT} held on 127.0.0.1 by the bench, so its hard-coded :${ARGO_DEBUG_PORT} debug server cannot open on all interfaces`,
      ...(extraArgs.length ? { args: `${extraArgs.join(' ')} (set by --argo-args)` } : {}),
      ...Object.fromEntries(Object.entries(extraEnv).map(([k, v]) => [k, `${v} (set by --argo-env)`])),
    },

    async start(): Promise<Controller> {
      const guard = await guardPort(ARGO_DEBUG_PORT);
      const logPath = join(ctx.workDir, 'workflow-controller.log');
      const fd = openSync(logPath, 'a');
      const child = spawn(argo.controller, [
        `--kubeconfig=${ctx.kubeconfigPath}`,
        `--namespace=${namespace}`,
        '--namespaced',
        `--managed-namespace=${namespace}`,
        '--loglevel=info',
        ...extraArgs,
      ], {
        stdio: ['ignore', fd, fd],
        // A stable identity: a restarted controller takes its own Lease back at once instead of
        // waiting for it to expire (what a Deployment's replacement Pod would have to do).
        env: { ...process.env, ...extraEnv, LEADER_ELECTION_IDENTITY: IDENTITY },
      });
      closeSync(fd);
      const handle = trackProcess(child, 'workflow-controller', logPath);
      try {
        await waitFor(`Argo's controller to lead (see ${logPath})`, 120_000, async () => {
          const lease = await client.getOrUndefined<{ spec?: { holderIdentity?: string } }>(LEASES, namespace, 'workflow-controller');
          return lease?.spec?.holderIdentity === IDENTITY && child.exitCode === null;
        });
        // Argo logs nothing once its informers have synced: wait until its start-up work is done.
        await quiet(handle.pid);
      } catch (err) {
        await handle.stop();
        guard?.close();
        throw err;
      }
      return {
        pid: handle.pid,
        metrics: async () => undefined,
        async stop() {
          await handle.stop();
          guard?.close();
        },
      };
    },

    async define(shape: Shape): Promise<void> {
      const limit = shape.steps.find((s) => s.parallelism)?.parallelism;
      const retryStrategy = ctx.retries > 0 ? { retryStrategy: { limit: String(ctx.retries), retryPolicy: 'Always', backoff: { duration: '1s' } } } : {};
      const template = {
        apiVersion: `${GROUP}/v1alpha1`,
        kind: 'WorkflowTemplate',
        metadata: { name: shape.name, namespace },
        spec: {
          entrypoint: 'main',
          templates: [
            {
              name: 'main',
              // The shapes' only limit is a fan-out's (--foreach-parallelism): on the DAG template it
              // bounds the running tasks, withItems expansions included; the Workflow sets none.
              ...(limit ? { parallelism: limit } : {}),
              dag: {
                tasks: shape.steps.map((s) => ({
                  name: s.name,
                  ...(s.items === undefined
                    ? { template: 'step', arguments: { parameters: [{ name: 'step', value: s.name }] } }
                    // A fan-out: one node (and Pod) per item.
                    : {
                      template: 'item',
                      arguments: { parameters: [{ name: 'step', value: s.name }, { name: 'item', value: '{{item}}' }] },
                      withItems: itemList(s.items),
                    }),
                  ...(s.dependsOn.length > 0 ? { dependencies: s.dependsOn } : {}),
                })),
              },
            },
            {
              name: 'step',
              inputs: { parameters: [{ name: 'step' }] },
              container: { image: TEST_IMAGE, command: ['run', '{{inputs.parameters.step}}'] },
              ...retryStrategy,
            },
            {
              name: 'item',
              inputs: { parameters: [{ name: 'step' }, { name: 'item' }] },
              container: { image: TEST_IMAGE, command: ['run', '{{inputs.parameters.step}}', '{{inputs.parameters.item}}'] },
              ...retryStrategy,
            },
          ],
        },
      };
      try {
        await client.create(WORKFLOW_TEMPLATES, namespace, template);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
      }
    },

    async submit(shape: Shape, runName: string): Promise<void> {
      await client.create(WORKFLOWS, namespace, {
        apiVersion: `${GROUP}/v1alpha1`,
        kind: 'Workflow',
        metadata: { name: runName, namespace },
        spec: { workflowTemplateRef: { name: shape.name } },
      });
    },

    stepOf(pod: Pod) {
      const run = pod.metadata.labels?.[LABEL_WORKFLOW];
      const node = pod.metadata.annotations?.[ANNOTATION_NODE_NAME];
      if (!run || !node) return undefined;
      // "linear-3.s2", "linear-3.s2(1)" for a retry attempt, "foreach-200-0.each(7:7)" for item 7
      // of a withItems task (and "….each(7:7)(1)" for its retry).
      const step = node.slice(node.lastIndexOf('.') + 1).replace(/\(\d+\)$/, '').replace(/\(\d+:[^()]*\)$/, '');
      return { run, step };
    },

    outcomeOf(object: KubeObject) {
      const phase = (object as { status?: { phase?: string } }).status?.phase;
      if (phase === 'Succeeded') return 'Succeeded';
      if (phase === 'Failed' || phase === 'Error') return 'Failed';
      return undefined;
    },

    clientRequests: () => ({}),
    ownFigures: () => ({}),
  };
}

/**
 * Holds 127.0.0.1:<port> while Argo runs: Argo's hard-coded `:6060` listener (pprof, healthz)
 * then fails to bind, logs it and carries on, so nothing of the benchmark listens beyond
 * loopback. Undefined if something else holds the port already (Argo cannot bind it either).
 */
async function guardPort(port: number): Promise<Server | undefined> {
  const server = createServer((socket) => socket.destroy());
  return new Promise((resolve) => {
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
