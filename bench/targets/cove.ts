/**
 * Cove in lab namespace cvb-cove, started by the test lab harness (test/lab/lab.ts):
 * coved runs inside the lab netns with its state under /tmp/cove-lab/cvb-cove,
 * and a neighbour namespace stands in for the internet (the lab's address is
 * 10.99.0.1, where published ports are reached). Two targets: cove-api (the
 * Engine API on the unix socket, keep-alive client) and cove-cli (bin/cove, one
 * process per command), which separates the CLI's start-up from the engine.
 */
import { existsSync } from 'node:fs';
import type { Engine, MemorySample, Target } from './target.js';
import { DockerLikeTarget } from './docker-like.js';
import { EngineApi } from './engine-api.js';
import { COVE_BIN, COVED_BIN, LAB_IP, Lab, REPO } from '../../test/lab/lab.js';
import { commOf, ensureImages, pidsWithArg, rssKb } from '../exec.js';

const LAB_NAME = 'cvb-cove';

export class CoveEngine implements Engine {
  readonly name = 'cove';
  readonly labNetns = `/run/netns/${LAB_NAME}`;
  readonly hostAddress = LAB_IP;
  private lab: Lab | undefined;
  private api: EngineApi | undefined;

  async setup(): Promise<void> {
    if (!existsSync(COVED_BIN)) throw new Error(`cove unavailable: ${COVED_BIN} is missing`);
    if (!existsSync(`${REPO}/dist/src/daemon/main.js`))
      throw new Error('cove unavailable: dist/src/daemon/main.js is missing (run npx tsc -p .)');
    const images = await ensureImages(REPO);
    await Lab.existing(LAB_NAME).destroy(); // a lab left by an interrupted run
    // Debug logging would be part of every timed call; the bench runs the engine at warn.
    process.env.COVE_TEST_LOG_LEVEL ??= 'warn';
    this.lab = await Lab.create(LAB_NAME);
    try {
      await this.lab.startDaemon({ extraArgs: ['--default-address-pool', 'base=10.128.0.0/9,size=24'] });
    } catch (e) {
      throw new Error(
        `cove unavailable: coved did not start: ${(e as Error).message.split('\n').slice(0, 6).join(' | ')}`,
      );
    }
    this.api = new EngineApi(this.lab.socket);
    for (const f of [images.alpine, images.nginx]) {
      const r = await this.api
        .request('POST', '/images/load?quiet=1', undefined, { file: f })
        .catch((e: Error) => ({ status: 0, text: e.message }));
      if (r.status !== 200)
        throw new Error(`cove unavailable: image load of ${f} failed: ${r.status} ${r.text.slice(0, 300)}`);
    }
  }

  targets(): { ready: Target[]; unavailable: Record<string, string> } {
    const api = this.api!;
    const lab = this.lab!;
    const ready: Target[] = [new DockerLikeTarget('cove-api', { api })];
    const unavailable: Record<string, string> = {};
    if (existsSync(COVE_BIN))
      ready.push(new DockerLikeTarget('cove-cli', { cli: (a) => lab.cove(a, { timeoutMs: 120_000 }), api }));
    else unavailable['cove-cli'] = `cove unavailable: ${COVE_BIN} is missing`;
    return { ready, unavailable };
  }

  engineApi(): EngineApi | undefined {
    return this.api;
  }

  async describe(): Promise<string> {
    const v = await this.api?.request('GET', '/version').catch(() => undefined);
    const body = v?.body as { Version?: string; ApiVersion?: string } | undefined;
    return `Cove ${body?.Version ?? '?'} (API ${body?.ApiVersion ?? '?'}) on Node ${process.version}; coved in netns ${LAB_NAME}`;
  }

  async memory(): Promise<MemorySample | undefined> {
    const lab = this.lab;
    const pid = lab?.daemonPid;
    if (!lab || !pid) return undefined;
    // Helpers coved started that carry its state dir (conmon is counted as a monitor).
    const helpers = pidsWithArg(lab.dir).filter((p) => p !== pid && !['conmon', 'nsenter'].includes(commOf(p)));
    const conmons = pidsWithArg(lab.dir).filter((p) => commOf(p) === 'conmon');
    const parts: Record<string, number> = { coved: rssKb(pid) };
    for (const h of helpers) parts[commOf(h)] = (parts[commOf(h)] ?? 0) + rssKb(h);
    return {
      engineKb: Object.values(parts).reduce((s, v) => s + v, 0),
      engineParts: parts,
      monitorsKb: conmons.reduce((s, p) => s + rssKb(p), 0),
      monitors: conmons.length,
    };
  }

  async teardown(): Promise<void> {
    this.api?.close();
    this.api = undefined;
    if (this.lab) await this.lab.destroy();
    else await Lab.existing(LAB_NAME).destroy();
    this.lab = undefined;
  }
}
