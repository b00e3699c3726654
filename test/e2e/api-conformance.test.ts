/**
 * Engine API conformance, raw HTTP over the socket: the headers and version
 * negotiation clients rely on, Docker's status codes and `{"message": …}`
 * bodies for bad input and missing objects (and nothing changed after a
 * refusal), unknown endpoints answered at once, response shapes checked
 * against the v1.51 spec, the hijacked attach/exec stream with Docker's
 * multiplexed framing and raw TTY mode, and the event stream.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { request } from 'node:http';
import type { Lab } from '../lab/lab.js';
import { api, clientLab, teardown, sleep, type ApiAnswer } from './clients-helpers.js';
import { checkSpec, describe, FORMAT } from './engine-spec.js';

let lab: Lab;
before(async () => {
  lab = await clientLab('cove-t-cl4');
});
after(async () => {
  await teardown(lab);
});

const q = (filters: object) => encodeURIComponent(JSON.stringify(filters));

function assertError(r: ApiAnswer, status: number, message: RegExp | string): void {
  assert.equal(r.status, status, `${r.status} ${r.text}`);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  const body = r.json();
  assert.deepEqual(Object.keys(body), ['message'], r.text);
  if (typeof message === 'string') assert.equal(body.message, message);
  else assert.match(body.message, message);
}

/** Everything a refused request must leave alone. */
async function snapshot(): Promise<string> {
  const nets = (await api(lab, 'GET', '/networks'))
    .json()
    .map((n: { Id: string; Name: string }) => `${n.Name}/${n.Id}`)
    .sort();
  const cs = (await api(lab, 'GET', '/containers/json?all=1'))
    .json()
    .map((c: { Id: string; State: string }) => `${c.Id}/${c.State}`)
    .sort();
  const imgs = (await api(lab, 'GET', '/images/json'))
    .json()
    .map((i: { Id: string; RepoTags: string[] }) => `${i.Id}/${i.RepoTags.join(',')}`)
    .sort();
  return JSON.stringify({ nets, cs, imgs });
}

/**
 * A hijacked request on a raw socket: sends the request, returns the status
 * line, headers, and a reader of what follows.
 */
