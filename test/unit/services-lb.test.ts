import { test } from 'node:test';
import assert from 'node:assert/strict';
import { discovery, lbDelta, lbOwners, lbPlan, lbScript, type Vip } from '../../src/services/lb.js';
import { Firewall, type FwObject } from '../../src/network/firewall/index.js';
import { FakeNft } from '../../src/network/firewall/fake.js';
import { assertGolden } from '../support/golden.js';
import type { Service, Task } from '../../src/services/types.js';

const svc = (id: string, name: string, mode: 'vip' | 'dnsrr', vip?: string): Service => ({
  ID: id,
  Version: { Index: 1 },
  CreatedAt: '',
  UpdatedAt: '',
  SpecVersion: { Index: 1 },
  Spec: {
    Name: name,
    TaskTemplate: { Networks: [{ Target: 'net1', Aliases: [`${name}-alias`] }] },
    EndpointSpec: { Mode: mode },
  },
  Endpoint: { Spec: { Mode: mode }, ...(vip ? { VirtualIPs: [{ NetworkID: 'net1', Addr: vip }] } : {}) },
});
const task = (
  svcId: string,
  ip: string,
  state: Task['Status']['State'] = 'running',
  desired: Task['DesiredState'] = 'running',
): Task => ({
  ID: ip,
  Version: { Index: 1 },
  CreatedAt: '',
  UpdatedAt: '',
  Labels: {},
  Spec: {},
  SpecVersion: { Index: 1 },
  ServiceID: svcId,
  Slot: 1,
  NodeID: 'n',
  Status: { Timestamp: '', State: state, Message: '' },
  DesiredState: desired,
  NetworksAttachments: [{ Network: { ID: 'net1' }, Addresses: [`${ip}/24`] }],
});

test('discovery: a vip service answers with its VIP, dnsrr with its tasks, tasks.<name> with running tasks only', () => {
  const d = discovery(
    [svc('s1', 'my-nginx', 'vip', '10.0.1.2/24'), svc('s2', 'rr', 'dnsrr')],
    [
      task('s1', '10.0.1.5'),
      task('s1', '10.0.1.4'),
      task('s1', '10.0.1.9', 'failed'),
      task('s1', '10.0.1.8', 'running', 'shutdown'),
      task('s2', '10.0.1.7'),
    ],
  );
  const names = d.names.get('net1')!;
  assert.deepEqual(names.get('my-nginx'), [{ ipv4: '10.0.1.2' }]);
  assert.deepEqual(names.get('my-nginx-alias'), [{ ipv4: '10.0.1.2' }]);
  assert.deepEqual(names.get('tasks.my-nginx'), [{ ipv4: '10.0.1.4' }, { ipv4: '10.0.1.5' }]);
  assert.deepEqual(names.get('rr'), [{ ipv4: '10.0.1.7' }]);
  assert.deepEqual(d.vips.get('net1'), [
    {
      serviceId: 's1',
      serviceName: 'my-nginx',
      networkId: 'net1',
      vip: '10.0.1.2',
      backends: ['10.0.1.4', '10.0.1.5'],
    },
  ]);
});

const vipOf = (vip: string, backends: string[], id = vip): Vip => ({
  serviceId: id,
  serviceName: id,
  networkId: 'n',
  vip,
  backends,
});

test('lbScript: one atomic replacement, numgen DNAT over the backends, refusal without any', () => {
  const s = lbScript([
    vipOf('10.0.1.2', ['10.0.1.4', '10.0.1.5', '10.0.1.6']),
    vipOf('10.0.1.3', ['10.0.1.7']),
    vipOf('10.0.1.10', []),
  ]);
  assert.match(s, /^add table ip cove_lb\ndelete table ip cove_lb\nadd table ip cove_lb\n/);
  assert.match(
    s,
    /add rule ip cove_lb vip_10_0_1_2 dnat to numgen random mod 3 map \{ 0 : 10\.0\.1\.4, 1 : 10\.0\.1\.5, 2 : 10\.0\.1\.6 \}\n/,
  );
  assert.match(s, /add rule ip cove_lb vip_10_0_1_3 dnat to 10\.0\.1\.7\n/);
  // One lookup by VIP in a verdict map, whatever the number of services; the VIP without tasks is not in it.
  assert.match(s, /add element ip cove_lb vips \{ 10\.0\.1\.2 : goto vip_10_0_1_2, 10\.0\.1\.3 : goto vip_10_0_1_3 \}/);
  assert.equal(s.match(/type nat hook output/g)?.length, 1);
  assert.match(s, /add rule ip cove_lb lb_output ip daddr vmap @vips\n/);
  assert.match(s, /add element ip cove_lb refused \{ 10\.0\.1\.10 \}/);
  assert.match(s, /lb_filter ip daddr @refused meta l4proto tcp reject with tcp reset/);
  assert.doesNotMatch(s, /goto vip_10_0_1_10/);
  assert.equal(lbScript([]), 'add table ip cove_lb\ndelete table ip cove_lb\n');
  // Only VIPs without tasks: no nat chain or map, the refusal alone.
  const refusing = lbScript([vipOf('10.0.1.10', [])]);
  assert.doesNotMatch(refusing, /map ip cove_lb vips|lb_output/);
  assert.match(refusing, /chain ip cove_lb lb_filter/);
});

