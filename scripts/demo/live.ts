// `npm run demo`: a live migration. The tiny guest boots in qemu-system-x86_64 and keeps
// rewriting numbered blocks; `nbd-tunnel migrate` moves its disk and its RAM through one TLS
// WebSocket to a destination QEMU waiting with -incoming defer, which `nbd-tunnel dest --vm`
// resumes; then checks.ts looks at the destination. `--direct` runs the same migration with
// QEMU's sockets direct (libvirt's QMP sequence, no tunnel) for the ratios.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CLI, makePki, spawnChild, startProxy, type Pki } from '../../test/harness/index.js';
import { buildGuest, type GuestBoot } from '../../test/harness/guest/build.js';
import { directLink, startMigrationPair, type MigrationPair, type PairLinkFactory } from '../../test/harness/guest/pair.js';
import { migrateLikeLibvirt } from '../../test/harness/guest/sequence.js';
import { GUEST_RAM } from '../../test/harness/guest/vm.js';
import { checkDestination, figuresFromQemu, type Check, type Figures } from './checks.js';
import type { Demo, Outcome } from './context.js';

const MiB = 1024 * 1024;
const DISK_BYTES = 256 * MiB;
/** 1 MiB of 4 KiB blocks the guest rewrites round-robin. */
const BLOCKS = 256;
const VM = 'vm1';
const MIGRATE_TIMEOUT_MS = 300_000;

interface Result {
  checks: Check[];
  figures: Figures;
}

/** `nbd-tunnel migrate` opens its own sockets to the destination: the pair needs no path. */
const noLink: PairLinkFactory = async () => ({
  clientSocket: (route) => {
    throw new Error(`route ${route}: nbd-tunnel migrate makes its own sockets`);
  },
  stop: async () => {},
});

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

async function startPair(demo: Demo, name: string, boot: GuestBoot, pki: Pki, connect: PairLinkFactory): Promise<MigrationPair> {
  const dir = join(demo.dir, name);
  await mkdir(dir);
  const pair = demo.stops.add(await startMigrationPair({ dir, pki, boot, connect, diskBytes: DISK_BYTES, seed: 7, blocks: BLOCKS }));
  demo.say(`  guest booted on the source in ${seconds(pair.bootMs)} (qemu-system-x86_64, TCG, ${GUEST_RAM} RAM, a ${DISK_BYTES / MiB} MiB disk)`);
  const { match } = await pair.source.console.waitLine(new RegExp(`^wrote ${2 * BLOCKS} boot (\\w+)`));
  demo.say(`  the guest is writing: its ${BLOCKS} blocks of 4 KiB round-robin, ${2 * BLOCKS} writes so far (boot ${match[1]})`);
  return pair;
}

async function throughTunnel(demo: Demo, boot: GuestBoot, pki: Pki): Promise<Result> {
  const { say, stops } = demo;
  try {
    const pair = await startPair(demo, 'tunnel', boot, pki, noLink);
    const dest = stops.add(
      await startProxy(
        ['dest', '--listen', '127.0.0.1:0', '--vm', `${VM}=${pair.dest.managementSocket}`, '--allow', `${VM}=hv1.example.org`]
          .concat(['--cert', pki.serverCert, '--key', pki.serverKey, '--ca', pki.caCert]),
        'listening',
      ),
    );
    const port = Number(dest.logs.find((l) => l.msg === 'listening')!.port);
    say(`  nbd-tunnel dest on wss://localhost:${port} (TLS 1.3, client certificate hv1.example.org required), --vm ${VM}: the QEMU waiting with -incoming defer`);
    const args = ['migrate', '--qmp', pair.source.managementSocket, '--connect', `wss://localhost:${port}`, '--vm', VM, '--ca', pki.caCert, '--cert', pki.clientCert, '--key', pki.clientKey];
    say(`  $ nbd-tunnel migrate --qmp SOURCE_QMP --connect wss://localhost:${port} --vm ${VM} --ca … --cert … --key …`);
    const migrate = stops.add(await spawnChild(process.execPath, [CLI, ...args], { output: 'inherit' }));
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`nbd-tunnel migrate still running after ${MIGRATE_TIMEOUT_MS / 1000} s`)), MIGRATE_TIMEOUT_MS).unref());
    const { code, signal } = await Promise.race([migrate.exited, timeout]);
    if (code !== 0) {
      const warnings = dest.logs.filter((l) => (l.level ?? 0) >= 40).map((l) => `\n    dest: ${JSON.stringify(l)}`);
      const qemus = [pair.source, pair.dest].filter((vm) => vm.child.proc.exitCode !== null || vm.child.proc.signalCode !== null);
      const exits = qemus.map((vm) => `\n    ${vm.options.name} QEMU exited (${vm.child.proc.exitCode ?? vm.child.proc.signalCode}): ${vm.child.stderr.trim().slice(-500)}`);
      throw new Error(`nbd-tunnel migrate exited with ${code ?? signal}${warnings.join('')}${exits.join('')}`);
    }
    return { checks: await checkDestination(pair, pair.source.lastProgress(), BLOCKS), figures: await figuresFromQemu(pair.source.qmp, DISK_BYTES) };
  } finally {
    await stops.run();
  }
}

