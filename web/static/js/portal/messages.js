// The conversation's DOM: user messages and assistant messages.
//
// An assistant message is an <article class="message assistant" data-state=...> holding,
// answer first (it used to sit below six long source cards and needed scrolling):
//   .queue-position  "Waiting for the model: position N" while queued
//   .answer          the rendered markdown, with a.citation[data-n] links
//   .error           the message when the answer failed
//   .answer-meta     mode and timings
//   details.sources-box  summary "Sources (N)", then .sources: numbered list,
//                    li.source[data-n]: document name, page, snippet
// data-state: waiting -> streaming -> done | stopped | error.
// data-outcome (once done): answered | not_found. A declined answer (the documents do not
// say) shows the decline sentence, and its sources collapse under "Closest passages".
// Everything that comes from documents (names, snippets) is set with textContent.

import { citationTargets, linkCitations, sourceTarget, viewerUrl } from "./citations.js";
import { renderMarkdown } from "./markdown.js";

const SNIPPET_CHARS = 280;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function pageLabel(source) {
  if (!source.page_start) return "";
  return source.page_end && source.page_end !== source.page_start
    ? `pages ${source.page_start}–${source.page_end}`
    : `page ${source.page_start}`;
}

function snippet(text) {
  const flat = (text || "").replace(/\s+/g, " ").trim();
  return flat.length > SNIPPET_CHARS ? `${flat.slice(0, SNIPPET_CHARS)}…` : flat;
}

function sourceItem(source) {
  const li = el("li", "source");
  li.dataset.n = String(source.n);
  li.append(el("span", "source-n", `[${source.n}]`), " ");
  // The server withholds a source the reader can no longer read (grant revoked, document
  // deleted): no name, no link; citations to it carry no document_id, so they stay text.
  if (source.available === false) {
    li.classList.add("unavailable");
    li.append(el("span", "source-unavailable muted", "source no longer available"));
    return li;
  }
  const link = el("a", "source-name", source.title || source.document_name || "document");
  link.href = viewerUrl(sourceTarget(source));
  link.target = "_blank";
  link.rel = "noopener";
  link.title = source.document_name || "";
  li.append(link);
  const where = [pageLabel(source), source.collection].filter(Boolean).join(" · ");
  if (where) li.append(" ", el("span", "source-where muted", where));
  if (source.text) li.append(el("div", "source-snippet", snippet(source.text)));
  return li;
}

/** A question as the user typed it (plain text). */
export function userMessage(text) {
  const article = el("article", "message user");
  article.append(el("div", "content", text));
  return article;
}

/** One assistant answer being streamed (or redrawn from the chat history). */
export class AssistantMessage {
  constructor() {
    this.element = el("article", "message assistant");
    this.sourcesBox = el("details", "sources-box");
    this.sourcesBox.open = true;
    this.sourcesBox.hidden = true;
    this.sourcesHeading = el("summary", "sources-heading", "Sources");
    this.sourcesList = el("ol", "sources");
    this.sourcesBox.append(this.sourcesHeading, this.sourcesList);
    this.queue = el("div", "queue-position muted");
    this.answer = el("div", "answer");
    this.errorBox = el("div", "error");
    this.errorBox.hidden = true;
    this.meta = el("div", "answer-meta muted");
    this.element.append(this.queue, this.answer, this.errorBox, this.meta, this.sourcesBox);
    this.sources = [];
    this.text = "";
    this.pending = 0;
    this.setState("waiting");
  }

  setState(state) {
    this.state = state;
    this.element.dataset.state = state;
  }

  showSources(sources, dropped = 0) {
    this.sources = sources || [];
    this.sourcesList.replaceChildren(...this.sources.map(sourceItem));
    this.sourcesBox.hidden = false;
    this.sourcesHeading.textContent = this.sources.length
      ? `Sources (${this.sources.length})` : "Sources";
    if (this.sources.length === 0) {
      // "dropped": passages were found but none fitted into the model's context window.
      const text = dropped ? "The passages found did not fit into the model's context."
        : "No matching passages.";
      this.sourcesList.replaceChildren(el("li", "muted no-sources", text));
    }
  }

