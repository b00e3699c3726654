import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startApi, request, json, hijack, readToEnd, type Harness } from '../support/api-harness.js';
import { Demuxer } from '../../src/api/stream.js';

let h: Harness;
before(async () => {
  h = await startApi();
});
after(async () => {
  await h.close();
});

function frames(buf: Buffer): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  new Demuxer((s, d) => out.push([s, d.toString()])).push(buf);
  return out;
}

test("ping answers OK with Docker's headers, GET and HEAD", async () => {
  const r = await request(h.socket, 'GET', '/_ping');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'OK');
  assert.equal(r.headers['api-version'], '1.51');
  assert.equal(r.headers['server'], 'Cove/0.1.0 (linux)');
  assert.equal(r.headers['ostype'], 'linux');
  assert.equal(r.headers['docker-experimental'], 'false');
  assert.equal(r.headers['swarm'], 'inactive');
  assert.match(String(r.headers['cache-control']), /no-cache/);
  assert.equal(r.headers['pragma'], 'no-cache');
  const head = await request(h.socket, 'HEAD', '/v1.50/_ping');
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
  assert.equal(head.headers['api-version'], '1.51');
});

test("version prefixes: 1.24..1.51 and none accepted, others refused with Docker's words", async () => {
  for (const p of ['/version', '/v1.24/version', '/v1.41/version', '/v1.51/version']) {
    const r = await request(h.socket, 'GET', p);
    assert.equal(r.status, 200, p);
    assert.equal(json(r).ApiVersion, '1.51');
  }
  const tooNew = await request(h.socket, 'GET', '/v1.52/version');
  assert.equal(tooNew.status, 400);
  assert.equal(json(tooNew).message, 'client version 1.52 is too new. Maximum supported API version is 1.51');
  assert.equal(tooNew.headers['api-version'], '1.51');
  const tooOld = await request(h.socket, 'GET', '/v1.12/networks');
  assert.equal(tooOld.status, 400);
  assert.equal(
    json(tooOld).message,
    'client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version',
  );
});

test('unknown endpoints are 404 page not found; swarm endpoints 503', async () => {
  const r = await request(h.socket, 'GET', '/v1.51/nothing/here');
  assert.equal(r.status, 404);
  assert.deepEqual(json(r), { message: 'page not found' });
  const s = await request(h.socket, 'GET', '/swarm');
  assert.equal(s.status, 503);
  assert.equal(
    json(s).message,
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.',
  );
  const svc = await request(h.socket, 'GET', '/v1.51/services');
  assert.equal(svc.status, 503);
});

test('network create, duplicate, list with filters, inspect, remove', async () => {
  const c = await request(
    h.socket,
    'POST',
    '/v1.51/networks/create',
    JSON.stringify({ Name: 'alpine-net', Driver: 'bridge' }),
  );
  assert.equal(c.status, 201);
  const { Id, Warning } = json(c);
  assert.match(Id, /^[0-9a-f]{64}$/);
  assert.equal(Warning, '');
  const dup = await request(h.socket, 'POST', '/networks/create', JSON.stringify({ Name: 'alpine-net' }));
  assert.equal(dup.status, 409);
  assert.equal(json(dup).message, 'network with name alpine-net already exists');
  const list = await request(
    h.socket,
    'GET',
    '/networks?filters=' + encodeURIComponent(JSON.stringify({ name: ['alpine'] })),
  );
  assert.deepEqual(
    json(list).map((n: { Name: string }) => n.Name),
    ['alpine-net'],
  );
  const legacy = await request(
    h.socket,
    'GET',
    '/networks?filters=' + encodeURIComponent(JSON.stringify({ name: { alpine: true } })),
  );
  assert.equal(json(legacy).length, 1);
  const badFilter = await request(h.socket, 'GET', '/networks?filters=notjson');
  assert.equal(badFilter.status, 400);
  const ins = await request(h.socket, 'GET', `/networks/${Id.slice(0, 8)}?verbose=true`);
  assert.equal(ins.status, 200);
  assert.equal(json(ins).Name, 'alpine-net');
  const rmBridge = await request(h.socket, 'DELETE', '/networks/bridge');
  assert.equal(rmBridge.status, 403);
  assert.equal(json(rmBridge).message, 'bridge is a pre-defined network and cannot be removed');
  const rm = await request(h.socket, 'DELETE', '/networks/alpine-net');
  assert.equal(rm.status, 204);
  const gone = await request(h.socket, 'GET', '/networks/alpine-net');
  assert.equal(gone.status, 404);
  assert.equal(json(gone).message, 'network alpine-net not found');
});

