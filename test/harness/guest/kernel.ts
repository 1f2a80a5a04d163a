// The host's Debian kernel (linux-image-amd64) as the guest's kernel, and the modules the guest
// needs from its /lib/modules tree, in load order per modules.dep.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../child.js';

export interface HostKernel {
  version: string;
  /** /boot/vmlinuz-VERSION */
  image: string;
  /** /lib/modules/VERSION */
  modulesDir: string;
}

/** The newest kernel that has both an image in /boot and a modules tree. */
export async function findHostKernel(): Promise<HostKernel> {
  const images = (await readdir('/boot').catch(() => [] as string[])).filter((f) => f.startsWith('vmlinuz-'));
  const withModules: string[] = [];
  for (const image of images) {
    const version = image.slice('vmlinuz-'.length);
    const dep = await readFile(join('/lib/modules', version, 'modules.dep'), 'utf8').catch(() => null);
    if (dep !== null) withModules.push(version);
  }
  withModules.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const version = withModules.at(-1);
  if (version === undefined) {
    throw new Error('no kernel with modules in /boot and /lib/modules: scripts/ensure-guest.sh installs linux-image-amd64');
  }
  return { version, image: join('/boot', `vmlinuz-${version}`), modulesDir: join('/lib/modules', version) };
}

/**
 * The module files (paths relative to the modules tree) that `names` need, dependencies first,
 * each once. Names match file names without extension, with `-` and `_` alike, as modprobe does.
 */
export async function moduleClosure(kernel: HostKernel, names: readonly string[]): Promise<string[]> {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of (await readFile(join(kernel.modulesDir, 'modules.dep'), 'utf8')).split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const file = line.slice(0, colon);
    deps.set(file, line.slice(colon + 1).trim().split(/\s+/).filter(Boolean));
    byName.set(moduleName(file), file);
  }
  const order: string[] = [];
  const visit = (file: string): void => {
    if (order.includes(file)) return;
    // modules.dep lists every transitive dependency, deepest last: load them in reverse.
    for (const dep of [...(deps.get(file) ?? [])].reverse()) visit(dep);
    order.push(file);
  };
  for (const name of names) {
    const file = byName.get(name.replace(/-/g, '_'));
    // Built into this kernel (no .ko): nothing to load.
    if (file === undefined) continue;
    visit(file);
  }
  return order;
}

/**
 * A module's bytes, decompressed (through the file `scratch`): busybox insmod passes the file to init_module() as it is, and
 * some kernels ship modules as .ko.xz or .ko.zst.
 */
export async function readModule(kernel: HostKernel, file: string, scratch: string): Promise<Buffer> {
  const path = join(kernel.modulesDir, file);
  if (file.endsWith('.ko')) return readFile(path);
  const tool = file.endsWith('.xz') ? 'xz' : file.endsWith('.zst') ? 'zstd' : file.endsWith('.gz') ? 'gzip' : null;
  if (tool === null) throw new Error(`unknown module compression: ${path}`);
  // run() reads output as text; the module goes through a file instead.
  await run('sh', ['-c', '"$0" -dc "$1" > "$2"', tool, path, scratch]);
  return readFile(scratch);
}

function moduleName(file: string): string {
  const base = file.slice(file.lastIndexOf('/') + 1);
  return base.replace(/\.ko(\.\w+)?$/, '').replace(/-/g, '_');
}