  showQueued(position) {
    this.queue.textContent = `Waiting for the model: position ${position}`;
  }

  /** Append streamed text; the markdown is re-rendered at most once per frame. */
  addToken(text) {
    this.queue.textContent = "";
    if (this.state === "waiting") this.setState("streaming");
    this.text += text;
    if (!this.pending) {
      this.pending = requestAnimationFrame(() => {
        this.pending = 0;
        renderMarkdown(this.answer, this.text);
      });
    }
  }

  /** The validated answer replaces the streamed one; [n] become links. */
  showCitations(event) {
    this.cancelRender();
    this.text = event.text;
    renderMarkdown(this.answer, this.text);
    linkCitations(this.answer, citationTargets({
      sources: this.sources, citations: event.citations, highlights: event.highlights,
    }));
    if (event.invalid) {
      this.meta.append(el("span", "invalid-citations",
        `${event.invalid} citation${event.invalid === 1 ? "" : "s"} pointed at no source and were removed. `));
    }
  }

  /** not_found: the answer is the decline sentence; the sources are only the closest
   * passages, collapsed so nothing reads as an answer. */
  showOutcome(outcome) {
    if (!outcome) return;
    this.element.dataset.outcome = outcome;
    if (outcome !== "not_found") return;
    this.element.classList.add("declined");
    this.sourcesHeading.textContent = this.sources.length
      ? `Closest passages (${this.sources.length})` : "Closest passages";
    this.sourcesBox.open = false;
  }

  finish(done) {
    this.queue.textContent = "";
    this.setState("done");
    this.showOutcome(done.outcome);
    const parts = [done.mode === "extractive" ? "extractive answer" : "generated answer"];
    if (done.outcome === "not_found") parts[0] = "not found in your documents";
    if (done.time_to_first_token_ms !== undefined) {
      parts.push(`first token ${(done.time_to_first_token_ms / 1000).toFixed(1)} s`);
    }
    if (done.tokens_per_s) parts.push(`${done.tokens_per_s} tokens/s`);
    if (done.finish_reason === "length") parts.push("cut off at the token limit");
    this.meta.append(el("span", "mode", parts.join(" · ")));
  }

  /** The user pressed Stop: keep what arrived, say that it is incomplete. */
  stop() {
    this.flush();
    this.queue.textContent = "";
    this.setState("stopped");
    this.meta.append(el("span", "stopped-note", "Stopped."));
    if (this.sources.length) {
      linkCitations(this.answer, citationTargets({ sources: this.sources }));
    }
  }

  fail(message) {
    this.flush();
    this.queue.textContent = "";
    this.errorBox.textContent = message;
    this.errorBox.hidden = false;
    this.setState("error");
  }

  flush() {
    this.cancelRender();
    if (this.text) renderMarkdown(this.answer, this.text);
  }

  cancelRender() {
    if (this.pending) cancelAnimationFrame(this.pending);
    this.pending = 0;
  }

  /** Redraw a stored answer: content + meta saved by the server with the chat. */
  static fromStored(message) {
    const view = new AssistantMessage();
    const meta = message.meta || {};
    view.showSources(meta.sources || []);
    view.text = message.content || "";
    renderMarkdown(view.answer, view.text);
    linkCitations(view.answer, citationTargets({
      sources: view.sources, citations: meta.citations, highlights: meta.highlights,
    }));
    if (meta.error) {
      view.errorBox.textContent = meta.error.message || "the answer failed";
      view.errorBox.hidden = false;
      view.setState("error");
    } else if (meta.finish_reason === "cancelled") {
      view.setState("stopped");
      view.meta.append(el("span", "stopped-note", "Stopped."));
    } else {
      view.setState("done");
      view.showOutcome(message.outcome);
      const label = message.outcome === "not_found" ? "not found in your documents"
        : meta.mode ? `${meta.mode} answer` : "";
      if (label) view.meta.append(el("span", "mode", label));
    }
    return view;
  }
}