test('bad bodies: invalid JSON, wrong types, empty, wrong content type, too large: 400/413, nothing created', async () => {
  const before = (await h.engine.networks.listNetworks()).length;
  const bad = await request(h.socket, 'POST', '/networks/create', '{"Name": ');
  assert.equal(bad.status, 400);
  assert.match(json(bad).message, /^invalid JSON: /);
  const syntax = await request(h.socket, 'POST', '/networks/create', 'xyz');
  assert.equal(json(syntax).message, "invalid JSON: invalid character 'x' looking for beginning of value");
  const typed = await request(h.socket, 'POST', '/networks/create', JSON.stringify({ Name: 'n1', Internal: 'yes' }));
  assert.equal(typed.status, 400);
  assert.equal(
    json(typed).message,
    'invalid JSON: json: cannot unmarshal string into Go struct field CreateRequest.Internal of type bool',
  );
  const nested = await request(
    h.socket,
    'POST',
    '/networks/create',
    JSON.stringify({ Name: 'n1', IPAM: { Config: [{ Subnet: 10 }] } }),
  );
  assert.equal(
    json(nested).message,
    'invalid JSON: json: cannot unmarshal number into Go struct field CreateRequest.IPAM.Config.Subnet of type string',
  );
  const empty = await request(h.socket, 'POST', '/networks/create', '');
  assert.equal(json(empty).message, 'invalid JSON: got EOF while reading request body');
  const ct = await request(h.socket, 'POST', '/networks/create', '{"Name":"n1"}', { 'Content-Type': 'text/plain' });
  assert.equal(ct.status, 400);
  assert.equal(json(ct).message, "unsupported Content-Type header (text/plain): must be 'application/json'");
  const big = await request(h.socket, 'POST', '/networks/create', Buffer.alloc(17 * 1024 * 1024, 32));
  assert.equal(big.status, 413);
  assert.equal((await h.engine.networks.listNetworks()).length, before);
  // Keys match case-insensitively, as Go's decoder does.
  const lower = await request(h.socket, 'POST', '/networks/create', JSON.stringify({ name: 'lowercase-net' }));
  assert.equal(lower.status, 201);
  assert.equal(json(await request(h.socket, 'GET', '/networks/lowercase-net')).Name, 'lowercase-net');
});

test('container lifecycle: create 201, start 204 then 304, stop, rm; errors carry status', async () => {
  const c = await request(
    h.socket,
    'POST',
    '/containers/create?name=web',
    JSON.stringify({ Image: 'alpine', Cmd: ['sleep', '100'] }),
  );
  assert.equal(c.status, 201);
  assert.deepEqual(Object.keys(json(c)), ['Id', 'Warnings']);
  assert.equal((await request(h.socket, 'POST', '/containers/web/start')).status, 204);
  assert.equal((await request(h.socket, 'POST', '/containers/web/start')).status, 304);
  const list = json(await request(h.socket, 'GET', '/containers/json'));
  assert.equal(list[0].Names[0], '/web');
  const busy = await request(h.socket, 'DELETE', '/containers/web');
  assert.equal(busy.status, 409);
  assert.equal((await request(h.socket, 'POST', '/containers/web/stop?t=1')).status, 204);
  assert.equal((await request(h.socket, 'POST', '/containers/web/stop')).status, 304);
  assert.equal((await request(h.socket, 'DELETE', '/containers/web?force=1&v=1')).status, 204);
  const missing = await request(h.socket, 'GET', '/containers/web/json');
  assert.equal(missing.status, 404);
  assert.equal(json(missing).message, 'No such container: web');
  const noImage = await request(h.socket, 'POST', '/containers/create', JSON.stringify({ Image: 'nosuch' }));
  assert.equal(noImage.status, 404);
  assert.equal(json(noImage).message, 'No such image: nosuch');
});

