// Every scenario, in the order they run and are reported.
import { mirrorScenario } from './mirror.js';
import { requestLatencyScenario } from './request-latency.js';
import { stallScenario } from './stall.js';
import type { Scenario } from './types.js';
import { writerScenario } from './writer.js';

export type { Scenario } from './types.js';

const GiB = 1 << 30;
const MiB = 1 << 20;

export const SCENARIOS: readonly Scenario[] = [
  mirrorScenario({ id: 'one-disk', title: 'One disk', disks: 1, size: GiB, rttMs: 0 }),
  mirrorScenario({ id: 'four-disks', title: 'Four disks at once', disks: 4, size: 256 * MiB, rttMs: 0 }),
  writerScenario,
  requestLatencyScenario,
  mirrorScenario({ id: 'rtt20', title: 'One disk, 20 ms round trip', disks: 1, size: GiB, rttMs: 20 }),
  mirrorScenario({ id: 'rtt50', title: 'One disk, 50 ms round trip', disks: 1, size: GiB, rttMs: 50 }),
  stallScenario,
];
