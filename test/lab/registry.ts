/**
 * A registry for image tests: Debian's docker-registry (distribution 2.x)
 * inside a lab namespace (the stand-in internet by default), with a config
 * file written here: storage under the lab dir, listening on the lab
 * address, optionally TLS (a CA made with openssl) and htpasswd auth.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './lab.js';

export interface RegistryOptions {
  /** Network namespace name to run in. */
  netns: string;
  ip: string;
  port: number;
  /** Directory for config, storage, certificates (under the lab dir). */
  dir: string;
  tls?: boolean;
  user?: { name: string; password: string };
  /** Token authentication (a LabTokenServer): the registry answers `WWW-Authenticate: Bearer realm=...`. */
  token?: { realm: string; service: string; issuer: string; certFile: string };
  /** Log each request (to count blob fetches). */
  accessLog?: boolean;
}

async function must(cmd: string, args: string[]): Promise<void> {
  const r = await run(cmd, args, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
}

export class LabRegistry {
  private proc: ChildProcess | undefined;
  log = '';

  private constructor(readonly opts: RegistryOptions) {}

  get host(): string {
    return `${this.opts.ip}:${this.opts.port}`;
  }

  get url(): string {
    return `${this.opts.tls ? 'https' : 'http'}://${this.host}`;
  }

  /** `<dir>/certs.d`, to pass as coved --registry-certs-dir (holds `<host>/ca.crt` with TLS). */
  get certsDir(): string {
    return join(this.opts.dir, 'certs.d');
  }

  get caFile(): string {
    return join(this.opts.dir, 'ca.crt');
  }

  static async start(opts: RegistryOptions): Promise<LabRegistry> {
    const r = new LabRegistry(opts);
    try {
      await r.setup();
    } catch (e) {
      await r.stop();
      throw e;
    }
    return r;
  }

  private async setup(): Promise<void> {
    const { dir, ip, port } = this.opts;
    mkdirSync(join(dir, 'data'), { recursive: true });
    mkdirSync(this.certsDir, { recursive: true });
    const lines = [
      'version: 0.1',
      'log:',
      '  level: info',
      '  accesslog:',
      `    disabled: ${this.opts.accessLog ? 'false' : 'true'}`,
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: ${ip}:${port}`,
    ];
    if (this.opts.tls) {
      const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
      await must('openssl', [
        'req',
        '-x509',
        ...ec,
        '-keyout',
        join(dir, 'ca.key'),
        '-out',
        this.caFile,
        '-days',
        '2',
        '-subj',
        '/CN=cove-lab-ca',
      ]);
      await must('openssl', [
        'req',
        ...ec,
        '-keyout',
        join(dir, 'server.key'),
        '-out',
        join(dir, 'server.csr'),
        '-subj',
        `/CN=${ip}`,
      ]);
      writeFileSync(join(dir, 'san.ext'), `subjectAltName=IP:${ip}\n`);
      await must('openssl', [
        'x509',
        '-req',
        '-in',
        join(dir, 'server.csr'),
        '-CA',
        this.caFile,
        '-CAkey',
        join(dir, 'ca.key'),
        '-CAcreateserial',
        '-out',
        join(dir, 'server.crt'),
        '-days',
        '2',
        '-extfile',
        join(dir, 'san.ext'),
      ]);
      mkdirSync(join(this.certsDir, this.host), { recursive: true });
      await must('cp', [this.caFile, join(this.certsDir, this.host, 'ca.crt')]);
      lines.push('  tls:', `    certificate: ${join(dir, 'server.crt')}`, `    key: ${join(dir, 'server.key')}`);
    }
    if (this.opts.user) {
      const r = await run('htpasswd', ['-Bbn', this.opts.user.name, this.opts.user.password]);
      if (r.code !== 0) throw new Error(`htpasswd: ${r.stderr}`);
      writeFileSync(join(dir, 'htpasswd'), r.stdout);
      lines.push('auth:', '  htpasswd:', '    realm: cove-lab', `    path: ${join(dir, 'htpasswd')}`);
    }
    if (this.opts.token) {
      const t = this.opts.token;
      lines.push(
        'auth:',
        '  token:',
        `    realm: ${t.realm}`,
        `    service: ${t.service}`,
        `    issuer: ${t.issuer}`,
        `    rootcertbundle: ${t.certFile}`,
      );
    }
    writeFileSync(join(dir, 'config.yml'), lines.join('\n') + '\n');
    this.proc = spawn(
      'nsenter',
      [`--net=/run/netns/${this.opts.netns}`, 'docker-registry', 'serve', join(dir, 'config.yml')],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const ready = new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer): void => {
        this.log += d.toString();
        if (/listening on/.test(this.log)) resolve();
      };
      this.proc!.stdout!.on('data', onData);
      this.proc!.stderr!.on('data', onData);
      this.proc!.on('exit', (code) => reject(new Error(`docker-registry exited (${code}): ${this.log}`)));
      setTimeout(() => reject(new Error(`docker-registry did not start: ${this.log}`)), 15_000).unref();
    });
    await ready;
  }

  /** Stops the registry (by its PID) and removes its files. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null && p.pid) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (p.exitCode === null) p.kill('SIGKILL');
    }
    this.proc = undefined;
  }

  /** Path of a blob's bytes in the registry's filesystem storage (to corrupt it in fault tests). */
  blobFile(digest: string): string {
    const hex = digest.replace(/^sha256:/, '');
    return join(this.opts.dir, 'data', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
  }

  removeFiles(): void {
    rmSync(this.opts.dir, { recursive: true, force: true });
  }
}