test('lbPlan: 50 services give 50 map elements and still one rule in the hook chain', () => {
  const vips = Array.from({ length: 50 }, (_, i) => vipOf(`10.0.1.${100 + i}`, [`10.0.2.${i}`, `10.0.3.${i}`]));
  const plan = lbPlan(vips);
  assert.equal(plan.vips.length, 50);
  assert.deepEqual(plan.vips[0], { vip: '10.0.1.100', chain: 'vip_10_0_1_100', backends: ['10.0.2.0', '10.0.3.0'] });
  const s = lbScript(vips);
  assert.equal(s.match(/add rule ip cove_lb lb_output /g)?.length, 1);
  assert.equal(s.match(/ : goto vip_/g)?.length, 50);
});

/** A sandbox's table as the daemon programs it: a frameless Firewall on a fake kernel. */
function sandbox(): { nft: FakeNft; fw: Firewall; sigs: Map<string, string> } {
  const nft = new FakeNft();
  return { nft, fw: new Firewall({ backend: nft, frame: false, checkEveryMs: 0 }), sigs: new Map() };
}

/** What discovery.ts does per pass: the delta (only owners that changed) in one transaction. */
async function step(sb: ReturnType<typeof sandbox>, vips: Vip[]): Promise<Map<string, FwObject[]>> {
  const d = lbDelta(sb.sigs, lbOwners(lbPlan(vips)));
  if (d.owners.size) await sb.fw.setOwners(d.owners);
  sb.sigs = d.sigs;
  return d.owners;
}

/** The whole table programmed from nothing (a new sandbox, a daemon restart, a failed delta). */
async function rebuilt(vips: Vip[]): Promise<string> {
  const sb = sandbox();
  await step(sb, vips);
  return sb.nft.dump();
}

test('golden: a sandbox table with three VIPs (three tasks, one task, none)', async () => {
  const sb = sandbox();
  await step(sb, [
    vipOf('10.0.1.2', ['10.0.1.4', '10.0.1.5', '10.0.1.6']),
    vipOf('10.0.1.3', ['10.0.1.7']),
    vipOf('10.0.1.10', []),
  ]);
  assertGolden('firewall/service-lb.nft', sb.nft.dump());
  // From nothing: one transaction that replaces whatever table an earlier daemon left.
  assert.equal(sb.nft.log.length, 1);
  assert.match(sb.nft.log[0]!.text, /^add table ip cove_lb\ndelete table ip cove_lb\nadd table ip cove_lb\n/);
  // The kernel's nft accepts the same script lbScript renders.
  assert.equal(
    sb.nft.log[0]!.text,
    lbScript([
      vipOf('10.0.1.2', ['10.0.1.4', '10.0.1.5', '10.0.1.6']),
      vipOf('10.0.1.3', ['10.0.1.7']),
      vipOf('10.0.1.10', []),
    ]),
  );
});

test('golden: only VIPs without tasks (the refusal alone, no nat chain)', async () => {
  assertGolden('firewall/service-lb-refused.nft', await rebuilt([vipOf('10.0.1.10', []), vipOf('10.0.1.11', [])]));
});

