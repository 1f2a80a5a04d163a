// Just enough DER (X.690) to walk a CRL: each element's tag and where its contents lie.

export const TAG = {
  integer: 0x02,
  bitString: 0x03,
  oid: 0x06,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
} as const;

export interface Element {
  tag: number;
  /** Offset of the tag byte: data.subarray(start, end) is the whole element, as signed. */
  start: number;
  contentStart: number;
  end: number;
}

/** The element at `offset`, which must end by `limit`. */
export function readElement(data: Buffer, offset: number, limit = data.length): Element {
  if (offset + 2 > limit) throw new Error('truncated DER');
  const tag = data[offset]!;
  let length = data[offset + 1]!;
  let contentStart = offset + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4 || contentStart + bytes > limit) throw new Error('bad DER length');
    length = data.readUIntBE(contentStart, bytes);
    contentStart += bytes;
  }
  const end = contentStart + length;
  if (end > limit) throw new Error('truncated DER');
  return { tag, start: offset, contentStart, end };
}

/** The elements inside a constructed one (a SEQUENCE), in order. */
export function childrenOf(data: Buffer, parent: Element): Element[] {
  const children: Element[] = [];
  for (let offset = parent.contentStart; offset < parent.end; ) {
    const child = readElement(data, offset, parent.end);
    children.push(child);
    offset = child.end;
  }
  return children;
}

/** An element of the expected tag, or an error naming what it is. */
export function expect(element: Element | undefined, tag: number, what: string): Element {
  if (element?.tag !== tag) throw new Error(`${what}: expected DER tag 0x${tag.toString(16)}`);
  return element;
}

/** UTCTime (YYMMDDHHMMSSZ, years 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSSZ). */
export function readTime(data: Buffer, element: Element): Date {
  const text = data.toString('latin1', element.contentStart, element.end);
  const utc = element.tag === TAG.utcTime;
  const match = (utc ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/ : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/).exec(text);
  if (!match || (!utc && element.tag !== TAG.generalizedTime)) throw new Error(`not a DER time: '${text}'`);
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [number, number, number, number, number, number];
  const fullYear = utc ? (year >= 50 ? 1900 + year : 2000 + year) : year;
  return new Date(Date.UTC(fullYear, month - 1, day, hour, minute, second));
}

export function isTime(element: Element | undefined): boolean {
  return element?.tag === TAG.utcTime || element?.tag === TAG.generalizedTime;
}
