import { SystemError } from '../common/errors.js';

/** A kernel operation failed; names the command (or syscall) and what the tool said. */
export class KernelError extends SystemError {
  constructor(readonly command: string, readonly output: string) {
    super(`${command}: ${output.trim() || 'failed'}`);
  }
}
