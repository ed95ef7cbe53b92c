// The demo's look at the iris endpoint: wait until a version answers, ask it through the API
// server's proxy to the Service (so it works on any cluster, with no port-forward), and promote
// another version by hand, as a person would.
import type { Pipeline } from '../../operator/api/v1alpha1/pipeline.ts';
import type { ServingStatus } from '../../operator/api/v1alpha1/serving.ts';
import type { KubeClient } from '../../operator/kube/client.ts';
import { PIPELINES } from '../../operator/kube/resources.ts';
import { kubectlOk, type Target } from './install.ts';

export interface Answer {
  model: { name: string; version: number; digest: string };
  predictions: Array<{ species: string; probabilities: Record<string, number> }>;
}

/** Waits until `modelVersion` (or any version) answers at the Pipeline's endpoint. */
export async function waitForLive(client: KubeClient, namespace: string, pipeline: string, modelVersion: string | undefined, timeoutMs: number): Promise<ServingStatus> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const p = await client.get<Pipeline>(PIPELINES, namespace, pipeline);
    const serving = p.status?.serving;
    const condition = p.status?.conditions?.find((c) => c.type === 'Serving');
    if (serving?.live && condition?.reason === 'Live' && (modelVersion === undefined || serving.live.modelVersion === modelVersion)) return serving;
    last = condition ? `${condition.reason}: ${condition.message}` : 'no Serving condition yet';
    if (Date.now() > deadline) throw new Error(`the endpoint of ${pipeline} did not serve ${modelVersion ?? 'a version'} within ${timeoutMs / 1000} s (${last})`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** POST /predict through the API server's service proxy. */
export async function ask(client: KubeClient, namespace: string, serving: ServingStatus, instances: Array<Record<string, number>>): Promise<Answer> {
  const port = Number(new URL(serving.url).port);
  return client.request<Answer>('POST', `/api/v1/namespaces/${encodeURIComponent(namespace)}/services/http:${serving.service}:${port}/proxy/predict`, { instances });
}

/** Sets a version's stage by hand; the promotion guard wants the person's name on the change. */
export async function setStage(target: Target, namespace: string, modelVersion: string, stage: string): Promise<void> {
  const me = (await kubectlOk(target, ['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'])).trim();
  await kubectlOk(target, ['-n', namespace, 'annotate', '--overwrite', 'modelversion', modelVersion, `ferry.dev/stage-changed-by=${me}`]);
  await kubectlOk(target, ['-n', namespace, 'patch', 'modelversion', modelVersion, '--type=merge', '-p', JSON.stringify({ spec: { stage } })]);
}
