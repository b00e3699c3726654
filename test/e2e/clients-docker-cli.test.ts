/**
 * The real docker CLI (28.x, /usr/local/bin/docker) drives Cove unchanged:
 * DOCKER_HOST points at Cove's socket and the seed's single-host sections run
 * as written, with the observable results Docker gives. `docker network
 * inspect` and `docker inspect` are compared field by field with real
 * Docker's output from this machine and with the Engine API spec (v1.51).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Lab } from '../lab/lab.js';
import { run, REPO } from '../lab/lab.js';
import { join } from 'node:path';
import { clientLab, docker, dockerOk, dockerPresent, teardown, DOCKER_BIN } from './clients-helpers.js';
import { checkSpec, compareShapes, describe, referenceInspect, FORMAT } from './engine-spec.js';
import { wget } from './seed-helpers.js';

const skip = dockerPresent()
  ? false
  : `the docker CLI is not installed (${DOCKER_BIN} is missing); these tests need it`;

let lab: Lab | undefined;
before(async () => {
  if (!skip) lab = await clientLab('cove-t-cl1');
});
after(async () => {
  await teardown(lab);
});

function L(): Lab {
  assert.ok(lab, 'lab not started');
  return lab;
}

async function pingFrom(from: string, target: string): Promise<boolean> {
  for (let i = 0; i < 2; i++)
    if ((await docker(L(), ['exec', from, 'ping', '-c', '1', '-W', '1', target])).code === 0) return true;
  return false;
}

test('the docker CLI negotiates its API version with Cove', { skip }, async () => {
  const v = JSON.parse(await dockerOk(L(), ['version', '--format', '{{json .}}']));
  assert.equal(v.Server.ApiVersion, '1.51');
  assert.equal(v.Server.MinAPIVersion, '1.24');
  // The 28.2 client speaks 1.50 and keeps it (the server is newer).
  assert.equal(v.Client.ApiVersion, '1.50');
  // An older client (pinned to Docker 20.10's 1.41) works the same.
  const old = await dockerOk(L(), ['network', 'ls', '--format', '{{.Name}}'], { env: { DOCKER_API_VERSION: '1.41' } });
  assert.deepEqual(old.split('\n').sort(), ['bridge', 'host', 'none']);
  // A client newer than the daemon gets Docker's refusal.
  const tooNew = await docker(L(), ['network', 'ls'], { env: { DOCKER_API_VERSION: '1.52' } });
  assert.notEqual(tooNew.code, 0);
  assert.match(tooNew.stderr, /client version 1\.52 is too new\. Maximum supported API version is 1\.51/);
  const info = JSON.parse(await dockerOk(L(), ['info', '--format', '{{json .}}']));
  assert.equal(info.Swarm.LocalNodeState, 'inactive');
  assert.ok(info.Plugins.Network.includes('bridge'), info.Plugins.Network);
});

test('the seed, "Use user-defined bridge networks", with the docker CLI', { skip }, async (t) => {
  const since = Math.floor(Date.now() / 1000) - 1;

  await t.test('1. docker network create --driver bridge alpine-net; docker network ls', async () => {
    const id = await dockerOk(L(), ['network', 'create', '--driver', 'bridge', 'alpine-net']);
    assert.match(id, FORMAT.id64);
    const ls = await dockerOk(L(), ['network', 'ls']);
    assert.match(ls, /^NETWORK ID\s+NAME\s+DRIVER\s+SCOPE$/m);
    assert.match(ls, new RegExp(`^${id.slice(0, 12)}\\s+alpine-net\\s+bridge\\s+local$`, 'm'));
    assert.match(ls, /\bbridge\s+bridge\s+local\b/);
    assert.match(ls, /\bhost\s+host\s+local\b/);
    assert.match(ls, /\bnone\s+null\s+local\b/);
    // filters go to the daemon
    assert.equal(
      await dockerOk(L(), ['network', 'ls', '--filter', 'name=alpine', '--format', '{{.Name}}']),
      'alpine-net',
    );
    assert.equal(await dockerOk(L(), ['network', 'ls', '--filter', 'driver=null', '--format', '{{.Name}}']), 'none');
    assert.deepEqual((await dockerOk(L(), ['network', 'ls', '--filter', 'type=custom', '-q'])).split('\n'), [
      id.slice(0, 12),
    ]);
    const dup = await docker(L(), ['network', 'create', 'alpine-net']);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /network with name alpine-net already exists/);
  });

  await t.test(
    '2. four containers with docker run -dit; alpine4 joins bridge with docker network connect',
    async () => {
      for (const [name, net] of [
        ['alpine1', 'alpine-net'],
        ['alpine2', 'alpine-net'],
        ['alpine3', undefined],
        ['alpine4', 'alpine-net'],
      ] as const) {
        const id = await dockerOk(L(), [
          'run',
          '-dit',
          '--name',
          name,
          ...(net ? ['--network', net] : []),
          'alpine',
          'ash',
        ]);
        assert.match(id, FORMAT.id64);
      }
      await dockerOk(L(), ['network', 'connect', 'bridge', 'alpine4']);
      const ls = await dockerOk(L(), ['container', 'ls']);
      assert.match(ls, /^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$/m);
      for (const n of ['alpine1', 'alpine2', 'alpine3', 'alpine4'])
        assert.match(ls, new RegExp(`^[0-9a-f]{12}\\s+alpine\\s+"ash"\\s+.*\\bUp .*\\s${n}$`, 'm'));
      const onNet = (
        await dockerOk(L(), ['container', 'ls', '--filter', 'network=alpine-net', '--format', '{{.Names}}'])
      )
        .split('\n')
        .sort();
      assert.deepEqual(onNet, ['alpine1', 'alpine2', 'alpine4']);
      assert.equal(
        await dockerOk(L(), ['container', 'ls', '--filter', 'name=alpine3', '--format', '{{.Networks}}']),
        'bridge',
      );
    },
  );

  await t.test('3. docker network inspect: the same JSON as Docker, field by field', async () => {
    for (const [net, ref, members] of [
      ['alpine-net', 't2-inspect-alpine-net.json', ['alpine1', 'alpine2', 'alpine4']],
      ['bridge', 't2-inspect-bridge.json', ['alpine3', 'alpine4']],
    ] as const) {
      const ours = JSON.parse(await dockerOk(L(), ['network', 'inspect', net]));
      assert.equal(ours.length, 1);
      const theirs = referenceInspect(ref)[0]!;
      const n = ours[0];
      // Same keys and types, recursively; EnableIPv4 is new since API 1.48.
      assert.equal(
        describe(compareShapes(n, theirs, { mapKeys: ['Containers', 'Options', 'Labels'], added: ['EnableIPv4'] })),
        '',
      );
      assert.equal(describe(checkSpec(n, 'Network')), '');
      assert.match(n.Id, FORMAT.id64);
      assert.match(n.Created, FORMAT.rfc3339nano);
      assert.deepEqual(Object.keys(n.Options).sort(), Object.keys(theirs.Options as object).sort(), `${net} options`);
      assert.deepEqual(n.IPAM, theirs.IPAM, `${net} IPAM`);
      assert.deepEqual(
        Object.values(n.Containers as Record<string, { Name: string }>)
          .map((c) => c.Name)
          .sort(),
        members,
      );
      for (const [cid, c] of Object.entries(n.Containers as Record<string, Record<string, string>>)) {
        assert.match(cid, FORMAT.id64);
        assert.match(c.EndpointID!, FORMAT.id64);
        assert.match(c.MacAddress!, FORMAT.mac);
        assert.match(c.IPv4Address!, /^172\.1[78]\.0\.\d+\/16$/);
        assert.equal(c.IPv6Address, '');
      }
    }
    // The bridge's options name the default bridge like Docker's do.
    const opts = JSON.parse(await dockerOk(L(), ['network', 'inspect', '-f', '{{json .Options}}', 'bridge']));
    assert.equal(opts['com.docker.network.bridge.default_bridge'], 'true');
    assert.equal(opts['com.docker.network.driver.mtu'], '1500');
  });

  await t.test(
    "4. docker inspect of a container: the spec's ContainerInspectResponse, NetworkSettings as Docker fills it",
    async () => {
      const [c] = JSON.parse(await dockerOk(L(), ['inspect', 'alpine4']));
      assert.equal(describe(checkSpec(c, 'ContainerInspectResponse')), '');
      assert.match(c.Id, FORMAT.id64);
      assert.match(c.Created, FORMAT.rfc3339nano);
      assert.match(c.State.StartedAt, FORMAT.rfc3339nano);
      assert.equal(c.State.FinishedAt, '0001-01-01T00:00:00Z');
      assert.match(c.Image, FORMAT.imageId);
      assert.equal(c.Name, '/alpine4');
      assert.equal(c.HostConfig.NetworkMode, 'alpine-net');
      assert.equal(c.Config.Tty, true);
      assert.equal(c.Config.OpenStdin, true);
      assert.deepEqual(c.Config.Cmd, ['ash']);
      const ns = c.NetworkSettings;
      assert.deepEqual(Object.keys(ns.Networks).sort(), ['alpine-net', 'bridge']);
      assert.match(ns.SandboxID, FORMAT.id64);
      assert.deepEqual(ns.Ports, {});
      // The deprecated top-level fields describe the NetworkMode network.
      const main = ns.Networks['alpine-net'];
      assert.equal(ns.IPAddress, main.IPAddress);
      assert.equal(ns.MacAddress, main.MacAddress);
      assert.equal(ns.Gateway, '172.18.0.1');
      assert.equal(ns.IPPrefixLen, 16);
      for (const [name, ep] of Object.entries(ns.Networks as Record<string, Record<string, unknown>>)) {
        assert.match(ep.NetworkID as string, FORMAT.id64, name);
        assert.match(ep.EndpointID as string, FORMAT.id64, name);
        assert.match(ep.MacAddress as string, FORMAT.mac, name);
        assert.match(ep.IPAddress as string, FORMAT.ipv4, name);
        assert.equal(ep.IPPrefixLen, 16);
      }
      // Docker: DNS names on a user-defined network, none on the default bridge.
      assert.deepEqual(main.DNSNames, ['alpine4', c.Id.slice(0, 12)]);
      assert.equal(ns.Networks.bridge.DNSNames, null);
      // docker's Go templates read the same fields.
      assert.equal(
        await dockerOk(L(), ['inspect', '-f', '{{.NetworkSettings.Networks.bridge.Gateway}}', 'alpine4']),
        '172.17.0.1',
      );
    },
  );

  await t.test('5. docker exec: names resolve on alpine-net; the default bridge is out of reach', async () => {
    const look = await dockerOk(L(), ['exec', 'alpine1', 'nslookup', 'alpine2']);
    assert.match(look, /Server:\s+127\.0\.0\.11/);
    const ip2 = await dockerOk(L(), [
      'inspect',
      '-f',
      '{{(index .NetworkSettings.Networks "alpine-net").IPAddress}}',
      'alpine2',
    ]);
    assert.ok(look.includes(ip2), look);
    assert.equal(await pingFrom('alpine1', 'alpine2'), true);
    assert.equal(await pingFrom('alpine1', 'alpine4'), true);
    assert.equal(await pingFrom('alpine1', 'alpine3'), false);
    assert.equal(await pingFrom('alpine4', 'alpine3'), false, 'no names on the default bridge');
    const ip3 = await dockerOk(L(), ['inspect', '-f', '{{.NetworkSettings.IPAddress}}', 'alpine3']);
    assert.equal(await pingFrom('alpine4', ip3), true);
    // exit codes and stderr come back through the multiplexed stream
    const r = await docker(L(), ['exec', 'alpine1', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.equal(r.code, 3);
    assert.equal(r.stdout, 'out\n');
    assert.equal(r.stderr, 'err\n');
    // stdin goes in with -i
    assert.equal(await dockerOk(L(), ['exec', '-i', 'alpine1', 'cat'], { input: 'through stdin\n' }), 'through stdin');
  });

  await t.test('6. docker attach alpine1, ping alpine2, detach with CTRL-p CTRL-q: alpine1 keeps running', async () => {
    // alpine1 has a TTY, and docker attaches a TTY only from a terminal: `script` gives it one.
    // The detach keys follow once ping has finished, as a user would type them.
    const cmd = `(printf 'ping -c 2 alpine2\\n'; sleep 3; printf '\\020\\021') | script -qec '${DOCKER_BIN} attach alpine1' /dev/null`;
    const r = await run('sh', ['-c', cmd], { env: L().env, timeoutMs: 30_000 });
    assert.match(r.stdout, /2 packets transmitted, 2 packets received, 0% packet loss/);
    // The CLI reports a detach as Docker's does: "read escape sequence", exit status 1.
    assert.match(r.stdout, /read escape sequence/);
    assert.equal(r.code, 1, r.stderr + r.stdout);
    assert.equal(await dockerOk(L(), ['inspect', '-f', '{{.State.Status}}', 'alpine1']), 'running');
    // Without a terminal, docker refuses to attach to a TTY container, as it does with Docker.
    const piped = await docker(L(), ['attach', 'alpine1'], { input: 'ping -c 2 alpine2\n\x10\x11' });
    assert.notEqual(piped.code, 0);
    assert.match(piped.stderr, /the input device is not a TTY/);
  });

  await t.test('7. events: the daemon reported the network and container events', async () => {
    const until = Math.floor(Date.now() / 1000) + 1;
    const out = await dockerOk(L(), [
      'events',
      '--since',
      String(since),
      '--until',
      String(until),
      '--format',
      '{{.Type}} {{.Action}} {{.Actor.Attributes.name}}',
    ]);
    const lines = out.split('\n');
    assert.ok(lines.includes('network create alpine-net'), out);
    assert.ok(lines.includes('network connect alpine-net'), out);
    assert.ok(lines.includes('network connect bridge'), out);
    assert.ok(lines.includes('container create alpine1'), out);
    assert.ok(lines.includes('container start alpine1'), out);
    const netOnly = await dockerOk(L(), [
      'events',
      '--since',
      String(since),
      '--until',
      String(until),
      '--filter',
      'type=network',
      '--format',
      '{{.Type}}',
    ]);
    assert.deepEqual([...new Set(netOnly.split('\n'))], ['network']);
  });

  await t.test('8. stop, remove, disconnect, rm: back to the three built-in networks', async () => {
    await dockerOk(L(), ['network', 'disconnect', 'bridge', 'alpine4']);
    assert.equal(await dockerOk(L(), ['inspect', '-f', '{{len .NetworkSettings.Networks}}', 'alpine4']), '1');
    const busy = await docker(L(), ['network', 'rm', 'alpine-net']);
    assert.notEqual(busy.code, 0);
    assert.match(busy.stderr, /has active endpoints/);
    assert.deepEqual(
      (
        await dockerOk(L(), ['container', 'stop', '-t', '1', 'alpine1', 'alpine2', 'alpine3', 'alpine4'], {
          timeoutMs: 60_000,
        })
      ).split('\n'),
      ['alpine1', 'alpine2', 'alpine3', 'alpine4'],
    );
    assert.equal(await dockerOk(L(), ['container', 'ls', '-q']), '');
    assert.match(
      await dockerOk(L(), ['container', 'ls', '-a', '--filter', 'status=exited', '--format', '{{.Names}} {{.Status}}']),
      /alpine1 Exited \(\d+\)/,
    );
    await dockerOk(L(), ['container', 'rm', 'alpine1', 'alpine2', 'alpine3', 'alpine4']);
    assert.equal(await dockerOk(L(), ['network', 'rm', 'alpine-net']), 'alpine-net');
    assert.deepEqual((await dockerOk(L(), ['network', 'ls', '--format', '{{.Name}}'])).split('\n').sort(), [
      'bridge',
      'host',
      'none',
    ]);
    const gone = await docker(L(), ['network', 'inspect', 'alpine-net']);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /network alpine-net not found/);
  });
});

test(
  'the seed, "Use the default bridge network" and host/none networking, with the docker CLI',
  { skip },
  async (t) => {
    await t.test('alpine1 and alpine2 on the default bridge reach each other by IP, not by name', async () => {
      await dockerOk(L(), ['run', '-dit', '--name', 'alpine1', 'alpine', 'ash']);
      await dockerOk(L(), ['run', '-dit', '--name', 'alpine2', 'alpine', 'ash']);
      const [n] = JSON.parse(await dockerOk(L(), ['network', 'inspect', 'bridge']));
      assert.deepEqual(
        Object.values(n.Containers as Record<string, { Name: string }>)
          .map((c) => c.Name)
          .sort(),
        ['alpine1', 'alpine2'],
      );
      const ip2 = await dockerOk(L(), ['inspect', '-f', '{{.NetworkSettings.IPAddress}}', 'alpine2']);
      assert.match(ip2, /^172\.17\.0\.\d+$/);
      assert.equal(await pingFrom('alpine1', ip2), true);
      const byName = await docker(L(), ['exec', 'alpine1', 'ping', '-c', '1', '-W', '1', 'alpine2']);
      assert.notEqual(byName.code, 0);
      assert.match(byName.stderr + byName.stdout, /bad address 'alpine2'/);
      // The default bridge has no embedded DNS: the daemon's resolver is copied in.
      assert.doesNotMatch(await dockerOk(L(), ['exec', 'alpine1', 'cat', '/etc/resolv.conf']), /127\.0\.0\.11/);
      await dockerOk(L(), ['rm', '-f', 'alpine1', 'alpine2']);
    });

    await t.test("--network none has only lo; --network host shares the host's interfaces", async () => {
      const none = await dockerOk(L(), ['run', '--rm', '--network', 'none', 'alpine', 'ip', '-o', 'link']);
      assert.deepEqual(
        none.split('\n').map((l) => l.split(': ')[1]),
        ['lo'],
      );
      const host = await dockerOk(L(), ['run', '--rm', '--network', 'host', 'alpine', 'ip', '-o', 'link']);
      const names = (text: string) =>
        text
          .split('\n')
          .filter(Boolean)
          .map((l) => l.split(': ')[1]!.replace(/@.*/, ''))
          .sort();
      // Exactly the lab host's links (uplink0 with the stand-in internet; only lo and cove0 without an uplink).
      assert.deepEqual(names(host), names((await L().sh('ip -o link')).stdout), "the lab host's interfaces");
      assert.match(host, /: cove0[@:]/, 'and the default bridge');
      if (L().online) assert.match(host, /: uplink0[@:]/, "the lab host's uplink is visible");
    });
  },
);

