/**
 * `cove`: Docker's CLI verbs as a thin client of the Cove Engine API.
 * Start-up must stay fast: only the small argument parser (../common/args.ts, a
 * commander-compatible subset shared with coved) is loaded up front; each command's module
 * (and node:http) is imported when the command runs.
 */
import { Command } from '../common/args.js';
import type { Cli } from './cli.js';

export type { Cli };

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

type Loader = () => Promise<Record<string, unknown>>;
const modules: Record<string, Loader> = {
  network: () => import('./commands/network.js'),
  container: () => import('./commands/container.js'),
  files: () => import('./commands/files.js'),
  stats: () => import('./commands/stats.js'),
  run: () => import('./commands/run.js'),
  image: () => import('./commands/image.js'),
  registry: () => import('./commands/registry.js'),
  system: () => import('./commands/system.js'),
  service: () => import('./commands/service.js'),
  volume: () => import('./commands/volume.js'),
  lab: () => import('./commands/lab.js'),
  swarm: () => import('./commands/swarm.js'),
  node: () => import('./commands/node.js'),
};

/** Exit code for daemon errors of `run`/`create` (docker's 125). */
const RUN_ERROR_CODE = 125;

/** docker's toStatusError: 127 when the command is not there, 126 when it cannot run, else 125. */
export function runErrorCode(message: string): number {
  if (/executable file not found|no such file or directory|system cannot find the file specified/.test(message))
    return 127;
  if (/permission denied|is a directory/.test(message)) return 126;
  return RUN_ERROR_CODE;
}

async function makeCli(program: Command, errorPrefix: string): Promise<Cli> {
  const { Client, socketPathFrom } = await import('./client.js');
  const host = program.opts().host as string | undefined;
  const cli: Cli = {
    client: new Client(socketPathFrom(host)),
    out: (t) => {
      process.stdout.write(t);
    },
    err: (t) => {
      process.stderr.write(t);
    },
    exitCode: 0,
    errorPrefix,
  };
  return cli;
}

/** An action that loads `mod` and calls `fn(cli, ...args)` with the parser's arguments. */
function act(program: Command, mod: keyof typeof modules, fn: string, opts: { runLike?: boolean } = {}) {
  return async (...args: unknown[]): Promise<void> => {
    // the parser passes (...positionals, options, command); drop the command.
    args.pop();
    const cli = await makeCli(program, opts.runLike ? 'cove: ' : '');
    try {
      const m = await modules[mod]!();
      await (m[fn] as (cli: Cli, ...a: unknown[]) => Promise<void>)(cli, ...args);
      process.exitCode = cli.exitCode;
    } catch (e) {
      const { ApiError, CliError } = await import('./client.js');
      if (e instanceof ApiError) {
        process.stderr.write(`${cli.errorPrefix}${e.display}\n`);
        if (opts.runLike)
          process.stderr.write(`\nRun 'cove ${fn === 'create' ? 'create' : 'run'} --help' for more information\n`);
        process.exitCode = opts.runLike ? runErrorCode(e.message) : 1;
      } else if (e instanceof CliError) {
        process.stderr.write(`${cli.errorPrefix}${e.message}\n`);
        process.exitCode = opts.runLike && e.code === 1 ? RUN_ERROR_CODE : e.code;
      } else {
        throw e;
      }
    }
  };
}