function hijack(
  path: string,
  body?: object,
): Promise<{ head: string; sock: import('node:net').Socket; data: () => Buffer; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = connect(lab.socket);
    let buf = Buffer.alloc(0);
    let head: string | undefined;
    let endResolve!: () => void;
    const ended = new Promise<void>((r) => {
      endResolve = r;
    });
    const payload = body ? JSON.stringify(body) : '';
    sock.on('connect', () => {
      sock.write(
        `POST ${path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n` +
          (payload ? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n` : '') +
          `\r\n${payload}`,
      );
    });
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (head === undefined) {
        const i = buf.indexOf('\r\n\r\n');
        if (i >= 0) {
          head = buf.subarray(0, i).toString();
          buf = buf.subarray(i + 4);
          resolve({ head, sock, data: () => buf, ended });
        }
      }
    });
    sock.on('end', () => endResolve());
    sock.on('close', () => endResolve());
    sock.on('error', reject);
  });
}

/** Docker's multiplexed frames: [stream, 0, 0, 0, size(BE32)] + payload. */
function demux(b: Buffer): Array<{ stream: number; text: string }> {
  const out: Array<{ stream: number; text: string }> = [];
  let off = 0;
  while (off + 8 <= b.length) {
    assert.deepEqual([...b.subarray(off + 1, off + 4)], [0, 0, 0], 'frame header padding');
    const size = b.readUInt32BE(off + 4);
    out.push({ stream: b[off]!, text: b.subarray(off + 8, off + 8 + size).toString() });
    off += 8 + size;
  }
  assert.equal(off, b.length, 'no partial frame left');
  return out;
}

test('system: ping headers, version negotiation, info', async (t) => {
  await t.test('GET and HEAD /_ping answer OK with the negotiation headers', async () => {
    for (const method of ['GET', 'HEAD']) {
      const r = await api(lab, method, '/_ping');
      assert.equal(r.status, 200);
      assert.equal(r.text, method === 'GET' ? 'OK' : '');
      assert.equal(r.headers['api-version'], '1.51');
      assert.equal(r.headers['ostype'], 'linux');
      assert.equal(r.headers['docker-experimental'], 'false');
      assert.equal(r.headers['swarm'], 'inactive');
      assert.match(String(r.headers['cache-control']), /no-cache/);
      assert.match(String(r.headers['server']), /\(linux\)$/);
    }
  });

  await t.test('every version from 1.24 to 1.51 is served; newer and older are refused like Docker', async () => {
    for (const v of ['1.24', '1.30', '1.41', '1.44', '1.50', '1.51']) {
      const r = await api(lab, 'GET', `/v${v}/networks`);
      assert.equal(r.status, 200, `v${v}: ${r.text}`);
      assert.equal(r.headers['api-version'], '1.51');
    }
    assert.equal(
      (await api(lab, 'GET', '/networks')).status,
      200,
      'unversioned paths (dockerode) are the current version',
    );
    assertError(
      await api(lab, 'GET', '/v1.52/networks'),
      400,
      'client version 1.52 is too new. Maximum supported API version is 1.51',
    );
    assertError(
      await api(lab, 'GET', '/v1.23/networks'),
      400,
      /^client version 1\.23 is too old\. Minimum supported API version is 1\.24/,
    );
  });

  await t.test("/version and /info have the spec's shapes", async () => {
    const v = (await api(lab, 'GET', '/version')).json();
    assert.equal(describe(checkSpec(v, 'SystemVersion')), '');
    assert.equal(v.ApiVersion, '1.51');
    assert.equal(v.MinAPIVersion, '1.24');
    assert.equal(v.Os, 'linux');
    const info = (await api(lab, 'GET', '/info')).json();
    assert.equal(describe(checkSpec(info, 'SystemInfo')), '');
    assert.equal(info.Swarm.LocalNodeState, 'inactive');
    for (const d of ['bridge', 'host', 'null'])
      assert.ok(info.Plugins.Network.includes(d), `${d} in ${info.Plugins.Network}`);
  });
});

test("unknown endpoints answer 404 in Docker's error JSON at once, never hang", async () => {
  for (const [method, path] of [
    ['GET', '/nope'],
    ['GET', '/v1.51/nope'],
    ['POST', '/containers/x/bogus'],
    ['PUT', '/networks'],
    ['GET', '/volumes/x/bogus'],
    ['POST', '/build'],
    ['GET', '/plugins'],
    ['DELETE', '/_ping'],
    ['PATCH', '/containers/json'],
    ['POST', '/distribution/alpine/json'],
  ] as const) {
    const started = Date.now();
    const r = await api(lab, method, path, undefined, {}, 3000);
    assertError(r, 404, 'page not found');
    assert.ok(Date.now() - started < 2000, `${method} ${path} took ${Date.now() - started} ms`);
  }
});

test("missing objects: 404 with Docker's wording", async () => {
  assertError(await api(lab, 'GET', '/containers/nope/json'), 404, 'No such container: nope');
  assertError(await api(lab, 'POST', '/containers/nope/start'), 404, 'No such container: nope');
  assertError(await api(lab, 'POST', '/containers/nope/stop'), 404, 'No such container: nope');
  assertError(await api(lab, 'DELETE', '/containers/nope'), 404, 'No such container: nope');
  assertError(await api(lab, 'POST', '/containers/nope/exec', { Cmd: ['true'] }), 404, 'No such container: nope');
  assertError(await api(lab, 'GET', '/exec/nope/json'), 404, 'No such exec instance: nope');
  assertError(await api(lab, 'GET', '/networks/nope'), 404, 'network nope not found');
  assertError(await api(lab, 'DELETE', '/networks/nope'), 404, 'network nope not found');
  assertError(
    await api(lab, 'POST', '/networks/nope/connect', { Container: 'nope' }),
    404,
    /not found|No such container/,
  );
  assertError(await api(lab, 'GET', '/images/nope/json'), 404, /^No such image: nope(:latest)?$/);
  assertError(await api(lab, 'DELETE', '/images/nope'), 404, /^No such image: nope(:latest)?$/);
  assertError(await api(lab, 'POST', '/containers/create', { Image: 'nope' }), 404, /^No such image: nope(:latest)?$/);
});

test("bad input: Docker's status and message, and nothing changes", async (t) => {
  const before = await snapshot();
  const json = { 'Content-Type': 'application/json' };

  await t.test('malformed JSON, wrong types, empty and trailing bodies, wrong content type', async () => {
    assertError(
      await api(lab, 'POST', '/networks/create', '{bad', json),
      400,
      "invalid JSON: invalid character 'b' looking for beginning of object key string",
    );
    assertError(
      await api(lab, 'POST', '/networks/create', '{"Name": }', json),
      400,
      "invalid JSON: invalid character '}' looking for beginning of value",
    );
    assertError(await api(lab, 'POST', '/networks/create', '{"Name": "x"', json), 400, 'invalid JSON: unexpected EOF');
    assertError(
      await api(lab, 'POST', '/networks/create', { Name: 'x', Internal: 'yes' }),
      400,
      'invalid JSON: json: cannot unmarshal string into Go struct field CreateRequest.Internal of type bool',
    );
    assertError(
      await api(lab, 'POST', '/networks/create', { Name: 'x', IPAM: { Config: [{ Subnet: 10 }] } }),
      400,
      /^invalid JSON: json: cannot unmarshal number into Go struct field .*Subnet of type string$/,
    );
    assertError(
      await api(lab, 'POST', '/containers/create', [1, 2]),
      400,
      /^invalid JSON: json: cannot unmarshal array into Go value of type/,
    );
    assertError(
      await api(lab, 'POST', '/containers/create', { Image: 'alpine', Env: 'A=1' }),
      400,
      /^invalid JSON: json: cannot unmarshal string into Go struct field .*Env of type \[\]string$/,
    );
    assertError(
      await api(lab, 'POST', '/networks/create', '', json),
      400,
      'invalid JSON: got EOF while reading request body',
    );
    assertError(
      await api(lab, 'POST', '/networks/create', '{"Name":"x"} {}', json),
      400,
      'unexpected content after JSON',
    );
    assertError(
      await api(lab, 'POST', '/networks/create', '{"Name":"x"}', { 'Content-Type': 'text/plain' }),
      400,
      /Content-Type.*application\/json/,
    );
  });

  await t.test('an oversize body is refused without being read into memory', async () => {
    const big = `{"Name":"big","Labels":{"x":"${'a'.repeat(17 << 20)}"}}`;
    const r = await api(lab, 'POST', '/networks/create', big, json, 30_000);
    assert.ok(r.status === 413 || r.status === 400, `${r.status}`);
    assert.ok(typeof r.json().message === 'string');
  });

  await t.test('bad values: network create, container create, filters, signals', async () => {
    assertError(
      await api(lab, 'POST', '/networks/create', { Name: 'x', Driver: 'nodriver' }),
      404,
      'plugin "nodriver" not found',
    );
    assertError(
      await api(lab, 'POST', '/networks/create', { Name: 'x', IPAM: { Config: [{ Subnet: 'garbage' }] } }),
      400,
      /invalid/i,
    );
    assertError(
      await api(lab, 'POST', '/networks/create', { Name: 'bridge' }),
      403,
      'bridge is a pre-defined network and cannot be created',
    );
    assertError(
      await api(lab, 'DELETE', '/networks/bridge'),
      403,
      'bridge is a pre-defined network and cannot be removed',
    );
    assertError(
      await api(lab, 'POST', '/containers/create', { Image: 'alpine', HostConfig: { NetworkMode: 'nonexist' } }),
      404,
      'network nonexist not found',
    );
    assertError(
      await api(lab, 'POST', '/containers/create', {
        Image: 'alpine',
        HostConfig: { PortBindings: { '80/tcp': [{ HostPort: 'notaport' }] } },
      }),
      400,
      /invalid.*notaport/i,
    );
    assertError(
      await api(lab, 'POST', '/containers/create', { Image: 'alpine', ExposedPorts: { '80/bogus': {} } }),
      400,
      /invalid.*80\/bogus/i,
    );
    assertError(
      await api(lab, 'POST', '/containers/create', {
        Image: 'alpine',
        HostConfig: { RestartPolicy: { Name: 'sometimes' } },
      }),
      400,
      /^invalid restart policy: unknown policy 'sometimes'/,
    );
    assertError(
      await api(lab, 'POST', '/containers/create?name=bad%20name', { Image: 'alpine' }),
      400,
      /^Invalid container name \(bad name\)/,
    );
    assertError(await api(lab, 'GET', `/networks?filters=${q({ bogus: ['x'] })}`), 400, "invalid filter 'bogus'");
    assertError(
      await api(lab, 'GET', `/containers/json?filters=${q({ bogus: ['x'] })}`),
      400,
      /^[Ii]nvalid filter 'bogus'$/,
    );
    assertError(await api(lab, 'GET', `/images/json?filters=${q({ bogus: ['x'] })}`), 400, "invalid filter 'bogus'");
    assertError(await api(lab, 'GET', '/networks?filters=notjson'), 400, /filter/);
  });

  await t.test('nothing changed', async () => {
    assert.equal(await snapshot(), before);
  });
});

test('docker-style inputs Docker accepts are accepted: Cmd as a string, legacy filter maps, unknown keys', async () => {
  // strslice: a string is a one-element command.
  const r = await api(lab, 'POST', '/containers/create?name=strcmd', {
    Image: 'alpine',
    Cmd: 'true',
    Entrypoint: '',
    SomethingNew: 1,
  });
  assert.equal(r.status, 201, r.text);
  const c = (await api(lab, 'GET', '/containers/strcmd/json')).json();
  assert.deepEqual(c.Config.Cmd, ['true']);
  assert.equal(c.Config.SomethingNew, undefined, 'unknown keys are dropped like Go drops them');
  assert.equal((await api(lab, 'DELETE', '/containers/strcmd')).status, 204);
  // The old map form of filters ({"name":{"bridge":true}}).
  const legacy = (await api(lab, 'GET', `/networks?filters=${q({ name: { bridge: true } })}`)).json();
  assert.deepEqual(
    legacy.map((n: { Name: string }) => n.Name),
    ['bridge'],
  );
});

test('networks and containers: lifecycle, filters, shapes', async (t) => {
  let netId = '';
  let cid = '';
  await t.test('create, list with filters, inspect', async () => {
    const r = await api(lab, 'POST', '/networks/create', {
      Name: 'conf-net',
      Labels: { tier: 'a' },
      IPAM: { Config: [{ Subnet: '10.77.0.0/24', Gateway: '10.77.0.1' }] },
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(describe(checkSpec(r.json(), 'NetworkCreateResponse')), '');
    netId = r.json().Id;
    assert.match(netId, FORMAT.id64);
    assert.equal(r.json().Warning, '');
    assertError(
      await api(lab, 'POST', '/networks/create', { Name: 'conf-net' }),
      409,
      'network with name conf-net already exists',
    );
    for (const [filters, want] of [
      [{ name: ['conf'] }, ['conf-net']],
      [{ id: [netId.slice(0, 10)] }, ['conf-net']],
      [{ label: ['tier=a'] }, ['conf-net']],
      [{ label: ['tier=b'] }, []],
      [{ driver: ['bridge'] }, ['bridge', 'conf-net']],
      [{ type: ['builtin'] }, ['bridge', 'host', 'none']],
      [{ type: ['custom'] }, ['conf-net']],
      [{ dangling: ['true'] }, ['conf-net']],
      [{ scope: ['local'] }, ['bridge', 'conf-net', 'host', 'none']],
    ] as const) {
      const got = (await api(lab, 'GET', `/networks?filters=${q(filters)}`))
        .json()
        .map((n: { Name: string }) => n.Name)
        .sort();
      assert.deepEqual(got, want, JSON.stringify(filters));
    }
    for (const n of (await api(lab, 'GET', '/networks')).json())
      assert.equal(describe(checkSpec(n, 'Network')), '', n.Name);
    // by ID, by name, by unique ID prefix
    for (const ref of [netId, 'conf-net', netId.slice(0, 12)])
      assert.equal((await api(lab, 'GET', `/networks/${ref}`)).json().Id, netId);
  });

  await t.test('container create with NetworkingConfig, PortBindings, PublishAllPorts; start; inspect', async () => {
    const r = await api(lab, 'POST', '/containers/create?name=conf-c', {
      Image: 'nginx',
      Labels: { role: 'web' },
      ExposedPorts: { '80/tcp': {} },
      HostConfig: {
        NetworkMode: 'conf-net',
        PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '8081' }] },
        PublishAllPorts: false,
      },
      NetworkingConfig: {
        EndpointsConfig: { 'conf-net': { Aliases: ['front'], IPAMConfig: { IPv4Address: '10.77.0.50' } } },
      },
    });
    assert.equal(r.status, 201, r.text);
    assert.equal(describe(checkSpec(r.json(), 'ContainerCreateResponse')), '');
    cid = r.json().Id;
    assert.equal((await api(lab, 'POST', `/containers/${cid}/start`)).status, 204);
    assert.equal((await api(lab, 'POST', `/containers/${cid}/start`)).status, 304, 'already started');
    const c = (await api(lab, 'GET', `/containers/${cid}/json`)).json();
    assert.equal(describe(checkSpec(c, 'ContainerInspectResponse')), '');
    const ep = c.NetworkSettings.Networks['conf-net'];
    assert.equal(ep.IPAddress, '10.77.0.50');
    assert.deepEqual(ep.IPAMConfig, { IPv4Address: '10.77.0.50' });
    assert.ok(ep.Aliases.includes('front'));
    assert.deepEqual(c.NetworkSettings.Ports['80/tcp'], [{ HostIp: '127.0.0.1', HostPort: '8081' }]);
    assert.match(ep.MacAddress, FORMAT.mac);
    const n = (await api(lab, 'GET', '/networks/conf-net')).json();
    assert.equal(n.Containers[cid].IPv4Address, '10.77.0.50/24');
    assert.equal(n.Containers[cid].Name, 'conf-c');
  });

  await t.test("container list with filters has the spec's ContainerSummary", async () => {
    for (const [filters, want] of [
      [{ name: ['conf-c'] }, 1],
      [{ label: ['role=web'] }, 1],
      [{ label: ['role=db'] }, 0],
      [{ network: ['conf-net'] }, 1],
      [{ network: [netId] }, 1],
      [{ id: [cid.slice(0, 12)] }, 1],
      [{ status: ['running'] }, 1],
      [{ status: ['exited'] }, 0],
      [{ ancestor: ['nginx'] }, 1],
      [{ publish: ['8081'] }, 1],
      [{ expose: ['80'] }, 1],
    ] as const) {
      const got = (await api(lab, 'GET', `/containers/json?filters=${q(filters)}`)).json();
      assert.equal(got.length, want, JSON.stringify(filters));
    }
    const [s] = (await api(lab, 'GET', `/containers/json?filters=${q({ name: ['conf-c'] })}`)).json();
    assert.equal(describe(checkSpec(s, 'ContainerSummary')), '');
    assert.deepEqual(s.Ports, [{ IP: '127.0.0.1', PrivatePort: 80, PublicPort: 8081, Type: 'tcp' }]);
    assert.equal(s.HostConfig.NetworkMode, 'conf-net');
    for (const img of (await api(lab, 'GET', '/images/json')).json())
      assert.equal(describe(checkSpec(img, 'ImageSummary')), '');
  });

  await t.test('connect with EndpointConfig aliases and IPAM config; disconnect', async () => {
    assert.equal(
      (await api(lab, 'POST', '/networks/bridge/connect', { Container: 'conf-c', EndpointConfig: { Aliases: ['x'] } }))
        .status,
      400,
      'aliases are refused on the default bridge (Docker: network-scoped alias is supported only for containers in user defined networks)',
    );
    const r = await api(lab, 'POST', '/networks/create', {
      Name: 'conf-net2',
      IPAM: { Config: [{ Subnet: '10.78.0.0/24' }] },
    });
    assert.equal(r.status, 201);
    const c = await api(lab, 'POST', '/networks/conf-net2/connect', {
      Container: 'conf-c',
      EndpointConfig: { Aliases: ['second'], IPAMConfig: { IPv4Address: '10.78.0.9' } },
    });
    assert.equal(c.status, 200, c.text);
    assertError(
      await api(lab, 'POST', '/networks/conf-net2/connect', { Container: 'conf-c' }),
      403,
      /already exists in network conf-net2|is already attached/,
    );
    const ep = (await api(lab, 'GET', '/containers/conf-c/json')).json().NetworkSettings.Networks['conf-net2'];
    assert.equal(ep.IPAddress, '10.78.0.9');
    assert.ok(ep.Aliases.includes('second'));
    assert.equal((await api(lab, 'POST', '/networks/conf-net2/disconnect', { Container: 'conf-c' })).status, 200);
    assert.equal(
      (await api(lab, 'GET', '/containers/conf-c/json')).json().NetworkSettings.Networks['conf-net2'],
      undefined,
    );
    assert.equal((await api(lab, 'DELETE', '/networks/conf-net2')).status, 204);
  });

  await t.test('attach over the hijacked stream: multiplexed without a TTY', async () => {
    const r = await api(lab, 'POST', '/containers/create?name=conf-cat', {
      Image: 'alpine',
      Cmd: ['sh', '-c', 'cat; echo done >&2'],
      OpenStdin: true,
      StdinOnce: true,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
    });
    assert.equal(r.status, 201);
    const h = await hijack('/containers/conf-cat/attach?stream=1&stdin=1&stdout=1&stderr=1');
    assert.match(h.head, /^HTTP\/1\.1 101 UPGRADED\r\n/);
    assert.match(h.head, /\r\nContent-Type: application\/vnd\.docker\.multiplexed-stream\r\n/i);
    assert.match(h.head, /\r\nUpgrade: tcp(\r\n|$)/i);
    assert.equal((await api(lab, 'POST', '/containers/conf-cat/start')).status, 204);
    h.sock.write('ping over attach\n');
    h.sock.end();
    await h.ended;
    const frames = demux(h.data());
    assert.equal(
      frames
        .filter((f) => f.stream === 1)
        .map((f) => f.text)
        .join(''),
      'ping over attach\n',
    );
    assert.equal(
      frames
        .filter((f) => f.stream === 2)
        .map((f) => f.text)
        .join(''),
      'done\n',
    );
    const w = await api(lab, 'POST', '/containers/conf-cat/wait');
    assert.deepEqual(w.json(), { StatusCode: 0, Error: null });
    assert.equal(describe(checkSpec(w.json(), 'ContainerWaitResponse')), '');
    // logs: the same bytes, framed
    const logs = await new Promise<Buffer>((resolve) => {
      request({ socketPath: lab.socket, path: '/containers/conf-cat/logs?stdout=1&stderr=1' }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks)));
      }).end();
    });
    assert.deepEqual(
      demux(logs).map((f) => [f.stream, f.text]),
      [
        [1, 'ping over attach\n'],
        [2, 'done\n'],
      ],
    );
    assert.equal((await api(lab, 'DELETE', '/containers/conf-cat')).status, 204);
  });

  await t.test('exec over the hijacked stream: frames for stdout and stderr, raw with a TTY', async () => {
    const e = await api(lab, 'POST', `/containers/${cid}/exec`, {
      Cmd: ['sh', '-c', 'echo out; echo err >&2; exit 3'],
      AttachStdout: true,
      AttachStderr: true,
    });
    assert.equal(e.status, 201, e.text);
    assert.equal(describe(checkSpec(e.json(), 'IDResponse')), '');
    const h = await hijack(`/exec/${e.json().Id}/start`, { Detach: false, Tty: false });
    assert.match(h.head, /^HTTP\/1\.1 101 UPGRADED\r\n/);
    await h.ended;
    assert.deepEqual(
      demux(h.data())
        .map((f) => [f.stream, f.text])
        .sort(),
      [
        [1, 'out\n'],
        [2, 'err\n'],
      ],
    );
    const info = (await api(lab, 'GET', `/exec/${e.json().Id}/json`)).json();
    assert.equal(info.ExitCode, 3);
    assert.equal(info.Running, false);
    const t2 = await api(lab, 'POST', `/containers/${cid}/exec`, {
      Cmd: ['echo', 'tty'],
      AttachStdout: true,
      Tty: true,
    });
    const h2 = await hijack(`/exec/${t2.json().Id}/start`, { Detach: false, Tty: true });
    assert.match(h2.head, /\r\nContent-Type: application\/vnd\.docker\.raw-stream\r\n/i);
    await h2.ended;
    assert.equal(h2.data().toString(), 'tty\r\n');
  });

  await t.test('stop, kill, restart, rename, wait and the 304/409 answers', async () => {
    assert.equal((await api(lab, 'POST', `/containers/${cid}/restart?t=1`)).status, 204);
    assert.equal((await api(lab, 'POST', `/containers/${cid}/rename?name=conf-renamed`)).status, 204);
    assert.equal((await api(lab, 'GET', '/containers/conf-renamed/json')).json().Name, '/conf-renamed');
    assertError(await api(lab, 'POST', `/containers/${cid}/kill?signal=BOGUS`), 400, /Invalid signal: BOGUS/);
    assert.equal((await api(lab, 'POST', `/containers/${cid}/kill`)).status, 204);
    const w = await api(lab, 'POST', `/containers/${cid}/wait`);
    assert.equal(w.json().StatusCode, 137);
    assertError(await api(lab, 'POST', `/containers/${cid}/kill`), 409, /is not running/);
    assert.equal((await api(lab, 'POST', `/containers/${cid}/stop`)).status, 304, 'already stopped');
    assert.equal((await api(lab, 'DELETE', `/containers/${cid}`)).status, 204);
  });

  await t.test('prune removes unused networks only', async () => {
    // Like Docker, only a running container's endpoint keeps a network from being pruned.
    const busy = await api(lab, 'POST', '/containers/create?name=keeper', {
      Image: 'alpine',
      Cmd: ['sleep', '300'],
      HostConfig: { NetworkMode: 'conf-net' },
    });
    assert.equal(busy.status, 201);
    assert.equal((await api(lab, 'POST', '/containers/keeper/start')).status, 204);
    await api(lab, 'POST', '/networks/create', { Name: 'unused-net' });
    const p = (await api(lab, 'POST', '/networks/prune')).json();
    assert.deepEqual(p, { NetworksDeleted: ['unused-net'] });
    assert.equal((await api(lab, 'DELETE', '/containers/keeper?force=1')).status, 204);
    assert.deepEqual((await api(lab, 'POST', `/networks/prune?filters=${q({ label: ['tier=a'] })}`)).json(), {
      NetworksDeleted: ['conf-net'],
    });
  });
});

test('events: a filtered history and a live stream', async () => {
  const since = (Date.now() / 1000 - 1).toFixed(3);
  await api(lab, 'POST', '/networks/create', { Name: 'ev-net' });
  const c = await api(lab, 'POST', '/containers/create?name=ev-c', {
    Image: 'alpine',
    Cmd: ['sleep', '300'],
    HostConfig: { NetworkMode: 'ev-net' },
  });
  assert.equal(c.status, 201);
  // Live: a stream opened now sees the next event.
  const live = new Promise<string>((resolve) => {
    const req = request(
      { socketPath: lab.socket, path: `/events?filters=${q({ type: ['container'], event: ['start'] })}` },
      (res) => {
        assert.equal(res.statusCode, 200);
        res.once('data', (d: Buffer) => {
          resolve(d.toString());
          req.destroy();
        });
      },
    );
    req.end();
  });
  await sleep(200);
  assert.equal((await api(lab, 'POST', '/containers/ev-c/start')).status, 204);
  const first = JSON.parse((await live).split('\n')[0]!);
  assert.equal(first.Type, 'container');
  assert.equal(first.Action, 'start');
  assert.equal(first.Actor.Attributes.name, 'ev-c');
  assert.equal(describe(checkSpec(first, 'EventMessage')), '');
  await api(lab, 'DELETE', '/containers/ev-c?force=1');
  await api(lab, 'DELETE', '/networks/ev-net');
  const until = (Date.now() / 1000 + 0.5).toFixed(3);
  const r = await api(lab, 'GET', `/events?since=${since}&until=${until}&filters=${q({ type: ['network'] })}`);
  assert.equal(r.status, 200);
  const evs = r.text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  for (const ev of evs) assert.equal(describe(checkSpec(ev, 'EventMessage')), '');
  const seen = evs.map((e) => `${e.Action} ${e.Actor.Attributes.name}`);
  assert.deepEqual(
    seen.filter((s) => s.endsWith('ev-net')),
    ['create ev-net', 'connect ev-net', 'disconnect ev-net', 'destroy ev-net'],
  );
  const connect = evs.find((e) => e.Action === 'connect');
  assert.match(connect.Actor.ID, FORMAT.id64);
  assert.equal(connect.Actor.Attributes.type, 'bridge');
  assert.match(connect.Actor.Attributes.container, FORMAT.id64);
  assert.ok(evs.every((e) => e.Type === 'network' && e.scope === 'local'));
});
