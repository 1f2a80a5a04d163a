// The guest's blocks on disk, as init.sh's block() writes them, read and written from the host:
// for the negative control, which puts back one block's previous generation (a lost write).
import { open } from 'node:fs/promises';

export const GUEST_BLOCK = 4096;
const LINES = 64;

/** Block `block` at generation `gen`: 64 lines of 64 bytes, each naming block, gen, line and boot id. */
export function guestBlock(block: number, gen: number, boot: string): Buffer {
  let text = '';
  for (let line = 0; line < LINES; line++) text += `${`nbdt block ${block} gen ${gen} line ${line} boot ${boot}`.padEnd(63)}\n`;
  return Buffer.from(text, 'ascii');
}

export interface WrittenBlock {
  block: number;
  gen: number;
  boot: string;
}

/**
 * Finds the block the guest wrote last among the first `blocks` of `image` (writes go round-robin,
 * so it is the highest generation's highest block) and writes its previous generation back.
 */
export async function revertLastWrite(image: string, blocks: number): Promise<WrittenBlock> {
  const file = await open(image, 'r+');
  try {
    const region = Buffer.alloc(blocks * GUEST_BLOCK);
    await file.read(region, 0, region.length, 0);
    let last: WrittenBlock | null = null;
    for (let b = 0; b < blocks; b++) {
      const head = /^nbdt block (\d+) gen (\d+) line 0 boot (\w+)/.exec(region.toString('ascii', b * GUEST_BLOCK, b * GUEST_BLOCK + 64));
      if (!head || Number(head[1]) !== b) continue;
      const gen = Number(head[2]);
      if (last === null || gen >= last.gen) last = { block: b, gen, boot: head[3] };
    }
    if (last === null || last.gen === 0) throw new Error(`${image}: no block rewritten by the guest yet (last: ${JSON.stringify(last)})`);
    await file.write(guestBlock(last.block, last.gen - 1, last.boot), 0, GUEST_BLOCK, last.block * GUEST_BLOCK);
    return last;
  } finally {
    await file.close();
  }
}
