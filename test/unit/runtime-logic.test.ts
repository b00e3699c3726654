/**
 * The runtime's pure logic: image references and import changes, port and
 * network specs for the sandbox, detach keys, k8s-file log lines, Docker's
 * status texts and generated names.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRepoTag, formatRepoTag } from '../../src/runtime/images/reference.js';
import { applyChanges } from '../../src/runtime/images/changes.js';
import { chainIdOf } from '../../src/runtime/images/layers.js';
import {
  portBindings,
  exposedPorts,
  endpointRequests,
  sandboxSpec,
  normalizeNetworkMode,
} from '../../src/runtime/containers/spec.js';
import { parseDetachKeys, DetachScanner } from '../../src/runtime/containers/attach.js';
import { parseK8sLine, parseTimeNs, readLogs } from '../../src/runtime/containers/logs.js';
import { statusText, humanDuration } from '../../src/runtime/containers/format.js';
import { generateName } from '../../src/runtime/containers/names.js';
import { capabilities, resolveUser, bundleSpec, processSpec } from '../../src/runtime/containers/oci.js';
import { signalNumber, startFailureExitCode } from '../../src/runtime/containers/manager.js';
import { ociCreateError } from '../../src/runtime/containers/conmon.js';
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

test('image references: default tag, registry ports, docker.io folding, bad input', () => {
  assert.deepEqual(parseRepoTag('alpine'), { repo: 'alpine', tag: 'latest' });
  assert.deepEqual(parseRepoTag('alpine:3.19'), { repo: 'alpine', tag: '3.19' });
  assert.deepEqual(parseRepoTag('localhost:5000/app'), { repo: 'localhost:5000/app', tag: 'latest' });
  assert.deepEqual(parseRepoTag('localhost:5000/app:v1'), { repo: 'localhost:5000/app', tag: 'v1' });
  assert.equal(formatRepoTag(parseRepoTag('docker.io/library/nginx:1')), 'nginx:1');
  assert.throws(() => parseRepoTag('UPPER'), /invalid reference format/);
  assert.throws(() => parseRepoTag('a:b:c'), /invalid reference format/);
});

test('chain IDs follow Docker: the first is the diff ID, then sha256(parent + " " + diff)', () => {
  const d = 'sha256:' + '1'.repeat(64);
  assert.equal(chainIdOf(null, d), d);
  assert.match(chainIdOf(d, d), /^sha256:[0-9a-f]{64}$/);
  assert.notEqual(chainIdOf(d, d), d);
});

test('import --change: CMD/ENTRYPOINT exec and shell forms, ENV, EXPOSE ranges, LABEL, WORKDIR, refusals', () => {
  const c = applyChanges({ Env: ['PATH=/bin'] }, [
    'CMD echo hi',
    'ENTRYPOINT ["/bin/sh", "-c"]',
    'ENV PATH=/usr/bin:/bin X=1',
    'ENV Y two words',
    'EXPOSE 80 8000-8001/udp',
    'LABEL a=b "c"="d e"',
    'WORKDIR /srv',
    'WORKDIR app',
    'USER nobody',
    'STOPSIGNAL SIGQUIT',
  ]);
  assert.deepEqual(c.Cmd, ['/bin/sh', '-c', 'echo hi']);
  assert.deepEqual(c.Entrypoint, ['/bin/sh', '-c']);
  assert.deepEqual(c.Env, ['PATH=/usr/bin:/bin', 'X=1', 'Y=two words']);
  assert.deepEqual(c.ExposedPorts, { '80/tcp': {}, '8000/udp': {}, '8001/udp': {} });
  assert.equal(c.WorkingDir, '/srv/app');
  assert.equal(c.User, 'nobody');
  assert.equal(c.StopSignal, 'SIGQUIT');
  assert.equal(c.Labels?.a, 'b');
  assert.throws(() => applyChanges({}, ['RUN make']), /RUN is not a valid change command/);
  assert.throws(() => applyChanges({}, ['EXPOSE 99999']), /invalid containerPort/);
});

test('port bindings: single ports, ranges, random host ports, bad specs', () => {
  assert.deepEqual(portBindings({ '80/tcp': [{ HostIp: '', HostPort: '8080' }] }), [
    { containerPort: 80, containerPortEnd: 80, protocol: 'tcp', hostIp: '', hostPort: 8080, hostPortEnd: 8080 },
  ]);
  assert.deepEqual(portBindings({ '53/udp': [{ HostPort: '' }, { HostIp: '127.0.0.1', HostPort: '5353' }] }), [
    { containerPort: 53, containerPortEnd: 53, protocol: 'udp', hostIp: '', hostPort: 0, hostPortEnd: 0 },
    {
      containerPort: 53,
      containerPortEnd: 53,
      protocol: 'udp',
      hostIp: '127.0.0.1',
      hostPort: 5353,
      hostPortEnd: 5353,
    },
  ]);
  assert.deepEqual(portBindings({ '8000-8010/tcp': [{ HostPort: '9000-9010' }] })[0], {
    containerPort: 8000,
    containerPortEnd: 8010,
    protocol: 'tcp',
    hostIp: '',
    hostPort: 9000,
    hostPortEnd: 9010,
  });
  assert.deepEqual(portBindings({ '80': null })[0]!.hostPort, 0);
  assert.throws(() => portBindings({ '80/xyz': [] }), /invalid port specification/);
  assert.throws(() => portBindings({ '8000-8010/tcp': [{ HostPort: '9000-9001' }] }), /invalid ranges/);
  assert.deepEqual(exposedPorts({ '80/tcp': {}, '7000-7001/udp': {} }), [
    { port: 80, protocol: 'tcp' },
    { port: 7000, protocol: 'udp' },
    { port: 7001, protocol: 'udp' },
  ]);
});

test('sandbox spec: NetworkMode first, default bridge, host/none join nothing, hostname defaults to the short ID', () => {
  assert.equal(normalizeNetworkMode(undefined), 'bridge');
  assert.equal(normalizeNetworkMode('default'), 'bridge');
  assert.deepEqual(
    endpointRequests('mynet', { other: { Aliases: ['o'] }, mynet: { IPAMConfig: { IPv4Address: '10.0.0.5' } } }),
    [
      { network: 'mynet', ipv4Address: '10.0.0.5' },
      { network: 'other', aliases: ['o'] },
    ],
  );
  assert.deepEqual(endpointRequests('host', {}), []);
  assert.deepEqual(endpointRequests('bridge', {}), [], 'disconnected from its NetworkMode network');
  const id = 'f'.repeat(64);
  const s = sandboxSpec({
    id,
    name: '/web',
    config: { ExposedPorts: { '80/tcp': {} } },
    dir: '/d',
    networkMode: 'bridge',
    endpoints: { bridge: {} },
    hostConfig: {
      PortBindings: { '80/tcp': [{ HostPort: '8080' }] },
      PublishAllPorts: true,
      Dns: ['1.1.1.1'],
      ExtraHosts: ['h:1.2.3.4'],
    },
  });
  assert.equal(s.hostname, id.slice(0, 12));
  assert.equal(s.containerName, 'web');
  assert.deepEqual(s.endpoints, [{ network: 'bridge' }]);
  assert.equal(s.portBindings.length, 1);
  assert.deepEqual(s.exposedPorts, [{ port: 80, protocol: 'tcp' }]);
  assert.equal(s.publishAllPorts, true);
  assert.deepEqual(s.dns, ['1.1.1.1']);
  assert.deepEqual(s.extraHosts, ['h:1.2.3.4']);
});

test('detach keys: parse Docker notation and find the sequence across chunks', () => {
  assert.deepEqual([...parseDetachKeys(undefined)], [16, 17]);
  assert.deepEqual([...parseDetachKeys('ctrl-a,x,ctrl-@,ctrl-[')], [1, 120, 0, 27]);
  assert.throws(() => parseDetachKeys('ctrl-1'), /Invalid detach keys/);
  const s = new DetachScanner(parseDetachKeys(undefined));
  assert.deepEqual(s.feed(Buffer.from('ab\x10')), { pass: Buffer.from('ab'), detached: false });
  assert.deepEqual(s.feed(Buffer.from('c')), { pass: Buffer.from('\x10c'), detached: false });
  assert.deepEqual(s.feed(Buffer.from('\x10')), { pass: Buffer.alloc(0), detached: false });
  assert.deepEqual(s.feed(Buffer.from('\x11rest')), { pass: Buffer.alloc(0), detached: true });
  const s2 = new DetachScanner(parseDetachKeys(undefined));
  assert.deepEqual(s2.feed(Buffer.from('\x10\x10\x11')), { pass: Buffer.from('\x10'), detached: true });
});

test('k8s-file log lines: parse, join partial lines, filter and tail', async () => {
  const l = parseK8sLine('2026-11-28T05:00:00.123456789+00:00 stderr F oops: bad')!;
  assert.equal(l.stream, 'stderr');
  assert.equal(l.partial, false);
  assert.equal(l.text, 'oops: bad');
  assert.equal(l.ns, parseTimeNs('2026-11-28T05:00:00.123456789Z'));
  assert.equal(parseK8sLine('garbage'), undefined);
  const dir = mkdtempSync(join(tmpdir(), 'cvrt-logs-'));
  const f = join(dir, 'ctr.log');
  writeFileSync(
    f,
    [
      '2026-11-28T05:00:00.000000001+00:00 stdout P hel',
      '2026-11-28T05:00:00.000000002+00:00 stdout F lo',
      '2026-11-28T05:00:01.000000000+00:00 stderr F e1',
      '2026-11-28T05:00:02.000000000+00:00 stdout F world',
      '2026-11-28T05:00:03.000000000+00:00 stdout F ',
    ].join('\n') + '\n',
  );
  const read = async (o: object): Promise<string[]> => {
    const out: string[] = [];
    for await (const e of readLogs(f, {
      follow: false,
      stdout: true,
      stderr: true,
      timestamps: false,
      tail: 'all',
      ...o,
    }))
      out.push(`${e.stream}:${e.data.toString()}`);
    return out;
  };
  assert.deepEqual(await read({}), ['stdout:hello\n', 'stderr:e1\n', 'stdout:world\n', 'stdout:\n']);
  assert.deepEqual(await read({ stderr: false, tail: '2' }), ['stdout:world\n', 'stdout:\n']);
  assert.deepEqual(await read({ stdout: false }), ['stderr:e1\n']);
  const t1 = Date.parse('2026-11-28T05:00:01Z') / 1000;
  assert.deepEqual(await read({ since: t1, until: t1 + 1.5 }), ['stderr:e1\n', 'stdout:world\n']);
  rmSync(dir, { recursive: true, force: true });
});

test('status texts like docker ps', () => {
  const now = Date.parse('2026-11-28T05:00:00Z');
  const st = {
    Status: 'running',
    Running: true,
    Paused: false,
    Restarting: false,
    OOMKilled: false,
    Dead: false,
    Pid: 1,
    ExitCode: 0,
    Error: '',
    StartedAt: '2026-11-28T04:59:57Z',
    FinishedAt: '0001-01-01T00:00:00Z',
  } as const;
  assert.equal(statusText({ ...st }, now), 'Up 3 seconds');
  assert.equal(
    statusText({ ...st, Status: 'exited', Running: false, ExitCode: 137, FinishedAt: '2026-11-28T04:55:00Z' }, now),
    'Exited (137) 5 minutes ago',
  );
  assert.equal(statusText({ ...st, Status: 'created', Running: false }, now), 'Created');
  assert.equal(humanDuration(500), 'Less than a second');
  assert.equal(humanDuration(3_600_000), 'About an hour');
});

test('generated names are adjective_surname and avoid names in use', () => {
  const taken = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const n = generateName((x) => taken.has(x));
    assert.match(n, /^[a-z]+_[a-z]+\d*$/);
    assert.equal(taken.has(n), false);
    taken.add(n);
  }
});

test('OCI bundle: Docker default caps plus NET_RAW, network namespace only with a netns path, users from /etc/passwd', () => {
  const caps = capabilities(false);
  assert.ok(caps.includes('CAP_NET_RAW') && caps.includes('CAP_NET_BIND_SERVICE') && !caps.includes('CAP_NET_ADMIN'));
  assert.ok(capabilities(false, ['NET_ADMIN']).includes('CAP_NET_ADMIN'));
  assert.ok(!capabilities(false, [], ['NET_RAW']).includes('CAP_NET_RAW'));
  assert.throws(() => capabilities(false, ['BOGUS']), /unknown capability/);
  const root = mkdtempSync(join(tmpdir(), 'cvrt-oci-'));
  mkdirSync(join(root, 'etc'));
  writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nweb:x:33:44:web:/srv:/bin/false\n');
  writeFileSync(join(root, 'etc', 'group'), 'root:x:0:\nstaff:x:50:\n');
  assert.deepEqual(resolveUser(root, ''), { uid: 0, gid: 0, home: '/root' });
  assert.deepEqual(resolveUser(root, 'web'), { uid: 33, gid: 44, home: '/srv' });
  assert.deepEqual(resolveUser(root, 'web:staff'), { uid: 33, gid: 50, home: '/srv' });
  assert.deepEqual(resolveUser(root, '1234:5'), { uid: 1234, gid: 5, home: '/' });
  assert.throws(() => resolveUser(root, 'nobody'), /unable to find user nobody/);
  rmSync(root, { recursive: true, force: true });
  const base = {
    id: 'c'.repeat(64),
    rootfs: '/r',
    hostname: 'h',
    hostsPath: '/s/hosts',
    hostnamePath: '/s/hostname',
    resolvConfPath: '/s/resolv.conf',
    privileged: false,
    sysctls: {},
    readonlyRootfs: false,
    process: processSpec({
      args: ['sh'],
      env: [],
      cwd: '/',
      tty: false,
      user: { uid: 0, gid: 0, home: '/root' },
      caps,
    }),
  };
  const withNs = bundleSpec({ ...base, netnsPath: '/run/x/ns' }) as any;
  assert.deepEqual(
    withNs.linux.namespaces.find((n: any) => n.type === 'network'),
    { type: 'network', path: '/run/x/ns' },
  );
  const host = bundleSpec({ ...base, netnsPath: null }) as any;
  assert.equal(
    host.linux.namespaces.some((n: any) => n.type === 'network'),
    false,
  );
  assert.deepEqual(
    host.mounts.filter((m: any) => m.type === 'bind').map((m: any) => `${m.source}->${m.destination}`),
    ['/s/resolv.conf->/etc/resolv.conf', '/s/hostname->/etc/hostname', '/s/hosts->/etc/hosts'],
  );
  assert.equal(host.process.rlimits, undefined, 'no rlimits (root lacks CAP_SYS_RESOURCE here)');
});

test('signals by name, number and SIGRTMIN+n', () => {
  assert.equal(signalNumber('SIGTERM', 'SIGKILL'), 15);
  assert.equal(signalNumber('kill', 'SIGTERM'), 9);
  assert.equal(signalNumber(undefined, 'SIGKILL'), 9);
  assert.equal(signalNumber('10', 'SIGKILL'), 10);
  assert.equal(signalNumber('SIGRTMIN+3', 'SIGKILL'), 37);
  assert.throws(() => signalNumber('NOPE', 'SIGKILL'), /Invalid signal: NOPE/);
});

test("a failed create is told in Docker's words, and its exit code follows them", () => {
  const runc =
    'time="2026-12-03T10:08:58Z" level=warning msg="something harmless"\ntime="2026-12-03T10:08:58Z" level=error msg="runc create failed: unable to start container process: exec: \\"nosuchcommand\\": executable file not found in $PATH"';
  const msg = ociCreateError(runc);
  assert.equal(
    msg,
    'failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "nosuchcommand": executable file not found in $PATH: unknown',
  );
  assert.equal(startFailureExitCode(msg), 127);
  assert.equal(startFailureExitCode(ociCreateError('exec: "/etc/passwd": permission denied')), 126);
  assert.equal(startFailureExitCode('user specified IP address is supported on user defined networks only'), 128);
  // Not logrus: the text as it came.
  assert.equal(
    ociCreateError('plain failure\n'),
    'failed to create shim task: OCI runtime create failed: plain failure: unknown',
  );
});

test("restart policies decide as moby's restart manager: after an exit, and at daemon start", async () => {
  const { restartAfterExit, restartAtDaemonStart, restartDelayMs } =
    await import('../../src/runtime/containers/restart-policy.js');
  const f = (exitCode: number, stoppedByUser = false, restartCount = 0) => ({ exitCode, stoppedByUser, restartCount });
  assert.equal(restartAfterExit({ Name: 'always' }, f(0)), true);
  assert.equal(restartAfterExit({ Name: 'always' }, f(0, true)), false);
  assert.equal(restartAfterExit({ Name: 'unless-stopped' }, f(1)), true);
  assert.equal(restartAfterExit({ Name: 'no' }, f(1)), false);
  assert.equal(restartAfterExit(undefined, f(1)), false);
  assert.equal(restartAfterExit({ Name: 'on-failure' }, f(0)), false);
  assert.equal(restartAfterExit({ Name: 'on-failure', MaximumRetryCount: 2 }, f(3, false, 1)), true);
  assert.equal(restartAfterExit({ Name: 'on-failure', MaximumRetryCount: 2 }, f(3, false, 2)), false);
  // At daemon start a user's stop no longer holds `always` down, but still holds `unless-stopped`.
  assert.equal(restartAtDaemonStart({ Name: 'always' }, f(0, true)), true);
  assert.equal(restartAtDaemonStart({ Name: 'unless-stopped' }, f(0, true)), false);
  assert.equal(restartAtDaemonStart({ Name: 'unless-stopped' }, f(137)), true);
  assert.equal(restartAtDaemonStart({ Name: 'on-failure' }, f(1)), true);
  assert.equal(restartAtDaemonStart({ Name: 'no' }, f(1)), false);
  assert.deepEqual([0, 1, 2, 10].map(restartDelayMs), [100, 200, 400, 5000]);
});

test("container prune filters: stopped only, until/label/label!, docker's error for others", async () => {
  const { prunePredicate } = await import('../../src/runtime/containers/prune.js');
  const c = (Status: string, Labels: Record<string, string> = {}, Created = '2026-01-01T00:00:00Z') => ({
    Id: 'x',
    Created,
    Labels,
    Status,
  });
  const all = prunePredicate({});
  assert.deepEqual(
    ['created', 'exited', 'dead', 'running', 'paused', 'restarting', 'removing'].map((s) => all(c(s))),
    [true, true, true, false, false, false, false],
  );
  assert.equal(prunePredicate({ label: ['a=1'] })(c('exited', { a: '1' })), true);
  assert.equal(prunePredicate({ label: ['a=1'] })(c('exited', { a: '2' })), false);
  assert.equal(prunePredicate({ 'label!': ['a'] })(c('exited', { a: '2' })), false);
  assert.equal(prunePredicate({ until: ['2025-06-01T00:00:00Z'] })(c('exited')), false);
  assert.equal(prunePredicate({ until: ['2027-06-01T00:00:00Z'] })(c('exited')), true);
  assert.throws(() => prunePredicate({ color: ['red'] }), /^Error: invalid filter 'color'$|invalid filter 'color'/);
});
