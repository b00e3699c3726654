/**
 * Published ports as a user meets them: `-p` in its forms (host:container,
 * ip:host:container, ranges, container-only, -P), TCP and UDP, reached from
 * the host, from another machine and from containers (hairpin); `cove port`
 * prints what Docker prints; ports go away when the container stops and come
 * back when it starts; a taken port is refused; host networking discards -p
 * with Docker's warning.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { LAB_IP, run, type Lab, type RunResult } from '../lab/lab.js';
import { labWithImages } from './seed-helpers.js';

let lab: Lab;
let remote: { ip: string; sh: (script: string) => Promise<RunResult> };
const echoes: ChildProcess[] = [];
before(async () => {
  lab = await labWithImages('cove-t-pub');
  remote = await lab.addRemoteHost('far', 3);
});
after(async () => {
  for (const e of echoes) e.kill('SIGKILL');
  await lab?.destroy();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The page, retried a few times (a fresh DNAT path or neighbour can take a moment); undefined if never served. */
async function page(get: () => Promise<RunResult>, tries = 5): Promise<string | undefined> {
  for (let i = 0; i < tries; i++) {
    const r = await get();
    if (r.code === 0 && r.stdout) return r.stdout;
    await sleep(200);
  }
  return undefined;
}
const fromLab = (url: string) => page(async () => lab.sh(`timeout 5 busybox wget -q -O - ${url}`));
const fromRemote = (url: string) => page(async () => remote.sh(`timeout 5 busybox wget -q -O - ${url}`));
const fromContainer = (c: string, url: string) =>
  page(async () => lab.cove(['exec', c, 'timeout', '5', 'wget', '-q', '-O', '-', url]));
/** A refused/unreachable URL: a single try is the honest check (it must not answer at all). */
async function noPage(where: 'lab' | 'remote', url: string): Promise<boolean> {
  const r =
    where === 'lab'
      ? await lab.sh(`timeout 5 busybox wget -q -O - ${url}`)
      : await remote.sh(`timeout 5 busybox wget -q -O - ${url}`);
  return r.code !== 0;
}

/** One UDP datagram to ip:port from inside a namespace; the echoed text, or undefined. */
async function udpAsk(netnsPath: string, ip: string, port: number, text: string): Promise<string | undefined> {
  const script =
    `const s=require('dgram').createSocket('udp4');s.on('message',(m)=>{process.stdout.write(m);process.exit(0)});` +
    `setTimeout(()=>process.exit(1),2000);s.send(${JSON.stringify(text)},${port},${JSON.stringify(ip)});`;
  for (let i = 0; i < 3; i++) {
    const r = await run('nsenter', [`--net=${netnsPath}`, process.execPath, '-e', script], { timeoutMs: 10_000 });
    if (r.code === 0) return r.stdout;
  }
  return undefined;
}

async function portOf(c: string, ...args: string[]): Promise<string[]> {
  return (await lab.coveOk(['port', c, ...args])).split('\n').filter(Boolean);
}

/** `cove port` lines without the optional [::] twins (they follow whether the daemon also publishes on IPv6). */
async function v4Ports(c: string, ...args: string[]): Promise<string[]> {
  return (await portOf(c, ...args)).filter((l) => !l.includes('[::]'));
}