test('per-VIP deltas: each step changes only its VIP (and the base when it must) and ends where a rebuild would', async () => {
  const sb = sandbox();
  const a = vipOf('10.0.1.2', ['10.0.1.4']);
  const states: Array<{ vips: Vip[]; owners: string[] }> = [
    { vips: [a], owners: ['lb', 'vip 10.0.1.2'] },
    // a new service, no task yet: its element in `refused` and the base's filter chain
    { vips: [a, vipOf('10.0.1.3', [])], owners: ['lb', 'vip 10.0.1.3'] },
    // its task runs: its chain and map element; the base drops the refusal
    { vips: [a, vipOf('10.0.1.3', ['10.0.1.7'])], owners: ['lb', 'vip 10.0.1.3'] },
    // a second task joins, then the first leaves: that VIP's chain only
    { vips: [a, vipOf('10.0.1.3', ['10.0.1.7', '10.0.1.8'])], owners: ['vip 10.0.1.3'] },
    { vips: [a, vipOf('10.0.1.3', ['10.0.1.8'])], owners: ['vip 10.0.1.3'] },
    // the other service loses its only task
    { vips: [vipOf('10.0.1.2', []), vipOf('10.0.1.3', ['10.0.1.8'])], owners: ['lb', 'vip 10.0.1.2'] },
    // a service removed
    { vips: [vipOf('10.0.1.3', ['10.0.1.8'])], owners: ['lb', 'vip 10.0.1.2'] },
    // the last one removed: no table
    { vips: [], owners: ['lb', 'vip 10.0.1.3'] },
  ];
  for (const [i, st] of states.entries()) {
    const before = sb.nft.log.length;
    const owners = await step(sb, st.vips);
    assert.deepEqual([...owners.keys()].sort(), st.owners, `step ${i}: owners`);
    assert.equal(sb.nft.log.length, before + 1, `step ${i}: one transaction`);
    assert.equal(sb.nft.dump(), await rebuilt(st.vips), `step ${i}: same table as a rebuild`);
    // a delta never replaces the table (which would re-register its hooks)
    if (i > 0 && st.vips.length) assert.doesNotMatch(sb.nft.log.at(-1)!.text, /table ip cove_lb/, `step ${i}`);
  }
  assert.equal(sb.nft.dump(), '');
  assert.deepEqual(sb.fw.ownerNames(), []);
  // unchanged: nothing planned, nothing sent
  const again = sandbox();
  await step(again, [a]);
  assert.equal((await step(again, [a])).size, 0);
  assert.equal(again.nft.log.length, 1);
});

test("one more service beside 50: one transaction of that VIP's three objects, the hooks untouched", async () => {
  const fifty = Array.from({ length: 50 }, (_, i) => vipOf(`10.0.1.${100 + i}`, [`10.0.2.${i}`]));
  const sb = sandbox();
  await step(sb, fifty);
  const before = sb.nft.log.length;
  await step(sb, [...fifty, vipOf('10.0.1.200', [])]);
  // appears without a task: refused (the base gains the refusal once)
  await step(sb, [...fifty, vipOf('10.0.1.200', ['10.0.2.200'])]);
  const txs = sb.nft.log.slice(before).map((l) => l.text);
  assert.equal(txs.length, 2);
  assert.equal(
    txs[1],
    [
      'delete element ip cove_lb refused { 10.0.1.200 }',
      'flush chain ip cove_lb lb_filter',
      'delete chain ip cove_lb lb_filter',
      'delete set ip cove_lb refused',
      'add chain ip cove_lb vip_10_0_1_200',
      'add rule ip cove_lb vip_10_0_1_200 dnat to 10.0.2.200',
      'add element ip cove_lb vips { 10.0.1.200 : goto vip_10_0_1_200 }',
      '',
    ].join('\n'),
  );
  for (const t of txs) assert.doesNotMatch(t, /lb_output|vip_10_0_1_1[0-4]\d/);
  assert.equal(sb.nft.dump(), await rebuilt([...fifty, vipOf('10.0.1.200', ['10.0.2.200'])]));
  assertGolden('firewall/service-lb-51.nft', sb.nft.dump());
});

test('a delta the kernel refuses leaves the table as it was (one transaction): the caller rebuilds', async () => {
  const sb = sandbox();
  await step(sb, [vipOf('10.0.1.2', ['10.0.1.4'])]);
  const was = sb.nft.dump();
  sb.nft.failNext = new Error('nft: refused');
  await assert.rejects(step(sb, [vipOf('10.0.1.2', ['10.0.1.4', '10.0.1.5'])]), /refused/);
  assert.equal(sb.nft.dump(), was);
  assert.equal(sb.fw.dump(), was, "the firewall's desired state reverted too");
});

test('Firewall.setOwners: several owners in one transaction, removals before additions, othersGo', async () => {
  const nft = new FakeNft();
  const fw = new Firewall({ backend: nft, frame: false, checkEveryMs: 0 });
  const t = { family: 'ip', table: 'x' } as const;
  await fw.setOwners(
    new Map<string, FwObject[]>([
      ['e', [{ ...t, kind: 'element', set: 's', key: '1.1.1.1' }]],
      [
        'base',
        [
          { ...t, kind: 'table' },
          { ...t, kind: 'set', name: 's', type: 'ipv4_addr' },
        ],
      ],
    ]),
  );
  assert.equal(nft.log.length, 1);
  assert.deepEqual([...nft.ruleset.elements('ip', 'x', 's')!.keys()], ['1.1.1.1']);
  assert.deepEqual(fw.ownerNames().sort(), ['base', 'e']);
  // everything goes at once: the element before its set, the set before its table
  await fw.setOwners(new Map(), { othersGo: true });
  assert.equal(nft.log.length, 2);
  assert.equal(nft.log[1]!.text, 'delete element ip x s { 1.1.1.1 }\ndelete set ip x s\ndelete table ip x\n');
  assert.equal(nft.dump(), '');
  assert.deepEqual(fw.ownerNames(), []);
});
