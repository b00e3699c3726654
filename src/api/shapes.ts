/**
 * The Go types request bodies decode into, reduced to what is needed to
 * reproduce encoding/json's behaviour: keys match case-insensitively (we
 * rewrite them to the canonical spelling), null is always accepted, and a
 * wrong JSON type fails with
 * `json: cannot unmarshal string into Go struct field CreateRequest.Internal of type bool`.
 */

export type Shape =
  | { kind: 'bool' | 'string' | 'number' | 'any'; go: string }
  /** strslice.StrSlice: a JSON array of strings, or one string meaning a one-element array. */
  | { kind: 'strslice'; go: string }
  | { kind: 'array'; go: string; of: Shape }
  | { kind: 'map'; go: string; of: Shape }
  | { kind: 'struct'; go: string; fields: Record<string, Shape> };

const bool: Shape = { kind: 'bool', go: 'bool' };
const str: Shape = { kind: 'string', go: 'string' };
const int: Shape = { kind: 'number', go: 'int' };
const int64: Shape = { kind: 'number', go: 'int64' };
const any: Shape = { kind: 'any', go: 'interface {}' };
const strs: Shape = { kind: 'array', go: '[]string', of: str };
const strMap: Shape = { kind: 'map', go: 'map[string]string', of: str };
const strSlice: Shape = { kind: 'strslice', go: 'strslice.StrSlice' };

function struct(go: string, fields: Record<string, Shape>): Shape {
  return { kind: 'struct', go, fields };
}

const ipamConfig = struct('network.IPAMConfig', {
  Subnet: str,
  IPRange: str,
  Gateway: str,
  AuxiliaryAddresses: { kind: 'map', go: 'map[string]string', of: str },
});
const ipam = struct('network.IPAM', {
  Driver: str,
  Options: strMap,
  Config: { kind: 'array', go: '[]network.IPAMConfig', of: ipamConfig },
});

export const endpointSettingsShape = struct('network.EndpointSettings', {
  IPAMConfig: struct('network.EndpointIPAMConfig', { IPv4Address: str, IPv6Address: str, LinkLocalIPs: strs }),
  Links: strs,
  Aliases: strs,
  MacAddress: str,
  DriverOpts: strMap,
  GwPriority: int,
  NetworkID: str,
  EndpointID: str,
  Gateway: str,
  IPAddress: str,
  IPPrefixLen: int,
  IPv6Gateway: str,
  GlobalIPv6Address: str,
  GlobalIPv6PrefixLen: int,
  DNSNames: strs,
});

export const networkCreateShape = struct('network.CreateRequest', {
  Name: str,
  Driver: str,
  Scope: str,
  EnableIPv4: bool,
  EnableIPv6: bool,
  IPAM: ipam,
  Internal: bool,
  Attachable: bool,
  Ingress: bool,
  ConfigOnly: bool,
  ConfigFrom: struct('network.ConfigReference', { Network: str }),
  Options: strMap,
  Labels: strMap,
  CheckDuplicate: bool,
});

export const networkConnectShape = struct('network.ConnectOptions', {
  Container: str,
  EndpointConfig: endpointSettingsShape,
});

export const networkDisconnectShape = struct('network.DisconnectOptions', { Container: str, Force: bool });

const portBinding = struct('nat.PortBinding', { HostIp: str, HostPort: str });

const hostConfig = struct('container.HostConfig', {
  NetworkMode: str,
  PortBindings: { kind: 'map', go: 'nat.PortMap', of: { kind: 'array', go: '[]nat.PortBinding', of: portBinding } },
  PublishAllPorts: bool,
  AutoRemove: bool,
  Privileged: bool,
  Dns: strs,
  DnsOptions: strs,
  DnsSearch: strs,
  ExtraHosts: strs,
  CapAdd: strs,
  CapDrop: strs,
  Links: strs,
  Binds: strs,
  Sysctls: strMap,
  RestartPolicy: struct('container.RestartPolicy', { Name: str, MaximumRetryCount: int }),
  Memory: int64,
  NanoCpus: int64,
  Init: bool,
  ReadonlyRootfs: bool,
  VolumesFrom: strs,
  Tmpfs: strMap,
  Mounts: {
    kind: 'array',
    go: '[]mount.Mount',
    of: struct('mount.Mount', {
      Type: str,
      Source: str,
      Target: str,
      ReadOnly: bool,
      Consistency: str,
      BindOptions: struct('mount.BindOptions', { Propagation: str, NonRecursive: bool, CreateMountpoint: bool }),
      VolumeOptions: struct('mount.VolumeOptions', {
        NoCopy: bool,
        Labels: strMap,
        Subpath: str,
        DriverConfig: struct('mount.Driver', { Name: str, Options: strMap }),
      }),
      TmpfsOptions: struct('mount.TmpfsOptions', { SizeBytes: int64, Mode: { kind: 'number', go: 'os.FileMode' } }),
    }),
  },
  ConsoleSize: { kind: 'array', go: '[2]uint', of: { kind: 'number', go: 'uint' } },
});

