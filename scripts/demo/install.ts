// Installs Ferry into a cluster the way a user does: the CRDs with kubectl, then the chart with
// `helm upgrade --install` (idempotent, so a second demo run changes nothing that is the same).
// What the chart does not own is made first: the metadata store's DSN as a Secret (never on a
// command line or in a log) and, on the local cluster, the artifact volume as a hostPath
// PersistentVolume bound to its claim, since that cluster has no storage provisioner.
import { chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { KubectlResult } from '../../test/harness/api-server.ts';
import { CHART_DIR, ensureHelm, Helm } from '../../test/harness/helm.ts';
import type { PushedImage } from './ferry-image.ts';

/** A cluster to install into: the local one, or a kubeconfig context the user names. */
export interface Target {
  kubeconfigPath: string;
  context?: string;
  kubectl(args: string[], input?: string): Promise<KubectlResult>;
}

export interface InstallOptions {
  target: Target;
  namespace: string;
  release: string;
  image: PushedImage;
  /** Registries the operator resolves tags against over plain http (the local one). */
  insecureRegistries: string[];
  /** PostgreSQL DSN for the metadata store; without it Ferry records no lineage. */
  databaseUrl?: string;
  /** Local cluster: this host directory backs the file:// store. Else the chart's claim uses the default StorageClass. */
  artifactsHostPath?: string;
  log: (line: string) => void;
}

const root = join(import.meta.dirname, '..', '..');
/** The UID and GID the operator and step Pods run as (the chart's and pod-spec.ts's). */
const podUser = 65532;
const storePath = '/var/lib/ferry/artifacts';
const databaseSecret = 'ferry-demo-database';
const artifactsClaim = 'ferry-demo-artifacts';

export async function installFerry(options: InstallOptions): Promise<void> {
  const { target, namespace, log } = options;
  const started = Date.now();
  await kubectlOk(target, ['apply', '--server-side', '--force-conflicts', '-f', join(root, 'crds')]);
  await apply(target, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } });
  if (options.databaseUrl !== undefined) {
    await apply(target, {
      apiVersion: 'v1', kind: 'Secret', type: 'Opaque',
      metadata: { name: databaseSecret, namespace },
      stringData: { url: options.databaseUrl },
    });
  }
  if (options.artifactsHostPath !== undefined) await createHostPathClaim(target, namespace, options.artifactsHostPath);

  const values = {
    image: { repository: options.image.repository, tag: options.image.tag, digest: options.image.digest },
    operator: { insecureRegistries: options.insecureRegistries },
    artifacts: {
      store: `file://${storePath}`,
      persistence: options.artifactsHostPath !== undefined ? { existingClaim: artifactsClaim } : { enabled: true },
    },
    ...(options.databaseUrl !== undefined ? { database: { external: { secretName: databaseSecret, secretKey: 'url' } } } : {}),
  };
  const helm = new Helm(await ensureHelm());
  const args = ['upgrade', '--install', options.release, CHART_DIR, '--namespace', namespace, '--kubeconfig', target.kubeconfigPath,
    ...(target.context ? ['--kube-context', target.context] : []), '--wait', '--timeout', '5m'];
  const result = await helm.withValues(args, values);
  if (result.code !== 0) throw new Error(`helm upgrade --install ${options.release} failed (exit ${result.code}): ${result.stderr.trim()}`);
  const revision = /REVISION: (\d+)/.exec(result.stdout)?.[1] ?? '?';
  log(`helm upgrade --install ${options.release} -n ${namespace}: revision ${revision}, operator ready in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

/** `helm uninstall`, then the namespace (its runs, ModelVersions, Secret, claim). */
export async function uninstallFerry(target: Target, namespace: string, release: string): Promise<void> {
  const helm = new Helm(await ensureHelm());
  await helm.run(['uninstall', release, '--namespace', namespace, '--kubeconfig', target.kubeconfigPath, ...(target.context ? ['--kube-context', target.context] : []), '--ignore-not-found', '--wait']);
  await kubectlOk(target, ['delete', 'namespace', namespace, '--ignore-not-found', '--wait=true']);
}

/** A Retain hostPath volume pre-bound to the claim the chart mounts (existingClaim). */
async function createHostPathClaim(target: Target, namespace: string, hostPath: string): Promise<void> {
  // Made here, owned by the Pods' user: a hostPath the kubelet creates is root's, and fsGroup does not apply to hostPath.
  await mkdir(hostPath, { recursive: true, mode: 0o750 });
  await chown(hostPath, podUser, podUser);
  const volumeName = `${namespace}-${artifactsClaim}`;
  await apply(target, {
    apiVersion: 'v1', kind: 'PersistentVolume',
    metadata: { name: volumeName },
    spec: {
      capacity: { storage: '10Gi' }, accessModes: ['ReadWriteOnce'], persistentVolumeReclaimPolicy: 'Retain',
      storageClassName: '', hostPath: { path: hostPath, type: 'Directory' },
      claimRef: { namespace, name: artifactsClaim },
    },
  });
  await apply(target, {
    apiVersion: 'v1', kind: 'PersistentVolumeClaim',
    metadata: { name: artifactsClaim, namespace },
    spec: { accessModes: ['ReadWriteOnce'], storageClassName: '', volumeName, resources: { requests: { storage: '10Gi' } } },
  });
}

async function apply(target: Target, object: object): Promise<void> {
  await kubectlOk(target, ['apply', '--server-side', '--field-manager=ferry-demo', '-f', '-'], JSON.stringify(object));
}

export async function kubectlOk(target: Target, args: string[], input?: string): Promise<string> {
  const result = await target.kubectl(args, input);
  // The input may hold a Secret: the message names the command only.
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}
