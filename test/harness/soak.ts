// A sidecar's months, compressed: NBD connections through one session, ending every way a
// client ends (killed mid-request, gone before reading the reply, clean), tunnel resets among
// them; then what each proxy still holds: streams, descriptors, memory. Used by the soak test
// and by `npm run soak -- --minutes N`.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processStats, startFaultTunnel, waitForLogCount, type FaultTunnel, type ProcessStats } from './fault-tunnel.js';
import { heapProbeEnv, sampleHeap, type HeapSample } from './heap-probe.js';
import { NbdClient } from './nbd-client.js';
import type { Pki } from './pki.js';
import { fetchFromMetrics, type Proxy } from './proxies.js';
import { serveTestImage } from './storage-daemon.js';

const MiB = 1024 * 1024;
const ROUTE = 'vm-soak';
const BLOCK = 4096;
const WRITE_LENGTH = 64 * 1024;

export interface SoakOptions {
  dir: string;
  pki: Pki;
  /** Run this many connections, or (`durationMs`) for this long; the first to come ends it. */
  connections: number;
  durationMs?: number;
  /** A tunnel reset after every this many connections, at most `maxResets` of them. */
  resetEvery: number;
  maxResets: number;
  /** Connections before the baseline sample: memory is measured from there. */
  warmup: number;
  /** Progress lines, for a long run. */
  progress?: (line: string) => void;
}

type Side = 'source' | 'dest';

export interface SoakResult {
  connections: { killed: number; early: number; clean: number };
  /** Connections that got a wrong answer: a read that differed from the image, a list without the export (at most 5). */
  badReads: string[];
  resets: number;
  resumed: Record<Side, number>;
  /** After the run: each session's stream table and the streams being relayed, summed. */
  streams: Record<Side, { table: number; relayed: number }>;
  samples: Record<Side, { start: ProcessStats; baseline: ProcessStats; end: ProcessStats }>;
  /** Heap and external memory after a forced GC: after warm-up, and at the end. */
  heap: Record<Side, { baseline: HeapSample; end: HeapSample }>;
  elapsedMs: number;
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const { daemon, image, nbdSocket } = await serveTestImage(options.dir, 'soak-dest', ROUTE, 16 * MiB, 61);
  let tunnel: FaultTunnel | null = null;
  try {
    const expected = await readFile(image);
    const sourceSocket = join(options.dir, `${ROUTE}.sock`);
    const metrics = ['--metrics', '127.0.0.1:0'];
    const probe = heapProbeEnv(options.dir);
    tunnel = await startFaultTunnel({
      pki: options.pki,
      destRoutes: { [ROUTE]: nbdSocket },
      sourceRoutes: { [ROUTE]: sourceSocket },
      relay: {},
      destArgs: metrics,
      sourceArgs: metrics,
      destEnv: probe,
      sourceEnv: probe,
    });
    return await soak(tunnel, sourceSocket, expected, options);
  } finally {
    await tunnel?.stop();
    await daemon.stop();
  }
}

async function soak(tunnel: FaultTunnel, sourceSocket: string, expected: Buffer, options: SoakOptions): Promise<SoakResult> {
  const proxies: Record<Side, Proxy> = { source: tunnel.source, dest: tunnel.dest };
  const sample = async (): Promise<Record<Side, ProcessStats>> => ({
    source: await processStats(proxies.source.child.pid),
    dest: await processStats(proxies.dest.child.pid),
  });
  const heapOf = async (): Promise<Record<Side, HeapSample>> => ({
    source: await sampleHeap(proxies.source.child, options.dir),
    dest: await sampleHeap(proxies.dest.child, options.dir),
  });
  const start = await sample();
  let baseline = start;
  let heapBaseline = await heapOf();
  const counts = { killed: 0, early: 0, clean: 0 };
  const badReads: string[] = [];
  const payload = randomBytes(WRITE_LENGTH);
  let resets = 0;
  const began = performance.now();
  const deadline = options.durationMs === undefined ? Infinity : began + options.durationMs;
  let i = 0;
  for (; i < options.connections && performance.now() < deadline; i++) {
    if (i > 0 && i % options.resetEvery === 0 && resets < options.maxResets) {
      // One reset at a time: the previous one has resumed before the next cuts the link.
      await waitForLogCount(proxies.source, (l) => l.msg === 'session resumed', resets, 30_000);
      tunnel.relay!.resetAll();
      resets++;
    }
    const offset = ((i * 7919) % (expected.length / BLOCK)) * BLOCK;
    switch (i % 3) {
      case 0: {
        // Killed mid-request: the server never gets the whole write, so the image never changes.
        const client = await NbdClient.connect(sourceSocket, ROUTE);
        client.abortMidWrite(offset % (expected.length - WRITE_LENGTH), payload, 1 + ((i * 104_729) % (WRITE_LENGTH - 1)));
        counts.killed++;
        break;
      }
      case 1: {
        const listed = await NbdClient.listAndLeave(sourceSocket);
        if (!listed.includes(ROUTE) && badReads.length < 5) badReads.push(`connection ${i}: NBD_OPT_LIST gave ${JSON.stringify(listed)}`);
        counts.early++;
        break;
      }
      default: {
        const client = await NbdClient.connect(sourceSocket, ROUTE);
        const got = await client.read(offset, BLOCK);
        await client.close();
        if (!got.equals(expected.subarray(offset, offset + BLOCK)) && badReads.length < 5) badReads.push(`connection ${i}: read at ${offset} differs`);
        counts.clean++;
      }
    }
    if (i + 1 === options.warmup) {
      await settled(proxies);
      baseline = await sample();
      heapBaseline = await heapOf();
    }
    if ((i + 1) % 1000 === 0) options.progress?.(`${i + 1} connections, ${resets} resets, ${((performance.now() - began) / 1000).toFixed(0)} s`);
  }
  const elapsedMs = performance.now() - began;
  await waitForLogCount(proxies.source, (l) => l.msg === 'session resumed', resets, 30_000);
  const streams = await settled(proxies);
  const end = await sample();
  const heapEnd = await heapOf();
  const count = (proxy: Proxy): number => proxy.logs.filter((l) => l.msg === 'session resumed').length;
  return {
    connections: counts,
    badReads,
    resets,
    resumed: { source: count(proxies.source), dest: count(proxies.dest) },
    streams,
    samples: {
      source: { start: start.source, baseline: baseline.source, end: end.source },
      dest: { start: start.dest, baseline: baseline.dest, end: end.dest },
    },
    heap: {
      source: { baseline: heapBaseline.source, end: heapEnd.source },
      dest: { baseline: heapBaseline.dest, end: heapEnd.dest },
    },
    elapsedMs,
  };
}

