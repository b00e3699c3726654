import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderTable, replaceTableScript, portElements, addElementsLine, deleteElementsLine, deleteTableScript } from '../../src/network/drivers/bridge/firewall.js';
import { bridgeConfig } from '../../src/network/drivers/bridge/plan.js';
import type { DriverNetwork, ResolvedPortBinding } from '../../src/network/driver.js';

function net(id: string, subnet: string, extra: Partial<DriverNetwork> = {}): DriverNetwork {
  return { id: id.repeat(64).slice(0, 64), name: id, options: {}, internal: false, enableIPv6: false, ipv4: [{ pool: subnet, gateway: subnet.replace(/0\/(\d+)$/, '1/$1'), auxAddresses: {} }], ipv6: [], ...extra };
}

const bind = (b: Partial<ResolvedPortBinding>): ResolvedPortBinding => ({ proto: 'tcp', containerIp: '172.18.0.2', containerPort: 80, containerPortEnd: 80, hostIp: '', hostPort: 8080, hostPortEnd: 8080, ...b });

test('one bridge: masquerade out of any other interface, isolation from other bridges, hairpin and localhost NAT', () => {
  const t = renderTable([bridgeConfig(net('a', '172.18.0.0/16'))], []);
  assert.match(t, /set bridges \{\n    type ifname\n    elements = \{ "br-aaaaaaaaaaaa" \}/);
  assert.match(t, /ip saddr 172\.18\.0\.0\/16 oifname != "br-aaaaaaaaaaaa" masquerade/);
  assert.match(t, /iifname "br-aaaaaaaaaaaa" oifname @bridges oifname != "br-aaaaaaaaaaaa" drop/);
  assert.match(t, /oifname "br-aaaaaaaaaaaa" ip saddr 127\.0\.0\.0\/8 masquerade/);
  assert.match(t, /oifname "br-aaaaaaaaaaaa" ct status dnat ip saddr 172\.18\.0\.0\/16 masquerade/);
  assert.match(t, /chain prerouting \{\n    type nat hook prerouting priority dstnat; policy accept;\n    meta l4proto \{ tcp, udp \} fib daddr type local dnat ip to meta l4proto \. ip daddr \. th dport map @pub4/);
  assert.match(t, /chain output \{\n    type nat hook output priority -100;/);
  // published traffic is accepted before any drop
  const fwd = t.slice(t.indexOf('chain forward'));
  assert.ok(fwd.indexOf('ct status dnat accept') < fwd.indexOf('drop'));
});

test('internal: no masquerade, nothing in or out; icc=false: drop within the bridge; masquerade off', () => {
  const t = renderTable([
    bridgeConfig(net('e', '10.1.0.0/24', { internal: true })),
    bridgeConfig(net('c', '10.2.0.0/24', { options: { 'com.docker.network.bridge.enable_icc': 'false', 'com.docker.network.bridge.enable_ip_masquerade': 'false' } })),
  ], []);
  assert.match(t, /iifname "br-eeeeeeeeeeee" oifname != "br-eeeeeeeeeeee" drop/);
  assert.match(t, /oifname "br-eeeeeeeeeeee" iifname != "br-eeeeeeeeeeee" drop/);
  assert.doesNotMatch(t, /10\.1\.0\.0\/24/);
  assert.match(t, /iifname "br-cccccccccccc" oifname "br-cccccccccccc" drop/);
  assert.doesNotMatch(t, /ip saddr 10\.2\.0\.0\/24 oifname != /);
});

test('published ports are map elements; a host range onto one port is ONE element; equal ranges map port by port', () => {
  assert.deepEqual(portElements([bind({})]), [{ map: 'pub4', key: 'tcp . 0.0.0.0/0 . 8080', value: '172.18.0.2 . 80' }]);
  assert.deepEqual(portElements([bind({ proto: 'udp', hostIp: '10.0.0.5', hostPort: 5000, hostPortEnd: 5010, containerPort: 53, containerPortEnd: 53 })]), [
    { map: 'pub4', key: 'udp . 10.0.0.5 . 5000-5010', value: '172.18.0.2 . 53' },
  ]);
  assert.deepEqual(portElements([bind({ hostPort: 8000, hostPortEnd: 8001, containerPort: 80, containerPortEnd: 81 })]).map((e) => `${e.key} : ${e.value}`), [
    'tcp . 0.0.0.0/0 . 8000 : 172.18.0.2 . 80',
    'tcp . 0.0.0.0/0 . 8001 : 172.18.0.2 . 81',
  ]);
  // the network's host_binding_ipv4 applies when the binding has no host IP
  assert.equal(portElements([bind({})], '10.0.0.9')[0]!.key, 'tcp . 10.0.0.9 . 8080');
  // an IPv6 host binding for an IPv4 container is not ours to program
  assert.deepEqual(portElements([bind({ hostIp: '2001:db8::1' })]), []);
  assert.throws(() => portElements([bind({ proto: 'sctp' })]), /sctp/);
  assert.throws(() => portElements([bind({ hostPort: 70000 })]), /host port/);
  assert.throws(() => portElements([bind({ containerIp: '172.18.0.2; flush ruleset' })]), /container IP/);
});

test('element lines: add and delete in one line (one nft -i transaction)', () => {
  const e = portElements([bind({}), bind({ proto: 'udp' })]);
  assert.equal(addElementsLine(e), 'add element inet cove pub4 { tcp . 0.0.0.0/0 . 8080 : 172.18.0.2 . 80, udp . 0.0.0.0/0 . 8080 : 172.18.0.2 . 80 }');
  assert.equal(deleteElementsLine(e), 'delete element inet cove pub4 { tcp . 0.0.0.0/0 . 8080, udp . 0.0.0.0/0 . 8080 }');
  assert.equal(addElementsLine([]), undefined);
});

test('the whole table is replaced in one transaction, ports included', () => {
  const s = replaceTableScript([bridgeConfig(net('a', '172.18.0.0/16'))], portElements([bind({})]));
  assert.ok(s.startsWith('table inet cove {}\ndelete table inet cove\ntable inet cove {\n'));
  assert.match(s, /elements = \{ tcp \. 0\.0\.0\.0\/0 \. 8080 : 172\.18\.0\.2 \. 80 \}/);
  assert.equal(deleteTableScript(), 'table inet cove {}\ndelete table inet cove\n');
});
