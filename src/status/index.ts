// `nbd-tunnel status URL`: the streams of a running proxy (its --metrics address) as a table;
// on a terminal it redraws every second with a progress bar per disk until interrupted.
import { terminalView } from '../terminal/index.js';
import { size, statusLines, type StatusDocument } from './render.js';

export { size, type StatusDocument };
export { progressView } from './progress-view.js';

const REDRAW_MS = 1_000;

/** The proxy's --metrics address: http://HOST:PORT, or HOST:PORT as --metrics takes it. */
function statusUrl(address: string): URL {
  try {
    return new URL('/status', /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address : `http://${address}`);
  } catch {
    throw new Error(`'${address}' is not an address; give the proxy's --metrics address, as http://HOST:PORT or HOST:PORT`);
  }
}

async function fetchStatus(url: string): Promise<StatusDocument> {
  const target = statusUrl(url);
  let response: Response;
  try {
    response = await fetch(target);
  } catch (error) {
    throw new Error(`cannot reach ${target.href}: ${(error as Error & { cause?: Error }).cause?.message ?? (error as Error).message}`);
  }
  if (!response.ok) throw new Error(`${target.href} answered HTTP ${response.status}`);
  return (await response.json()) as StatusDocument;
}

export async function runStatus(url: string, once: boolean): Promise<void> {
  const live = !once && process.stdout.isTTY;
  if (!live) {
    process.stdout.write(`${statusLines(await fetchStatus(url), { bars: false }).join('\n')}\n`);
    return;
  }
  let doc = await fetchStatus(url);
  const view = terminalView(process.stdout, (width) => statusLines(doc, { bars: true, width }));
  for (;;) {
    view.draw();
    await new Promise((resolve) => setTimeout(resolve, REDRAW_MS));
    doc = await fetchStatus(url);
  }
}