test('wait sends its headers at once and the status when the container exits', async () => {
  const { Id } = json(
    await request(h.socket, 'POST', '/containers/create', JSON.stringify({ Image: 'alpine', Cmd: ['sleep'] })),
  );
  const headersArrived = new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request(
      { socketPath: h.socket, method: 'POST', path: `/containers/${Id}/wait?condition=next-exit`, agent: false },
      resolve,
    );
    req.on('error', reject);
    req.end();
  });
  const res = await headersArrived; // the container has not even started
  assert.equal(res.statusCode, 200);
  const body = new Promise<string>((resolve) => {
    let s = '';
    res.on('data', (c) => (s += c));
    res.on('end', () => resolve(s));
  });
  await request(h.socket, 'POST', `/containers/${Id}/start`);
  await request(h.socket, 'POST', `/containers/${Id}/kill?signal=KILL`);
  assert.deepEqual(JSON.parse(await body), { StatusCode: 137, Error: null });
  const bad = await request(h.socket, 'POST', `/containers/${Id}/wait?condition=sometime`);
  assert.equal(bad.status, 400);
});

test('logs are multiplexed with 8-byte headers (stdout 1, stderr 2); tail works', async () => {
  const { Id } = json(
    await request(h.socket, 'POST', '/containers/create', JSON.stringify({ Image: 'alpine', Cmd: ['fail', '3'] })),
  );
  await request(h.socket, 'POST', `/containers/${Id}/start`);
  assert.deepEqual(json(await request(h.socket, 'POST', `/containers/${Id}/wait`)), { StatusCode: 3, Error: null });
  const r = await request(h.socket, 'GET', `/containers/${Id}/logs?stdout=1&stderr=1`);
  assert.equal(r.headers['content-type'], 'application/vnd.docker.multiplexed-stream');
  assert.deepEqual(r.raw.subarray(0, 8), Buffer.from([2, 0, 0, 0, 0, 0, 0, 8]));
  assert.deepEqual(frames(r.raw), [[2, 'failing\n']]);
  const onlyOut = await request(h.socket, 'GET', `/containers/${Id}/logs?stdout=1`);
  assert.equal(onlyOut.raw.length, 0);
  const none = await request(h.socket, 'GET', `/containers/${Id}/logs`);
  assert.equal(none.status, 400);
});

test('attach hijacks (101 UPGRADED), stdin reaches the process, half-close ends it', async () => {
  const { Id } = json(
    await request(
      h.socket,
      'POST',
      '/containers/create',
      JSON.stringify({ Image: 'alpine', Cmd: ['cat'], OpenStdin: true }),
    ),
  );
  const conn = await hijack(h.socket, `/v1.51/containers/${Id}/attach?stream=1&stdin=1&stdout=1&stderr=1`);
  assert.equal(conn.status, 101);
  assert.equal(conn.headers['content-type'], 'application/vnd.docker.multiplexed-stream');
  assert.equal(conn.headers['upgrade'], 'tcp');
  assert.equal(conn.headers['api-version'], '1.51');
  const all = readToEnd(conn.socket, conn.head);
  assert.equal((await request(h.socket, 'POST', `/containers/${Id}/start`)).status, 204);
  conn.socket.write('hello\n');
  await new Promise((r) => setTimeout(r, 50));
  conn.socket.end(); // stdin EOF: cat exits, the stream ends
  assert.deepEqual(frames(await all), [[1, 'hello\n']]);
  assert.equal(json(await request(h.socket, 'GET', `/containers/${Id}/json`)).State.ExitCode, 0);
});

