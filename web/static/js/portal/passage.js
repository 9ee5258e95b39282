// Finding a passage of our stored page text among the text pieces pdf.js draws.
//
// The stored text comes from our PDF parser and the text layer from pdf.js; the two agree
// on the characters but not on whitespace (line breaks, spaces between text runs) nor
// always on compatibility forms (ligatures such as "ﬁ"). So both sides are NFKC-normalized
// and compared with all whitespace removed; each remaining character remembers which
// piece, and which offsets in that piece, it came from.

const SPACE = /\s/u;
const ANCHOR_CHARS = 40;
const MIN_PIECE_CHARS = 4;

function squeeze(text) {
  return text.normalize("NFKC").replace(/\s+/gu, "");
}

/** flat: the pieces' non-space characters; origin[i]: [piece, start, end] of flat[i]. */
function flatten(pieces) {
  let flat = "";
  const origin = [];
  pieces.forEach((piece, index) => {
    let offset = 0;
    for (const ch of piece) {
      const end = offset + ch.length;
      for (const unit of ch.normalize("NFKC")) {
        if (SPACE.test(unit)) continue;
        flat += unit;
        for (let k = 0; k < unit.length; k++) origin.push([index, offset, end]);
      }
      offset = end;
    }
  });
  return { flat, origin };
}

/**
 * Where `passage` lies among the pieces: [{index, start, end}] with offsets into each
 * piece's own text (a piece only partly covered gets only that part). Best effort: when
 * the text differs too much, the pieces whose whole text occurs in the passage.
 */
export function passageRanges(pieces, passage) {
  const needle = squeeze(passage);
  const { flat, origin } = flatten(pieces);
  if (!needle || !flat) return [];
  const span = exactSpan(flat, needle) || anchoredSpan(flat, needle);
  if (!span) return overlapping(pieces, needle);
  const ranges = new Map(); // piece index -> {index, start, end}
  for (const [index, start, end] of origin.slice(span[0], span[1])) {
    const range = ranges.get(index);
    if (range) {
      range.start = Math.min(range.start, start);
      range.end = Math.max(range.end, end);
    } else {
      ranges.set(index, { index, start, end });
    }
  }
  return [...ranges.values()];
}

function exactSpan(flat, needle) {
  const at = flat.indexOf(needle);
  return at < 0 ? null : [at, at + needle.length];
}

/** The passage's start and end found separately (a differing character in between). */
function anchoredSpan(flat, needle) {
  const n = Math.min(ANCHOR_CHARS, needle.length);
  const head = flat.indexOf(needle.slice(0, n));
  if (head < 0) return null;
  const tail = flat.indexOf(needle.slice(needle.length - n), head);
  if (tail < 0 || tail - head > needle.length * 2) return null;
  return [head, tail + n];
}

/** Last resort: every piece whose own text occurs inside the passage, whole. */
function overlapping(pieces, needle) {
  const out = [];
  pieces.forEach((piece, index) => {
    const text = squeeze(piece);
    if (text.length >= MIN_PIECE_CHARS && needle.includes(text)) {
      out.push({ index, start: 0, end: piece.length });
    }
  });
  return out;
}
