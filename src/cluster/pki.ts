/**
 * The cluster's own certificate authority, in process (node:crypto keys and
 * signatures, DER from ./der.ts): EC P-256 keys, a self-signed root
 * "swarm-ca", and node certificates with CN = node ID, OU =
 * swarm-manager|swarm-worker, O = cluster ID, usable as TLS server, client
 * and etcd peer certificate (SAN = the node's advertise address, 127.0.0.1
 * and the node ID). A certificate costs well under a millisecond; spawning
 * openssl for it cost 100-300 ms of a join on this loaded machine.
 *
 * A joining node makes its key and a CSR itself; the key never leaves it.
 * The manager checks the CSR's signature (the joiner holds the key) and
 * signs its public key with a subject it chooses (the CSR's subject is
 * ignored).
 */
import {
  createHash,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  X509Certificate,
  createPrivateKey,
  type KeyObject,
} from 'node:crypto';
import type { NodeRole } from './membership.js';
import {
  bits,
  bool,
  children,
  explicit,
  fromPem,
  int,
  ipv4Bytes,
  name,
  namedBits,
  octets,
  oid,
  read,
  seq,
  time,
  tlv,
  toPem,
  uint,
} from './der.js';

const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));
const DAY = 86_400_000;

export interface KeyPair {
  key: string;
  cert: string;
}

function newKey(): { privateKey: KeyObject; spki: Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { privateKey, spki: publicKey.export({ type: 'spki', format: 'der' }) };
}

/** The key identifier of RFC 5280 4.2.1.2 (1): SHA-1 of the subjectPublicKey bits. */
function keyId(spki: Buffer): Buffer {
  const pub = children(read(spki))[1]!;
  return createHash('sha1').update(pub.body.subarray(1)).digest();
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
}

/** Builds and signs a certificate (v3, ECDSA with SHA-256). */
function certificate(o: {
  issuer: Buffer;
  subject: Buffer;
  spki: Buffer;
  days: number;
  extensions: Buffer[];
  signer: KeyObject;
}): string {
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const now = Date.now();
  const tbs = seq(
    explicit(0, int(2)),
    uint(serial),
    ECDSA_SHA256,
    o.issuer,
    // A minute back: another host's clock (or a rounding to the second) must not make it "not yet valid".
    seq(time(new Date(now - 60_000)), time(new Date(now + o.days * DAY))),
    o.subject,
    o.spki,
    explicit(3, seq(...o.extensions)),
  );
  const sig = sign('sha256', tbs, { key: o.signer, dsaEncoding: 'der' });
  return toPem('CERTIFICATE', seq(tbs, ECDSA_SHA256, bits(sig)));
}

/** A new root CA (20 years, as swarmkit's). */
export async function createCA(): Promise<KeyPair> {
  const k = newKey();
  const subject = name([['CN', 'swarm-ca']]);
  const cert = certificate({
    issuer: subject,
    subject,
    spki: k.spki,
    days: 7300,
    signer: k.privateKey,
    extensions: [
      extension('2.5.29.19', true, seq(bool(true))), // basicConstraints CA:TRUE
      extension('2.5.29.15', true, namedBits([5, 6])), // keyCertSign, cRLSign
      extension('2.5.29.14', false, octets(keyId(k.spki))), // subjectKeyIdentifier
    ],
  });
  return { key: k.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert };
}

/** A new private key and a CSR for it (run by the node that will own the key). */
export async function createKeyAndCsr(): Promise<{ key: string; csr: string }> {
  const k = newKey();
  // CertificationRequestInfo: version 0, subject, key, no attributes ([0] empty).
  const info = seq(int(0), name([['CN', 'pending']]), k.spki, tlv(0xa0));
  const sig = sign('sha256', info, { key: k.privateKey, dsaEncoding: 'der' });
  return {
    key: k.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    csr: toPem('CERTIFICATE REQUEST', seq(info, ECDSA_SHA256, bits(sig))),
  };
}

/** The public key (SPKI DER) of a CSR whose signature checks out; throws otherwise. */
export function csrPublicKey(csrPem: string): Buffer {
  let spki: Buffer;
  try {
    const [info, alg, sig] = children(read(fromPem('CERTIFICATE REQUEST', csrPem)));
    if (!info || !alg || !sig || sig.tag !== 0x03 || sig.body[0] !== 0) throw new Error('shape');
    if (!alg.raw.equals(ECDSA_SHA256)) throw new Error('algorithm');
    spki = children(info)[2]!.raw;
    const pub = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    if (pub.asymmetricKeyType !== 'ec' || pub.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
      throw new Error('key type');
    if (!verify('sha256', info.raw, { key: pub, dsaEncoding: 'der' }, sig.body.subarray(1)))
      throw new Error('signature');
  } catch (e) {
    throw new Error(`invalid certificate request (${(e as Error).message})`);
  }
  return spki;
}

export function ouOf(role: NodeRole): string {
  return role === 'manager' ? 'swarm-manager' : 'swarm-worker';
}

/** Signs a CSR as the node certificate of `nodeId` (90 days, as swarmkit's default). */
export async function signNodeCert(
  ca: KeyPair,
  csr: string,
  subject: { nodeId: string; role: NodeRole; clusterId: string; addr: string },
): Promise<string> {
  if (!/^[a-z0-9]{25}$/.test(subject.nodeId) || !/^[a-z0-9]{25}$/.test(subject.clusterId))
    throw new Error('bad certificate subject');
  if (!/^[0-9.]+$/.test(subject.addr)) throw new Error(`bad node address ${subject.addr}`);
  const spki = csrPublicKey(csr);
  const caCert = new X509Certificate(ca.cert);
  const caSpki = caCert.publicKey.export({ type: 'spki', format: 'der' });
  return certificate({
    issuer: subjectDer(caCert.raw),
    subject: name([
      ['O', subject.clusterId],
      ['OU', ouOf(subject.role)],
      ['CN', subject.nodeId],
    ]),
    spki,
    days: 90,
    signer: createPrivateKey(ca.key),
    extensions: [
      extension('2.5.29.19', true, seq()), // basicConstraints CA:FALSE (the default, so empty)
      extension('2.5.29.15', true, namedBits([0, 2])), // digitalSignature, keyEncipherment
      extension('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))), // serverAuth, clientAuth
      extension(
        '2.5.29.17',
        false,
        seq(
          tlv(0x87, ipv4Bytes(subject.addr)),
          tlv(0x87, ipv4Bytes('127.0.0.1')),
          tlv(0x82, Buffer.from(subject.nodeId)),
        ),
      ),
      extension('2.5.29.35', false, seq(tlv(0x80, keyId(caSpki)))), // authorityKeyIdentifier
    ],
  });
}

/** Docker's CA digest in join tokens: sha256 of the CA certificate (DER), base 36, 50 digits. */
export function caDigest(caPem: string): string {
  return derDigest(new X509Certificate(caPem).raw);
}

/** The same digest of a certificate already in DER. */
export function derDigest(der: Buffer): string {
  const hex = createHash('sha256').update(der).digest('hex');
  return BigInt('0x' + hex)
    .toString(36)
    .padStart(50, '0');
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
  return {
    TrustRoot: caPem,
    CertIssuerSubject: subjectDer(c.raw).toString('base64'),
    CertIssuerPublicKey: c.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
  };
}

/** The subject Name of a certificate, as DER: TBSCertificate's [0] version (optional), serial, signature, issuer, validity, subject. */
function subjectDer(cert: Buffer): Buffer {
  const fields = children(children(read(cert))[0]!);
  return fields[fields[0]?.tag === 0xa0 ? 5 : 4]!.raw;
}
