// The local cluster's keys and certificates, made fresh at every start with openssl: a CA
// (trusted by kubeconfig, Pods through kube-root-ca.crt, and the kubelet for client certs),
// the API server's serving certificate, its client certificate towards the kubelet, and the
// service-account signing key pair shared by the API server and kube-controller-manager.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../harness/api-server.ts';
import type { Layout } from './layout.ts';
import { network } from './layout.ts';

export interface Pki {
  caCert: string;
  caKey: string;
  caPem: string;
  apiserverCert: string;
  apiserverKey: string;
  kubeletClientCert: string;
  kubeletClientKey: string;
  saKey: string;
  saPub: string;
  token: string;
}

const days = '3650';

export async function createPki(layout: Layout): Promise<Pki> {
  const dir = layout.pki;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = (name: string): string => join(dir, name);

  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', path('ca.key'), '-out', path('ca.crt'), '-days', days, '-subj', '/CN=ferry-local-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature']);

  const sans = [
    `IP:${network.gateway}`, `IP:${network.kubernetesServiceIp}`, 'IP:127.0.0.1', 'DNS:localhost',
    'DNS:kubernetes', 'DNS:kubernetes.default', 'DNS:kubernetes.default.svc', 'DNS:kubernetes.default.svc.cluster.local',
  ].join(',');
  await issue(dir, 'apiserver', '/CN=kube-apiserver', [`subjectAltName=${sans}`, 'extendedKeyUsage=serverAuth']);
  // system:masters: the kubelet's webhook authorizer then allows logs, exec and port-forward.
  await issue(dir, 'apiserver-kubelet-client', '/O=system:masters/CN=kube-apiserver-kubelet-client', ['extendedKeyUsage=clientAuth']);

  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  await writeFile(path('sa.key'), privateKey.export({ type: 'pkcs1', format: 'pem' }), { mode: 0o600 });
  await writeFile(path('sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));

  // One static admin token for every component and for the user: a dev cluster (see ADR 0006).
  const token = randomBytes(24).toString('hex');
  await writeFile(layout.tokenFile, `${token},ferry-admin,ferry-admin,"system:masters"\n`, { mode: 0o600 });

  return {
    caCert: path('ca.crt'),
    caKey: path('ca.key'),
    caPem: await readFile(path('ca.crt'), 'utf8'),
    apiserverCert: path('apiserver.crt'),
    apiserverKey: path('apiserver.key'),
    kubeletClientCert: path('apiserver-kubelet-client.crt'),
    kubeletClientKey: path('apiserver-kubelet-client.key'),
    saKey: path('sa.key'),
    saPub: path('sa.pub'),
    token,
  };
}

async function issue(dir: string, name: string, subject: string, extensions: string[]): Promise<void> {
  const path = (file: string): string => join(dir, file);
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', path(`${name}.key`), '-out', path(`${name}.csr`), '-subj', subject]);
  await writeFile(path(`${name}.ext`), [
    'basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', ...extensions,
  ].join('\n') + '\n');
  await openssl(['x509', '-req', '-in', path(`${name}.csr`), '-CA', path('ca.crt'), '-CAkey', path('ca.key'),
    '-CAcreateserial', '-days', days, '-sha256', '-extfile', path(`${name}.ext`), '-out', path(`${name}.crt`)]);
}

async function openssl(args: string[]): Promise<void> {
  const result = await run('openssl', args);
  if (result.code !== 0) throw new Error(`openssl ${args.join(' ')} failed (exit ${result.code}):\n${result.stderr.trim()}`);
}
