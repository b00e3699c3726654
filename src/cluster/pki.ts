/**
 * The cluster's own certificate authority, with openssl (Debian's, installed
 * by scripts/setup.sh): EC P-256 keys, a self-signed root "swarm-ca", and
 * node certificates with CN = node ID, OU = swarm-manager|swarm-worker,
 * O = cluster ID, usable as TLS server, client and etcd peer certificate
 * (SAN = the node's advertise address and 127.0.0.1).
 *
 * A joining node makes its key and a CSR itself; the key never leaves it.
 * The manager signs the CSR with a subject it chooses (the joiner's CSR
 * subject is ignored).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, X509Certificate } from 'node:crypto';
import type { NodeRole } from './membership.js';

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 20_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`openssl ${args[0]}: ${String(stderr).trim() || err.message}`));
      else resolve();
    });
  });
}

async function inTemp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'cove-pki-'));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export interface KeyPair {
  key: string;
  cert: string;
}

/** A new root CA (20 years, as swarmkit's). */
export function createCA(): Promise<KeyPair> {
  return inTemp(async (d) => {
    await openssl(['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '7300', '-subj', '/CN=swarm-ca',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], d);
    return { key: readFileSync(join(d, 'ca.key'), 'utf8'), cert: readFileSync(join(d, 'ca.crt'), 'utf8') };
  });
}

/** A new private key and a CSR for it (run by the node that will own the key). */
export function createKeyAndCsr(): Promise<{ key: string; csr: string }> {
  return inTemp(async (d) => {
    await openssl(['req', ...EC, '-keyout', 'n.key', '-out', 'n.csr', '-subj', '/CN=pending'], d);
    return { key: readFileSync(join(d, 'n.key'), 'utf8'), csr: readFileSync(join(d, 'n.csr'), 'utf8') };
  });
}

export function ouOf(role: NodeRole): string {
  return role === 'manager' ? 'swarm-manager' : 'swarm-worker';
}

/** Signs a CSR as the node certificate of `nodeId` (90 days, as swarmkit's default). */
export function signNodeCert(ca: KeyPair, csr: string, subject: { nodeId: string; role: NodeRole; clusterId: string; addr: string }): Promise<string> {
  if (!/^[a-z0-9]{25}$/.test(subject.nodeId) || !/^[a-z0-9]{25}$/.test(subject.clusterId)) throw new Error('bad certificate subject');
  if (!/^[0-9.]+$/.test(subject.addr)) throw new Error(`bad node address ${subject.addr}`);
  return inTemp(async (d) => {
    writeFileSync(join(d, 'ca.key'), ca.key, { mode: 0o600 });
    writeFileSync(join(d, 'ca.crt'), ca.cert);
    writeFileSync(join(d, 'n.csr'), csr);
    writeFileSync(join(d, 'ext'), [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      `subjectAltName=IP:${subject.addr},IP:127.0.0.1,DNS:${subject.nodeId}`,
    ].join('\n') + '\n');
    await openssl(['x509', '-req', '-in', 'n.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '90',
      '-subj', `/O=${subject.clusterId}/OU=${ouOf(subject.role)}/CN=${subject.nodeId}`, '-extfile', 'ext', '-out', 'n.crt'], d);
    return readFileSync(join(d, 'n.crt'), 'utf8');
  });
}

/** Docker's CA digest in join tokens: sha256 of the CA certificate (DER), base 36, 50 digits. */
export function caDigest(caPem: string): string {
  const der = new X509Certificate(caPem).raw;
  const hex = createHash('sha256').update(der).digest('hex');
  return BigInt('0x' + hex).toString(36).padStart(50, '0');
}

/** The certificate's subject fields, for checks and `node inspect`. */
export function certSubject(pem: string): { cn: string; ou: string; o: string } {
  const s = new X509Certificate(pem).subject; // "O=...\nOU=...\nCN=..."
  const get = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(s)?.[1] ?? '';
  return { cn: get('CN'), ou: get('OU'), o: get('O') };
}

/** swarm's TLSInfo: the trust root and the issuer's subject and public key (DER, base64). */
export function tlsInfo(caPem: string): { TrustRoot: string; CertIssuerSubject: string; CertIssuerPublicKey: string } {
  const c = new X509Certificate(caPem);
  const der = c.raw;
  // The subject is the second field of TBSCertificate after version/serial/sig/issuer/validity;
  // reading DER by hand is not worth it: the issuer of the root is its own subject.
  return {
    TrustRoot: caPem,
    CertIssuerSubject: subjectDer(der).toString('base64'),
    CertIssuerPublicKey: c.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
  };
}

/** The subject Name of a certificate, as DER (walks TBSCertificate's fields). */
function subjectDer(cert: Buffer): Buffer {
  const read = (b: Buffer, at: number): { start: number; end: number; tag: number } => {
    const tag = b[at]!;
    let len = b[at + 1]!;
    let off = at + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + b[off + i]!;
      off += n;
    }
    return { start: at, end: off + len, tag };
  };
  const outer = read(cert, 0);
  const tbsHdr = read(cert, outer.start + (cert[1]! & 0x80 ? 2 + (cert[1]! & 0x7f) : 2));
  let at = tbsHdr.start + (cert[tbsHdr.start + 1]! & 0x80 ? 2 + (cert[tbsHdr.start + 1]! & 0x7f) : 2);
  const fields: Array<{ start: number; end: number; tag: number }> = [];
  while (at < tbsHdr.end && fields.length < 6) {
    const f = read(cert, at);
    fields.push(f);
    at = f.end;
  }
  // [0] version (optional, tag 0xa0), serial, signature alg, issuer, validity, subject
  const i = fields[0]?.tag === 0xa0 ? 5 : 4;
  const f = fields[i]!;
  return cert.subarray(f.start, f.end);
}
