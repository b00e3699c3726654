import { test } from 'node:test';
import assert from 'node:assert/strict';
import { discovery, lbPlan, lbScript, renderLb } from '../../src/services/lb.js';
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

test('lbScript: one atomic replacement, numgen DNAT over the backends, refusal without any', () => {
  const s = lbScript([
    {
      serviceId: 'a',
      serviceName: 'a',
      networkId: 'n',
      vip: '10.0.1.2',
      backends: ['10.0.1.4', '10.0.1.5', '10.0.1.6'],
    },
    { serviceId: 'b', serviceName: 'b', networkId: 'n', vip: '10.0.1.3', backends: ['10.0.1.7'] },
    { serviceId: 'c', serviceName: 'c', networkId: 'n', vip: '10.0.1.10', backends: [] },
  ]);
  assert.match(s, /^table ip cove_lb\ndelete table ip cove_lb\ntable ip cove_lb \{\n/);
  assert.match(
    s,
    /chain vip_10_0_1_2 \{\n    dnat to numgen random mod 3 map \{ 0 : 10\.0\.1\.4, 1 : 10\.0\.1\.5, 2 : 10\.0\.1\.6 \}\n  \}/,
  );
  assert.match(s, /chain vip_10_0_1_3 \{\n    dnat to 10\.0\.1\.7\n  \}/);
  // One lookup by VIP in a verdict map (numeric order), whatever the number of services; the VIP without tasks is not in it.
  assert.match(s, /elements = \{ 10\.0\.1\.2 : goto vip_10_0_1_2, 10\.0\.1\.3 : goto vip_10_0_1_3 \}/);
  assert.equal(s.match(/type nat hook output/g)?.length, 1);
  assert.match(
    s,
    /chain lb_output \{\n    type nat hook output priority -100; policy accept;\n    ip daddr vmap @vips\n  \}/,
  );
  assert.match(s, /ip daddr \{ 10\.0\.1\.10 \} meta l4proto tcp reject with tcp reset/);
  assert.doesNotMatch(s, /goto vip_10_0_1_10/);
  assert.equal(lbScript([]), 'table ip cove_lb\ndelete table ip cove_lb\n');
  // Only VIPs without tasks: no nat chain or map, the refusal alone.
  const refusing = lbScript([{ serviceId: 'c', serviceName: 'c', networkId: 'n', vip: '10.0.1.10', backends: [] }]);
  assert.doesNotMatch(refusing, /map vips|lb_output/);
  assert.match(refusing, /chain lb_filter/);
});

test('lbPlan: 50 services give 50 map elements and still one rule in the hook chain', () => {
  const vips = Array.from({ length: 50 }, (_, i) => ({
    serviceId: `s${i}`,
    serviceName: `s${i}`,
    networkId: 'n',
    vip: `10.0.1.${100 + i}`,
    backends: [`10.0.2.${i}`, `10.0.3.${i}`],
  }));
  const plan = lbPlan(vips);
  assert.equal(plan.vips.length, 50);
  assert.deepEqual(plan.vips[0], { vip: '10.0.1.100', chain: 'vip_10_0_1_100', backends: ['10.0.2.0', '10.0.3.0'] });
  const s = renderLb(plan);
  const hook = s.slice(s.indexOf('chain lb_output'));
  assert.equal(
    hook
      .slice(0, hook.indexOf('  }'))
      .split('\n')
      .filter((l) => l.trim() && !l.includes('chain') && !l.includes('type nat')).length,
    1,
  );
  assert.equal(s.match(/ : goto vip_/g)?.length, 50);
});
