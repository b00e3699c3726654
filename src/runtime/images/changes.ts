/**
 * `docker import --change` instructions applied to an image config: the
 * Dockerfile subset Docker accepts there (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
 * ONBUILD, USER, VOLUME, WORKDIR, STOPSIGNAL).
 */
import { InvalidParameter } from '../../common/errors.js';
import type { DockerContainerConfig } from '../types.js';

/** An image's run config: a container config (Docker's ContainerConfig) plus the image-only keys. */
export type ImageRunConfig = DockerContainerConfig & {
  Volumes?: Record<string, object> | null;
  OnBuild?: string[] | null;
};

/** JSON array form, or the shell form wrapped in /bin/sh -c. */
function execOrShell(arg: string): string[] {
  const t = arg.trim();
  if (t.startsWith('[')) {
    try {
      const v = JSON.parse(t) as unknown;
      if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
    } catch {
      // not JSON: Docker treats it as the shell form
    }
  }
  return ['/bin/sh', '-c', t];
}

/** Splits `k=v k2="v 2"` pairs, or the legacy `k v` single pair. */
function keyValues(arg: string, instr: string): Array<[string, string]> {
  const t = arg.trim();
  const firstSpace = t.search(/\s/);
  const firstEq = t.indexOf('=');
  if (firstEq < 0 || (firstSpace >= 0 && firstSpace < firstEq)) {
    if (firstSpace < 0) throw new InvalidParameter(`${instr} requires at least one argument`);
    return [[t.slice(0, firstSpace), t.slice(firstSpace).trim()]];
  }
  const out: Array<[string, string]> = [];
  const re = /([^\s=]+)=("((?:[^"\\]|\\.)*)"|'([^']*)'|(\S*))/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(t))) {
    const v = m[3] !== undefined ? m[3].replace(/\\(.)/g, '$1') : m[4] !== undefined ? m[4] : (m[5] ?? '');
    out.push([m[1]!, v]);
  }
  if (!out.length) throw new InvalidParameter(`${instr} requires at least one argument`);
  return out;
}

export function applyChanges(cfg: ImageRunConfig, changes: string[]): ImageRunConfig {
  const c: ImageRunConfig = { ...cfg };
  for (const raw of changes) {
    const line = raw.trim();
    if (!line) continue;
    const sp = line.search(/\s/);
    const instr = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
    const arg = sp < 0 ? '' : line.slice(sp + 1).trim();
    switch (instr) {
      case 'CMD':
        c.Cmd = execOrShell(arg);
        break;
      case 'ENTRYPOINT':
        c.Entrypoint = arg ? execOrShell(arg) : null;
        break;
      case 'ENV': {
        const env = [...(c.Env ?? [])];
        for (const [k, v] of keyValues(arg, 'ENV')) {
          const i = env.findIndex((e) => e.split('=')[0] === k);
          if (i >= 0) env[i] = `${k}=${v}`;
          else env.push(`${k}=${v}`);
        }
        c.Env = env;
        break;
      }
      case 'LABEL': {
        const labels = { ...(c.Labels ?? {}) };
        for (const [k, v] of keyValues(arg, 'LABEL')) labels[k] = v;
        c.Labels = labels;
        break;
      }
      case 'EXPOSE': {
        const ports = { ...(c.ExposedPorts ?? {}) };
        for (const p of arg.split(/\s+/).filter(Boolean)) {
          const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(p);
          if (!m) throw new InvalidParameter(`invalid containerPort: ${p}`);
          const lo = Number(m[1]);
          const hi = m[2] ? Number(m[2]) : lo;
          if (lo < 1 || hi > 65535 || hi < lo) throw new InvalidParameter(`invalid containerPort: ${p}`);
          for (let port = lo; port <= hi; port++) ports[`${port}/${(m[3] ?? 'tcp').toLowerCase()}`] = {};
        }
        c.ExposedPorts = ports;
        break;
      }
      case 'USER':
        if (!arg) throw new InvalidParameter('USER requires exactly one argument');
        c.User = arg;
        break;
      case 'WORKDIR':
        if (!arg) throw new InvalidParameter('WORKDIR requires exactly one argument');
        c.WorkingDir = arg.startsWith('/') ? arg : `${c.WorkingDir || '/'}/${arg}`.replace(/\/+/g, '/');
        break;
      case 'VOLUME': {
        const vols = { ...(c.Volumes ?? {}) };
        const list = arg.startsWith('[') ? (JSON.parse(arg) as string[]) : arg.split(/\s+/).filter(Boolean);
        for (const v of list) vols[v] = {};
        c.Volumes = vols;
        break;
      }
      case 'STOPSIGNAL':
        if (!arg) throw new InvalidParameter('STOPSIGNAL requires exactly one argument');
        c.StopSignal = arg;
        break;
      case 'ONBUILD':
        c.OnBuild = [...(c.OnBuild ?? []), arg];
        break;
      default:
        throw new InvalidParameter(`${instr} is not a valid change command`);
    }
  }
  return c;
}
