// Drawing a view in place on a terminal: each drawing replaces the previous one (cursor up over
// it, clear to the end of the screen), so what was on the terminal before stays. That works only
// when no line wraps: every line is cut to the terminal's width, re-read when it is resized.
import { clip } from './fit.js';

export interface Screen {
  draw(): void;
  /** No more resize handling; the last drawing stays. */
  stop(): void;
  width(): number;
}

/** What a terminal that does not say its width is taken to have. */
const DEFAULT_COLUMNS = 80;

export function screen(out: NodeJS.WriteStream, lines: (width: number) => string[]): Screen {
  let drawn = 0;
  let resized = false;
  const width = (): number => out.columns || DEFAULT_COLUMNS;
  const draw = (): void => {
    const text = lines(width()).map((line) => clip(line, width()));
    // After a resize the terminal may have re-wrapped the old drawing: its row count is unknown.
    const back = resized ? '\x1b[H\x1b[2J' : drawn > 0 ? `\x1b[${drawn}F\x1b[J` : '\x1b[J';
    out.write(`${back}${text.join('\n')}\n`);
    drawn = text.length;
    resized = false;
  };
  const onResize = (): void => {
    resized = true;
    draw();
  };
  out.on('resize', onResize);
  return { draw, width, stop: () => out.off('resize', onResize) };
}
