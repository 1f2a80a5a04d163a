// The tiny guest in qemu-system-x86_64 under TCG: one virtio-blk disk (node `disk0` on a raw
// file), its serial console on a UNIX socket, QMP on another. Always started paused (-S): the
// source is continued once its console is connected, the destination waits for its migration.
import { join } from 'node:path';
import { StorageDaemon, startQmpChild } from '../storage-daemon.js';
import type { GuestBoot } from './build.js';
import { SerialConsole } from './console.js';
import { lastProgress, requestVerify, waitProgress, type Progress, type VerifyResult } from './protocol.js';

/**
 * Not a multiple of 256 KiB, on purpose: QEMU 7.2 (Debian 12) loses guest RAM updates when it
 * migrates a TCG guest whose RAM size is one (fixed in 9.0 by 03bfc2188f, "physmem: Fix migration
 * dirty bitmap coherency with TCG memory access"): 256 MiB - 8 KiB dodges it.
 */
export const GUEST_RAM = '262136k';
/** The disk's node name on both sides, as libvirt's sequence addresses it. */
export const DISK_NODE = 'disk0';

export interface GuestVmOptions {
  dir: string;
  /** Prefix of its sockets and log in `dir`. */
  name: string;
  boot: GuestBoot;
  /** A raw image; the destination's is blank and of the same size. */
  image: string;
  /** Blocks of 4 KiB the guest writes round-robin, from the start of the disk. */
  blocks: number;
  /** Wait for an incoming migration (-incoming defer) instead of booting. */
  incoming?: boolean;
}

export class GuestVm extends StorageDaemon {
  constructor(
    base: { child: StorageDaemon['child']; qmp: StorageDaemon['qmp']; qmpSocket: string },
    readonly console: SerialConsole,
    /** The second QMP monitor's socket, free for nbd-tunnel (migrate --qmp, dest --vm). */
    readonly managementSocket: string,
    readonly options: GuestVmOptions,
  ) {
    super(base.child, base.qmp, base.qmpSocket);
  }

  /** The first `wrote N` line at or after console line `from`. */
  progress(from = 0, timeoutMs?: number): Promise<Progress> {
    return waitProgress(this.console, from, timeoutMs);
  }

  lastProgress(): Progress | null {
    return lastProgress(this.console);
  }

  verify(timeoutMs?: number): Promise<VerifyResult> {
    return requestVerify(this.console, timeoutMs);
  }

  override async stop(): Promise<void> {
    await super.stop();
    this.console.close();
  }
}

export async function startGuestVm(options: GuestVmOptions): Promise<GuestVm> {
  const { dir, name, boot } = options;
  const qmpSocket = join(dir, `${name}-qmp.sock`);
  const managementSocket = join(dir, `${name}-mgmt.sock`);
  const serialSocket = join(dir, `${name}-serial.sock`);
  const args = [
    ...['-nodefaults', '-no-user-config', '-display', 'none', '-accel', 'tcg', '-smp', '1', '-m', GUEST_RAM, '-S'],
    // A guest that panics or reboots makes QEMU exit: a reboot must never pass for a running guest.
    '-no-reboot',
    ...['-kernel', boot.kernel, '-initrd', boot.initrd, '-append', `console=ttyS0 quiet panic=-1 nbdt.blocks=${options.blocks}`],
    ...['-chardev', `socket,id=qmp0,path=${qmpSocket},server=on,wait=off`, '-mon', 'chardev=qmp0,mode=control'],
    // A second monitor, as libvirt would hold one: for nbd-tunnel migrate and dest --vm, while the test keeps the first.
    ...['-chardev', `socket,id=qmp1,path=${managementSocket},server=on,wait=off`, '-mon', 'chardev=qmp1,mode=control'],
    ...['-chardev', `socket,id=ser0,path=${serialSocket},server=on,wait=off,logfile=${join(dir, `${name}-serial.log`)}`, '-serial', 'chardev:ser0'],
    ...['-blockdev', `driver=file,node-name=${DISK_NODE}-file,filename=${options.image}`],
    ...['-blockdev', `driver=raw,node-name=${DISK_NODE},file=${DISK_NODE}-file`],
    ...['-device', `virtio-blk-pci,drive=${DISK_NODE},id=vda`],
    ...(options.incoming ? ['-incoming', 'defer'] : []),
  ];
  const started = await startQmpChild('qemu-system-x86_64', args, qmpSocket, name);
  try {
    const console = await SerialConsole.connect(serialSocket, name, started.died);
    return new GuestVm({ ...started, qmpSocket }, console, managementSocket, options);
  } catch (error) {
    await started.child.stop();
    await started.qmp.close();
    throw error;
  }
}
