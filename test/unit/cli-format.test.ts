import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tabwrite, humanDuration, humanSize, goTimeString, formatList, naturalLess } from '../../src/cli/format.js';
import { renderTemplate } from '../../src/cli/template.js';
import { parsePublish, buildCreateBody } from '../../src/cli/commands/run.js';
import { detachKeyBytes } from '../../src/cli/stdio.js';
import { socketPathFrom } from '../../src/cli/client.js';

test('tabwriter pads columns to max(10, widest + 3) like docker, last column unpadded', () => {
  const out = tabwrite(
    'NETWORK ID\tNAME\tDRIVER\tSCOPE\n74aecdc07873\tbridge\tbridge\tlocal\n7a6380085c4c\talpine-net\tbridge\tlocal',
  );
  assert.equal(
    out,
    [
      'NETWORK ID     NAME         DRIVER    SCOPE',
      '74aecdc07873   bridge       bridge    local',
      '7a6380085c4c   alpine-net   bridge    local',
    ].join('\n'),
  );
  // Empty cells are padded too (docker ps with no ports).
  assert.equal(tabwrite('A\t\tB\nxx\t\tyy'), 'A                   B\nxx                  yy');
});

test('go-units durations and sizes', () => {
  assert.equal(humanDuration(500), 'Less than a second');
  assert.equal(humanDuration(1000), '1 second');
  assert.equal(humanDuration(59_000), '59 seconds');
  assert.equal(humanDuration(61_000), 'About a minute');
  assert.equal(humanDuration(5 * 60_000), '5 minutes');
  assert.equal(humanDuration(3_600_000), 'About an hour');
  assert.equal(humanDuration(5 * 3_600_000), '5 hours');
  assert.equal(humanDuration(3 * 86_400_000), '3 days');
  assert.equal(humanSize(1_234_567), '1.23MB');
  assert.equal(humanSize(0), '0B');
  assert.equal(humanSize(5_000), '5kB');
  assert.equal(humanSize(7_654_321_000), '7.65GB');
  assert.equal(goTimeString('2026-11-28T04:00:16.046448105Z'), '2026-11-28 04:00:16.046448105 +0000 UTC');
  assert.equal(goTimeString('2026-11-28T04:00:16Z'), '2026-11-28 04:00:16 +0000 UTC');
});

