import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cidr, ipv4, ipv6, ifName, mtu, netnsPath, mac } from '../../src/kernel/validate.js';
import { sysctlPath } from '../../src/kernel/netns.js';
import { inNetns } from '../../src/kernel/exec.js';

test('addresses and CIDRs', () => {
  assert.equal(ipv4('10.0.0.1'), '10.0.0.1');
  for (const bad of ['10.0.0.256', '10.0.0', '010.0.0.1', '1.2.3.4 ', 'a.b.c.d'])
    assert.throws(() => ipv4(bad), /invalid/);
  assert.equal(ipv6('2001:DB8::1'), '2001:db8::1');
  assert.throws(() => ipv6('2001:db8::g'));
  assert.deepEqual(cidr('172.18.0.5/16'), { family: 4, address: '172.18.0.5', prefix: 16, network: '172.18.0.0/16' });
  assert.deepEqual(cidr('2001:db8:1::5/64'), {
    family: 6,
    address: '2001:db8:1::5',
    prefix: 64,
    network: '2001:db8:1::/64',
  });
  assert.throws(() => cidr('10.0.0.0/33'));
  assert.throws(() => cidr('10.0.0.0'));
});

test('names, numbers and paths that go into ip -batch lines', () => {
  assert.equal(ifName('veth1234567'), 'veth1234567');
  for (const bad of ['', 'a b', 'eth0.10', 'x'.repeat(16), 'a"b']) assert.throws(() => ifName(bad));
  assert.equal(mtu('1500'), 1500);
  for (const bad of ['abc', '67', '65536', '1e3']) assert.throws(() => mtu(bad));
  assert.equal(netnsPath('/run/cove/netns/abc'), '/run/cove/netns/abc');
  for (const bad of ['run/x', '/a b', '/a/../b', '/a\nb']) assert.throws(() => netnsPath(bad));
  assert.equal(mac('02:42:AC:11:00:02'), '02:42:ac:11:00:02');
});

test('sysctl keys map to /proc/sys/net paths; only net.* keys', () => {
  assert.equal(sysctlPath('net.ipv6.conf.all.disable_ipv6'), '/proc/sys/net/ipv6/conf/all/disable_ipv6');
  assert.throws(() => sysctlPath('kernel.hostname'), /only net/);
  assert.throws(() => sysctlPath('net/../../etc'), /invalid key/);
});

test('commands inside a netns go through nsenter', () => {
  assert.deepEqual(inNetns(null, ['ip', 'link']), ['ip', 'link']);
  assert.deepEqual(inNetns('/run/x', ['ip', 'link']), ['nsenter', '--net=/run/x', '--', 'ip', 'link']);
});
