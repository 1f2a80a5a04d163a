// Text made to fit a terminal's width: a line longer than the terminal wraps, and a view redrawn
// in place (screen.ts) then lands on the wrong rows. Widths count code points: the views draw
// ASCII, '…' and the names they are given.

/** Cells of a progress bar at most, and the fewest worth drawing. */
export const BAR_CELLS = 20;
export const MIN_BAR_CELLS = 10;

export const columns = (text: string): number => [...text].length;

/** `text` in at most `width` columns, ending in '…' when cut. */
export function clip(text: string, width: number): string {
  const chars = [...text];
  if (chars.length <= width) return text;
  return width <= 0 ? '' : `${chars.slice(0, width - 1).join('')}…`;
}

/** A name in at most `width` columns, cut in the middle: both ends tell names apart (vm1-vda, vm1-vdb). */
export function clipMiddle(name: string, width: number): string {
  const chars = [...name];
  if (chars.length <= width) return name;
  if (width <= 1) return clip(name, width);
  const tail = Math.floor((width - 1) / 2);
  return `${chars.slice(0, width - 1 - tail).join('')}…${chars.slice(chars.length - tail).join('')}`;
}

/** `text` on lines of at most `width` columns, broken at spaces, the next lines indented by two; at most `maxLines`, the last clipped. */
export function wrap(text: string, width: number, maxLines: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    const next = line === '' ? word : `${line} ${word}`;
    if (columns(next) <= width || line === '') {
      line = next;
      continue;
    }
    lines.push(line);
    line = `  ${word}`;
  }
  lines.push(line);
  const kept = lines.slice(0, maxLines);
  const last = kept.length - 1;
  kept[last] = lines.length > maxLines ? clip(`${kept[last]} ${lines.slice(maxLines).map((l) => l.trim()).join(' ')}`, width) : kept[last];
  return kept.map((l) => clip(l, width));
}

/** The bar's cells given the columns left for it (two brackets included): BAR_CELLS at most, none below MIN_BAR_CELLS. */
export function barCells(room: number): number {
  const cells = Math.min(BAR_CELLS, room - 2);
  return cells >= MIN_BAR_CELLS ? cells : 0;
}

/** A progress bar of `cells` cells for a share from 0 to 1 (blank when unknown). */
export function bar(ratio: number | null, cells = BAR_CELLS): string {
  if (ratio === null) return ' '.repeat(cells + 2);
  const filled = Math.round(Math.min(1, Math.max(0, ratio)) * cells);
  return `[${'#'.repeat(filled)}${'.'.repeat(cells - filled)}]`;
}
