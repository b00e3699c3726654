import { SystemError } from '../common/errors.js';

/**
 * What went wrong, as the errno the kernel gave. Parsed once here from the
 * text of whoever reported it (ip/bridge/nft, the addon's strerror, a Node
 * ErrnoException), so callers test `e.code === 'ENODEV'` instead of matching
 * the wording of each tool (which differs: `ip` says "Cannot find device",
 * rtnetlink "No such device", `bridge` "does not exist").
 */
export type KernelErrorCode =
  | 'ENODEV' // no such link
  | 'EEXIST' // the object (link, netns file, element) is there already
  | 'ENOENT' // no such file / namespace / table / chain
  | 'EINVAL'
  | 'EOPNOTSUPP' // the kernel lacks the feature (ipvlan here), or an unknown link type
  | 'EBUSY'
  | 'EPERM'
  | 'EADDRINUSE'
  | 'EUNKNOWN';

/** Most specific first: "RTNETLINK answers: No such file or directory" for a link is ENODEV only when it names a device. */
const PATTERNS: Array<[KernelErrorCode, RegExp]> = [
  ['ENODEV', /\bENODEV\b|Cannot find device|No such device|does not exist/],
  ['EEXIST', /\bEEXIST\b|File exists|already exists/],
  ['ENOENT', /\bENOENT\b|No such file or directory|No such file/],
  ['EOPNOTSUPP', /\bEOPNOTSUPP\b|Operation not supported|Unknown device type|not supported/i],
  ['EINVAL', /\bEINVAL\b|Invalid argument/],
  ['EBUSY', /\bEBUSY\b|Device or resource busy/],
  ['EPERM', /\bEPERM\b|Operation not permitted|Permission denied/],
  ['EADDRINUSE', /\bEADDRINUSE\b|Address already in use/],
];

/** The errno a tool's or syscall's message stands for (EUNKNOWN when none is recognised). */
export function kernelErrorCode(output: string): KernelErrorCode {
  for (const [code, re] of PATTERNS) if (re.test(output)) return code;
  return 'EUNKNOWN';
}

/** A kernel operation failed; names the command (or syscall), what the tool said, and the errno that stands for. */
export class KernelError extends SystemError {
  readonly code: KernelErrorCode;

  constructor(
    readonly command: string,
    readonly output: string,
    code?: KernelErrorCode,
  ) {
    super(`${command}: ${output.trim() || 'failed'}`);
    this.code = code ?? kernelErrorCode(output);
  }
}

/** True when `e` is a KernelError with one of these codes (the one way drivers classify kernel failures). */
export function isKernelError(e: unknown, ...codes: KernelErrorCode[]): e is KernelError {
  return e instanceof KernelError && (codes.length === 0 || codes.includes(e.code));
}
