/**
 * The bridge driver on the shared firewall (src/network/firewall): whole rule
 * sets compared with golden files (test/golden/firewall/), each change checked
 * to touch only its owner's objects, through the in-memory kernel FakeNft.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Firewall } from '../../src/network/firewall/index.js';
import { FakeNft } from '../../src/network/firewall/fake.js';
import {
  networkObjects,
  networkOwner,
  portElements,
  portObjects,
  portsOwner,
} from '../../src/network/drivers/bridge/firewall.js';
import { bridgeConfig, type BridgeConfig } from '../../src/network/drivers/bridge/plan.js';
import type { DriverNetwork, ResolvedPortBinding } from '../../src/network/driver.js';
import { assertGolden } from '../support/golden.js';

function net(id: string, subnet: string, extra: Partial<DriverNetwork> = {}): DriverNetwork {
  return {
    id: id.repeat(64).slice(0, 64),
    name: id,
    options: {},
    internal: false,
    enableIPv6: false,
    ipv4: [{ pool: subnet, gateway: subnet.replace(/0\/(\d+)$/, '1/$1'), auxAddresses: {} }],
    ipv6: [],
    ...extra,
  };
}

const bind = (b: Partial<ResolvedPortBinding>): ResolvedPortBinding => ({
  proto: 'tcp',
  containerIp: '172.18.0.2',
  containerPort: 80,
  containerPortEnd: 80,
  hostIp: '',
  hostPort: 8080,
  hostPortEnd: 8080,
  ...b,
});

function setup(): {
  fw: Firewall;
  nft: FakeNft;
  addNet: (cfg: BridgeConfig) => Promise<void>;
  publish: (cfg: BridgeConfig, ep: string, b: ResolvedPortBinding[]) => Promise<void>;
} {
  const nft = new FakeNft();
  const fw = new Firewall({ backend: nft, checkEveryMs: 0 });
  return {
    fw,
    nft,
    addNet: (cfg) => fw.owner(networkOwner(cfg.id)).set(networkObjects(cfg)),
    publish: (cfg, ep, b) => fw.owner(portsOwner(ep)).set(portObjects(cfg, portElements(b, cfg.hostBindingIPv4))),
  };
}

const A = bridgeConfig(net('a', '172.18.0.0/16'));
const B = bridgeConfig(net('b', '172.19.0.0/16'));

test('two networks and a published port: the whole rule set (golden)', async () => {
  const { nft, fw, addNet, publish } = setup();
  await addNet(A);
  await addNet(B);
  await publish(A, 'ep1', [
    bind({}),
    bind({
      proto: 'udp',
      hostIp: '127.0.0.1',
      hostPort: 5353,
      hostPortEnd: 5353,
      containerPort: 53,
      containerPortEnd: 53,
    }),
  ]);
  assertGolden('firewall/two-networks.nft', nft.dump());
  assert.equal(fw.dump(), nft.dump(), 'desired state and kernel agree');
});

test("a network create writes only that network's chains and elements; rm takes only them", async () => {
  const { nft, fw, addNet, publish } = setup();
  await addNet(A);
  await publish(A, 'ep1', [bind({})]);
  const before = nft.dump();
  nft.log.length = 0;
  await addNet(B);
  assert.equal(nft.log.length, 1, 'one transaction');
  const script = nft.log[0]!.text;
  assert.doesNotMatch(
    script,
    /br-aaaaaaaaaaaa|delete|flush|pub4 \{ tcp/,
    'nothing of network A, nothing deleted or flushed',
  );
  assert.match(script, /add chain inet cove in_br-bbbbbbbbbbbb\n/);
  await fw.owner(networkOwner(B.id)).remove();
  assert.equal(nft.dump(), before, 'network A and its port exactly as they were');
});

test('published ports: one nft -i line each way; a change of bindings is one line (old out, new in)', async () => {
  const { nft, addNet, publish, fw } = setup();
  await addNet(A);
  nft.log.length = 0;
  await publish(A, 'ep1', [bind({})]);
  await publish(A, 'ep1', [bind({ hostPort: 9000, hostPortEnd: 9002 })]);
  await fw.owner(portsOwner('ep1')).remove();
  assert.deepEqual(nft.log, [
    { via: 'line', text: 'add element inet cove pub4 { tcp . 0.0.0.0/0 . 8080 : 172.18.0.2 . 80 }' },
    {
      via: 'line',
      text: 'delete element inet cove pub4 { tcp . 0.0.0.0/0 . 8080 }; add element inet cove pub4 { tcp . 0.0.0.0/0 . 9000-9002 : 172.18.0.2 . 80 }',
    },
    { via: 'line', text: 'delete element inet cove pub4 { tcp . 0.0.0.0/0 . 9000-9002 }' },
  ]);
});

test('port elements: a host range onto one port is ONE element; equal ranges map port by port; bad values refused', () => {
  assert.deepEqual(portElements([bind({})]), [
    { map: 'pub4', key: 'tcp . 0.0.0.0/0 . 8080', value: '172.18.0.2 . 80' },
  ]);
  assert.deepEqual(
    portElements([
      bind({
        proto: 'udp',
        hostIp: '10.0.0.5',
        hostPort: 5000,
        hostPortEnd: 5010,
        containerPort: 53,
        containerPortEnd: 53,
      }),
    ]),
    [{ map: 'pub4', key: 'udp . 10.0.0.5 . 5000-5010', value: '172.18.0.2 . 53' }],
  );
  assert.deepEqual(
    portElements([bind({ hostPort: 8000, hostPortEnd: 8001, containerPort: 80, containerPortEnd: 81 })]).map(
      (e) => `${e.key} : ${e.value}`,
    ),
    ['tcp . 0.0.0.0/0 . 8000 : 172.18.0.2 . 80', 'tcp . 0.0.0.0/0 . 8001 : 172.18.0.2 . 81'],
  );
  assert.equal(portElements([bind({})], '10.0.0.9')[0]!.key, 'tcp . 10.0.0.9 . 8080');
  assert.deepEqual(portElements([bind({ hostIp: '2001:db8::1' })]), []);
  assert.throws(() => portElements([bind({ proto: 'sctp' })]), /sctp/);
  assert.throws(() => portElements([bind({ hostPort: 70000 })]), /host port/);
  assert.throws(() => portElements([bind({ containerIp: '172.18.0.2; flush ruleset' })]), /container IP/);
});

test('internal, icc=false, no masquerade, IPv6, routed and nat-unprotected networks (golden)', async () => {
  const { nft, addNet, publish } = setup();
  await addNet(bridgeConfig(net('e', '10.1.0.0/24', { internal: true })));
  await addNet(
    bridgeConfig(
      net('c', '10.2.0.0/24', {
        options: {
          'com.docker.network.bridge.enable_icc': 'false',
          'com.docker.network.bridge.enable_ip_masquerade': 'false',
        },
      }),
    ),
  );
  await addNet(
    bridgeConfig(
      net('d', '10.3.0.0/24', {
        enableIPv6: true,
        ipv6: [{ pool: 'fd00:3::/64', gateway: 'fd00:3::1/64', auxAddresses: {} }],
      }),
    ),
  );
  const routed = bridgeConfig(
    net('f', '10.4.0.0/24', { options: { 'com.docker.network.bridge.gateway_mode_ipv4': 'routed' } }),
  );
  await addNet(routed);
  await publish(routed, 'ep9', [
    bind({ containerIp: '10.4.0.2', hostPort: 8443, hostPortEnd: 8443, containerPort: 443, containerPortEnd: 443 }),
  ]);
  await addNet(
    bridgeConfig(
      net('9', '10.5.0.0/24', { options: { 'com.docker.network.bridge.gateway_mode_ipv4': 'nat-unprotected' } }),
    ),
  );
  assertGolden('firewall/network-options.nft', nft.dump());
  assert.throws(
    () =>
      bridgeConfig(net('8', '10.6.0.0/24', { options: { 'com.docker.network.bridge.gateway_mode_ipv4': 'bogus' } })),
    /gateway_mode_ipv4 must be one of/,
  );
});

test("the table comes with the first owner and goes with the last; another owner's objects survive bridge changes", async () => {
  const { nft, fw, addNet } = setup();
  const svc = fw.owner('svc:web');
  await addNet(A);
  await svc.set([
    { kind: 'chain', family: 'inet', table: 'cove', name: 'svc_web' },
    { kind: 'rule', family: 'inet', table: 'cove', chain: 'svc_web', rule: 'ip daddr 10.0.0.5 tcp dport 80 accept' },
    { kind: 'table', family: 'inet', table: 'cove-svc' },
    {
      kind: 'chain',
      family: 'inet',
      table: 'cove-svc',
      name: 'lb',
      base: { type: 'nat', hook: 'prerouting', priority: 'dstnat' },
    },
  ]);
  const svcRules = () => nft.ruleset.rules('inet', 'cove', 'svc_web');
  await addNet(B);
  await fw.owner(networkOwner(A.id)).remove();
  assert.deepEqual(svcRules(), ['ip daddr 10.0.0.5 tcp dport 80 accept']);
  assert.ok(nft.hasTable('inet', 'cove-svc'));
  await fw.owner(networkOwner(B.id)).remove();
  assert.ok(nft.hasTable('inet', 'cove'), 'the service still owns objects');
  await svc.remove();
  assert.equal(nft.dump(), '', 'nothing left');
});

test('a refused transaction changes nothing, in the kernel or in the desired state', async () => {
  const { nft, fw, addNet } = setup();
  await addNet(A);
  const before = nft.dump();
  nft.failNext = new Error('nft: Operation not permitted');
  await assert.rejects(addNet(B), /Operation not permitted/);
  assert.equal(nft.dump(), before);
  assert.equal(fw.dump(), before);
  assert.deepEqual(fw.ownerNames(), [networkOwner(A.id)]);
  await addNet(B); // and it works the next time
  assert.match(nft.dump(), /in_br-bbbbbbbbbbbb/);
});

test('healing: after a flush from outside the whole desired state comes back; a port published before the check heals instead of failing', async () => {
  const { nft, fw, addNet, publish } = setup();
  await addNet(A);
  await publish(A, 'ep1', [bind({})]);
  const full = nft.dump();
  nft.flushRuleset();
  assert.equal(await fw.heal(), true);
  assert.equal(nft.dump(), full);
  assert.equal(await fw.heal(), false, 'nothing to do when intact');
  nft.flushRuleset();
  await publish(A, 'ep2', [bind({ hostPort: 8081, hostPortEnd: 8081, containerIp: '172.18.0.3' })]);
  assert.match(nft.dump(), /tcp \. 0\.0\.0\.0\/0 \. 8081 : 172\.18\.0\.3 \. 80/);
  assert.match(nft.dump(), /tcp \. 0\.0\.0\.0\/0 \. 8080 : 172\.18\.0\.2 \. 80/);
  assert.equal(fw.heals, 2);
});

test('the ruleset model refuses what the kernel refuses', async () => {
  const { fw } = setup();
  const o = fw.owner('x');
  await assert.rejects(
    o.set([{ kind: 'rule', family: 'inet', table: 'cove', chain: 'nochain', rule: 'accept' }]),
    /does not declare/,
  );
  await assert.rejects(
    o.set([
      { kind: 'chain', family: 'inet', table: 'cove', name: 'c1' },
      { kind: 'rule', family: 'inet', table: 'cove', chain: 'c1', rule: 'jump nowhere' },
    ]),
    /No such file or directory \(chain nowhere\)/,
  );
  await assert.rejects(
    o.set([{ kind: 'element', family: 'inet', table: 'cove', set: 'pub4', key: 'tcp . 1.2.3.4 . 80' }]),
    /needs a value/,
  );
  await assert.rejects(
    o.set([
      { kind: 'chain', family: 'inet', table: 'cove', name: 'c1' },
      { kind: 'rule', family: 'inet', table: 'cove', chain: 'c1', rule: 'accept; flush ruleset' },
    ]),
    /invalid rule/,
  );
  assert.equal(fw.dump(), '');
});

test("a firewall without the frame (a sandbox's): owners bring their own tables, and nothing else appears", async () => {
  const nft = new FakeNft();
  const fw = new Firewall({ backend: nft, checkEveryMs: 0, frame: false });
  const lb = fw.owner('lb:web');
  await lb.set([
    { kind: 'table', family: 'ip', table: 'cove_lb' },
    {
      kind: 'chain',
      family: 'ip',
      table: 'cove_lb',
      name: 'pre',
      base: { type: 'nat', hook: 'prerouting', priority: 'dstnat' },
    },
    {
      kind: 'rule',
      family: 'ip',
      table: 'cove_lb',
      chain: 'pre',
      rule: 'ip daddr 10.0.0.5 tcp dport 80 dnat to 10.0.0.7',
    },
  ]);
  assert.deepEqual(nft.ruleset.tableNames(), [{ family: 'ip', table: 'cove_lb' }]);
  await lb.remove();
  assert.equal(nft.dump(), '');
});