test('Go template subset: fields, json, index, range with variables, if/else, pipes, functions', () => {
  const dot = {
    Name: 'alpine1',
    Labels: { b: '2', a: '1' },
    NetworkSettings: { Networks: { bridge: { IPAddress: '172.17.0.2' }, 'alpine-net': { IPAddress: '172.18.0.2' } } },
    Env: ['A=1', 'B=2'],
    Html: '<b>',
  };
  assert.equal(renderTemplate('{{.Name}}', dot), 'alpine1');
  assert.equal(renderTemplate('{{json .Labels}}', dot), '{"b":"2","a":"1"}');
  assert.equal(renderTemplate('{{json .Html}}', dot), '"\\u003cb\\u003e"');
  assert.equal(renderTemplate('{{index .Labels "a"}}', dot), '1');
  assert.equal(renderTemplate('{{(index .NetworkSettings.Networks "bridge").IPAddress}}', dot), '172.17.0.2');
  assert.equal(
    renderTemplate('{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}', dot),
    '172.18.0.2 172.17.0.2 ',
  );
  assert.equal(
    renderTemplate('{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}};{{end}}', dot),
    'alpine-net=172.18.0.2;bridge=172.17.0.2;',
  );
  assert.equal(renderTemplate('{{join .Env ","}}', dot), 'A=1,B=2');
  assert.equal(renderTemplate('{{.Name | upper}}', dot), 'ALPINE1');
  assert.equal(renderTemplate('{{if .Missing}}yes{{else}}no{{end}}', dot), 'no');
  assert.equal(renderTemplate('{{range .Nothing}}x{{else}}empty{{end}}', dot), 'empty');
  assert.equal(renderTemplate('{{len .Env}} {{printf "%s-%d" .Name 3}}', dot), '2 alpine1-3');
  assert.equal(renderTemplate('{{.Labels}} {{.Env}}', dot), 'map[a:1 b:2] [A=1 B=2]');
  assert.equal(renderTemplate('{{- .Name -}}  ', dot), 'alpine1');
  assert.throws(() => renderTemplate('{{.Name.Deeper.Still}}', dot), /can't evaluate field/);
  assert.throws(() => renderTemplate('{{nosuchfunc .Name}}', dot), /function "nosuchfunc" not defined/);
});

test('list formats: default table, custom table, json, quiet', () => {
  const spec = {
    headers: { ID: 'NETWORK ID', Name: 'NAME' },
    defaultTable: 'table {{.ID}}\t{{.Name}}',
    quietField: 'ID',
  };
  const rows = [{ ID: 'abc', Name: 'x' }];
  assert.equal(formatList(rows, undefined, spec), 'NETWORK ID   NAME\nabc          x\n');
  assert.equal(formatList(rows, 'table {{.Name}}\\t{{.ID}}', spec), 'NAME      NETWORK ID\nx         abc\n');
  assert.equal(formatList(rows, '{{json .}}', spec), '{"ID":"abc","Name":"x"}\n');
  assert.equal(formatList(rows, 'json', spec), '{"ID":"abc","Name":"x"}\n');
  assert.equal(formatList(rows, undefined, spec, true), 'abc\n');
  assert.equal(formatList([], undefined, spec), 'NETWORK ID   NAME\n');
  assert.ok(naturalLess('net2', 'net10') < 0);
});

test("natural order is docker's (fvbommel/sortorder NaturalLess), not the locale's", () => {
  const sorted = [
    '',
    '0',
    '1',
    '01',
    '001',
    '2',
    '10',
    'B',
    'a',
    'a1',
    'a01',
    'a2',
    'a10',
    'aa',
    'b',
    'net2',
    'net10x',
  ];
  for (let i = 0; i < sorted.length; i++)
    for (let j = 0; j < sorted.length; j++) {
      const got = Math.sign(naturalLess(sorted[i]!, sorted[j]!));
      assert.equal(got, Math.sign(i - j), `${JSON.stringify(sorted[i])} vs ${JSON.stringify(sorted[j])}`);
    }
  assert.deepEqual(['my-net10', 'bridge', 'Host', 'my-net9', 'none'].sort(naturalLess), [
    'Host',
    'bridge',
    'my-net9',
    'my-net10',
    'none',
  ]);
});

test('publish specs: short and long syntax, ranges, IPv6', () => {
  assert.deepEqual(parsePublish(['8080:80']), {
    exposed: { '80/tcp': {} },
    bindings: { '80/tcp': [{ HostIp: '', HostPort: '8080' }] },
  });
  assert.deepEqual(parsePublish(['target=80,published=8081,protocol=udp']).bindings, {
    '80/udp': [{ HostIp: '', HostPort: '8081' }],
  });
  assert.deepEqual(parsePublish(['127.0.0.1::53/udp']).bindings, { '53/udp': [{ HostIp: '127.0.0.1', HostPort: '' }] });
  assert.deepEqual(parsePublish(['[::1]:9000:90']).bindings, { '90/tcp': [{ HostIp: '::1', HostPort: '9000' }] });
  assert.deepEqual(Object.keys(parsePublish(['8000-8001:80-81']).bindings), ['80/tcp', '81/tcp']);
  assert.equal(parsePublish(['8000-8001:80-81']).bindings['81/tcp']![0]!.HostPort, '8001');
  assert.deepEqual(parsePublish(['80']).bindings, { '80/tcp': [{ HostIp: '', HostPort: '' }] });
  assert.throws(() => parsePublish(['80/icmp']), /invalid proto/);
  assert.throws(() => parsePublish(['published=80']), /missing mandatory field 'target'/);
});

test('run flags become the create body docker would send', () => {
  const b = buildCreateBody('alpine', ['ash'], {
    detach: true,
    interactive: true,
    tty: true,
    name: 'a1',
    network: ['alpine-net'],
    networkAlias: ['db'],
    ip: '10.0.0.5',
    publish: ['8080:80'],
    env: ['X=1'],
    dns: ['1.1.1.1'],
    addHost: ['h=10.0.0.1'],
    label: ['k=v'],
    rm: true,
  }) as any;
  assert.equal(b.Image, 'alpine');
  assert.deepEqual(b.Cmd, ['ash']);
  assert.equal(b.Tty, true);
  assert.equal(b.OpenStdin, true);
  assert.equal(b.AttachStdout, false);
  assert.equal(b.HostConfig.NetworkMode, 'alpine-net');
  assert.equal(b.HostConfig.AutoRemove, true);
  assert.deepEqual(b.HostConfig.ExtraHosts, ['h:10.0.0.1']);
  assert.deepEqual(b.NetworkingConfig.EndpointsConfig['alpine-net'], {
    IPAMConfig: { IPv4Address: '10.0.0.5' },
    Aliases: ['db'],
  });
  assert.deepEqual(b.ExposedPorts, { '80/tcp': {} });
  assert.deepEqual(b.Labels, { k: 'v' });
  const plain = buildCreateBody('alpine', [], {}) as any;
  assert.equal(plain.Cmd, null);
  assert.equal(plain.HostConfig.NetworkMode, 'default');
});

test('detach keys and socket selection', () => {
  assert.deepEqual(detachKeyBytes('ctrl-p,ctrl-q'), Buffer.from([0x10, 0x11]));
  assert.deepEqual(detachKeyBytes('ctrl-@,a'), Buffer.from([0, 0x61]));
  assert.throws(() => detachKeyBytes('ctrl-pp'), /Invalid detach keys/);
  assert.equal(socketPathFrom('unix:///x.sock', {}), '/x.sock');
  assert.equal(socketPathFrom(undefined, { COVE_HOST: 'unix:///c.sock', DOCKER_HOST: 'unix:///d.sock' }), '/c.sock');
  assert.equal(socketPathFrom(undefined, { DOCKER_HOST: 'unix:///d.sock' }), '/d.sock');
  assert.equal(socketPathFrom(undefined, { DOCKER_HOST: 'tcp://1.2.3.4:2375' }), '/run/cove/cove.sock');
  assert.throws(() => socketPathFrom('tcp://x:1', {}), /only unix/);
});
