/**
 * Exec sessions (docker exec): records in the store, processes under conmon, results across daemon restarts.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Conflict, CoveError, InvalidParameter, NotFound } from '../../../common/errors.js';
import { newId } from '../../../common/ids.js';
import type { DockerExecCreate, IoSession } from '../../types.js';
import { AttachSession, parseDetachKeys } from '../attach.js';
import { conmonExec, resizeTty } from '../conmon.js';
import { capabilities, processSpec, resolveUser } from '../oci.js';
import { rootfsPaths } from '../rootfs.js';
import type { ExecRecord } from '../exec-records.js';
import { ContainerCore } from './core.js';

export class ExecOps {
  constructor(private readonly core: ContainerCore) {}

  async execCreate(idOrName: string, body: DockerExecCreate): Promise<{ Id: string }> {
    const r = await this.core.get(idOrName);
    if (!r.State.Running) throw new Conflict(`Container ${r.Id} is not running`);
    if (!body || !Array.isArray(body.Cmd) || !body.Cmd.length) throw new InvalidParameter('No exec command specified');
    if (body.DetachKeys) parseDetachKeys(body.DetachKeys);
    const id = newId();
    await this.core.execs.trim(r.Id);
    await this.core.execs.save({
      id,
      containerId: r.Id,
      config: structuredClone(body),
      running: false,
      exitCode: null,
      pid: 0,
      started: false,
      dir: join(this.core.bundleDir(r.Id), 'exec', id.slice(0, 16)),
    });
    this.core.publish(r, 'exec_create', { execID: id, exec_command: body.Cmd.join(' ') });
    return { Id: id };
  }

  getExec(execId: string): ExecRecord {
    const ex = this.core.execs.get(execId);
    if (!ex) throw new NotFound(`No such exec instance: ${execId}`);
    return ex;
  }

  async execStart(execId: string, opts: { Detach?: boolean; Tty?: boolean }): Promise<IoSession | undefined> {
    const ex = this.getExec(execId);
    if (ex.started) throw new Conflict(`Error: Exec command ${execId} has already run`);
    const r = await this.core.get(ex.containerId);
    if (!r.State.Running) throw new Conflict(`Container ${r.Id} is not running`);
    ex.started = true;
    const c = ex.config;
    const tty = opts.Tty ?? !!c.Tty;
    const detach = !!opts.Detach;
    const rootfs = rootfsPaths(this.core.containerDir(r.Id)).merged;
    const user = resolveUser(
      rootfs,
      c.User || r.Config.User,
      (r.HostConfig.GroupAdd as string[] | null | undefined) ?? [],
    );
    const env = new Map<string, string>();
    for (const e of [...(r.Config.Env ?? []), ...(c.Env ?? [])]) env.set(e.split('=')[0]!, e);
    if (!env.has('HOSTNAME')) env.set('HOSTNAME', `HOSTNAME=${r.Config.Hostname || r.Id.slice(0, 12)}`);
    if (tty && !env.has('TERM')) env.set('TERM', 'TERM=xterm');
    if (!env.has('HOME')) env.set('HOME', `HOME=${user.home}`);
    const caps = capabilities(
      !!(c.Privileged || r.HostConfig.Privileged),
      r.HostConfig.CapAdd ?? [],
      (r.HostConfig.CapDrop as string[] | undefined) ?? [],
    );
    const spec = processSpec({
      args: c.Cmd,
      env: [...env.values()],
      cwd: c.WorkingDir || r.Config.WorkingDir || '/',
      tty,
      user,
      caps,
    });
    if (tty && c.ConsoleSize?.length === 2) spec.consoleSize = { height: c.ConsoleSize[0], width: c.ConsoleSize[1] };
    await mkdir(ex.dir, { recursive: true, mode: 0o700 });
    const specPath = join(ex.dir, 'process.json');
    await writeFile(specPath, JSON.stringify(spec));
    const cuuid = ex.id.slice(0, 32);
    const wantStdin = !!c.AttachStdin && !detach;
    const session = detach
      ? undefined
      : new AttachSession({
          tty,
          stdin: wantStdin,
          stdout: c.AttachStdout !== false,
          stderr: c.AttachStderr !== false,
          detachKeys: c.DetachKeys,
          closeStdinOnEof: true,
          resize: (rows, cols) => this.execResize(ex.id, rows, cols),
          exitGate: () => exitKnown,
        });
    let markExit!: () => void;
    const exitKnown = new Promise<void>((res) => {
      markExit = res;
    });
    this.core.publish(r, 'exec_start', { execID: ex.id, exec_command: c.Cmd.join(' ') });
    ex.running = true;
    try {
      const handle = await conmonExec(
        this.core.paths,
        {
          containerId: r.Id,
          execId: cuuid,
          dir: ex.dir,
          processSpecPath: specPath,
          tty,
          stdin: wantStdin,
          attach: !detach,
          pidFile: join(ex.dir, 'pid'),
          conmonPidFile: join(ex.dir, 'conmon.pid'),
          exitDir: ex.dir,
        },
        session ? () => session.connect(this.core.attachPath(cuuid)) : undefined,
      );
      ex.pid = handle.pid;
      const conmonPid = Number.parseInt(await readFile(join(ex.dir, 'conmon.pid'), 'utf8').catch(() => ''), 10);
      if (conmonPid > 0) ex.conmonPid = conmonPid;
      await this.core.execs.save(ex);
      handle.exit
        .then(async (m) => {
          ex.running = false;
          if (m.data < 0) {
            const msg = m.message ?? 'exec failed';
            ex.exitCode = /not found|no such file/i.test(msg) ? 127 : 126;
            session?.stderr?.write(`OCI runtime exec failed: ${msg}\n`);
            if (session?.tty) session.stdout?.write(`OCI runtime exec failed: ${msg}\n`);
          } else {
            ex.exitCode = m.data;
          }
          delete ex.conmonPid;
          await this.core.execs.save(ex);
          this.core.publish(r, 'exec_die', { execID: ex.id, exitCode: String(ex.exitCode) });
          markExit();
          // The socket may already be gone; end the session now that the code is known.
          setTimeout(() => session?.endExited(), 50).unref();
          void rm(ex.dir, { recursive: true, force: true }).catch(() => undefined);
          void rm(join(this.core.paths.socketDir, cuuid), { force: true }).catch(() => undefined);
        })
        .catch(() => undefined);
      return session;
    } catch (e) {
      ex.running = false;
      ex.exitCode = 126;
      await this.core.execs.save(ex);
      markExit();
      session?.close();
      await rm(ex.dir, { recursive: true, force: true });
      throw new CoveError(`OCI runtime exec failed: ${(e as Error).message}`, 500);
    }
  }

  async execInspect(execId: string): Promise<Record<string, unknown>> {
    const ex = this.getExec(execId);
    const c = ex.config;
    return {
      ID: ex.id,
      Running: ex.running,
      ExitCode: ex.exitCode,
      ProcessConfig: {
        tty: !!c.Tty,
        entrypoint: c.Cmd[0],
        arguments: c.Cmd.slice(1),
        privileged: !!c.Privileged,
        user: c.User ?? '',
      },
      OpenStdin: !!c.AttachStdin,
      OpenStderr: !!c.AttachStderr,
      OpenStdout: !!c.AttachStdout,
      CanRemove: false,
      ContainerID: ex.containerId,
      DetachKeys: c.DetachKeys ?? '',
      Pid: ex.pid,
    };
  }

  async execResize(execId: string, rows: number, cols: number): Promise<void> {
    const ex = this.getExec(execId);
    if (!ex.running) throw new Conflict(`Exec ${execId} is not running`);
    if (!ex.config.Tty) return;
    await resizeTty(ex.dir, rows, cols);
  }
}
