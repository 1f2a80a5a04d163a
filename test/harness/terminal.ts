// A command on a pseudo-terminal of a fixed size (util-linux `script`), and the drawings of a
// view that redraws itself in place on it (src/terminal/screen.ts).
import { spawnChild, type Child } from './child.js';

const shellQuote = (word: string): string => `'${word.replaceAll("'", "'\\''")}'`;

/**
 * Runs `command` with a terminal of `columns` × `rows` as its stdin, stdout and stderr; the
 * child's stdout is everything drawn. `script -e` exits with the command's status.
 */
export function spawnInTerminal(command: readonly string[], { columns, rows }: { columns: number; rows: number }): Promise<Child> {
  const line = `stty cols ${columns} rows ${rows} && exec ${command.map(shellQuote).join(' ')}`;
  return spawnChild('script', ['-qefc', line, '/dev/null']);
}

/** Each drawing, as its lines: a drawing starts by clearing below the cursor, after moving up over the last one, or after clearing the screen. */
export function screenFrames(output: string): string[][] {
  return output
    .replaceAll('\r', '')
    .split(/(?:\x1b\[\d+F)?\x1b\[J|\x1b\[H\x1b\[2J/)
    .slice(1)
    .map((frame) => frame.split('\n').slice(0, -1));
}
