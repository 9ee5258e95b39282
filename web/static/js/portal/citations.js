// Citation links: every "[n]" in a rendered answer becomes a link to the cited passage in
// the document viewer.
//
// Where a citation points:
// - A highlight (extractive answers) is the exact span of one quoted sentence, already as
//   (page, char_start, char_end) in that page's text. A sentence crossing a page break
//   comes as several highlights (the rest of page p, then page p+1 from 0); they are one
//   target, opened at its first page. The k-th "[n]" in the answer quotes the k-th
//   sentence of source n, so it gets the k-th target of n.
// - Otherwise the source's chunk: it starts at char_start of page_start and ends at
//   char_end of page_end. Offsets are relative to their own page's text, so char_end only
//   bounds the passage on page_start when the chunk ends on that same page; for a chunk
//   running onto later pages the viewer highlights page_start from char_start to its end.

import { _ } from "../i18n.js";

const CITATION = /\[(\d{1,3})\]/g;
// Without the g flag: a global regex keeps lastIndex between test() calls, and
// matchAll() starts from it, which would skip the first citation of a text node.
const HAS_CITATION = /\[\d{1,3}\]/;
const SKIP = new Set(["A", "CODE", "PRE"]);

/** The viewer URL for one target: {documentId, page, start, end}. */
export function viewerUrl(target) {
  const params = new URLSearchParams({ page: String(target.page) });
  if (target.start !== null && target.start !== undefined) params.set("start", String(target.start));
  if (target.end !== null && target.end !== undefined) params.set("end", String(target.end));
  return `/documents/${encodeURIComponent(target.documentId)}/view?${params}`;
}

/** Where a source (or a citation, which has the same fields) opens in the viewer. */
export function sourceTarget(source) {
  const samePage = source.page_end === undefined || source.page_end === source.page_start;
  return {
    documentId: source.document_id,
    page: source.page_start,
    start: source.char_start,
    end: samePage ? source.char_end : null,
  };
}

/** Highlights grouped per source number: n -> [target, ...] in answer order. */
function highlightTargets(highlights) {
  const byN = new Map();
  let previous = null;
  for (const h of highlights || []) {
    const continues = previous && previous.n === h.n && previous.document_id === h.document_id
      && h.page === previous.page + 1 && h.char_start === 0;
    previous = h;
    if (continues) continue; // the same sentence, carried over to the next page
    if (!byN.has(h.n)) byN.set(h.n, []);
    byN.get(h.n).push({ documentId: h.document_id, page: h.page, start: h.char_start, end: h.char_end });
  }
  return byN;
}

/**
 * n -> list of targets for the answer's citations. Citations carry the chunk position;
 * sources fill in when only sources are known (a stopped answer, an old chat message).
 */
export function citationTargets({ sources = [], citations = [], highlights = [] }) {
  const targets = highlightTargets(highlights);
  for (const item of [...citations, ...sources]) {
    if (item && !targets.has(item.n) && item.document_id) targets.set(item.n, [sourceTarget(item)]);
  }
  return targets;
}

/** Replace "[n]" in root's text (outside links and code) with a.citation links. */
export function linkCitations(root, targets) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let el = node.parentElement; el && el !== root; el = el.parentElement) {
        if (SKIP.has(el.nodeName)) return NodeFilter.FILTER_REJECT;
      }
      return HAS_CITATION.test(node.data) ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_SKIP;
    },
  });
  const nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  const seen = new Map(); // n -> how many times [n] was linked so far
  for (const node of nodes) node.replaceWith(linkedFragment(node.data, targets, seen));
}

function linkedFragment(text, targets, seen) {
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(CITATION)) {
    const n = Number(match[1]);
    const list = targets.get(n);
    if (!list || list.length === 0) continue; // not a citation we know: leave the text
    const count = seen.get(n) || 0;
    seen.set(n, count + 1);
    fragment.append(text.slice(last, match.index), citationLink(n, list[Math.min(count, list.length - 1)]));
    last = match.index + match[0].length;
  }
  fragment.append(text.slice(last));
  return fragment;
}

function citationLink(n, target) {
  const a = document.createElement("a");
  a.className = "citation";
  a.dataset.n = String(n);
  a.href = viewerUrl(target);
  a.target = "_blank";
  a.rel = "noopener";
  a.textContent = `[${n}]`;
  a.title = _("Source %(n)s, page %(page)s", { n, page: target.page });
  return a;
}
