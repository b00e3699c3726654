import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isKernelError, KernelError, kernelErrorCode } from '../../src/kernel/errors.js';

test('kernel errors carry the errno their tool reported, parsed once', () => {
  // What ip, bridge, rtnetlink (the addon's strerror), nft and the netns helpers say on this machine.
  const cases: Array<[string, string]> = [
    ['Cannot find device "veth1234567"', 'ENODEV'],
    ['Device "br-0123" does not exist.', 'ENODEV'],
    ['RTNETLINK answers: No such device', 'ENODEV'],
    ['RTNETLINK answers: File exists', 'EEXIST'],
    ['File exists', 'EEXIST'],
    ['No such file or directory', 'ENOENT'],
    ['Error: Unknown device type.', 'EOPNOTSUPP'],
    ['RTNETLINK answers: Operation not supported', 'EOPNOTSUPP'],
    ['RTNETLINK answers: Invalid argument', 'EINVAL'],
    ['RTNETLINK answers: Device or resource busy', 'EBUSY'],
    ['RTNETLINK answers: Operation not permitted', 'EPERM'],
    ['something else entirely', 'EUNKNOWN'],
  ];
  for (const [text, code] of cases) {
    assert.equal(kernelErrorCode(text), code, text);
    assert.equal(new KernelError('ip link add x', text).code, code, text);
  }
  // An explicit code wins (ip -batch: the first failure's, not a later one's).
  const e = new KernelError('ip link add a', 'File exists (+1 more: ip link set b: Cannot find device "b")', 'EEXIST');
  assert.equal(e.code, 'EEXIST');
  assert.equal(e.status, 500);
  assert.equal(e.message, 'ip link add a: File exists (+1 more: ip link set b: Cannot find device "b")');
  assert.ok(isKernelError(e, 'EEXIST'));
  assert.ok(isKernelError(e));
  assert.ok(!isKernelError(e, 'ENODEV', 'ENOENT'));
  assert.ok(!isKernelError(new Error('File exists'), 'EEXIST'), 'only KernelErrors are classified');
});