interface StatusDocument {
  sessions: Array<{ openStreams: number; streams: unknown[] }>;
}

async function streamsOf(proxy: Proxy): Promise<{ table: number; relayed: number }> {
  const doc = (await (await fetchFromMetrics(proxy, '/status')).json()) as StatusDocument;
  return {
    table: doc.sessions.reduce((n, s) => n + s.openStreams, 0),
    relayed: doc.sessions.reduce((n, s) => n + s.streams.length, 0),
  };
}

/** Waits up to 10 s for both sides to hold no stream; returns what they hold then. */
async function settled(proxies: Record<Side, Proxy>): Promise<Record<Side, { table: number; relayed: number }>> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const now = { source: await streamsOf(proxies.source), dest: await streamsOf(proxies.dest) };
    const empty = Object.values(now).every((s) => s.table === 0 && s.relayed === 0);
    if (empty || Date.now() > deadline) return now;
    await sleep(50);
  }
}

/** Descriptors a proxy may hold above its after-warm-up count (sockets still closing). */
const FD_SLACK = 4;
/** RSS growth allowed from the after-warm-up sample to the end. */
const RSS_GROWTH_LIMIT = 32 * MiB;
/** Growth of heap + external memory after GC allowed from warm-up to the end: 1,500 connections leaking 1 KiB each would pass it. */
const HEAP_GROWTH_LIMIT = 1 * MiB;

/** What a run must show: every read right, every reset resumed, nothing held at the end. Empty when all is well. */
export function soakProblems(result: SoakResult): string[] {
  const problems = [...result.badReads];
  for (const side of ['source', 'dest'] as const) {
    if (result.resumed[side] !== result.resets) problems.push(`${side}: ${result.resumed[side]} resumes for ${result.resets} resets`);
    const { table, relayed } = result.streams[side];
    if (table !== 0 || relayed !== 0) problems.push(`${side}: ${table} streams in its session table, ${relayed} relayed, after every client left`);
    const { baseline, end } = result.samples[side];
    if (end.fds - baseline.fds > FD_SLACK) problems.push(`${side}: ${baseline.fds} descriptors after warm-up, ${end.fds} at the end`);
    if (end.rssBytes - baseline.rssBytes >= RSS_GROWTH_LIMIT) problems.push(`${side}: RSS grew from ${mib(baseline.rssBytes)} to ${mib(end.rssBytes)} MiB after warm-up`);
    const heap = result.heap[side];
    if (retained(heap.end) - retained(heap.baseline) >= HEAP_GROWTH_LIMIT) {
      problems.push(`${side}: heap + external after GC grew from ${mib(retained(heap.baseline))} to ${mib(retained(heap.end))} MiB after warm-up`);
    }
  }
  return problems;
}

/** The run in a few lines, for diagnostics and the soak command. */
export function describeSoak(result: SoakResult): string[] {
  const { killed, early, clean } = result.connections;
  const total = killed + early + clean;
  return [
    `${total} connections (${killed} killed mid-request, ${early} gone before the reply, ${clean} clean) in ${(result.elapsedMs / 1000).toFixed(1)} s, ${result.resets} tunnel resets`,
    ...(['source', 'dest'] as const).map((side) => {
      const { start, baseline, end } = result.samples[side];
      const { table, relayed } = result.streams[side];
      return (
        `${side}: streams ${table} in the table, ${relayed} relayed; resumes ${result.resumed[side]}; ` +
        `fds ${start.fds} / ${baseline.fds} / ${end.fds}; RSS ${mib(start.rssBytes)} / ${mib(baseline.rssBytes)} / ${mib(end.rssBytes)} MiB (start / after warm-up / end); ` +
        `heap + external after GC ${mib(retained(result.heap[side].baseline))} / ${mib(retained(result.heap[side].end))} MiB (after warm-up / end)`
      );
    }),
  ];
}

function retained(sample: HeapSample): number {
  return sample.heapUsed + sample.external;
}

function mib(bytes: number): string {
  return (bytes / MiB).toFixed(1);
}