test(
  'attach before start: the answer comes once the session is taken, so a quick command loses no output',
  { timeout: 10_000 },
  async () => {
    // docker run: attach, then start as soon as the attach's headers arrive. An engine slow to take the session
    // (a loaded daemon) must not let start and the command's output overtake it.
    const { Id } = json(
      await request(
        h.socket,
        'POST',
        '/containers/create',
        JSON.stringify({ Image: 'alpine', Cmd: ['echo', 'imported'] }),
      ),
    );
    const containers = h.engine.containers;
    const attach = containers.attach.bind(containers);
    containers.attach = async (id, o) => {
      await new Promise((r) => setTimeout(r, 150));
      return attach(id, o);
    };
    try {
      const conn = await hijack(h.socket, `/containers/${Id}/attach?stream=1&stdout=1&stderr=1`);
      const all = readToEnd(conn.socket, conn.head);
      assert.equal((await request(h.socket, 'POST', `/containers/${Id}/start`)).status, 204);
      assert.deepEqual(frames(await all), [[1, 'imported\n']]);
    } finally {
      containers.attach = attach;
    }
  },
);

test('attach to a TTY container is raw; plain POST without upgrade streams too', async () => {
  const { Id } = json(
    await request(
      h.socket,
      'POST',
      '/containers/create',
      JSON.stringify({ Image: 'alpine', Cmd: ['echo', 'hi', 'there'], Tty: true }),
    ),
  );
  const res = new Promise<{ type: string; body: string }>((resolve, reject) => {
    const req = http.request(
      {
        socketPath: h.socket,
        method: 'POST',
        path: `/containers/${Id}/attach?stream=1&stdout=1&stderr=1`,
        agent: false,
      },
      (r) => {
        let s = '';
        r.on('data', (c) => (s += c));
        r.on('end', () => resolve({ type: String(r.headers['content-type']), body: s }));
      },
    );
    req.on('error', reject);
    req.end();
  });
  await new Promise((r) => setTimeout(r, 50));
  await request(h.socket, 'POST', `/containers/${Id}/start`);
  const got = await res;
  assert.equal(got.type, 'application/vnd.docker.raw-stream');
  assert.equal(got.body, 'hi there\n');
});

test('detach keys end an attach session; the container keeps running', async () => {
  // cat ends at stdin EOF: it must survive the detach and the client's close.
  const { Id } = json(
    await request(
      h.socket,
      'POST',
      '/containers/create',
      JSON.stringify({ Image: 'alpine', Cmd: ['cat'], OpenStdin: true, Tty: true }),
    ),
  );
  await request(h.socket, 'POST', `/containers/${Id}/start`);
  const conn = await hijack(h.socket, `/containers/${Id}/attach?stream=1&stdin=1&stdout=1`);
  assert.equal(conn.headers['content-type'], 'application/vnd.docker.raw-stream');
  const ended = readToEnd(conn.socket, conn.head);
  conn.socket.write('one\n');
  await new Promise((r) => setTimeout(r, 30));
  conn.socket.write(Buffer.from([0x10, 0x11]));
  assert.equal((await ended).toString(), 'one\n');
  conn.socket.end();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(json(await request(h.socket, 'GET', `/containers/${Id}/json`)).State.Running, true);
  // A new attach sees the same process.
  const again = await hijack(h.socket, `/containers/${Id}/attach?stream=1&stdin=1&stdout=1`);
  const out = readToEnd(again.socket, again.head);
  again.socket.write('two\n');
  await new Promise((r) => setTimeout(r, 30));
  again.socket.end();
  assert.equal((await out).toString(), 'two\n');
  await request(h.socket, 'POST', `/containers/${Id}/kill`);
});

