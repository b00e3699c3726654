/**
 * The embedded DNS as a user meets it: `nslookup` from inside containers.
 * Aliases (--network-alias, network connect --alias, one alias shared by
 * several containers), <name>.<network>, short IDs, a container's own name;
 * names stay within the networks the asker is on; rename, disconnect and rm
 * change the answers at once; outside names go to the daemon's --dns (the
 * lab's stand-in resolver) and an unknown one is NXDOMAIN, not a timeout;
 * the default bridge resolves no container names.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { INTERNET_IP, skipOffline, type Lab } from '../lab/lab.js';
import { labWithImages, ipOf, pings } from './seed-helpers.js';

let lab: Lab;
before(async () => {
  lab = await labWithImages('cove-t-dns');
});
after(async () => {
  await lab?.destroy();
});

/** The addresses `nslookup NAME` prints as answers inside a container (not the server's own line), or the error rcode. */
async function lookup(from: string, name: string, type = 'A'): Promise<string[] | 'NXDOMAIN' | 'SERVFAIL'> {
  const r = await lab.cove(['exec', from, 'nslookup', `-type=${type}`, name]);
  const out = r.stdout + r.stderr;
  assert.doesNotMatch(out, /timed out|no servers could be reached/, `nslookup ${name} from ${from} timed out:\n${out}`);
  if (/NXDOMAIN/.test(out)) return 'NXDOMAIN';
  if (/SERVFAIL/.test(out)) return 'SERVFAIL';
  // busybox prints "Server: 127.0.0.11 / Address: 127.0.0.11:53", then "Name: x / Address: a" per answer.
  const answers = out
    .split(/\n\s*\n/)
    .slice(1)
    .join('\n');
  return [...answers.matchAll(/^Address:\s*(\S+)$/gm)].map((m) => m[1]!).sort();
}

/**
 * What a name no container holds gets: the embedded DNS forwards it, so the upstream's NXDOMAIN; with no
 * route out (COVE_LAB_OFFLINE=1) no upstream answers and, as in Docker, the answer is SERVFAIL (never a timeout).
 */
const unknown = () => (lab.online ? 'NXDOMAIN' : 'SERVFAIL');

test('service discovery on user-defined networks', async (t) => {
  const ip: Record<string, string> = {};

  await t.test('setup: web1 and web2 share the alias "web" on sd; client on sd; other only on sd2', async () => {
    await lab.coveOk(['network', 'create', 'sd']);
    await lab.coveOk(['network', 'create', 'sd2']);
    await lab.coveOk([
      'run',
      '-dit',
      '--name',
      'web1',
      '--network',
      'sd',
      '--network-alias',
      'web',
      '--network-alias',
      'www',
      'alpine',
      'ash',
    ]);
    await lab.coveOk(['run', '-dit', '--name', 'web2', '--network', 'sd', '--network-alias', 'web', 'alpine', 'ash']);
    await lab.coveOk(['run', '-dit', '--name', 'client', '--network', 'sd', 'alpine', 'ash']);
    await lab.coveOk(['run', '-dit', '--name', 'other', '--network', 'sd2', 'alpine', 'ash']);
    for (const c of ['web1', 'web2', 'client']) ip[c] = await ipOf(lab, c, 'sd');
    ip.other = await ipOf(lab, 'other', 'sd2');
  });

  await t.test('--network-alias: the alias answers, a shared alias answers with every holder', async () => {
    assert.deepEqual(await lookup('client', 'www'), [ip.web1]);
    assert.deepEqual(await lookup('client', 'web'), [ip.web1!, ip.web2!].sort());
    assert.ok((await pings(lab, 'client', 'www')) || (await pings(lab, 'client', 'www')));
  });

  await t.test("<name>.<network>, the short container ID and the asker's own name", async () => {
    assert.deepEqual(await lookup('client', 'web1.sd'), [ip.web1]);
    const shortId = (await lab.coveOk(['inspect', '-f', '{{.Id}}', 'web2'])).slice(0, 12);
    assert.deepEqual(await lookup('client', shortId), [ip.web2]);
    assert.deepEqual(await lookup('client', 'client'), [ip.client]);
  });

  await t.test('names from a network the asker is not on do not resolve', async () => {
    assert.equal(await lookup('client', 'other'), unknown());
    assert.equal(await lookup('client', 'other.sd2'), unknown());
    assert.equal(await lookup('other', 'web1'), unknown());
    assert.equal(await lookup('other', 'web'), unknown());
  });

  await t.test('network connect --alias: the alias answers on that network only', async () => {
    await lab.coveOk(['network', 'connect', '--alias', 'db', 'sd', 'other']);
    ip.otherSd = await ipOf(lab, 'other', 'sd');
    assert.deepEqual(await lookup('client', 'db'), [ip.otherSd]);
    assert.deepEqual(await lookup('client', 'other'), [ip.otherSd], 'its name too, with its sd address');
    assert.equal(await lookup('client', 'other.sd2'), unknown(), 'still not its sd2 name');
    // other now sees sd's names
    assert.deepEqual(await lookup('other', 'web1'), [ip.web1]);
  });

  await t.test('rename changes the answer at once', async () => {
    await lab.coveOk(['rename', 'web1', 'web1b']);
    assert.deepEqual(await lookup('client', 'web1b'), [ip.web1]);
    assert.equal(await lookup('client', 'web1'), unknown());
    assert.deepEqual(await lookup('client', 'www'), [ip.web1], 'aliases stay');
  });

  await t.test('disconnect and rm remove the names at once', async () => {
    await lab.coveOk(['network', 'disconnect', 'sd', 'other']);
    assert.equal(await lookup('client', 'db'), unknown());
    assert.equal(await lookup('client', 'other'), unknown());
    await lab.coveOk(['rm', '-f', 'web2']);
    assert.equal(await lookup('client', 'web2'), unknown());
    assert.deepEqual(await lookup('client', 'web'), [ip.web1], 'the shared alias keeps its other holder');
  });

  await t.test("outside names go to the daemon's --dns; an unknown one is NXDOMAIN, not a timeout", async (tt) => {
    if (!lab.online)
      assert.equal(await lookup('client', 'google.com'), 'SERVFAIL', 'no upstream reachable: SERVFAIL at once');
    if (skipOffline(tt, lab)) return;
    assert.deepEqual(await lookup('client', 'google.com'), [INTERNET_IP]);
    assert.equal(await lookup('client', 'no-such-name.invalid'), 'NXDOMAIN');
    assert.equal(await lookup('client', 'nosuchhost'), 'NXDOMAIN', 'a bare unknown name too');
  });

  await t.test('the default bridge resolves no container names', async () => {
    await lab.coveOk(['run', '-dit', '--name', 'b1', 'alpine', 'ash']);
    await lab.coveOk(['run', '-dit', '--name', 'b2', 'alpine', 'ash']);
    const b2 = await ipOf(lab, 'b2', 'bridge');
    assert.doesNotMatch(await lab.coveOk(['exec', 'b1', 'cat', '/etc/resolv.conf']), /127\.0\.0\.11/);
    const r = await lab.cove(['exec', 'b1', 'ping', '-c', '1', '-W', '1', 'b2']);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /bad address 'b2'/);
    assert.ok((await pings(lab, 'b1', b2)) || (await pings(lab, 'b1', b2)), 'by address it works');
  });
});
