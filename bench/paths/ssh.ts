// What many operators use today: `ssh -L` forwarding each disk's UNIX socket to the
// destination's, all disks in one SSH connection. Default ciphers; the negotiated one is noted.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../test/harness/index.js';
import { freePort, tcpListening, unixListening, waitUntil } from '../listening.js';
import { buildPath } from './builder.js';
import type { PathHandle, PathOptions } from './types.js';

/** sshd must be started by absolute path: it re-executes itself for every connection. */
const SSHD = '/usr/sbin/sshd';
/** sshd refuses to start without its privilege-separation directory, which Debian creates only via systemd. */
const PRIVSEP_DIR = '/run/sshd';
/** The name the known_hosts entry is filed under, whichever port (sshd's or the relay's) ssh dials. */
const HOST_ALIAS = 'nbd-bench-sshd';

export function startSsh(options: PathOptions): Promise<PathHandle> {
  return buildPath(options, async (b) => {
    const dir = join(options.dir, 'ssh');
    await mkdir(dir, { recursive: true });
    await mkdir(PRIVSEP_DIR, { recursive: true, mode: 0o755 });
    const hostKey = await keygen(join(dir, 'host_key'));
    const clientKey = await keygen(join(dir, 'client_key'));
    await writeFile(join(dir, 'authorized_keys'), await readFile(`${clientKey}.pub`));
    await writeFile(join(dir, 'known_hosts'), `${HOST_ALIAS} ${await readFile(`${hostKey}.pub`, 'utf8')}`);

    const port = await freePort();
    const config = join(dir, 'sshd_config');
    await writeFile(config, sshdConfig(port, hostKey, join(dir, 'authorized_keys')));
    const sshd = await b.spawn('sshd', SSHD, ['-D', '-e', '-f', config]);
    await waitUntil('sshd', () => tcpListening(port), sshd);

    const connectPort = await b.via(port);
    const sockets = new Map(options.routes.map((route) => [route, join(options.dir, `${route}.sock`)]));
    const forwards = [...sockets.values()].flatMap((socket) => ['-L', `${socket}:${options.destSocket}`]);
    const ssh = await b.spawn('ssh', 'ssh', [
      // -v for the "kex: ... cipher:" lines; after the handshake it logs only per channel, not per byte.
      '-v', '-N', '-F', '/dev/null', '-i', clientKey, '-p', String(connectPort),
      '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
      '-o', 'ExitOnForwardFailure=yes', '-o', 'StreamLocalBindUnlink=yes',
      '-o', `UserKnownHostsFile=${join(dir, 'known_hosts')}`, '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'StrictHostKeyChecking=yes', '-o', `HostKeyAlias=${HOST_ALIAS}`,
      ...forwards,
      'root@127.0.0.1',
    ]);
    await waitUntil('ssh -L', () => [...sockets.values()].every(unixListening), ssh, 20_000);
    const cipher = ssh.stderr.match(/kex: client->server cipher: (\S+) MAC: (\S+)/);
    b.note(`ssh cipher: ${cipher ? `${cipher[1]} (MAC ${cipher[2]})` : 'not found in ssh -v output'}`);
    return (route) => sockets.get(route)!;
  });
}

async function keygen(path: string): Promise<string> {
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'nbd-tunnel bench', '-f', path]);
  return path;
}

function sshdConfig(port: number, hostKey: string, authorizedKeys: string): string {
  return [
    `ListenAddress 127.0.0.1:${port}`,
    `HostKey ${hostKey}`,
    'PidFile none',
    `AuthorizedKeysFile ${authorizedKeys}`,
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    // The key files live in a temp dir under /tmp, whose permissions StrictModes would reject.
    'StrictModes no',
    'AllowStreamLocalForwarding local',
    // Needed as well: sshd grants "connect anywhere" to -L channels, UNIX-socket ones included,
    // only when TCP forwarding is allowed; without it every channel is "denied".
    'AllowTcpForwarding local',
    'X11Forwarding no',
    'PermitTTY no',
    'LogLevel ERROR',
    '',
  ].join('\n');
}
