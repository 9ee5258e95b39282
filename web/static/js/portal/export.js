// An answer or a whole chat as Markdown: what "Copy" puts on the clipboard and what
// "Export" downloads. Citations [n] become footnotes [^n] naming the source and its page,
// so the text keeps its evidence wherever it is pasted.

import { _ } from "../i18n.js";

/** "Travel And Expenses, p. 4 (travel-and-expenses.pdf)" for a source. */
function sourceLine(source) {
  if (source.available === false) return _("source no longer available");
  const title = source.title || source.document_name || _("document");
  const pages = source.page_end && source.page_end !== source.page_start
    ? _("pp. %(first)s–%(last)s", { first: source.page_start, last: source.page_end })
    : source.page_start ? _("p. %(page)s", { page: source.page_start }) : "";
  const file = source.document_name && source.document_name !== title
    ? ` (${source.document_name})` : "";
  return [title, pages].filter(Boolean).join(", ") + file;
}

/** One answer: its text with [n] as footnote marks, then the footnotes it cites. */
export function answerMarkdown(text, sources) {
  const byN = new Map((sources || []).map((s) => [s.n, s]));
  const cited = [];
  const body = (text || "").replace(/\[(\d{1,3})\]/g, (whole, digits) => {
    const n = Number(digits);
    if (!byN.has(n)) return whole;
    if (!cited.includes(n)) cited.push(n);
    return `[^${n}]`;
  });
  const notes = cited.map((n) => `[^${n}]: ${sourceLine(byN.get(n))}`);
  return notes.length ? `${body.trim()}\n\n${notes.join("\n")}\n` : `${body.trim()}\n`;
}

/** A whole chat: its title, then each question and answer (footnotes per answer). */
export function chatMarkdown(title, messages) {
  // Not inside the template literals below: the string extractor skips those.
  const asked = _("Question");
  const answered = _("Answer");
  const parts = [`# ${title}\n`];
  for (const m of messages) {
    if (m.role === "user") {
      parts.push(`## ${asked}\n\n${m.content.trim()}\n`);
    } else {
      parts.push(`## ${answered}\n\n${answerMarkdown(m.content, (m.meta || {}).sources)}`);
    }
  }
  return parts.join("\n");
}

/** Offer text as a file download (no server round trip). */
export function download(filename, text, type = "text/markdown") {
  const url = URL.createObjectURL(new Blob([text], { type: `${type};charset=utf-8` }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** A file name from a chat title: no path separators or control characters. */
export function fileName(title, extension) {
  const base = (title || "chat").replace(/[\\/:*?"<>|\x00-\x1f]+/g, " ").trim().slice(0, 80);
  return `${base || "chat"}.${extension}`;
}