async function direct(demo: Demo, boot: GuestBoot, pki: Pki): Promise<Result> {
  try {
    const pair = await startPair(demo, 'direct', boot, pki, directLink);
    demo.say("  libvirt's QMP sequence (blockdev-mirror, migrate with pause-before-switchover), QEMU's UNIX sockets direct: no tunnel, no TLS");
    const result = await migrateLikeLibvirt(pair, { copyMode: 'background', compareAtSwitchover: false });
    await pair.dest.qmp.execute('cont'); // as nbd-tunnel dest does at the end
    return { checks: await checkDestination(pair, result.sourceLast, BLOCKS), figures: await figuresFromQemu(pair.source.qmp, DISK_BYTES) };
  } finally {
    await demo.stops.run();
  }
}

/** Prints the checks and figures; returns the failed checks. */
function show(demo: Demo, { checks, figures: f }: Result): Check[] {
  demo.say('  checks on the destination:');
  for (const c of checks) demo.say(`    ${c.ok ? 'ok  ' : 'FAIL'}  ${c.text}`);
  demo.say(
    `  measured by QEMU: disk ${f.diskMBps.toFixed(0)} MB/s (mirror to READY), RAM ${(f.ramBytes / MiB).toFixed(0)} MiB at ${f.ramMBps.toFixed(0)} MB/s, ` +
      `downtime ${f.downtimeMs} ms (from the pause, mirror completion included)`,
  );
  return checks.filter((c) => !c.ok);
}

export async function liveDemo(demo: Demo): Promise<Outcome> {
  const { say } = demo;
  say(`nbd-tunnel demo: live migration of a running guest, its disk and its RAM through one TLS WebSocket`);
  const t0 = performance.now();
  const [boot, pki] = await Promise.all([buildGuest(), makePki(join(demo.dir, 'pki'))]);
  say(`  guest image ready in ${seconds(performance.now() - t0)} (kernel ${boot.kernelVersion}, busybox initramfs); throwaway CA and certificates made`);
  const tunnel = await throughTunnel(demo, boot, pki);
  const failed = show(demo, tunnel).map((c) => c.text);
  const f = tunnel.figures;
  if (demo.direct) {
    say('baseline without nbd-tunnel:');
    const baseline = await direct(demo, boot, pki);
    failed.push(...show(demo, baseline).map((c) => `baseline: ${c.text}`));
    const b = baseline.figures;
    say(`  tunnel / direct: disk MB/s ${(f.diskMBps / b.diskMBps).toFixed(2)}, RAM MB/s ${(f.ramMBps / b.ramMBps).toFixed(2)}, downtime ${(f.downtimeMs / b.downtimeMs).toFixed(2)}`);
  }
  const figures = `downtime ${f.downtimeMs} ms, disk ${f.diskMBps.toFixed(0)} MB/s, RAM ${f.ramMBps.toFixed(0)} MB/s`;
  if (failed.length > 0) return { ok: false, verdict: `${failed.join('; ')}; ${figures}` };
  return { ok: true, verdict: `guest running on the destination, went on from the source's last write and verified all ${BLOCKS} blocks; disks identical; ${figures}` };
}
