/**
 * The seed's "Networking with standalone containers": two containers on the
 * default bridge reach each other and the internet stand-in by IP through
 * Cove's NAT, but not by name (no service discovery on the default bridge).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Lab } from '../lab/lab.js';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { INTERNET_IP, LAB_IP, skipOffline } from '../lab/lab.js';
import { labWithImages, reaches } from './seed-helpers.js';

let lab: Lab;
before(async () => {
  lab = await labWithImages('cove-t-dbr');
});
after(async () => {
  await lab?.destroy();
});

test('1. the default networks are listed', async () => {
  const ls = await lab.coveOk(['network', 'ls']);
  const lines = ls.split('\n');
  assert.match(lines[0]!, /^NETWORK ID\s+NAME\s+DRIVER\s+SCOPE$/);
  const rows = lines
    .slice(1)
    .map((l) => l.split(/\s+/).slice(1, 4).join(' '))
    .sort();
  assert.deepEqual(rows, ['bridge bridge local', 'host host local', 'none null local']);
});

test('2-6. alpine1 and alpine2 on the default bridge: IP works both ways, names do not, the internet does', async () => {
  await lab.coveOk(['run', '-dit', '--name', 'alpine1', 'alpine', 'ash']);
  await lab.coveOk(['run', '-dit', '--name', 'alpine2', 'alpine', 'ash']);
  const ps = await lab.coveOk(['container', 'ls', '--format', '{{.Names}} {{.Status}}']);
  assert.match(ps, /alpine1 Up/);
  assert.match(ps, /alpine2 Up/);

  const inspect = JSON.parse(await lab.coveOk(['network', 'inspect', 'bridge']))[0];
  assert.equal(inspect.Name, 'bridge');
  assert.equal(inspect.IPAM.Config[0].Subnet, '172.17.0.0/16');
  const names = Object.values(inspect.Containers as Record<string, { Name: string; IPv4Address: string }>)
    .map((c) => c.Name)
    .sort();
  assert.deepEqual(names, ['alpine1', 'alpine2']);
  const byName = Object.fromEntries(
    Object.values(inspect.Containers as Record<string, { Name: string; IPv4Address: string }>).map((c) => [
      c.Name,
      c.IPv4Address.split('/')[0]!,
    ]),
  );
  assert.equal(byName.alpine1, '172.17.0.2');
  assert.equal(byName.alpine2, '172.17.0.3');

  // 4. ip addr show from inside alpine1 (through attach, then CTRL-p CTRL-q).
  const att = await lab.attach('alpine1', [{ send: 'ip addr show', until: /inet 172\.17\.0\.2\/16[^]*\n.*# $/ }]);
  assert.match(att.stdout, /inet 172\.17\.0\.2\/16/);
  assert.match(att.stdout, /eth0@if\d+/);

  // 5. The internet (its stand-in) by name, through the host's resolver and NAT.
  if (lab.online) assert.ok(await reaches(lab, 'alpine1', 'google.com'), 'alpine1 pings google.com');
  // 6. alpine2 by IP works, by name fails.
  assert.ok(await reaches(lab, 'alpine1', byName.alpine2!));
  assert.ok(await reaches(lab, 'alpine2', byName.alpine1!));
  const byNameTry = await lab.cove(['exec', 'alpine1', 'ping', '-c', '1', '-W', '1', 'alpine2']);
  assert.notEqual(byNameTry.code, 0);
  assert.match(byNameTry.stderr + byNameTry.stdout, /bad address 'alpine2'/);
  assert.equal(await lab.coveOk(['inspect', '-f', '{{.State.Running}}', 'alpine1']), 'true', 'detach left it running');

  // 8. Stop and remove both containers.
  await lab.coveOk(['container', 'stop', '-t', '1', 'alpine1', 'alpine2']);
  await lab.coveOk(['container', 'rm', 'alpine1', 'alpine2']);
  assert.equal(await lab.coveOk(['ps', '-aq']), '');
  assert.equal(Object.keys(JSON.parse(await lab.coveOk(['network', 'inspect', 'bridge']))[0].Containers).length, 0);
});

test('NAT: the internet stand-in sees the host address, not the container address', async (t) => {
  if (skipOffline(t, lab)) return;
  // A web server on the internet stand-in that tells each client its source address.
  const www = join(lab.dir, 'inet-www');
  mkdirSync(join(www, 'cgi-bin'), { recursive: true });
  writeFileSync(
    join(www, 'cgi-bin', 'ip'),
    '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n%s\\n" "$REMOTE_ADDR"\n',
    { mode: 0o755 },
  );
  const server = spawn(
    'nsenter',
    [`--net=/run/netns/${lab.inetNetns}`, 'busybox', 'httpd', '-f', '-p', `${INTERNET_IP}:8000`, '-h', www],
    { stdio: 'ignore' },
  );
  try {
    await lab.coveOk(['run', '-dit', '--name', 'natbox', 'alpine', 'ash']);
    let seen = '';
    for (let i = 0; i < 20 && !seen; i++) {
      const r = await lab.cove([
        'exec',
        'natbox',
        'timeout',
        '5',
        'wget',
        '-q',
        '-O',
        '-',
        `http://${INTERNET_IP}:8000/cgi-bin/ip`,
      ]);
      seen = r.stdout.trim();
      if (!seen) await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(seen, LAB_IP, 'masqueraded to the host uplink address');
  } finally {
    server.kill('SIGKILL');
    await lab.cove(['rm', '-f', 'natbox']);
  }
});
