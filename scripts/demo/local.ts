// Everything the demo and the end-to-end tests need on the local cluster, made or reused:
// the cluster itself (a running one is reused), the Ferry and example images in its registry,
// PostgreSQL for the metadata store, and Ferry installed with its chart. Images and
// PostgreSQL are prepared side by side.
import { ensureCluster, type LocalCluster } from '../../test/cluster/cluster.ts';
import { ensureExampleImage } from '../../test/cluster/example-image.ts';
import { layoutOf, type Layout } from '../../test/cluster/layout.ts';
import { ensureClusterPostgres } from '../../test/cluster/postgres.ts';
import { buildAndPushFerryImage, type PushedImage } from './ferry-image.ts';
import { installFerry } from './install.ts';

export interface LocalSetup {
  cluster: LocalCluster;
  /** Whether the cluster was already running. */
  reused: boolean;
  layout: Layout;
  ferryImage: PushedImage;
  exampleImage: string;
}

export interface LocalSetupOptions {
  namespace: string;
  release: string;
  /** Defaults to the cluster CLI's work dir, so `npm run cluster -- status|down` see the same cluster. */
  workDir?: string;
  log: (line: string) => void;
  /** Called as each phase begins. */
  phase?: (what: 'cluster' | 'images' | 'install', detail?: string) => void;
}

export async function setUpLocal(options: LocalSetupOptions): Promise<LocalSetup> {
  const { log } = options;
  options.phase?.('cluster');
  const { cluster, reused } = await ensureCluster({ ...(options.workDir ? { workDir: options.workDir } : {}), log });
  options.phase?.('images', `${reused ? 'reused the running cluster' : 'started'}: API server ${cluster.server}, registry ${cluster.registry}`);
  const layout = layoutOf(cluster.workDir);
  const [ferryImage, exampleImage, postgres] = await Promise.all([
    buildAndPushFerryImage(cluster.registry, log),
    ensureExampleImage(cluster.registry, log),
    ensureClusterPostgres(layout, log),
  ]);
  options.phase?.('install', `example image ${exampleImage}`);
  await installFerry({
    target: cluster, namespace: options.namespace, release: options.release, image: ferryImage,
    insecureRegistries: [cluster.registry], databaseUrl: postgres.podUrl, artifactsHostPath: layout.artifacts, log,
  });
  return { cluster, reused, layout, ferryImage, exampleImage };
}
