/**
 * The lab of the network-controller e2e tests (`cvn-*`): the controller makes
 * its containers' namespaces under the lab's exec root; every bridge, every
 * published-port socket and every DNS forward lives in the lab netns.
 */
import { join } from 'node:path';
import { NsLab } from './kernel-lab.js';

export { sh, shTry, run, inNs } from './kernel-lab.js';

export class NetLab extends NsLab {
  constructor(name: string) {
    const root = `/tmp/cvn-lab/${name}`;
    super(name, 'cvn-', root, join(root, 'run', 'netns'));
  }

  get execRoot(): string {
    return join(this.root, 'run');
  }

  get dataRoot(): string {
    return join(this.root, 'data');
  }
}
