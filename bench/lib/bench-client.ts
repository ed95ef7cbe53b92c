// The bench's own API client: Ferry's KubeClient (same paths, errors and watches) with no
// client-side rate limit and auth taken once (the harness's kubeconfig has a static token), so
// the bench never throttles or loads what it measures.
import { HttpMethod, RequestContext } from '@kubernetes/client-node';
import { fetch, type Dispatcher } from 'undici';
import { KubeClient, loadKubeConfig } from '../../operator/kube/client.ts';
import { ApiError } from '../../operator/kube/errors.ts';

export class BenchKubeClient extends KubeClient {
  private auth: Promise<{ headers: Record<string, string>; dispatcher: Dispatcher | undefined }> | undefined;

  constructor(kubeconfigPath: string) {
    super(loadKubeConfig(kubeconfigPath), { qps: 1e6, burst: 1e6, fieldManager: 'ferry-bench' });
  }

  /** Auth headers and dispatcher, taken once (the harness's kubeconfig has a static token). */
  private authentication() {
    this.auth ??= (async () => {
      const cluster = this.config.getCurrentCluster();
      if (!cluster) throw new Error('kubeconfig has no current cluster');
      const context = new RequestContext(cluster.server, HttpMethod.GET);
      await this.config.applySecurityAuthentication(context);
      return { headers: context.getHeaders(), dispatcher: context.getDispatcher() as Dispatcher | undefined };
    })();
    return this.auth;
  }

  override async request<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const { headers, dispatcher } = await this.authentication();
    const response = await fetch(this.config.getCurrentCluster()!.server + path, {
      method,
      headers: { ...headers, Accept: 'application/json', ...(body === undefined ? {} : { 'Content-Type': contentType }) },
      ...(dispatcher ? { dispatcher } : {}),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (response.status >= 400) {
      const status = (parsed ?? {}) as { reason?: string; message?: string };
      throw new ApiError(method, path, response.status, status.reason ?? 'Unknown', status.message ?? text.slice(0, 500));
    }
    return parsed as T;
  }
}