function containerCreateOptions(cmd: Command): Command {
  return cmd
    .option('-d, --detach', 'Run container in background and print container ID')
    .option('-i, --interactive', 'Keep STDIN open even if not attached')
    .option('-t, --tty', 'Allocate a pseudo-TTY')
    .option('--rm', 'Automatically remove the container when it exits')
    .option('--name <name>', 'Assign a name to the container')
    .option('-h, --hostname <name>', 'Container host name')
    .option('--domainname <name>', 'Container NIS domain name')
    .option('-e, --env <KEY=VALUE>', 'Set environment variables', collect)
    .option('--net, --network <network>', 'Connect a container to a network', collect)
    .option('--net-alias, --network-alias <alias>', 'Add network-scoped alias for the container', collect)
    .option('--ip <address>', 'IPv4 address (e.g., 172.30.100.104)')
    .option('--ip6 <address>', 'IPv6 address (e.g., 2001:db8::33)')
    .option('--link <name:alias>', 'Add link to another container', collect)
    .option('--link-local-ip <address>', 'Container IPv4/IPv6 link-local addresses', collect)
    .option('--mac-address <address>', 'Container MAC address (e.g., 92:d0:c6:0a:29:33)')
    .option('-p, --publish <spec>', "Publish a container's port(s) to the host", collect)
    .option('-P, --publish-all', 'Publish all exposed ports to random ports')
    .option('--expose <port>', 'Expose a port or a range of ports', collect)
    .option('--dns <ip>', 'Set custom DNS servers', collect)
    .option('--dns-search <domain>', 'Set custom DNS search domains', collect)
    .option('--dns-option <option>', 'Set DNS options', collect)
    .option('--add-host <host:ip>', 'Add a custom host-to-IP mapping (host:ip)', collect)
    .option('--entrypoint <command>', 'Overwrite the default ENTRYPOINT of the image')
    .option('-w, --workdir <dir>', 'Working directory inside the container')
    .option('-u, --user <user>', 'Username or UID (format: <name|uid>[:<group|gid>])')
    .option('-l, --label <key=value>', 'Set meta data on a container', collect)
    .option('--privileged', 'Give extended privileges to this container')
    .option('--cap-add <cap>', 'Add Linux capabilities', collect)
    .option('--cap-drop <cap>', 'Drop Linux capabilities', collect)
    .option('--sysctl <key=value>', 'Sysctl options', collect)
    .option('--restart <policy>', 'Restart policy to apply when a container exits', 'no')
    .option('--stop-signal <signal>', 'Signal to stop the container')
    .option('--stop-timeout <seconds>', 'Timeout (in seconds) to stop a container')
    .option('--detach-keys <keys>', 'Override the key sequence for detaching a container')
    .option('-a, --attach <stream>', 'Attach to STDIN, STDOUT or STDERR', collect)
    .option('--init', 'Run an init inside the container')
    .option('-m, --memory <bytes>', 'Memory limit')
    .option('--memory-swap <bytes>', "Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
    .option('--memory-reservation <bytes>', 'Memory soft limit')
    .option('--cpus <decimal>', 'Number of CPUs')
    .option('-c, --cpu-shares <int>', 'CPU shares (relative weight)')
    .option('--cpu-period <int>', 'Limit CPU CFS (Completely Fair Scheduler) period')
    .option('--cpu-quota <int>', 'Limit CPU CFS (Completely Fair Scheduler) quota')
    .option('--cpuset-cpus <string>', 'CPUs in which to allow execution (0-3, 0,1)')
    .option('--cpuset-mems <string>', 'MEMs in which to allow execution (0-3, 0,1)')
    .option('--pids-limit <int>', 'Tune container pids limit (set -1 for unlimited)')
    .option('--device-cgroup-rule <rule>', 'Add a rule to the cgroup allowed devices list', collect)
    .option('--group-add <group>', 'Add additional groups to join', collect)
    .option('--runtime <runtime>', 'Runtime to use for this container')
    .option('--log-driver <driver>', 'Logging driver for the container')
    .option('--log-opt <option>', 'Log driver options', collect)
    .option('--health-cmd <string>', 'Command to run to check health')
    .option('--health-interval <duration>', 'Time between running the check (ms|s|m|h) (default 0s)')
    .option('--health-retries <int>', 'Consecutive failures needed to report unhealthy')
    .option(
      '--health-start-period <duration>',
      'Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)',
    )
    .option(
      '--health-start-interval <duration>',
      'Time between running the check during the start period (ms|s|m|h) (default 0s)',
    )
    .option('--health-timeout <duration>', 'Maximum time to allow one check to run (ms|s|m|h) (default 0s)')
    .option('--no-healthcheck', 'Disable any container-specified HEALTHCHECK')

    .option('-v, --volume <list>', 'Bind mount a volume', collect)
    .option('--mount <mount>', 'Attach a filesystem mount to the container', collect)
    .option('--tmpfs <tmpfs>', 'Mount a tmpfs directory', collect)
    .option('--volumes-from <list>', 'Mount volumes from the specified container(s)', collect)
    .option('--pull <policy>', 'Pull image before running ("always", "missing", "never")', 'missing')
    .option('-q, --quiet', 'Suppress the pull output')
    .option('--sig-proxy', 'Proxy received signals to the process', true)
    .option('--no-sig-proxy', 'Do not proxy received signals to the process')
    .argument('<image>')
    .argument('[command...]')
    .passThroughOptions();
}

function containerCommands(parent: Command, program: Command, top: boolean): void {
  parent
    .command('run')
    .helpOption('--help')
    .description('Create and run a new container from an image')
    .build((c) => containerCreateOptions(c).action(act(program, 'run', 'run', { runLike: true })));
  parent
    .command('create')
    .helpOption('--help')
    .description('Create a new container')
    .build((c) => containerCreateOptions(c).action(act(program, 'run', 'create', { runLike: true })));
  parent
    .command('start')
    .description('Start one or more stopped containers')
    .option('-a, --attach', 'Attach STDOUT/STDERR and forward signals')
    .option('-i, --interactive', "Attach container's STDIN")
    .option('--detach-keys <keys>', 'Override the key sequence for detaching a container')
    .argument('<container...>')
    .action(act(program, 'run', 'start'));
  parent
    .command('stop')
    .description('Stop one or more running containers')
    .option('-t, --timeout <seconds>', 'Seconds to wait before killing the container')
    .option('-s, --signal <signal>', 'Signal to send to the container')
    .argument('<container...>')
    .action(act(program, 'container', 'stop'));
  parent
    .command('kill')
    .description('Kill one or more running containers')
    .option('-s, --signal <signal>', 'Signal to send to the container')
    .argument('<container...>')
    .action(act(program, 'container', 'kill'));
  parent
    .command('restart')
    .description('Restart one or more containers')
    .option('-t, --timeout <seconds>', 'Seconds to wait before killing the container')
    .option('-s, --signal <signal>', 'Signal to send to the container')
    .argument('<container...>')
    .action(act(program, 'container', 'restart'));
  const rmCmd = parent
    .command('rm')
    .description('Remove one or more containers')
    .option('-f, --force', 'Force the removal of a running container (uses SIGKILL)')
    .option('-v, --volumes', 'Remove anonymous volumes associated with the container')
    .option('-l, --link', 'Remove the specified link')
    .argument('<container...>')
    .action(act(program, 'container', 'rm'));
  if (!top) rmCmd.alias('remove');
  const psCmd = parent
    .command(top ? 'ps' : 'ls')
    .description('List containers')
    .option('-a, --all', 'Show all containers (default shows just running)')
    .option('-q, --quiet', 'Only display container IDs')
    .option('-f, --filter <filter>', 'Filter output based on conditions provided', collect)
    .option('--format <format>', 'Format output using a custom template')
    .option('-n, --last <n>', 'Show n last created containers (includes all states)')
    .option('-l, --latest', 'Show the latest created container (includes all states)')
    .option('-s, --size', 'Display total file sizes')
    .option('--no-trunc', "Don't truncate output")
    .action(act(program, 'container', 'ps'));
  if (!top) psCmd.aliases(['ps', 'list']);
  parent
    .command('exec')
    .description('Execute a command in a running container')
    .option('-d, --detach', 'Detached mode: run command in the background')
    .option('-i, --interactive', 'Keep STDIN open even if not attached')
    .option('-t, --tty', 'Allocate a pseudo-TTY')
    .option('-e, --env <KEY=VALUE>', 'Set environment variables', collect)
    .option('-w, --workdir <dir>', 'Working directory inside the container')
    .option('-u, --user <user>', 'Username or UID')
    .option('--privileged', 'Give extended privileges to the command')
    .option('--detach-keys <keys>', 'Override the key sequence for detaching a container')
    .argument('<container>')
    .argument('<command...>')
    .passThroughOptions()
    .action(act(program, 'run', 'exec'));
  parent
    .command('attach')
    .description('Attach local standard input, output, and error streams to a running container')
    .option('--detach-keys <keys>', 'Override the key sequence for detaching a container')
    .option('--no-stdin', 'Do not attach STDIN')
    .option('--sig-proxy', 'Proxy all received signals to the process', true)
    .option('--no-sig-proxy', 'Do not proxy signals')
    .argument('<container>')
    .action(act(program, 'run', 'attach'));
  parent
    .command('logs')
    .description('Fetch the logs of a container')
    .option('-f, --follow', 'Follow log output')
    .option('-n, --tail <n>', 'Number of lines to show from the end of the logs', 'all')
    .option('-t, --timestamps', 'Show timestamps')
    .option('--since <time>', 'Show logs since timestamp or relative (e.g. 42m)')
    .option('--until <time>', 'Show logs before a timestamp or relative')
    .option('--details', 'Show extra details provided to logs')
    .argument('<container>')
    .action(act(program, 'container', 'logs'));
  parent
    .command('inspect')
    .description(
      top ? 'Return low-level information on Docker objects' : 'Display detailed information on one or more containers',
    )
    .option('-f, --format <format>', 'Format output using a custom template')
    .option('-s, --size', 'Display total file sizes')
    .option('--type <type>', 'Only inspect objects of the given type')
    .argument('<name...>')
    .action(act(program, 'container', top ? 'inspectAny' : 'inspect'));
  parent
    .command('wait')
    .description('Block until one or more containers stop, then print their exit codes')
    .argument('<container...>')
    .action(act(program, 'container', 'wait'));
  parent
    .command('rename')
    .description('Rename a container')
    .argument('<container>')
    .argument('<new-name>')
    .action(act(program, 'container', 'rename'));
  parent
    .command('pause')
    .description('Pause all processes within one or more containers')
    .argument('<container...>')
    .action(act(program, 'container', 'pause'));
  parent
    .command('unpause')
    .description('Unpause all processes within one or more containers')
    .argument('<container...>')
    .action(act(program, 'container', 'unpause'));
  parent
    .command('top')
    .description('Display the running processes of a container')
    .argument('<container>')
    .argument('[ps-options...]')
    .action(act(program, 'container', 'top'));
  parent
    .command('update')
    .description('Update configuration of one or more containers')
    .option('-m, --memory <bytes>', 'Memory limit')
    .option('--memory-swap <bytes>', 'Swap limit equal to memory plus swap: -1 to enable unlimited swap')
    .option('--memory-reservation <bytes>', 'Memory soft limit')
    .option('--cpus <decimal>', 'Number of CPUs')
    .option('-c, --cpu-shares <int>', 'CPU shares (relative weight)')
    .option('--cpu-period <int>', 'Limit CPU CFS (Completely Fair Scheduler) period')
    .option('--cpu-quota <int>', 'Limit CPU CFS (Completely Fair Scheduler) quota')
    .option('--cpuset-cpus <string>', 'CPUs in which to allow execution (0-3, 0,1)')
    .option('--cpuset-mems <string>', 'MEMs in which to allow execution (0-3, 0,1)')
    .option('--pids-limit <int>', 'Tune container pids limit (set -1 for unlimited)')
    .option('--restart <policy>', 'Restart policy to apply when a container exits')
    .argument('<container...>')
    .action(act(program, 'stats', 'update'));
  parent
    .command('stats')
    .description('Display a live stream of container(s) resource usage statistics')
    .option('-a, --all', 'Show all containers (default shows just running)')
    .option('--no-stream', 'Disable streaming stats and only pull the first result')
    .option('--format <format>', 'Format output using a custom template')
    .option('--no-trunc', "Don't truncate output")
    .argument('[container...]')
    .action(act(program, 'stats', 'stats'));
  parent
    .command('cp')
    .description('Copy files/folders between a container and the local filesystem')
    .option('-a, --archive', 'Archive mode (copy all uid/gid information)')
    .option('-L, --follow-link', 'Always follow symbol link in SRC_PATH')
    .option('-q, --quiet', 'Suppress progress output during copy')
    .argument('<src>')
    .argument('<dest>')
    .action(act(program, 'files', 'cp'));
  parent
    .command('diff')
    .description("Inspect changes to files or directories on a container's filesystem")
    .argument('<container>')
    .action(act(program, 'files', 'diff'));
  parent
    .command('commit')
    .description("Create a new image from a container's changes")
    .option('-a, --author <string>', 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    .option('-c, --change <instruction>', 'Apply Dockerfile instruction to the created image', collect)
    .option('-m, --message <string>', 'Commit message')
    .option('-p, --pause', 'Pause container during commit', true)
    .option('--no-pause', 'Do not pause the container during commit')
    .argument('<container>')
    .argument('[repository]')
    .action(act(program, 'files', 'commit'));
  parent
    .command('export')
    .description("Export a container's filesystem as a tar archive")
    .option('-o, --output <file>', 'Write to a file, instead of STDOUT')
    .argument('<container>')
    .action(act(program, 'files', 'exportContainer'));
  parent
    .command('port')
    .description('List port mappings or a specific mapping for the container')
    .argument('<container>')
    .argument('[port]')
    .action(act(program, 'container', 'port'));
  if (!top) {
    parent
      .command('prune')
      .description('Remove all stopped containers')
      .option('-f, --force', 'Do not prompt for confirmation')
      .option('--filter <filter>', 'Provide filter values (e.g. "until=<timestamp>")', collect)
      .action(act(program, 'container', 'prune'));
  }
}

/**
 * The image verbs, defined once and registered twice like containerCommands:
 * under `cove image` (ls, rm, inspect, ...) and at the top level as docker's
 * shortcuts (images, rmi, tag, import, load). The top level has no image
 * `inspect`: there `cove inspect` is the any-object one of containerCommands.
 */
function imageCommands(parent: Command, program: Command, top: boolean): void {
  const lsCmd = parent
    .command(top ? 'images' : 'ls')
    .description('List images')
    .option('-a, --all', 'Show all images')
    .option('-q, --quiet', 'Only show image IDs')
    .option('-f, --filter <filter>', 'Filter output based on conditions provided', collect)
    .option('--format <format>', 'Format output using a custom template')
    .option('--digests', 'Show digests')
    .option('--no-trunc', "Don't truncate output")
    .argument('[repository]')
    .action(act(program, 'image', 'ls'));
  if (!top) lsCmd.aliases(['list']);
  const rmCmd = parent
    .command(top ? 'rmi' : 'rm')
    .description('Remove one or more images')
    .option('-f, --force', 'Force removal of the image')
    .option('--no-prune', 'Do not delete untagged parents')
    .argument('<image...>')
    .action(act(program, 'image', 'rm'));
  if (!top) rmCmd.aliases(['remove', 'rmi']);
  if (!top) {
    parent
      .command('inspect')
      .description('Display detailed information on one or more images')
      .option('-f, --format <format>', 'Format output using a custom template')
      .argument('<image...>')
      .action(act(program, 'image', 'inspect'));
  }
  parent
    .command('tag')
    .description('Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE')
    .argument('<source>')
    .argument('<target>')
    .action(act(program, 'image', 'tag'));
  parent
    .command('import')
    .description('Import the contents from a tarball to create a filesystem image')
    .option('-c, --change <instruction>', 'Apply Dockerfile instruction to the created image', collect)
    .option('-m, --message <message>', 'Set commit message for imported image')
    .option('--platform <platform>', 'Set platform if server is multi-platform capable')
    .argument('<file>')
    .argument('[reference]')
    .action(act(program, 'image', 'importImage'));
  parent
    .command('load')
    .description('Load an image from a tar archive or STDIN')
    .option('-i, --input <file>', 'Read from tar archive file, instead of STDIN')
    .option('-q, --quiet', 'Suppress the load output')
    .action(act(program, 'image', 'load'));
  parent
    .command('save')
    .description('Save one or more images to a tar archive (streamed to STDOUT by default)')
    .option('-o, --output <file>', 'Write to a file, instead of STDOUT')
    .argument('<image...>')
    .action(act(program, 'registry', 'save'));
  parent
    .command('pull')
    .description('Download an image from a registry')
    .option('-a, --all-tags', 'Download all tagged images in the repository')
    .option('-q, --quiet', 'Suppress verbose output')
    .option('--platform <platform>', 'Set platform if server is multi-platform capable')
    .argument('<name>')
    .action(act(program, 'registry', 'pull'));
  parent
    .command('push')
    .description('Upload an image to a registry')
    .option('-a, --all-tags', 'Push all tags of an image to the repository')
    .option('-q, --quiet', 'Suppress verbose output')
    .argument('<name>')
    .action(act(program, 'registry', 'push'));
  parent
    .command('history')
    .description('Show the history of an image')
    .option('-H, --human', 'Print sizes and dates in human readable format')
    .option('--no-human', 'Print sizes and dates as raw values')
    .option('-q, --quiet', 'Only show image IDs')
    .option('--no-trunc', "Don't truncate output")
    .option('--format <format>', 'Format output using a custom template')
    .argument('<image>')
    .action(act(program, 'image', 'history'));
  if (!top) {
    parent
      .command('prune')
      .description('Remove unused images')
      .option('-a, --all', 'Remove all unused images, not just dangling ones')
      .option('-f, --force', 'Do not prompt for confirmation')
      .option('--filter <filter>', 'Provide filter values (e.g. "until=<timestamp>")', collect)
      .action(act(program, 'image', 'prune'));
  }
}

/**
 * `info` and `events`, at the top level (with a description) and under
 * `cove system` (where, as before, they carry none).
 */
function systemCommands(parent: Command, program: Command, top: boolean): void {
  const infoCmd = parent.command('info');
  if (top) infoCmd.description('Display system-wide information');
  infoCmd
    .option('-f, --format <format>', 'Format output using a custom template')
    .action(act(program, 'system', 'info'));
  const eventsCmd = parent.command('events');
  if (top) eventsCmd.description('Get real time events from the server');
  eventsCmd
    .option('--since <time>', 'Show all events created since timestamp')
    .option('--until <time>', 'Stream events until this timestamp')
    .option('-f, --filter <filter>', 'Filter output based on conditions provided', collect)
    .option('--format <format>', 'Format the output using the given Go template')
    .action(act(program, 'system', 'events'));
}

/** cove service ...: swarm services, docker's flags (create and update share most). */
function serviceCommands(program: Command): void {
  program
    .command('service')
    .description('Manage Swarm services')
    .build((service) => {
      const common = (cmd: Command, update: boolean): Command => {
        cmd
          .option('-d, --detach', 'Exit immediately instead of waiting for the service to converge')
          .option('-q, --quiet', 'Suppress progress output')
          .option('--replicas <n>', 'Number of tasks')
          .option('--endpoint-mode <mode>', 'Endpoint mode (vip or dnsrr)')
          .option('--restart-condition <condition>', 'Restart when condition is met ("none", "on-failure", "any")')
          .option('--restart-delay <duration>', 'Delay between restart attempts (ns|us|ms|s|m|h)')
          .option('--restart-max-attempts <n>', 'Maximum number of restarts before giving up')
          .option('--restart-window <duration>', 'Window used to evaluate the restart policy (ns|us|ms|s|m|h)')
          .option(
            '--update-parallelism <n>',
            'Maximum number of tasks updated simultaneously (0 to update all at once)',
          )
          .option('--update-delay <duration>', 'Delay between updates (ns|us|ms|s|m|h)')
          .option('--update-order <order>', 'Update order ("start-first", "stop-first")')
          .option('--update-failure-action <action>', 'Action on update failure ("pause", "continue", "rollback")')
          .option(
            '--update-monitor <duration>',
            'Duration after each task update to monitor for failure (ns|us|ms|s|m|h)',
          )
          .option(
            '--rollback-parallelism <n>',
            'Maximum number of tasks rolled back simultaneously (0 to roll back all at once)',
          )
          .option('--rollback-delay <duration>', 'Delay between task rollbacks (ns|us|ms|s|m|h)')
          .option('--rollback-order <order>', 'Rollback order ("start-first", "stop-first")')
          .option('--rollback-failure-action <action>', 'Action on rollback failure ("pause", "continue")')
          .option('--hostname <name>', 'Container hostname')
          .option('-w, --workdir <dir>', 'Working directory inside the container')
          .option('-u, --user <user>', 'Username or UID (format: <name|uid>[:<group|gid>])')
          .option('--stop-grace-period <duration>', 'Time to wait before force killing a container (ns|us|ms|s|m|h)')
          .option('--with-registry-auth', 'Send registry authentication details to swarm agents')
          .option('--no-resolve-image', 'Do not query the registry to resolve image digest and supported platforms')
          .option('--health-cmd <string>', 'Command to run to check health')
          .option('--health-interval <duration>', 'Time between running the check (ms|s|m|h) (default 0s)')
          .option('--health-retries <int>', 'Consecutive failures needed to report unhealthy')
          .option(
            '--health-start-period <duration>',
            'Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)',
          )
          .option(
            '--health-start-interval <duration>',
            'Time between running the check during the start period (ms|s|m|h) (default 0s)',
          )
          .option('--health-timeout <duration>', 'Maximum time to allow one check to run (ms|s|m|h) (default 0s)')
          .option('--no-healthcheck', 'Disable any container-specified HEALTHCHECK');
        if (update) {
          cmd
            .option('--image <image>', 'Service image tag')
            .option('--args <command>', 'Service command args')
            .option('--env-add <KEY=VALUE>', 'Add or update an environment variable', collect)
            .option('--env-rm <KEY>', 'Remove an environment variable', collect)
            .option('--network-add <network>', 'Add a network', collect)
            .option('--network-rm <network>', 'Remove a network', collect)
            .option('--publish-add <port>', 'Add or update a published port', collect)
            .option('--publish-rm <port>', 'Remove a published port by its target port', collect)
            .option('--constraint-add <constraint>', 'Add or update a placement constraint', collect)
            .option('--constraint-rm <constraint>', 'Remove a constraint', collect)
            .option('--label-add <key=value>', 'Add or update a service label', collect)
            .option('--label-rm <key>', 'Remove a label by its key', collect)
            .option('--force', 'Force update even if no changes require it')
            .option('--rollback', 'Rollback to previous specification');
        } else {
          cmd
            .option('--name <name>', 'Service name')
            .option('--mode <mode>', 'Service mode ("replicated", "global")', 'replicated')
            .option('--network <network>', 'Network attachments', collect)
            .option('-e, --env <KEY=VALUE>', 'Set environment variables', collect)
            .option('--constraint <constraint>', 'Placement constraints', collect)
            .option('-p, --publish <port>', 'Publish a port as a node port', collect)
            .option('-l, --label <key=value>', 'Service labels', collect)
            .option('--container-label <key=value>', 'Container labels', collect)
            .option('--entrypoint <command>', 'Overwrite the default ENTRYPOINT of the image')
            .option('--init', 'Use an init inside each service container to forward signals and reap processes');
        }
        return cmd;
      };
      common(service.command('create').description('Create a new service'), false)
        .argument('<image>')
        .argument('[command...]')
        .passThroughOptions()
        .action(act(program, 'service', 'create'));
      service
        .command('ls')
        .aliases(['list'])
        .description('List services')
        .option('-q, --quiet', 'Only display IDs')
        .option('-f, --filter <filter>', 'Filter output based on conditions provided', collect)
        .option('--format <format>', 'Format output using a custom template')
        .action(act(program, 'service', 'ls'));
      service
        .command('ps')
        .description('List the tasks of one or more services')
        .option('-q, --quiet', 'Only display task IDs')
        .option('-f, --filter <filter>', 'Filter output based on conditions provided', collect)
        .option('--format <format>', 'Pretty-print tasks using a Go template')
        .option('--no-trunc', 'Do not truncate output')
        .option('--no-resolve', 'Do not map IDs to Names')
        .argument('<service...>')
        .action(act(program, 'service', 'ps'));
      service
        .command('inspect')
        .description('Display detailed information on one or more services')
        .option('-f, --format <format>', 'Format output using a custom template')
        .option('--pretty', 'Print the information in a human friendly format')
        .argument('<service...>')
        .action(act(program, 'service', 'inspect'));
      service
        .command('scale')
        .description('Scale one or multiple replicated services')
        .option('-d, --detach', 'Exit immediately instead of waiting for the service to converge')
        .argument('<pairs...>')
        .action(act(program, 'service', 'scale'));
      common(service.command('update').description('Update a service'), true)
        .argument('<service>')
        .action(act(program, 'service', 'update'));
      service
        .command('rollback')
        .description("Revert changes to a service's configuration")
        .option('-d, --detach', 'Exit immediately instead of waiting for the service to converge')
        .option('-q, --quiet', 'Suppress progress output')
        .argument('<service>')
        .action(act(program, 'service', 'rollback'));
      service
        .command('ports')
        .description('Show the ingress routing mesh for a service on this node (Cove)')
        .option('-f, --format <format>', 'Format the output using the given Go template')
        .argument('<service>')
        .action(act(program, 'service', 'ports'));
      service
        .command('rm')
        .aliases(['remove'])
        .description('Remove one or more services')
        .argument('<service...>')
        .action(act(program, 'service', 'rm'));
      service
        .command('logs')
        .description('Fetch the logs of a service or task')
        .option('-f, --follow', 'Follow log output')
        .option('-n, --tail <n>', 'Number of lines to show from the end of the logs', 'all')
        .option('-t, --timestamps', 'Show timestamps')
        .option('--since <time>', 'Show logs since timestamp')
        .option('--no-task-ids', 'Do not include task IDs in output')
        .option('--no-trunc', 'Do not truncate output')
        .option('--raw', 'Do not neatly format logs')
        .argument('<service>')
        .action(act(program, 'service', 'logs'));
    });
}

/** `swarm ...` and `node ...`, with docker's flags. */
function swarmCommands(program: Command): void {
  program
    .command('swarm')
    .description('Manage Swarm')
    .build((swarm) => {
      swarm
        .command('init')
        .description('Initialize a swarm')
        .option('--advertise-addr <addr>', 'Advertised address (format: "<ip|interface>[:port]")')
        .option('--listen-addr <addr>', 'Listen address (format: "<ip|interface>[:port]")', '0.0.0.0:2377')
        .option('--data-path-addr <addr>', 'Address or interface to use for data path traffic')
        .option('--data-path-port <port>', 'Port number to use for data path traffic (1024 - 49151)')
        .option('--default-addr-pool <cidr>', 'default address pool in CIDR format', collect)
        .option('--default-addr-pool-mask-length <n>', 'default address pool subnet mask length', '24')
        .option('--force-new-cluster', 'Force create a new cluster from current state')
        .option('--autolock', 'Enable manager autolocking (requiring an unlock key to start a stopped manager)')
        .option('--availability <state>', 'Availability of the node ("active", "pause", "drain")', 'active')
        .option('--task-history-limit <n>', 'Task history retention limit', '5')
        .option('--cert-expiry <duration>', 'Validity period for node certificates (ns|us|ms|s|m|h)', '2160h0m0s')
        .option('--dispatcher-heartbeat <duration>', 'Dispatcher heartbeat period (ns|us|ms|s|m|h)', '5s')
        .action(act(program, 'swarm', 'init'));
      swarm
        .command('join')
        .description('Join a swarm as a node and/or manager')
        .option('--token <token>', 'Token for entry into the swarm')
        .option('--advertise-addr <addr>', 'Advertised address (format: "<ip|interface>[:port]")')
        .option('--listen-addr <addr>', 'Listen address (format: "<ip|interface>[:port]")', '0.0.0.0:2377')
        .option('--data-path-addr <addr>', 'Address or interface to use for data path traffic')
        .option('--availability <state>', 'Availability of the node ("active", "pause", "drain")', 'active')
        .argument('<host:port>')
        .action(act(program, 'swarm', 'join'));
      swarm
        .command('leave')
        .description('Leave the swarm')
        .option('-f, --force', 'Force this node to leave the swarm, ignoring warnings')
        .action(act(program, 'swarm', 'leave'));
      swarm
        .command('join-token')
        .description('Manage join tokens')
        .option('-q, --quiet', 'Only display token')
        .option('--rotate', 'Rotate join token')
        .argument('<worker|manager>')
        .action(act(program, 'swarm', 'joinToken'));
      swarm
        .command('update')
        .description('Update the swarm')
        .option('--autolock <bool>', 'Change manager autolocking setting (true|false)')
        .option('--task-history-limit <n>', 'Task history retention limit')
        .option('--cert-expiry <duration>', 'Validity period for node certificates (ns|us|ms|s|m|h)')
        .option('--dispatcher-heartbeat <duration>', 'Dispatcher heartbeat period (ns|us|ms|s|m|h)')
        .action(act(program, 'swarm', 'update'));
      swarm
        .command('unlock-key')
        .description('Manage the unlock key')
        .option('-q, --quiet', 'Only display token')
        .option('--rotate', 'Rotate unlock key')
        .action(act(program, 'swarm', 'unlockKey'));
      swarm
        .command('inspect')
        .description('Display detailed information on the swarm')
        .option('-f, --format <format>', 'Format output using a custom template')
        .action(act(program, 'swarm', 'inspect'));
    });

  program
    .command('node')
    .description('Manage Swarm nodes')
    .build((node) => {
      node
        .command('ls')
        .aliases(['list'])
        .description('List nodes in the swarm')
        .option('-q, --quiet', 'Only display IDs')
        .option('-f, --filter <filter>', 'Filter output based on conditions provided', collect)
        .option('--format <format>', 'Format output using a custom template')
        .action(act(program, 'node', 'ls'));
      node
        .command('inspect')
        .description('Display detailed information on one or more nodes')
        .option('-f, --format <format>', 'Format output using a custom template')
        .option('--pretty', 'Print the information in a human friendly format')
        .argument('<node...>')
        .action(act(program, 'node', 'inspect'));
      node
        .command('promote')
        .description('Promote one or more nodes to manager in the swarm')
        .argument('<node...>')
        .action(act(program, 'node', 'promote'));
      node
        .command('demote')
        .description('Demote one or more nodes from manager in the swarm')
        .argument('<node...>')
        .action(act(program, 'node', 'demote'));
      node
        .command('update')
        .description('Update a node')
        .option('--availability <state>', 'Availability of the node ("active", "pause", "drain")')
        .option('--role <role>', 'Role of the node ("worker", "manager")')
        .option('--label-add <key=value>', 'Add or update a node label', collect)
        .option('--label-rm <key>', 'Remove a node label if exists', collect)
        .argument('<node>')
        .action(act(program, 'node', 'update'));
      node
        .command('rm')
        .aliases(['remove'])
        .description('Remove one or more nodes from the swarm')
        .option('-f, --force', 'Force remove a node from the swarm')
        .argument('<node...>')
        .action(act(program, 'node', 'rm'));
    });
}

export function buildProgram(): Command {
  const program = new Command('cove')
    .description("A self-sufficient runtime for containers, with Docker's networking")
    .option('-H, --host <host>', 'Daemon socket to connect to (unix://PATH)')
    .enablePositionalOptions()
    .showSuggestionAfterError(false)
    .configureHelp({ sortSubcommands: true });
  program.option('-v, --version', 'Print version information and quit');

  program
    .command('network')
    .description('Manage networks')
    .build((network) => {
      network
        .command('ls')
        .aliases(['list'])
        .description('List networks')
        .option('-q, --quiet', 'Only display network IDs')
        .option('-f, --filter <filter>', 'Provide filter values (e.g. "driver=bridge")', collect)
        .option('--format <format>', 'Format output using a custom template')
        .option('--no-trunc', 'Do not truncate the output')
        .action(act(program, 'network', 'ls'));
      network
        .command('create')
        .description('Create a network')
        .option('-d, --driver <driver>', 'Driver to manage the Network', 'bridge')
        .option('--subnet <subnet>', 'Subnet in CIDR format that represents a network segment', collect)
        .option('--gateway <ip>', 'IPv4 or IPv6 Gateway for the master subnet', collect)
        .option('--ip-range <range>', 'Allocate container ip from a sub-range', collect)
        .option('--aux-address <name=ip>', 'Auxiliary IPv4 or IPv6 addresses used by Network driver', collect)
        .option('--ipv6', 'Enable or disable IPv6 networking')
        .option('--ipv4', 'Enable or disable IPv4 address assignment')
        .option('--internal', 'Restrict external access to the network')
        .option('--attachable', 'Enable manual container attachment')
        .option('--ingress', 'Create swarm routing-mesh network')
        .option('-o, --opt <key=value>', 'Set driver specific options', collect)
        .option('--label <key=value>', 'Set metadata on a network', collect)
        .option('--scope <scope>', "Control the network's scope")
        .option('--ipam-driver <driver>', 'IP Address Management Driver', 'default')
        .option('--ipam-opt <key=value>', 'Set IPAM driver specific options', collect)
        .option('--config-only', 'Create a configuration only network')
        .option('--config-from <network>', 'The network from which to copy the configuration')
        .argument('<name>')
        .action(act(program, 'network', 'create'));
      network
        .command('rm')
        .aliases(['remove'])
        .description('Remove one or more networks')
        .option('-f, --force', 'Do not error if the network does not exist')
        .argument('<network...>')
        .action(act(program, 'network', 'rm'));
      network
        .command('inspect')
        .description('Display detailed information on one or more networks')
        .option('-f, --format <format>', 'Format output using a custom template')
        .option('-v, --verbose', 'Verbose output for diagnostics')
        .argument('<network...>')
        .action(act(program, 'network', 'inspect'));
      network
        .command('connect')
        .description('Connect a container to a network')
        .option('--alias <alias>', 'Add network-scoped alias for the container', collect)
        .option('--ip <address>', 'IPv4 address (e.g., "172.30.100.104")')
        .option('--ip6 <address>', 'IPv6 address (e.g., "2001:db8::33")')
        .option('--link <container>', 'Add link to another container', collect)
        .option('--link-local-ip <address>', 'Add a link-local address for the container', collect)
        .option('--driver-opt <key=value>', 'driver options for the network', collect)
        .option('--gw-priority <n>', 'Highest gw-priority provides the default gateway')
        .argument('<network>')
        .argument('<container>')
        .action(act(program, 'network', 'connect'));
      network
        .command('disconnect')
        .description('Disconnect a container from a network')
        .option('-f, --force', 'Force the container to disconnect from a network')
        .argument('<network>')
        .argument('<container>')
        .action(act(program, 'network', 'disconnect'));
      network
        .command('prune')
        .description('Remove all unused networks')
        .option('-f, --force', 'Do not prompt for confirmation')
        .option('--filter <filter>', 'Provide filter values (e.g. "until=<timestamp>")', collect)
        .action(act(program, 'network', 'prune'));
    });

  program
    .command('volume')
    .description('Manage volumes')
    .build((volume) => {
      volume
        .command('create')
        .description('Create a volume')
        .option('-d, --driver <driver>', 'Specify volume driver name', 'local')
        .option('-o, --opt <key=value>', 'Set driver specific options', collect)
        .option('--label <key=value>', 'Set metadata for a volume', collect)
        .option('--name <name>', 'Specify volume name')
        .argument('[volume]')
        .action(act(program, 'volume', 'create'));
      volume
        .command('ls')
        .aliases(['list'])
        .description('List volumes')
        .option('-q, --quiet', 'Only display volume names')
        .option('-f, --filter <filter>', 'Provide filter values (e.g. "dangling=true")', collect)
        .option('--format <format>', 'Format output using a custom template')
        .action(act(program, 'volume', 'ls'));
      volume
        .command('inspect')
        .description('Display detailed information on one or more volumes')
        .option('-f, --format <format>', 'Format output using a custom template')
        .argument('<volume...>')
        .action(act(program, 'volume', 'inspect'));
      volume
        .command('rm')
        .aliases(['remove'])
        .description('Remove one or more volumes')
        .option('-f, --force', 'Force the removal of one or more volumes')
        .argument('<volume...>')
        .action(act(program, 'volume', 'rm'));
      volume
        .command('prune')
        .description('Remove unused local volumes')
        .option('-a, --all', 'Remove all unused volumes, not just anonymous ones')
        .option('-f, --force', 'Do not prompt for confirmation')
        .option('--filter <filter>', 'Provide filter values (e.g. "label=<label>")', collect)
        .action(act(program, 'volume', 'prune'));
    });

  program
    .command('container')
    .description('Manage containers')
    .build((container) => containerCommands(container, program, false));
  containerCommands(program, program, true);

  program
    .command('image')
    .description('Manage images')
    .build((image) => imageCommands(image, program, false));
  // Top-level shortcuts, as docker has them.
  imageCommands(program, program, true);

  program
    .command('login')
    .description('Authenticate to a registry')
    .option('-u, --username <username>', 'Username')
    .option('-p, --password <password>', 'Password or Personal Access Token (PAT)')
    .option('--password-stdin', 'Take the Password or Personal Access Token (PAT) from stdin')
    .argument('[server]')
    .action(act(program, 'registry', 'login'));
  program
    .command('logout')
    .description('Log out from a registry')
    .argument('[server]')
    .action(act(program, 'registry', 'logout'));
  program
    .command('search')
    .description('Search registries for images')
    .option('--limit <n>', 'Max number of search results')
    .option('-f, --filter <filter>', 'Filter output based on conditions provided', collect)
    .option('--format <format>', 'Pretty-print search using a Go template')
    .option('--no-trunc', "Don't truncate output")
    .argument('<term>')
    .action(act(program, 'registry', 'search'));

  program
    .command('version')
    .description('Show the Cove version information')
    .option('-f, --format <format>', 'Format output using a custom template')
    .action(act(program, 'system', 'version'));
  systemCommands(program, program, true);
  program
    .command('system')
    .description('Manage Cove')
    .build((system) => systemCommands(system, program, false));
  serviceCommands(program);

  program
    .command('lab')
    .description('Simulated hosts on this machine (network namespaces), for multi-host work')
    .build((lab) => {
      lab
        .command('up')
        .description('Build N hosts joined by an underlay bridge, each with its own coved')
        .option('--hosts <n>', 'Number of hosts', '3')
        .option('--name <name>', 'Lab name', 'lab')
        .action(act(program, 'lab', 'up'));
      lab
        .command('env')
        .description('Print the environment that points docker and cove at a host')
        .option('--name <name>', 'Lab name', 'lab')
        .argument('<host>')
        .action(act(program, 'lab', 'env'));
      lab
        .command('exec')
        .description('Run a command inside a host, with DOCKER_HOST and COVE_HOST set')
        .option('--name <name>', 'Lab name', 'lab')
        .argument('<host>')
        .argument('<command...>')
        .passThroughOptions()
        .action(act(program, 'lab', 'exec'));
      lab
        .command('restart')
        .description("Restart a host's coved (--kill: SIGKILL, a crash)")
        .option('--name <name>', 'Lab name', 'lab')
        .option('--kill', 'Kill with SIGKILL')
        .argument('<host>')
        .action(act(program, 'lab', 'restart'));
      lab
        .command('stop')
        .description("Stop a host's coved (--kill: SIGKILL, a crash)")
        .option('--name <name>', 'Lab name', 'lab')
        .option('--kill', 'Kill with SIGKILL')
        .argument('<host>')
        .action(act(program, 'lab', 'stop'));
      lab
        .command('start')
        .description("Start a stopped host's coved")
        .option('--name <name>', 'Lab name', 'lab')
        .argument('<host>')
        .action(act(program, 'lab', 'start'));
      lab
        .command('ls')
        .description("List a lab's hosts")
        .option('--name <name>', 'Lab name', 'lab')
        .action(act(program, 'lab', 'ls'));
      lab
        .command('down')
        .description('Remove every namespace, link, mount and process of a lab')
        .option('--name <name>', 'Lab name', 'lab')
        .action(act(program, 'lab', 'down'));
    });

  swarmCommands(program);

  return program;
}

export async function main(argv: string[] = process.argv): Promise<void> {
  // `cove ... | head`: once the reader has gone, stop quietly instead of dying of an unhandled EPIPE.
  for (const out of [process.stdout, process.stderr]) {
    out.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
  const program = buildProgram();
  if (argv.length === 3 && (argv[2] === '-v' || argv[2] === '--version')) {
    const { clientVersion } = await import('./commands/system.js');
    process.stdout.write(`Cove version ${clientVersion()}\n`);
    return;
  }
  await program.parseAsync(argv);
}
