// The key that signs artifact URLs, kept in a Secret of the operator's own namespace: the
// operator makes it on first start (32 random bytes) and reads it afterwards; the artifact
// server mounts the same Secret. Nothing in a tenant namespace ever holds it.
import { randomBytes } from 'node:crypto';
import type { KubeClient } from '../kube/client.ts';
import { isAlreadyExists } from '../kube/errors.ts';
import { SECRETS } from '../kube/resources.ts';
import { SIGNING_KEY_MIN_BYTES } from './signed-urls.ts';

interface SecretObject {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  type?: string;
  data?: Record<string, string>;
}

/** The signing key in `namespace/name`, created if the Secret does not exist yet (replicas race: AlreadyExists reads the winner's). */
export async function ensureSigningKey(client: KubeClient, namespace: string, name: string): Promise<Buffer> {
  const existing = await client.getOrUndefined<SecretObject>(SECRETS, namespace, name);
  if (existing) return keyOf(existing, namespace, name);
  const secret: SecretObject = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace, labels: { 'app.kubernetes.io/managed-by': 'ferry', 'app.kubernetes.io/component': 'artifact-server' } },
    type: 'Opaque',
    // Hex text, so the file the artifact server mounts reads the same as this Secret does.
    data: { key: Buffer.from(randomBytes(SIGNING_KEY_MIN_BYTES).toString('hex')).toString('base64') },
  };
  try {
    return keyOf(await client.create(SECRETS, namespace, secret as never), namespace, name);
  } catch (err) {
    if (!isAlreadyExists(err)) throw new Error(`creating the artifact signing key Secret ${namespace}/${name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    const winner = await client.getOrUndefined<SecretObject>(SECRETS, namespace, name);
    if (!winner) throw new Error(`the artifact signing key Secret ${namespace}/${name} was created and deleted at once`);
    return keyOf(winner, namespace, name);
  }
}

function keyOf(secret: SecretObject, namespace: string, name: string): Buffer {
  const key = Buffer.from(Buffer.from(secret.data?.key ?? '', 'base64').toString('utf8').trim());
  if (key.length < SIGNING_KEY_MIN_BYTES) throw new Error(`Secret ${namespace}/${name} has no signing key of at least ${SIGNING_KEY_MIN_BYTES} bytes under "key"`);
  return key;
}
