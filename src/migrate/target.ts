// The destination's typed operations on one VM it may drive (dest --vm NAME=QMP_SOCKET), for
// one migration: prepare (check the disks, serve them over NBD, accept the RAM stream), finish
// (stop the NBD server, resume the VM) and abort (undo what prepare did). The QEMU was started
// by the operator with -incoming defer and the target disks attached under the source's node names.
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { QmpClient } from '../qmp/index.js';
import type { DiskSpec } from './protocol.js';

interface NamedNode {
  'node-name': string;
  ro: boolean;
  image: { 'virtual-size': number };
}


const QMP_CONNECT_MS = 5_000;
/** After the source says the RAM copy is complete, the destination must leave "inmigrate" within this. */
const INCOMING_DONE_MS = 60_000;

export class MigrationTarget {
  private qmp: QmpClient | null = null;
  private nbdServerStarted = false;
  private receivingRam = false;

  constructor(
    readonly vm: string,
    private readonly qmpSocket: string,
  ) {}

  /** Checks everything first, then serves the disks over NBD; resolves with the NBD server's socket. A refusal leaves the QEMU untouched. */
  async prepare(disks: DiskSpec[], ram: boolean): Promise<string> {
    const qmp = (this.qmp = await QmpClient.connect(this.qmpSocket, QMP_CONNECT_MS).catch((error: Error) => {
      throw new Error(`VM '${this.vm}': cannot reach its QMP socket: ${error.message}`);
    }));
    const nodes = await qmp.execute<NamedNode[]>('query-named-block-nodes', { flat: true });
    for (const disk of disks) {
      const node = nodes.find((n) => n['node-name'] === disk.node);
      if (!node) throw new Error(`VM '${this.vm}' has no block node '${disk.node}' on the destination`);
      if (node.ro) throw new Error(`VM '${this.vm}': block node '${disk.node}' is read-only on the destination`);
      const size = node.image['virtual-size'];
      if (size !== disk.size) throw new Error(`VM '${this.vm}': disk '${disk.node}' is ${size} bytes on the destination and ${disk.size} on the source`);
    }
    if (ram) {
      const { status } = await qmp.execute<{ status: string }>('query-status');
      if (status !== 'inmigrate') throw new Error(`VM '${this.vm}' is ${status} on the destination; RAM can only go into a QEMU started with -incoming defer`);
    }
    const socket = this.socketPath('nbd');
    if (disks.length > 0) {
      await qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: socket } } });
      this.nbdServerStarted = true;
      for (const disk of disks) {
        await qmp.execute('block-export-add', { type: 'nbd', id: `nbd-tunnel-${disk.node}`, 'node-name': disk.node, name: disk.node, writable: true });
      }
    }
    return socket;
  }

  /** Listens for the RAM stream; resolves with its socket. From here on an abort cannot give the QEMU back: a failed incoming migration ends it. */
  async receiveRam(): Promise<string> {
    const qmp = this.connected();
    const socket = this.socketPath('ram');
    // As libvirt does: with -S, the disks are taken over only at `cont`, after the NBD server stopped writing them.
    await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'late-block-activate', state: true }] });
    await qmp.execute('migrate-incoming', { uri: `unix:${socket}` });
    this.receivingRam = true;
    return socket;
  }

  /** Beside the QMP socket: a folder the QEMU can create sockets in. */
  private socketPath(kind: 'nbd' | 'ram'): string {
    return join(dirname(this.qmpSocket), `nbd-tunnel-${this.vm}-${kind}.sock`);
  }

  /** The source has its copy done: stop serving the disks; after a RAM migration, run the VM. Resolves with its status. */
  async finish(): Promise<string> {
    const qmp = this.connected();
    if (!this.receivingRam) {
      await this.stopNbdServer();
      return (await qmp.execute<{ status: string }>('query-status')).status;
    }
    const deadline = Date.now() + INCOMING_DONE_MS;
    let { status } = await qmp.execute<{ status: string }>('query-status');
    while (status === 'inmigrate' && Date.now() < deadline) {
      await sleep(50);
      ({ status } = await qmp.execute<{ status: string }>('query-status'));
    }
    if (status === 'inmigrate') throw new Error(`VM '${this.vm}' still receiving its RAM ${INCOMING_DONE_MS / 1000} s after the source finished`);
    await this.stopNbdServer();
    if (status === 'paused' || status === 'postmigrate') {
      await qmp.execute('cont');
      status = 'running';
    }
    return status;
  }

  /** Undoes prepare: the NBD server and its exports go. (An incoming migration cannot be taken back: QEMU ends it when the stream fails.) */
  async abort(): Promise<void> {
    if (this.qmp) await this.stopNbdServer().catch(() => {});
  }

  async close(): Promise<void> {
    await this.qmp?.close();
    this.qmp = null;
  }

  private async stopNbdServer(): Promise<void> {
    if (!this.nbdServerStarted) return;
    // Stops the server and every NBD export on it, connections included.
    await this.connected().execute('nbd-server-stop');
    this.nbdServerStarted = false;
  }

  private connected(): QmpClient {
    if (!this.qmp) throw new Error(`VM '${this.vm}': no migration prepared`);
    return this.qmp;
  }
}