test('exec: create, start hijacked with a body, inspect exit code; detached start has no stream', async () => {
  const { Id } = json(
    await request(h.socket, 'POST', '/containers/create', JSON.stringify({ Image: 'alpine', Cmd: ['sleep'] })),
  );
  await request(h.socket, 'POST', `/containers/${Id}/start`);
  const ex = await request(
    h.socket,
    'POST',
    `/containers/${Id}/exec`,
    JSON.stringify({ AttachStdout: true, AttachStderr: true, Cmd: ['fail', '4'] }),
  );
  assert.equal(ex.status, 201);
  const execId = json(ex).Id;
  const conn = await hijack(h.socket, `/exec/${execId}/start`, JSON.stringify({ Detach: false, Tty: false }));
  assert.equal(conn.status, 101);
  assert.deepEqual(frames(await readToEnd(conn.socket, conn.head)), [[2, 'failing\n']]);
  assert.equal(json(await request(h.socket, 'GET', `/exec/${execId}/json`)).ExitCode, 4);
  const ex2 = json(await request(h.socket, 'POST', `/containers/${Id}/exec`, JSON.stringify({ Cmd: ['echo', 'x'] })));
  const det = await request(h.socket, 'POST', `/exec/${ex2.Id}/start`, JSON.stringify({ Detach: true }));
  assert.equal(det.status, 200);
  assert.equal(det.body, '');
  const noCmd = await request(h.socket, 'POST', `/containers/${Id}/exec`, JSON.stringify({ Cmd: [] }));
  assert.equal(noCmd.status, 400);
  const missing = await request(h.socket, 'GET', '/exec/nope/json');
  assert.equal(missing.status, 404);
  await request(h.socket, 'POST', `/containers/${Id}/kill`);
});

test('images: import from the body streams Docker progress JSON; pull is refused clearly; load reports tags', async () => {
  const imp = await request(
    h.socket,
    'POST',
    '/images/create?fromSrc=-&repo=mybox:1.0&tag=&changes=' + encodeURIComponent('CMD ["/bin/sh"]'),
    Buffer.from('pretend tar'),
    { 'Content-Type': 'application/x-tar' },
  );
  assert.equal(imp.status, 200);
  const line = JSON.parse(imp.body.trim());
  assert.match(line.status, /^sha256:[0-9a-f]{64}$/);
  const tags = json(await request(h.socket, 'GET', '/images/json')).flatMap((i: { RepoTags: string[] }) => i.RepoTags);
  assert.ok(tags.includes('mybox:1.0'));
  const pull = await request(h.socket, 'POST', '/images/create?fromImage=docker.io%2Flibrary%2Fnginx&tag=latest');
  assert.equal(pull.status, 404);
  assert.match(
    json(pull).message,
    /^pull access denied for nginx, repository does not exist or may require 'docker login'/,
  );
  const held = await request(h.socket, 'POST', '/images/create?fromImage=alpine&tag=latest');
  assert.equal(held.status, 200);
  const load = await request(h.socket, 'POST', '/images/load?quiet=1', Buffer.from('busybox:latest\n'), {
    'Content-Type': 'application/x-tar',
  });
  assert.deepEqual(JSON.parse(load.body.trim()), { stream: 'Loaded image: busybox:latest\n' });
  const tag = await request(h.socket, 'POST', '/images/busybox:latest/tag?repo=registry.local/tools/busybox&tag=v1');
  assert.equal(tag.status, 201);
  const ins = await request(h.socket, 'GET', '/images/registry.local/tools/busybox:v1/json');
  assert.equal(ins.status, 200);
  const del = await request(h.socket, 'DELETE', '/images/registry.local/tools/busybox:v1');
  assert.deepEqual(json(del), [{ Untagged: 'registry.local/tools/busybox:v1' }]);
  assert.equal((await request(h.socket, 'GET', '/images/nosuch/json')).status, 404);
});

test('events stream live until the client leaves', async () => {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request(
      {
        socketPath: h.socket,
        path: '/events?filters=' + encodeURIComponent(JSON.stringify({ type: ['network'] })),
        agent: false,
      },
      resolve,
    );
    req.on('error', reject);
    req.end();
  });
  assert.equal(res.statusCode, 200);
  const first = new Promise<string>((resolve) => res.once('data', (d: Buffer) => resolve(d.toString())));
  await request(h.socket, 'POST', '/networks/create', JSON.stringify({ Name: 'live-net' }));
  const ev = JSON.parse(await first);
  assert.equal(ev.Type, 'network');
  assert.equal(ev.Action, 'create');
  assert.equal(ev.Actor.Attributes.name, 'live-net');
  res.destroy();
  await request(h.socket, 'DELETE', '/networks/live-net');
});

