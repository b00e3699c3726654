import { test } from 'node:test';
import assert from 'node:assert/strict';
import { discovery, lbScript } from '../../src/services/lb.js';
import type { Service, Task } from '../../src/services/types.js';

const svc = (id: string, name: string, mode: 'vip' | 'dnsrr', vip?: string): Service => ({
  ID: id, Version: { Index: 1 }, CreatedAt: '', UpdatedAt: '', SpecVersion: { Index: 1 },
  Spec: { Name: name, TaskTemplate: { Networks: [{ Target: 'net1', Aliases: [`${name}-alias`] }] }, EndpointSpec: { Mode: mode } },
  Endpoint: { Spec: { Mode: mode }, ...(vip ? { VirtualIPs: [{ NetworkID: 'net1', Addr: vip }] } : {}) },
});
const task = (svcId: string, ip: string, state: Task['Status']['State'] = 'running', desired: Task['DesiredState'] = 'running'): Task => ({
  ID: ip, Version: { Index: 1 }, CreatedAt: '', UpdatedAt: '', Labels: {}, Spec: {}, SpecVersion: { Index: 1 }, ServiceID: svcId, Slot: 1, NodeID: 'n',
  Status: { Timestamp: '', State: state, Message: '' }, DesiredState: desired,
  NetworksAttachments: [{ Network: { ID: 'net1' }, Addresses: [`${ip}/24`] }],
});

test('discovery: a vip service answers with its VIP, dnsrr with its tasks, tasks.<name> with running tasks only', () => {
  const d = discovery(
    [svc('s1', 'my-nginx', 'vip', '10.0.1.2/24'), svc('s2', 'rr', 'dnsrr')],
    [task('s1', '10.0.1.5'), task('s1', '10.0.1.4'), task('s1', '10.0.1.9', 'failed'), task('s1', '10.0.1.8', 'running', 'shutdown'), task('s2', '10.0.1.7')],
  );
  const names = d.names.get('net1')!;
  assert.deepEqual(names.get('my-nginx'), [{ ipv4: '10.0.1.2' }]);
  assert.deepEqual(names.get('my-nginx-alias'), [{ ipv4: '10.0.1.2' }]);
  assert.deepEqual(names.get('tasks.my-nginx'), [{ ipv4: '10.0.1.4' }, { ipv4: '10.0.1.5' }]);
  assert.deepEqual(names.get('rr'), [{ ipv4: '10.0.1.7' }]);
  assert.deepEqual(d.vips.get('net1'), [{ serviceId: 's1', serviceName: 'my-nginx', networkId: 'net1', vip: '10.0.1.2', backends: ['10.0.1.4', '10.0.1.5'] }]);
});

test('lbScript: one atomic replacement, numgen DNAT over the backends, refusal without any', () => {
  const s = lbScript([
    { serviceId: 'a', serviceName: 'a', networkId: 'n', vip: '10.0.1.2', backends: ['10.0.1.4', '10.0.1.5', '10.0.1.6'] },
    { serviceId: 'b', serviceName: 'b', networkId: 'n', vip: '10.0.1.3', backends: ['10.0.1.7'] },
    { serviceId: 'c', serviceName: 'c', networkId: 'n', vip: '10.0.1.10', backends: [] },
  ]);
  assert.match(s, /^table ip cove_lb\ndelete table ip cove_lb\ntable ip cove_lb \{\n/);
  assert.match(s, /ip daddr 10\.0\.1\.2 dnat to numgen random mod 3 map \{ 0 : 10\.0\.1\.4, 1 : 10\.0\.1\.5, 2 : 10\.0\.1\.6 \}/);
  assert.match(s, /ip daddr 10\.0\.1\.3 dnat to 10\.0\.1\.7\n/);
  assert.match(s, /ip daddr \{ 10\.0\.1\.10 \} meta l4proto tcp reject with tcp reset/);
  assert.equal(lbScript([]), 'table ip cove_lb\ndelete table ip cove_lb\n');
});
