// The package's version, read once from package.json next to the code: dist/version.js and
// src/version.ts both sit one level below it, and the npm package ships package.json, so an
// installed copy reports what was installed (no version literal to forget at release time).
import { readFileSync } from 'node:fs';

function readVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  if (typeof pkg.version !== 'string') throw new Error('package.json has no "version"');
  return pkg.version;
}

export const VERSION: string = readVersion();

/** What start lines, /status and nbd_tunnel_build_info carry: ours and the Node.js running us. */
export const buildInfo = { version: VERSION, node: process.version } as const;