test('published ports', async (t) => {
  await t.test(
    '-p 8080:80: from the host, another machine, and hairpin from containers on the same network',
    async () => {
      await lab.coveOk(['network', 'create', 'pubnet']);
      await lab.coveOk(['run', '-d', '--name', 'web', '--network', 'pubnet', '-p', '8080:80', 'nginx']);
      assert.deepEqual(await v4Ports('web'), ['80/tcp -> 0.0.0.0:8080']);
      assert.deepEqual(await v4Ports('web', '80'), ['0.0.0.0:8080']);
      assert.deepEqual(await v4Ports('web', '80/tcp'), ['0.0.0.0:8080']);
      const none = await lab.cove(['port', 'web', '81']);
      assert.notEqual(none.code, 0);
      assert.match(none.stderr, /No public port '81\/tcp' published for web/);
      assert.match((await fromLab(`http://${LAB_IP}:8080/`)) ?? '', /stand-in/i, 'the host by its address');
      assert.match((await fromLab('http://127.0.0.1:8080/')) ?? '', /stand-in/i, 'the host by loopback');
      assert.match((await fromRemote(`http://${LAB_IP}:8080/`)) ?? '', /stand-in/i, 'another machine');
      await lab.coveOk(['run', '-dit', '--name', 'peer', '--network', 'pubnet', 'alpine', 'ash']);
      assert.match(
        (await fromContainer('peer', `http://${LAB_IP}:8080/`)) ?? '',
        /stand-in/i,
        'hairpin from a neighbour',
      );
      assert.match(
        (await fromContainer('web', `http://${LAB_IP}:8080/`)) ?? '',
        /stand-in/i,
        'the container through its own published port',
      );
    },
  );

  await t.test('-p 127.0.0.1:8082:80: loopback only, not the host address, not other machines', async () => {
    await lab.coveOk(['run', '-d', '--name', 'local', '-p', '127.0.0.1:8082:80', 'nginx']);
    assert.deepEqual(await portOf('local'), ['80/tcp -> 127.0.0.1:8082']);
    assert.match((await fromLab('http://127.0.0.1:8082/')) ?? '', /stand-in/i);
    assert.ok(await noPage('lab', `http://${LAB_IP}:8082/`), `not on ${LAB_IP}`);
    assert.ok(await noPage('remote', `http://${LAB_IP}:8082/`), 'not from another machine');
  });

  await t.test('a network with host_binding_ipv4=127.0.0.1: -p 8083:80 binds loopback only', async () => {
    await lab.coveOk(['network', 'create', '-o', 'com.docker.network.bridge.host_binding_ipv4=127.0.0.1', 'loopnet']);
    await lab.coveOk(['run', '-d', '--name', 'looped', '--network', 'loopnet', '-p', '8083:80', 'nginx']);
    assert.deepEqual(await portOf('looped'), ['80/tcp -> 127.0.0.1:8083']);
    assert.match((await fromLab('http://127.0.0.1:8083/')) ?? '', /stand-in/i);
    assert.ok(await noPage('lab', `http://${LAB_IP}:8083/`), `not on ${LAB_IP}`);
    assert.ok(await noPage('remote', `http://${LAB_IP}:8083/`), 'not from another machine');
  });

  await t.test('ranges: 9000-9001:80-81 maps one to one; a host range for one port takes a free one', async () => {
    await lab.coveOk([
      'run',
      '-d',
      '--name',
      'two',
      '-p',
      '9000-9001:80-81',
      'nginx',
      'sh',
      '-c',
      'httpd -p 81 -h /www && exec httpd -f -p 80 -h /www',
    ]);
    assert.deepEqual(await v4Ports('two'), ['80/tcp -> 0.0.0.0:9000', '81/tcp -> 0.0.0.0:9001']);
    assert.match((await fromRemote(`http://${LAB_IP}:9000/`)) ?? '', /stand-in/i);
    assert.match((await fromRemote(`http://${LAB_IP}:9001/`)) ?? '', /stand-in/i);
    await lab.coveOk(['run', '-d', '--name', 'first', '-p', '9100:80', 'nginx']);
    await lab.coveOk(['run', '-d', '--name', 'ranged', '-p', '9100-9102:80', 'nginx']);
    const [line] = await v4Ports('ranged', '80');
    assert.match(line ?? '', /^0\.0\.0\.0:910[12]$/, 'a free port of the range, not the taken 9100');
    assert.match((await fromLab(`http://${LAB_IP}:${line!.split(':')[1]}/`)) ?? '', /stand-in/i);
  });

  await t.test('ranges of different sizes are refused like Docker, nothing is created', async () => {
    for (const spec of ['9000-9002:80-81', '9005:80-81']) {
      const r = await lab.cove(['run', '-d', '--name', 'badrange', '-p', spec, 'nginx']);
      assert.notEqual(r.code, 0, spec);
      assert.match(
        r.stderr,
        /invalid ranges specified for container and host Ports: 80-81 and (9000-9002|9005)$/im,
        spec,
      );
      assert.notEqual((await lab.cove(['inspect', 'badrange'])).code, 0, `${spec}: no container was made`);
    }
  });

  await t.test('-p 80 and -P: ephemeral host ports from 32768-60999, shown by cove port', async () => {
    await lab.coveOk(['run', '-d', '--name', 'eph', '-p', '80', 'nginx']);
    await lab.coveOk(['run', '-d', '--name', 'all', '-P', 'nginx']);
    for (const c of ['eph', 'all']) {
      const [line] = await v4Ports(c);
      const m = /^80\/tcp -> 0\.0\.0\.0:(\d+)$/.exec(line ?? '');
      assert.ok(m, `${c}: ${line}`);
      const port = Number(m[1]);
      assert.ok(port >= 32768 && port <= 60999, `${c}: ${port} in the ephemeral range`);
      assert.match((await fromRemote(`http://${LAB_IP}:${port}/`)) ?? '', /stand-in/i, `${c} on ${port}`);
    }
    assert.notEqual((await v4Ports('eph'))[0], (await v4Ports('all'))[0], 'two different ports');
  });

  await t.test('UDP: -p 5353:53/udp answers from the host and from another machine', async () => {
    await lab.coveOk(['run', '-dit', '--name', 'udp', '-p', '5353:53/udp', 'alpine', 'ash']);
    assert.deepEqual(await v4Ports('udp'), ['53/udp -> 0.0.0.0:5353']);
    assert.deepEqual(await v4Ports('udp', '53/udp'), ['0.0.0.0:5353']);
    // A tiny UDP echo on port 53 in the container's network namespace (busybox has no UDP server).
    const sandbox = await lab.coveOk(['inspect', '-f', '{{.NetworkSettings.SandboxKey}}', 'udp']);
    const echo = spawn(
      'nsenter',
      [
        `--net=${sandbox}`,
        process.execPath,
        '-e',
        "const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send('echo:'+m,r.port,r.address));s.bind(53,()=>console.log('ready'))",
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    echoes.push(echo);
    await new Promise<void>((res, rej) => {
      echo.stdout!.once('data', () => res());
      echo.once('exit', (code) => rej(new Error(`udp echo exited ${code}`)));
    });
    const containerIp = await lab.coveOk(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', 'udp']);
    assert.equal(
      await udpAsk(lab.netnsPath, containerIp, 53, 'direct'),
      'echo:direct',
      'the echo answers on the container address (control)',
    );
    assert.equal(await udpAsk(`/run/netns/${lab.name}-far`, LAB_IP, 5353, 'far'), 'echo:far', 'from another machine');
    assert.equal(await udpAsk(lab.netnsPath, LAB_IP, 5353, 'host'), 'echo:host', 'from the host by its address');
    assert.equal(await udpAsk(lab.netnsPath, '127.0.0.1', 5353, 'loop'), 'echo:loop', 'from the host by loopback');
    assert.equal(
      await udpAsk(`/run/netns/${lab.name}-far`, LAB_IP, 5354, 'nothing'),
      undefined,
      'an unpublished port stays closed',
    );
    echo.kill('SIGKILL');
  });

  await t.test('a taken host port: port is already allocated, the holder keeps serving', async () => {
    const r = await lab.cove(['run', '-d', '--name', 'dup', '-p', '8080:80', 'nginx']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /Bind for 0\.0\.0\.0:8080 failed: port is already allocated/);
    assert.equal((await lab.cove(['inspect', '-f', '{{.State.Running}}', 'dup'])).stdout.trim(), 'false');
    await lab.coveOk(['rm', '-f', 'dup']);
    assert.match((await fromRemote(`http://${LAB_IP}:8080/`)) ?? '', /stand-in/i);
  });

  await t.test('racing runs for one host port: exactly one gets it', async () => {
    const runs = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        lab.cove(['run', '-d', '--name', `race${i}`, '-p', '8300:80', 'nginx'], { timeoutMs: 120_000 }),
      ),
    );
    assert.equal(runs.filter((r) => r.code === 0).length, 1);
    for (const r of runs.filter((x) => x.code !== 0)) assert.match(r.stderr, /port is already allocated/);
    assert.match((await fromRemote(`http://${LAB_IP}:8300/`)) ?? '', /stand-in/i);
    await lab.coveOk(['rm', '-f', 'race0', 'race1', 'race2', 'race3']);
  });

  await t.test('ports go when the container stops and come back when it starts', async () => {
    await lab.coveOk(['stop', '-t', '1', 'web']);
    assert.deepEqual(await portOf('web'), []);
    assert.ok(await noPage('remote', `http://${LAB_IP}:8080/`), 'closed while stopped');
    assert.ok(await noPage('lab', `http://${LAB_IP}:8080/`), 'closed on the host too');
    // while it is stopped the port is free for someone else, and free again after
    await lab.coveOk(['run', '-d', '--name', 'borrower', '-p', '8080:80', 'nginx']);
    await lab.coveOk(['rm', '-f', 'borrower']);
    await lab.coveOk(['start', 'web']);
    assert.deepEqual(await v4Ports('web'), ['80/tcp -> 0.0.0.0:8080']);
    assert.match((await fromRemote(`http://${LAB_IP}:8080/`)) ?? '', /stand-in/i, 'back after start');
    await lab.coveOk(['restart', '-t', '1', 'web']);
    assert.match((await fromRemote(`http://${LAB_IP}:8080/`)) ?? '', /stand-in/i, 'back after restart');
  });

  await t.test("--network host -p 9999:80: Docker's warning, and it runs on the host's ports", async () => {
    const r = await lab.cove(['run', '-d', '--name', 'hostnet', '--network', 'host', '-p', '9999:80', 'nginx']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^WARNING: Published ports are discarded when using host network mode$/m);
    assert.equal(await lab.coveOk(['inspect', '-f', '{{.State.Running}}', 'hostnet']), 'true');
    assert.deepEqual(await portOf('hostnet'), []);
    assert.match((await fromLab(`http://${LAB_IP}:80/`)) ?? '', /stand-in/i, 'its own port 80 on the host');
    assert.ok(await noPage('lab', `http://${LAB_IP}:9999/`), '9999 was discarded');
  });

  await t.test('--network container:NAME shares the namespace; publishing there is refused like Docker', async () => {
    await lab.coveOk(['run', '-dit', '--name', 'sidecar', '--network', 'container:web', 'alpine', 'ash']);
    assert.match(
      (await fromContainer('sidecar', 'http://127.0.0.1:80/')) ?? '',
      /stand-in/i,
      "web's server on the shared loopback",
    );
    for (const flags of [['-p', '8085:80'], ['-P']]) {
      const r = await lab.cove(['run', '-d', '--name', 'sidecar2', '--network', 'container:web', ...flags, 'nginx']);
      assert.equal(r.code, 125, flags.join(' '));
      assert.match(r.stderr, /conflicting options: port publishing and the container type network mode/);
      assert.notEqual((await lab.cove(['inspect', 'sidecar2'])).code, 0, 'no container was made');
    }
  });

  await t.test('after rm nothing listens and no rule is left for the published ports', async () => {
    const all = (await lab.coveOk(['ps', '-aq'])).split('\n').filter(Boolean);
    await lab.coveOk(['rm', '-f', ...all], { timeoutMs: 120_000 });
    const listening = (await lab.sh('netstat -tuln')).stdout;
    for (const p of ['8080', '8082', '8083', '9000', '9001', '9100', '5353'])
      assert.doesNotMatch(listening, new RegExp(`:${p}\\s`), `port ${p} still held`);
    const rules = (await lab.sh('nft list ruleset')).stdout;
    assert.doesNotMatch(rules, /\b(8080|8082|9000|9001|5353)\b/, 'a published-port rule was left behind');
  });
});
