/**
 * A token server for the lab registry (the distribution spec's token
 * authentication): `GET /token?service=&scope=&account=` with optional basic
 * auth answers `{token, access_token, expires_in, issued_at}`, a JWT signed
 * ES256 with a key whose self-signed certificate the registry trusts
 * (`auth.token.rootcertbundle`; the certificate rides in the `x5c` header).
 * Known users get every action they ask for (and the catalog); anonymous
 * clients get nothing (the registry then refuses them); a wrong password is
 * a 401. Every request is printed as one JSON line, so tests see the scopes.
 *
 * LabTokenServer.start() runs this file in a lab namespace (`--serve`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import { randomBytes, sign, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './lab.js';

export interface TokenServerOptions {
  netns: string;
  ip: string;
  port: number;
  dir: string;
  users: Record<string, string>;
  /** The registry's `auth.token.service` and `issuer`. */
  service: string;
  issuer: string;
}

interface ServeOptions extends Omit<TokenServerOptions, 'netns' | 'dir'> {
  keyFile: string;
  certFile: string;
}

export interface TokenRequest {
  account: string | null;
  scopes: string[];
  granted: Array<{ type: string; name: string; actions: string[] }>;
  status: number;
}

export class LabTokenServer {
  private proc: ChildProcess | undefined;
  readonly requests: TokenRequest[] = [];

  private constructor(readonly opts: TokenServerOptions) {}

  get realm(): string {
    return `http://${this.opts.ip}:${this.opts.port}/token`;
  }

  /** The certificate the registry trusts for tokens (`rootcertbundle`). */
  get certFile(): string {
    return join(this.opts.dir, 'token.crt');
  }

  static async start(opts: TokenServerOptions): Promise<LabTokenServer> {
    const s = new LabTokenServer(opts);
    mkdirSync(opts.dir, { recursive: true });
    const keyFile = join(opts.dir, 'token.key');
    const r = await run(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        keyFile,
        '-out',
        s.certFile,
        '-days',
        '2',
        '-subj',
        '/CN=cove-lab-token-signer',
      ],
      { timeoutMs: 30_000 },
    );
    if (r.code !== 0) throw new Error(`openssl: ${r.stderr}`);
    const serve: ServeOptions = {
      ip: opts.ip,
      port: opts.port,
      users: opts.users,
      service: opts.service,
      issuer: opts.issuer,
      keyFile,
      certFile: s.certFile,
    };
    s.proc = spawn(
      'nsenter',
      [
        `--net=/run/netns/${opts.netns}`,
        process.execPath,
        fileURLToPath(import.meta.url),
        '--serve',
        JSON.stringify(serve),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let buf = '';
    await new Promise<void>((resolve, reject) => {
      s.proc!.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line === 'listening') resolve();
          else if (line.startsWith('{')) s.requests.push(JSON.parse(line) as TokenRequest);
        }
      });
      s.proc!.once('exit', (c) => reject(new Error(`token server exited ${c}`)));
      setTimeout(() => reject(new Error('token server did not start')), 10_000).unref();
    });
    return s;
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (p?.pid && p.exitCode === null) {
      const gone = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await gone;
    }
    this.proc = undefined;
  }
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

function serve(o: ServeOptions): void {
  const key = readFileSync(o.keyFile);
  const x5c = [new X509Certificate(readFileSync(o.certFile)).raw.toString('base64')];
  createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const scopes = url.searchParams
      .getAll('scope')
      .flatMap((s) => s.split(' '))
      .filter(Boolean);
    let account: string | null = null;
    const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
    const answer = (status: number, body: unknown, granted: TokenRequest['granted'] = []): void => {
      process.stdout.write(JSON.stringify({ account, scopes, granted, status }) + '\n');
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname !== '/token' || url.searchParams.get('service') !== o.service)
      return answer(404, { errors: [{ code: 'NOT_FOUND' }] });
    if (basic) {
      const plain = Buffer.from(basic[1]!, 'base64').toString('utf8');
      const i = plain.indexOf(':');
      account = plain.slice(0, i);
      if (o.users[account] !== plain.slice(i + 1)) return answer(401, { details: 'incorrect username or password' });
    }
    // scope = type:name:actions, where name may hold a port (host:5000/repo).
    const granted =
      account === null
        ? []
        : scopes.map((s) => {
            const first = s.indexOf(':');
            const last = s.lastIndexOf(':');
            return { type: s.slice(0, first), name: s.slice(first + 1, last), actions: s.slice(last + 1).split(',') };
          });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'ES256', x5c };
    const claims = {
      iss: o.issuer,
      sub: account ?? '',
      aud: o.service,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(12).toString('hex'),
      access: granted,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    const token = `${input}.${b64url(sig)}`;
    answer(
      200,
      { token, access_token: token, expires_in: 300, issued_at: new Date(now * 1000).toISOString() },
      granted,
    );
  }).listen(o.port, o.ip, () => process.stdout.write('listening\n'));
}

if (process.argv[2] === '--serve') serve(JSON.parse(process.argv[3]!) as ServeOptions);
