/**
 * The cluster CA in process (src/cluster/pki.ts): the certificates it makes
 * are what openssl and TLS peers accept, with the subject the manager chose.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import {
  caDigest,
  certSubject,
  createCA,
  createKeyAndCsr,
  csrPublicKey,
  signNodeCert,
  tlsInfo,
} from '../../src/cluster/pki.js';

const NODE = 'abcdefghijklmnopqrstuvwxy';
const CLUSTER = '0123456789abcdefghijklmno';

test('a node certificate chains to the CA, names the node and its role, and carries its addresses', async () => {
  const ca = await createCA();
  const caCert = new X509Certificate(ca.cert);
  assert.equal(caCert.subject, 'CN=swarm-ca');
  assert.equal(caCert.ca, true);
  assert.ok(caCert.verify(caCert.publicKey), 'the root is self-signed');
  const { key, csr } = await createKeyAndCsr();
  const pem = await signNodeCert(ca, csr, { nodeId: NODE, role: 'worker', clusterId: CLUSTER, addr: '192.0.2.7' });
  const c = new X509Certificate(pem);
  assert.deepEqual(certSubject(pem), { cn: NODE, ou: 'swarm-worker', o: CLUSTER });
  assert.equal(c.ca, false);
  assert.ok(c.checkIssued(caCert) && c.verify(caCert.publicKey), 'signed by the CA');
  assert.ok(c.checkPrivateKey((await import('node:crypto')).createPrivateKey(key)), 'for the key the node made');
  assert.equal(c.subjectAltName, `IP Address:192.0.2.7, IP Address:127.0.0.1, DNS:${NODE}`);
  assert.deepEqual(c.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
  const days = (Date.parse(c.validTo) - Date.now()) / 86_400_000;
  assert.ok(days > 89 && days <= 90, `90 days (${days})`);
  assert.match(caDigest(ca.cert), /^[0-9a-z]{50}$/);
  assert.equal(Buffer.from(tlsInfo(ca.cert).CertIssuerPublicKey, 'base64').length > 60, true);

  // openssl agrees: a TLS server and client certificate of this CA.
  const dir = mkdtempSync(join(tmpdir(), 'cove-pki-test-'));
  try {
    writeFileSync(join(dir, 'ca.crt'), ca.cert);
    writeFileSync(join(dir, 'n.crt'), pem);
    for (const purpose of ['sslserver', 'sslclient']) {
      const out = execFileSync(
        'openssl',
        ['verify', '-purpose', purpose, '-CAfile', join(dir, 'ca.crt'), join(dir, 'n.crt')],
        { encoding: 'utf8' },
      );
      assert.match(out, /: OK/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mutual TLS works with two node certificates of the CA, and not with another CA', async (t) => {
  const ca = await createCA();
  const mk = async (nodeId: string) => {
    const { key, csr } = await createKeyAndCsr();
    return {
      key,
      cert: await signNodeCert(ca, csr, { nodeId, role: 'manager', clusterId: CLUSTER, addr: '127.0.0.1' }),
    };
  };
  const server = await mk(NODE);
  const client = await mk('zyxwvutsrqponmlkjihgfedcb');
  const srv = tls.createServer({ ...server, ca: ca.cert, requestCert: true, rejectUnauthorized: true }, (s) => {
    s.end(String((s.getPeerCertificate().subject as { CN?: string }).CN));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => srv.close());
  const port = (srv.address() as { port: number }).port;
  const dial = (opts: tls.ConnectionOptions) =>
    new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ...opts }, () => undefined);
      let got = '';
      s.on('data', (d) => (got += d));
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
  assert.equal(await dial({ ...client, ca: ca.cert }), 'zyxwvutsrqponmlkjihgfedcb');
  const other = await createCA();
  await assert.rejects(dial({ ...client, ca: other.cert }), /self[- ]signed|unable to verify|certificate/i);
});

test('a CSR with a bad signature or garbage is refused', async () => {
  const ca = await createCA();
  const { csr } = await createKeyAndCsr();
  assert.ok(csrPublicKey(csr).length > 60);
  const der = Buffer.from(csr.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 3]! ^= 0x01; // inside the signature
  const bad = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  await assert.rejects(
    signNodeCert(ca, bad, { nodeId: NODE, role: 'worker', clusterId: CLUSTER, addr: '192.0.2.7' }),
    /invalid certificate request/,
  );
  await assert.rejects(
    signNodeCert(ca, 'hello', { nodeId: NODE, role: 'worker', clusterId: CLUSTER, addr: '192.0.2.7' }),
    /invalid certificate request/,
  );
  await assert.rejects(
    signNodeCert(ca, csr, { nodeId: 'x', role: 'worker', clusterId: CLUSTER, addr: '192.0.2.7' }),
    /bad certificate subject/,
  );
});