test('events: since/until replay history as NDJSON, filters apply', async () => {
  const t0 = Math.floor(Date.now() / 1000) - 1;
  await request(h.socket, 'POST', '/networks/create', JSON.stringify({ Name: 'ev-net' }));
  await request(h.socket, 'DELETE', '/networks/ev-net');
  const until = Math.ceil(Date.now() / 1000);
  const filters = encodeURIComponent(JSON.stringify({ type: ['network'], network: ['ev-net'] }));
  const r = await request(h.socket, 'GET', `/events?since=${t0}&until=${until}&filters=${filters}`);
  assert.equal(r.status, 200);
  const evs = r.body
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    evs.map((e) => e.Action),
    ['create', 'destroy'],
  );
  assert.equal(evs[0].Actor.Attributes.name, 'ev-net');
});

test('network connect/disconnect go to the container service, with Docker errors', async () => {
  const { Id } = json(
    await request(h.socket, 'POST', '/containers/create?name=c1', JSON.stringify({ Image: 'alpine', Cmd: ['sleep'] })),
  );
  await request(h.socket, 'POST', '/networks/create', JSON.stringify({ Name: 'n2' }));
  const con = await request(
    h.socket,
    'POST',
    '/networks/n2/connect',
    JSON.stringify({ Container: 'c1', EndpointConfig: { Aliases: ['db'] } }),
  );
  assert.equal(con.status, 200);
  const again = await request(h.socket, 'POST', '/networks/n2/connect', JSON.stringify({ Container: 'c1' }));
  assert.equal(again.status, 403);
  assert.equal(json(again).message, 'endpoint with name c1 already exists in network n2');
  const dis = await request(
    h.socket,
    'POST',
    '/networks/n2/disconnect',
    JSON.stringify({ Container: Id, Force: false }),
  );
  assert.equal(dis.status, 200);
  const noCtr = await request(h.socket, 'POST', '/networks/n2/connect', JSON.stringify({ EndpointConfig: {} }));
  assert.equal(noCtr.status, 400);
  const pr = await request(h.socket, 'POST', '/networks/prune');
  assert.ok(json(pr).NetworksDeleted.includes('n2'));
});

test('closing the server ends open streams', async () => {
  const { createApiServer } = await import('../../src/api/server.js');
  const { createFakeEngine } = await import('../support/fake-engine.js');
  const { silentLogger } = await import('../../src/common/log.js');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'cva-close-'));
  const sock = join(dir, 's.sock');
  const server = createApiServer(createFakeEngine(), silentLogger);
  await new Promise<void>((r) => server.listen(sock, r));
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request({ socketPath: sock, path: '/events', agent: false }, resolve);
    req.on('error', reject);
    req.end();
  });
  const ended = new Promise<void>((resolve) => {
    res.on('close', () => resolve());
    res.resume();
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await ended;
  rmSync(dir, { recursive: true, force: true });
});

test('requests in flight as the daemon counts them (idle memory): ended, or waiting on an events stream', async () => {
  const { createApiServer } = await import('../../src/api/server.js');
  const { createFakeEngine } = await import('../support/fake-engine.js');
  const { silentLogger } = await import('../../src/common/log.js');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'cva-idle-'));
  const sock = join(dir, 's.sock');
  let inFlight = 0;
  let started = 0;
  const server = createApiServer(createFakeEngine(), silentLogger, {
    onRequest: () => {
      inFlight++;
      started++;
      let done = false;
      return () => {
        if (!done) inFlight--;
        done = true;
      };
    },
  });
  await new Promise<void>((r) => server.listen(sock, r));
  try {
    const r = await request(sock, 'GET', '/_ping');
    assert.equal(r.status, 200);
    assert.equal(await request(sock, 'GET', '/no/such/path').then((x) => x.status), 404);
    assert.deepEqual([started, inFlight], [2, 0]);
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({ socketPath: sock, path: '/events', agent: false }, resolve);
      req.on('error', reject);
      req.end();
    });
    res.resume();
    assert.deepEqual([started, inFlight], [3, 0], 'an open events stream does not count as work');
    res.destroy();
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  }
});
