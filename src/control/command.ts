// `nbd-tunnel route add|remove|list --control SOCKET`: the commander side. Bad arguments exit 2
// before anything is sent; a refusal by the source (or no source there) exits 1; both print one
// line `nbd-tunnel: error: …`.
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { ConfigError, parseGroup, parseMode } from '../config.js';
import { routeNameProblem } from '../routes/index.js';
import { ControlRefusal, routeAdd, routeList, routeRemove } from './verbs.js';

type Fail = (error: Error, status: number) => never;

const controlOption = () =>
  new Option('--control <SOCKET>', 'the source\'s control socket (its --control)').env('NBD_TUNNEL_CONTROL').makeOptionMandatory();

export function addRouteCommand(program: Command, fail: Fail): void {
  const route = program.command('route').description('add, remove or list the routes of a running source (its --control socket)');
  const run = async (verb: () => Promise<string>): Promise<void> => {
    try {
      process.stdout.write(await verb());
    } catch (error) {
      if (error instanceof ConfigError) fail(error, 2);
      if (error instanceof ControlRefusal) fail(error, 1);
      throw error;
    }
  };
  route
    .command('add')
    .description('listen on SOCKET (default: the source\'s --route-dir/NAME.sock) for route NAME now; prints the socket')
    .argument('<NAME>', 'the route name, as the destination knows it')
    .argument('[SOCKET]', 'the UNIX socket QEMU will connect to')
    .addOption(controlOption())
    .addOption(new Option('--socket-mode <MODE>', 'mode of the socket (octal; default: the source\'s --socket-mode)'))
    .addOption(new Option('--socket-group <GROUP>', 'group of the socket (default: the source\'s --socket-group)'))
    .action((name: string, socket: string | undefined, flags: { control: string; socketMode?: string; socketGroup?: string }) =>
      run(() => {
        checkName(name);
        const access = {
          mode: flags.socketMode === undefined ? undefined : parseMode('--socket-mode', flags.socketMode),
          gid: flags.socketGroup === undefined ? undefined : parseGroup('--socket-group', flags.socketGroup),
        };
        return routeAdd(flags.control, name, socket === undefined ? undefined : resolve(socket), access);
      }),
    );
  route
    .command('remove')
    .description('stop listening for route NAME and remove its socket; its open streams go on')
    .argument('<NAME>', 'the route name')
    .addOption(controlOption())
    .action((name: string, flags: { control: string }) =>
      run(() => {
        checkName(name);
        return routeRemove(flags.control, name);
      }),
    );
  route
    .command('list')
    .description('print one route a line: NAME, SOCKET and open STREAMS, tab-separated')
    .addOption(controlOption())
    .action((flags: { control: string }) => run(() => routeList(flags.control)));
}

function checkName(name: string): void {
  const problem = routeNameProblem(name);
  if (problem) throw new ConfigError(`route name ${JSON.stringify(name)} is not valid: ${problem}`);
}
