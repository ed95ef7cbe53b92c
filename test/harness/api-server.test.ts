// Smoke test for the test harness itself: a real etcd + kube-apiserver start, serve the
// admin kubeconfig via kubectl, reject an unknown token, and stop cleanly.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { httpsGet, startApiServer, type ApiServer } from './api-server.ts';

let server: ApiServer | undefined;

before(async () => {
  server = await startApiServer({ log: (line) => console.error(line) });
}, { timeout: 600_000 }); // a cold cache builds the binaries first

after(async () => {
  await server?.stop();
});

test('kubectl with the admin kubeconfig sees the default namespace', async () => {
  assert.ok(server);
  const result = await server.kubectl(['get', 'namespace', 'default', '-o', 'name']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout.trim(), 'namespace/default');
});

test('a wrong bearer token is refused with 401', async () => {
  assert.ok(server);
  const response = await httpsGet(server.url, '/api/v1/namespaces', 'not-the-admin-token');
  assert.equal(response.status, 401, response.body);
});
