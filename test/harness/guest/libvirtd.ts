// A libvirtd of its own for one test "host": in a private mount namespace, its /etc/libvirt,
// /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt are folders of the
// test's, and so is one more folder mounted at a path both instances share (libvirt migrates
// a domain's disk and socket paths as they are, so "the same path on both hosts" must lead to
// different files). Its control socket stays outside the namespace, where virsh and the other
// instance (--p2p) reach it.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, spawnChild, type Child } from '../child.js';

export interface LibvirtdOptions {
  /** This instance's own folder. */
  dir: string;
  /** Must differ between the two, else: "Attempt to migrate guest to the same host". */
  hostUuid: string;
  /** The path both instances see, and the folder mounted there for this one. */
  sharedPath: string;
  sharedSource: string;
}

export interface Libvirtd {
  /**
   * qemu+unix:///system on this instance's control socket. "+unix" matters for --p2p: inside
   * the source libvirtd, plain qemu:///system would open its own driver, not the other instance.
   */
  readonly uri: string;
  readonly child: Child;
  virsh(...args: string[]): Promise<string>;
  /** Destroys its domains, kills any QEMU left by its pid file, stops libvirtd. */
  stop(): Promise<void>;
}

const STATE_DIRS = { etc: '/etc/libvirt', run: '/run/libvirt', lib: '/var/lib/libvirt', cache: '/var/cache/libvirt', log: '/var/log/libvirt' };

// Runs inside the new namespace: the mount points are made (empty folders, on the shared root
// file system) if the host has none, then the binds, then libvirtd in place of the shell.
const NAMESPACE_SCRIPT = `set -e
dir=$1 shared=$2 source=$3
for pair in ${Object.entries(STATE_DIRS).map(([k, v]) => `${k}:${v}`).join(' ')}; do
  mkdir -p "\${pair#*:}"
  mount --bind "$dir/\${pair%%:*}" "\${pair#*:}"
done
mount --bind "$source" "$shared"
exec libvirtd --pid-file "$dir/libvirtd.pid"
`;

export async function startLibvirtd(options: LibvirtdOptions): Promise<Libvirtd> {
  const { dir } = options;
  const sockets = join(dir, 'sock');
  for (const sub of [...Object.keys(STATE_DIRS), 'sock']) await mkdir(join(dir, sub), { recursive: true });
  for (const path of [options.sharedPath, options.sharedSource]) await mkdir(path, { recursive: true });
  await writeFile(
    join(dir, 'etc', 'libvirtd.conf'),
    [
      `unix_sock_dir = "${sockets}"`,
      'unix_sock_rw_perms = "0700"',
      'auth_unix_rw = "none"',
      'auth_unix_ro = "none"',
      `host_uuid = "${options.hostUuid}"`,
      `log_outputs = "3:file:${join(dir, 'libvirtd.log')}"`,
    ].join('\n'),
  );
  await writeFile(
    join(dir, 'etc', 'qemu.conf'),
    [
      // No libvirt-qemu ownership games: the test's files stay root's.
      'user = "root"',
      'group = "root"',
      'dynamic_ownership = 0',
      'remember_owner = 0',
      'security_driver = "none"',
      // QEMU's output to a file, not through virtlogd (one more daemon per instance).
      'stdio_handler = "file"',
      // Two instances on one machine would put their VMs in the one machine cgroup, and the
      // first to tear down breaks the other's.
      'cgroup_controllers = [ ]',
      // No private /dev per VM: a container may not allow it.
      'namespaces = [ ]',
    ].join('\n'),
  );
  const child = await spawnChild('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', NAMESPACE_SCRIPT, 'sh', dir, options.sharedPath, options.sharedSource]);
  const uri = `qemu+unix:///system?socket=${join(sockets, 'libvirt-sock')}`;
  const virsh = async (...args: string[]): Promise<string> => (await run('virsh', ['-c', uri, ...args])).stdout;
  const daemon: Libvirtd = {
    uri,
    child,
    virsh,
    async stop() {
      if (child.proc.exitCode === null) {
        const names = (await virsh('list', '--name').catch(() => '')).split('\n').filter(Boolean);
        for (const name of names) await virsh('destroy', name).catch(() => {});
      }
      await killLeftoverQemu(join(dir, 'run', 'qemu'));
      await child.stop();
    },
  };
  try {
    await waitReady(daemon, dir);
  } catch (error) {
    await daemon.stop();
    throw error;
  }
  return daemon;
}

/** libvirtd answers once its drivers are up (the QEMU driver probes QEMU first: seconds). */
async function waitReady(daemon: Libvirtd, dir: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (daemon.child.proc.exitCode !== null) {
      const log = await readFile(join(dir, 'libvirtd.log'), 'utf8').catch(() => '');
      throw new Error(`libvirtd exited (${daemon.child.proc.exitCode}): ${daemon.child.stderr}\n${log.split('\n').slice(-10).join('\n')}`);
    }
    try {
      await daemon.virsh('version');
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
    }
    await sleep(200);
  }
}

/** QEMU outlives libvirtd; a domain libvirt could not destroy is killed by the PID it recorded. */
async function killLeftoverQemu(runDir: string): Promise<void> {
  for (const file of (await readdir(runDir).catch(() => [] as string[])).filter((f) => f.endsWith('.pid'))) {
    const pid = Number((await readFile(join(runDir, file), 'utf8').catch(() => '')).trim());
    // A stale file's PID may belong to someone else by now.
    const cmdline = pid > 1 ? await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '') : '';
    if (!cmdline.startsWith('/usr/bin/qemu-system')) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}
