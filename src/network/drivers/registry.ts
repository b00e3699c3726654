/**
 * How the controller finds a network driver by name. Built-in drivers live in
 * src/network/drivers/<name>/ and are loaded on demand; any other name is
 * looked up as a third-party plugin (Docker's remote network-driver protocol,
 * drivers/remote/, found in the configured plugin directories); a name that
 * is neither is Docker's `plugin "X" not found` (404).
 */
import { NotFound } from '../../common/errors.js';
import { DEFAULT_PLUGIN_DIRS, DEFAULT_PLUGIN_TIMEOUT_MS, findPlugin } from '../plugins.js';
import { activateRemoteDriver } from './remote/index.js';
import type { NetworkDriver } from '../driver.js';
import type { DaemonConfig } from '../../common/config.js';
import type { Logger } from '../../common/log.js';
import type { KernelOps } from '../../kernel/ops.js';
import type { Firewall } from '../firewall/index.js';

export interface DriverContext {
  config: DaemonConfig;
  log: Logger;
  /**
   * The kernel seam (src/kernel/ops.ts): every built-in driver and the remote
   * driver make links, addresses, routes, sysctls and namespaces only
   * through it. Absent: the real kernel (the daemon's shared `hostKernel()`;
   * the overlay driver keeps co-processes of its own); unit tests pass a
   * recording fake (test/unit/fakes/kernel-ops.ts).
   */
  kernel?: KernelOps;
  /**
   * The firewall the driver's owners live in (src/network/firewall).
   * Absent: the process's shared one (hostFirewall()); unit tests pass one
   * over FakeNft.
   */
  firewall?: Firewall;
}

type DriverFactory = (ctx: DriverContext) => NetworkDriver | Promise<NetworkDriver>;
type DriverClass = new (ctx: DriverContext) => NetworkDriver;

/**
 * What a built-in driver module exports: `createDriver(ctx)`, or else an
 * exported class implementing NetworkDriver (constructed with the context).
 */
type DriverModule = Record<string, unknown> & { createDriver?: DriverFactory };

function isDriverClass(v: unknown): v is DriverClass {
  if (typeof v !== 'function' || !v.prototype) return false;
  const p = v.prototype as Record<string, unknown>;
  return ['createNetwork', 'deleteNetwork', 'createEndpoint', 'join', 'leave'].every((m) => typeof p[m] === 'function');
}

function factoryOf(mod: DriverModule): DriverFactory | undefined {
  if (typeof mod.createDriver === 'function') return mod.createDriver;
  const cls = Object.values(mod).find(isDriverClass);
  return cls ? (ctx) => new cls(ctx) : undefined;
}

/**
 * Built-in drivers by name -> their module, imported on first use. Written out as import() of fixed paths so
 * that the coved bundle (scripts/bundle-coved.mjs) finds them and keeps each driver in a chunk of its own.
 */
export const BUILTIN_DRIVERS: Record<string, () => Promise<unknown>> = {
  bridge: () => import('./bridge/index.js'),
  host: () => import('./host/index.js'),
  null: () => import('./none/index.js'),
  macvlan: () => import('./macvlan/index.js'),
  ipvlan: () => import('./ipvlan/index.js'),
  overlay: () => import('./overlay/index.js'),
};

export class DriverRegistry {
  private readonly drivers = new Map<string, NetworkDriver>();
  /** Plugin activations under way, so concurrent lookups of one name share one handshake. */
  private readonly activating = new Map<string, Promise<NetworkDriver>>();

  constructor(drivers: NetworkDriver[] = []) {
    for (const d of drivers) this.register(d);
  }

  register(d: NetworkDriver): void {
    this.drivers.set(d.name, d);
  }

  has(name: string): boolean {
    return this.drivers.has(name);
  }

  /** The driver, or NotFound `plugin "X" not found`. */
  get(name: string): NetworkDriver {
    const d = this.drivers.get(name);
    if (!d) throw new NotFound(`plugin "${name}" not found`);
    return d;
  }

  /**
   * The driver of that name: a registered one, else a plugin found in
   * `config.pluginDirs` (activated once, then registered), else NotFound
   * `plugin "X" not found`. A plugin that is there but fails its handshake
   * (not listening, no answer in time, not a NetworkDriver) is that error.
   */
  async lookup(name: string, ctx: DriverContext): Promise<NetworkDriver> {
    const known = this.drivers.get(name);
    if (known) return known;
    let p = this.activating.get(name);
    if (!p) {
      p = (async () => {
        // A built-in name that failed to load is not a plugin's to take.
        const found = Object.hasOwn(BUILTIN_DRIVERS, name)
          ? undefined
          : findPlugin(name, ctx.config.pluginDirs ?? DEFAULT_PLUGIN_DIRS);
        if (!found) throw new NotFound(`plugin "${name}" not found`);
        const d = await activateRemoteDriver(
          found,
          ctx.config.pluginTimeoutMs ?? DEFAULT_PLUGIN_TIMEOUT_MS,
          ctx.log,
          ctx.kernel,
        );
        this.drivers.set(name, d);
        return d;
      })().finally(() => this.activating.delete(name));
      this.activating.set(name, p);
    }
    return p;
  }

  /** Closes drivers that hold processes or sockets (those with a close() method). */
  async closeAll(): Promise<void> {
    for (const d of this.drivers.values()) {
      const c = (d as { close?: () => Promise<void> | void }).close;
      if (typeof c === 'function') await c.call(d);
    }
  }

  names(): string[] {
    return [...this.drivers.keys()].sort();
  }

  /**
   * Loads every built-in driver module that exists and is not registered yet.
   * A module that is missing is skipped (that driver is then "not found"); one
   * that fails to load is logged.
   */
  async loadBuiltins(ctx: DriverContext): Promise<void> {
    for (const [name, load] of Object.entries(BUILTIN_DRIVERS)) {
      if (this.drivers.has(name)) continue;
      let mod: DriverModule;
      try {
        mod = (await load()) as DriverModule;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ERR_MODULE_NOT_FOUND')
          ctx.log.warn({ driver: name, err: (e as Error).message }, 'network driver failed to load');
        continue;
      }
      const make = factoryOf(mod);
      if (!make) {
        ctx.log.warn({ driver: name }, 'network driver module exports no createDriver');
        continue;
      }
      try {
        const d = await make(ctx);
        this.drivers.set(name, d);
      } catch (e) {
        ctx.log.warn({ driver: name, err: (e as Error).message }, 'network driver failed to start');
      }
    }
  }
}
