// esbuild settings for the etcd client, shared by scripts/bundle-etcd.mjs (dist/src/swarm/etcd-modules.bundle.mjs,
// for the tsc build) and scripts/bundle-coved.mjs (the etcd chunk of dist/coved/): etcd3's service definitions
// from a JSON descriptor made here instead of parsing etcd's .proto files at each start (~670 -> ~160 ms of a
// swarm join's load time), and proto-loader's reflection descriptors left out.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';

/** Common esbuild options for node ESM output. */
export const NODE_ESM = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minifySyntax: true,
  minifyWhitespace: true,
  logLevel: 'warning',
  // CommonJS packages inside an ES module still call require() for node's builtins.
  banner: {
    js: "import { createRequire as __coveRequire } from 'node:module'; const require = __coveRequire(import.meta.url);",
  },
};

/** The onLoad edits of etcd3 and @grpc/proto-loader, for a plugin's setup(b). */
export function etcdLoadEdits(repo, b) {
  const require = createRequire(join(repo, 'package.json'));
  const protobuf = require('protobufjs');
  const etcdDir = dirname(require.resolve('etcd3/package.json'));
  const root = new protobuf.Root();
  root.loadSync(join(etcdDir, 'proto/rpc.proto'), { keepCase: true });
  const descriptor = JSON.stringify(root.toJSON());

  // proto-loader describes every message and file again as descriptor protos (encoded, per method), for
  // gRPC reflection, which etcd3 never uses: half of the client's load time. Left out, with the
  // descriptor extension (protobufjs/ext/descriptor and its 100 KB JSON) loaded only if something asks.
  b.onLoad({ filter: /@grpc[\\/]proto-loader[\\/]build[\\/]src[\\/]index\.js$/ }, async (args) => {
    let src = await readFile(args.path, 'utf8');
    const edits = [
      [
        'const descriptor = require("protobufjs/ext/descriptor");',
        'let descriptorExt;\nconst descriptor = new Proxy({}, { get: (_, k) => (descriptorExt ??= require("protobufjs/ext/descriptor"))[k] });',
      ],
      [
        "const descriptorList = root.toDescriptor('proto3').file;\n    const bufferList = descriptorList.map(value => Buffer.from(descriptor.FileDescriptorProto.encode(value).finish()));",
        'const bufferList = [];',
      ],
      [
        "const messageDescriptor = message.toDescriptor('proto3');\n    return {\n        format: 'Protocol Buffer 3 DescriptorProto',\n        type: messageDescriptor.$type.toObject(messageDescriptor, descriptorOptions),",
        "return {\n        format: 'Protocol Buffer 3 DescriptorProto',\n        type: {},",
      ],
      [
        "const enumDescriptor = enumType.toDescriptor('proto3');\n    return {\n        format: 'Protocol Buffer 3 EnumDescriptorProto',\n        type: enumDescriptor.$type.toObject(enumDescriptor, descriptorOptions),",
        "return {\n        format: 'Protocol Buffer 3 EnumDescriptorProto',\n        type: {},",
      ],
    ];
    for (const [from, to] of edits) {
      if (!src.includes(from))
        throw new Error(`@grpc/proto-loader changed: no longer has ${JSON.stringify(from.slice(0, 60))}`);
      src = src.replace(from, to);
    }
    return { contents: src, loader: 'js' };
  });
  b.onLoad({ filter: /etcd3[\\/]lib[\\/]connection-pool\.js$/ }, async (args) => {
    const src = await readFile(args.path, 'utf8');
    const from = /\(0, proto_loader_1\.loadSync\)\(`\$\{__dirname\}\/\.\.\/proto\/rpc\.proto`, \{/;
    if (!from.test(src)) throw new Error('etcd3 changed: its connection-pool.js no longer loads rpc.proto as expected');
    return { contents: src.replace(from, `(0, proto_loader_1.fromJSON)(${descriptor}, {`), loader: 'js' };
  });
}