test('more of the CLI: published ports, logs, restart, rename, wait, kill, prune, images', { skip }, async (t) => {
  await t.test('docker run -d -p 8080:80 nginx: docker port, docker ps PORTS, reachable from the host', async () => {
    await dockerOk(L(), ['run', '-d', '--name', 'web', '-p', '8080:80', 'nginx']);
    // Docker 20.10 on this machine printed both lines (peers/docker/logs/t5-manage.log); the IPv6 one
    // only exists where the daemon also publishes on [::].
    assert.match(await dockerOk(L(), ['port', 'web']), /^80\/tcp -> 0\.0\.0\.0:8080(\n80\/tcp -> \[::\]:8080)?$/);
    assert.match(
      await dockerOk(L(), ['ps', '--filter', 'name=web', '--format', '{{.Ports}}']),
      /0\.0\.0\.0:8080->80\/tcp/,
    );
    assert.match(await dockerOk(L(), ['ps', '--filter', 'publish=8080', '--format', '{{.Names}}']), /^web$/);
    const pb = JSON.parse(await dockerOk(L(), ['inspect', '-f', '{{json .HostConfig.PortBindings}}', 'web']));
    assert.deepEqual(pb, { '80/tcp': [{ HostIp: '', HostPort: '8080' }] });
    let page: string | undefined;
    for (let i = 0; i < 20 && !page; i++)
      page = (await wget(L(), 'http://127.0.0.1:8080/')) ?? (await new Promise((r) => setTimeout(r, 200)), undefined);
    assert.match(page ?? '', /Welcome to nginx/);
  });

  await t.test("docker run -P publishes the image's exposed port on an ephemeral host port", async () => {
    await dockerOk(L(), ['run', '-d', '--name', 'webp', '-P', 'nginx']);
    const port = await dockerOk(L(), ['port', 'webp', '80/tcp']);
    assert.match(port, /^0\.0\.0\.0:(\d+)(\n\[::\]:\1)?$/);
    await dockerOk(L(), ['rm', '-f', 'webp']);
  });

  await t.test('docker logs, restart, rename, wait, kill', async () => {
    await dockerOk(L(), [
      'run',
      '-d',
      '--name',
      'talker',
      'alpine',
      'sh',
      '-c',
      'echo hello; echo oops >&2; sleep 300',
    ]);
    let logs = { stdout: '', stderr: '' };
    for (let i = 0; i < 20; i++) {
      logs = await docker(L(), ['logs', 'talker']);
      if (logs.stdout && logs.stderr) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(logs.stdout, 'hello\n');
    assert.equal(logs.stderr, 'oops\n');
    await dockerOk(L(), ['restart', '-t', '1', 'talker'], { timeoutMs: 60_000 });
    assert.equal(
      await dockerOk(L(), ['inspect', '-f', '{{.State.Running}} {{.RestartCount}}', 'talker']).then(
        (s) => s.split(' ')[0],
      ),
      'true',
    );
    await dockerOk(L(), ['rename', 'talker', 'chatter']);
    assert.equal(await dockerOk(L(), ['inspect', '-f', '{{.Name}}', 'chatter']), '/chatter');
    await dockerOk(L(), ['kill', 'chatter']);
    assert.equal(await dockerOk(L(), ['wait', 'chatter']), '137');
    const notRunning = await docker(L(), ['kill', 'chatter']);
    assert.notEqual(notRunning.code, 0);
    assert.match(notRunning.stderr, /is not running/);
    // docker run without -d waits for the exit code through /wait
    const r = await docker(L(), ['run', '--rm', '--name', 'once', 'alpine', 'sh', '-c', 'echo ran; exit 7']);
    assert.equal(r.code, 7);
    assert.equal(r.stdout, 'ran\n');
    assert.equal((await docker(L(), ['inspect', 'once'])).code, 1, '--rm removed it');
    await dockerOk(L(), ['rm', 'chatter']);
  });

  await t.test('docker run -i relays piped stdin; docker run -t gets raw TTY output', async () => {
    assert.equal(await dockerOk(L(), ['run', '-i', '--rm', 'alpine', 'cat'], { input: 'hello\n' }), 'hello');
    assert.equal(await dockerOk(L(), ['run', '-i', '--rm', 'alpine', 'wc', '-l'], { input: 'a\nb\n' }), '2');
    const tty = await docker(L(), ['run', '--rm', '-t', 'alpine', 'echo', 'tty-run']);
    assert.equal(tty.code, 0);
    assert.equal(tty.stdout, 'tty-run\r\n', 'the TTY turns \\n into \\r\\n and nothing is framed');
  });

  await t.test('docker network create with IPAM config, connect --alias --ip, prune', async () => {
    await dockerOk(L(), [
      'network',
      'create',
      '--subnet',
      '10.10.0.0/24',
      '--gateway',
      '10.10.0.254',
      '--label',
      'purpose=test',
      'ipam-net',
    ]);
    const ipam = JSON.parse(await dockerOk(L(), ['network', 'inspect', '-f', '{{json .IPAM.Config}}', 'ipam-net']));
    assert.deepEqual(ipam, [{ Subnet: '10.10.0.0/24', Gateway: '10.10.0.254' }]);
    await dockerOk(L(), ['network', 'connect', '--alias', 'db', '--ip', '10.10.0.42', 'ipam-net', 'web']);
    const ep = JSON.parse(await dockerOk(L(), ['inspect', '-f', '{{json .NetworkSettings.Networks}}', 'web']))[
      'ipam-net'
    ];
    assert.equal(ep.IPAddress, '10.10.0.42');
    assert.deepEqual(ep.IPAMConfig, { IPv4Address: '10.10.0.42' });
    assert.ok(ep.Aliases.includes('db'), ep.Aliases);
    await dockerOk(L(), ['run', '-d', '--name', 'probe', '--network', 'ipam-net', 'alpine', 'sleep', '300']);
    assert.match(await dockerOk(L(), ['exec', 'probe', 'nslookup', 'db']), /10\.10\.0\.42/);
    await dockerOk(L(), ['rm', '-f', 'probe']);
    await dockerOk(L(), ['network', 'disconnect', 'ipam-net', 'web']);
    await dockerOk(L(), ['network', 'create', 'spare']);
    assert.equal(
      await dockerOk(L(), ['network', 'ls', '--filter', 'label=purpose=test', '--format', '{{.Name}}']),
      'ipam-net',
    );
    const pruned = await dockerOk(L(), ['network', 'prune', '-f', '--filter', 'label=purpose=test']);
    assert.match(pruned, /Deleted Networks:\nipam-net/);
    assert.match(await dockerOk(L(), ['network', 'prune', '-f']), /spare/);
    assert.deepEqual((await dockerOk(L(), ['network', 'ls', '--format', '{{.Name}}'])).split('\n').sort(), [
      'bridge',
      'host',
      'none',
    ]);
    await dockerOk(L(), ['rm', '-f', 'web']);
  });

  await t.test('docker image ls, inspect, tag, rm, import', async () => {
    const ls = await dockerOk(L(), ['image', 'ls', '--format', '{{.Repository}}:{{.Tag}}']);
    for (const ref of ['alpine:latest', 'busybox:latest', 'nginx:latest']) assert.ok(ls.split('\n').includes(ref), ls);
    const [img] = JSON.parse(await dockerOk(L(), ['image', 'inspect', 'alpine']));
    assert.match(img.Id, FORMAT.imageId);
    // API 1.50 dropped the container-only keys (Hostname, Tty, ...) from an image's Config.
    assert.equal(describe(checkSpec(img, 'ImageInspect')), '');
    await dockerOk(L(), ['tag', 'alpine', 'mine/alpine:v1']);
    assert.equal(await dockerOk(L(), ['image', 'inspect', '-f', '{{.Id}}', 'mine/alpine:v1']), img.Id);
    assert.match(await dockerOk(L(), ['rmi', 'mine/alpine:v1']), /Untagged: mine\/alpine:v1/);
    // docker import of a tar of the alpine image's files
    const exported = await run('sh', ['-c', `tar -C / -cf - bin/busybox | ${DOCKER_BIN} import - imported:1`], {
      env: L().env,
    });
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout.trim().split('\n').pop()!, FORMAT.imageId);
    assert.match(
      await dockerOk(L(), ['image', 'ls', 'imported', '--format', '{{.Repository}}:{{.Tag}}']),
      /^imported:1$/,
    );
    await dockerOk(L(), ['rmi', 'imported:1']);
    // docker load of the archive again: the same tags, reported like Docker does
    const loaded = await dockerOk(L(), ['load', '-i', join(REPO, 'build/images/alpine.tar')]);
    assert.match(loaded, /^Loaded image: alpine:latest$/m);
    assert.match(loaded, /^Loaded image: busybox:latest$/m);
    const missing = await docker(L(), ['image', 'inspect', 'nosuch']);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /No such image: nosuch/);
  });
});