export const containerCreateShape = struct('container.CreateRequest', {
  Hostname: str,
  Domainname: str,
  User: str,
  AttachStdin: bool,
  AttachStdout: bool,
  AttachStderr: bool,
  ExposedPorts: { kind: 'map', go: 'nat.PortSet', of: any },
  Tty: bool,
  OpenStdin: bool,
  StdinOnce: bool,
  Env: strs,
  Cmd: strSlice,
  Entrypoint: strSlice,
  Image: str,
  Labels: strMap,
  WorkingDir: str,
  StopSignal: str,
  StopTimeout: int,
  MacAddress: str,
  NetworkDisabled: bool,
  Volumes: { kind: 'map', go: 'map[string]struct {}', of: any },
  HostConfig: hostConfig,
  NetworkingConfig: struct('network.NetworkingConfig', {
    EndpointsConfig: { kind: 'map', go: 'map[string]*network.EndpointSettings', of: endpointSettingsShape },
  }),
});

export const volumeCreateShape = struct('volume.CreateOptions', {
  Name: str,
  Driver: str,
  DriverOpts: strMap,
  Labels: strMap,
});

export const execCreateShape = struct('container.ExecOptions', {
  User: str,
  Privileged: bool,
  Tty: bool,
  AttachStdin: bool,
  AttachStderr: bool,
  AttachStdout: bool,
  DetachKeys: str,
  Env: strs,
  WorkingDir: str,
  Cmd: strs,
  ConsoleSize: { kind: 'array', go: '*[2]uint', of: { kind: 'number', go: 'uint' } },
});

export const execStartShape = struct('container.ExecStartOptions', {
  Detach: bool,
  Tty: bool,
  ConsoleSize: { kind: 'array', go: '*[2]uint', of: { kind: 'number', go: 'uint' } },
});

function jsonKind(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') return 'object';
  if (typeof v === 'boolean') return 'bool';
  return typeof v; // string | number
}

function fits(v: unknown, s: Shape): boolean {
  switch (s.kind) {
    case 'any':
      return true;
    case 'bool':
      return typeof v === 'boolean';
    case 'string':
      return typeof v === 'string';
    case 'number':
      return typeof v === 'number';
    case 'array':
      return Array.isArray(v);
    case 'strslice':
      return typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'string'));
    case 'map':
    case 'struct':
      return typeof v === 'object' && !Array.isArray(v);
  }
}

/**
 * Checks `value` against `shape`, rewriting struct keys to their canonical
 * case in place. Returns Go's error text for the first mismatch, or undefined.
 */
export function checkShape(value: unknown, shape: Shape): string | undefined {
  if (value === null) return undefined;
  if (!fits(value, shape)) return `json: cannot unmarshal ${jsonKind(value)} into Go value of type ${shape.go}`;
  const top = shape.kind === 'struct' ? shape.go.split('.').pop()! : shape.go;
  return walk(value, shape, top);
}

function walk(v: unknown, s: Shape, path: string): string | undefined {
  if (v === null) return undefined;
  if (!fits(v, s)) return `json: cannot unmarshal ${jsonKind(v)} into Go struct field ${path} of type ${s.go}`;
  if (s.kind === 'array') {
    for (const item of v as unknown[]) {
      const err = walk(item, s.of, path);
      if (err) return err;
    }
  } else if (s.kind === 'map') {
    for (const item of Object.values(v as Record<string, unknown>)) {
      const err = walk(item, s.of, path);
      if (err) return err;
    }
  } else if (s.kind === 'struct') {
    const obj = v as Record<string, unknown>;
    const canon = new Map(Object.keys(s.fields).map((k) => [k.toLowerCase(), k]));
    for (const key of Object.keys(obj)) {
      const name = canon.get(key.toLowerCase());
      if (!name) continue;
      if (name !== key) {
        if (!(name in obj)) obj[name] = obj[key];
        delete obj[key];
      }
      const field = s.fields[name]!;
      // StrSlice's UnmarshalJSON: a lone string is a one-element list; anything else fails as a string would.
      if (field.kind === 'strslice' && obj[name] !== null && !fits(obj[name], field)) {
        return `json: cannot unmarshal ${jsonKind(obj[name])} into Go value of type string`;
      }
      if (field.kind === 'strslice' && typeof obj[name] === 'string') obj[name] = [obj[name]];
      const err = walk(obj[name], field, `${path}.${name}`);
      if (err) return err;
    }
  }
  return undefined;
}
