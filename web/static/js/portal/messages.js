// The conversation's DOM: user messages and assistant messages.
//
// An assistant message is an <article class="message assistant" data-state=...> holding,
// answer first (it used to sit below six long source cards and needed scrolling):
//   .answer          the rendered markdown, with a.citation[data-n] links
//   .answer-status   where the stream is (data-phase): searching, found N sources, the
//                    place in the model's queue, writing; empty once it ends
//   .error           the message when the answer failed
//   .answer-meta     mode and timings
//   details.sources-box  summary "Sources (N)", then .sources: a row of compact chips,
//                    li.source[data-n]: number, title and page linking to the viewer, and
//                    the snippet (as plain text) shown on hover, focus or a tap of "…"
// data-state: waiting -> streaming -> done | stopped | error.
// data-outcome (once done): answered | not_found. A declined answer (the documents do not
// say) shows the decline sentence, and its sources collapse under "Closest passages".
// Everything that comes from documents (names, snippets) is set with textContent.

import { citationTargets, linkCitations, sourceTarget, viewerUrl } from "./citations.js";
import { _, formatNumber, ngettext } from "../i18n.js";
import { copyText } from "../clipboard.js";
import { answerMarkdown } from "./export.js";
import { markdownToText, renderMarkdown } from "./markdown.js";

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
    ? _("pp. %(first)s–%(last)s", { first: source.page_start, last: source.page_end })
    : _("p. %(page)s", { page: source.page_start });
}

const MARKDOWN_FILE = /\.(md|markdown)$/i;

/** A passage as one line of plain text; a Markdown document's marks (#, **, |, links)
 * rendered away. Other formats' text is already plain: a "*" in a PDF stays a "*". */
function snippet(source) {
  const text = source.text || "";
  const plain = MARKDOWN_FILE.test(source.document_name || "") ? markdownToText(text) : text;
  const flat = plain.replace(/\s+/g, " ").trim();
  return flat.length > SNIPPET_CHARS ? `${flat.slice(0, SNIPPET_CHARS)}…` : flat;
}

let snippetIds = 0;

function sourceItem(source) {
  const li = el("li", "source");
  li.dataset.n = String(source.n);
  // The server withholds a source the reader can no longer read (grant revoked, document
  // deleted): no name, no link; citations to it carry no document_id, so they stay text.
  if (source.available === false) {
    li.classList.add("unavailable");
    li.append(el("span", "source-n", String(source.n)), " ",
      el("span", "source-unavailable muted", _("source no longer available")));
    return li;
  }
  const link = el("a", "source-name");
  link.translate = false; // a document's title is shown as it is
  link.href = viewerUrl(sourceTarget(source));
  link.target = "_blank";
  link.rel = "noopener";
  link.title = source.document_name || "";
  const where = [pageLabel(source)].filter(Boolean).join(" · ");
  link.append(el("span", "source-n", String(source.n)), " ",
    el("span", "source-title", source.title || source.document_name || _("document")));
  if (where) link.append(" ", el("span", "source-where", where));
  li.append(link);
  const text = snippet(source);
  if (text) {
    // Hover or keyboard focus shows the passage; on a touch screen the "…" button does.
    const panel = el("div", "source-snippet");
    panel.id = `snippet-${++snippetIds}`;
    panel.setAttribute("role", "tooltip");
    if (source.collection) panel.append(el("div", "source-collection", source.collection));
    panel.append(text);
    const toggle = el("button", "snippet-toggle", "…");
    toggle.type = "button";
    toggle.setAttribute("aria-expanded", "false");
    toggle.setAttribute("aria-controls", panel.id);
    toggle.setAttribute("aria-label", _("Show the passage of source %(n)s", { n: source.n }));
    toggle.addEventListener("click", () => {
      const open = !li.classList.contains("open");
      for (const other of li.parentElement?.querySelectorAll("li.source.open") || []) {
        other.classList.remove("open");
        other.querySelector(".snippet-toggle")?.setAttribute("aria-expanded", "false");
      }
      li.classList.toggle("open", open);
      toggle.setAttribute("aria-expanded", String(open));
    });
    link.setAttribute("aria-describedby", panel.id);
    li.append(toggle, panel);
  }
  return li;
}

/** How an answer came about, for its footer. */
function modeLabel(mode, outcome) {
  if (outcome === "not_found") return _("not found in your documents");
  return mode === "extractive" ? _("extractive answer") : _("generated answer");
}

/** A question as the user typed it (plain text); ``onEdit(text)`` puts it back into the
 * composer to change and send again. */
export function userMessage(text, onEdit) {
  const article = el("article", "message user");
  article.append(el("div", "content", text));
  if (onEdit) {
    const edit = el("button", "link edit-question", _("Edit and resend"));
    edit.type = "button";
    edit.addEventListener("click", () => onEdit(text));
    article.append(edit);
  }
  return article;
}



/** One assistant answer being streamed (or redrawn from the chat history). */
export class AssistantMessage {
  constructor() {
    this.element = el("article", "message assistant");
    this.sourcesBox = el("details", "sources-box");
    this.sourcesBox.open = true;
    this.sourcesBox.hidden = true;
    this.sourcesHeading = el("summary", "sources-heading", _("Sources"));
    this.sourcesList = el("ol", "sources");
    this.sourcesBox.append(this.sourcesHeading, this.sourcesList);
    this.answer = el("div", "answer");
    this.status = el("div", "answer-status muted");
    this.status.setAttribute("role", "status");
    this.errorBox = el("div", "error");
    this.errorBox.hidden = true;
    this.meta = el("div", "answer-meta muted");
    this.actions = el("div", "answer-actions");
    this.actions.hidden = true;
    this.element.append(
      this.answer, this.status, this.errorBox, this.meta, this.actions, this.sourcesBox,
    );
    this.sources = [];
    this.text = "";
    this.pending = 0;
    this.setState("waiting");
    this.setPhase("searching", _("Searching your documents…"));
  }

  setState(state) {
    this.state = state;
    this.element.dataset.state = state;
  }

  /** The answer's buttons once it ended: Copy (Markdown, citations as footnotes) and,
   * given ``onRegenerate``, Regenerate (the question is asked again; both answers stay). */
  showActions({ onRegenerate, feedback } = {}) {
    const copy = el("button", "link copy-answer", _("Copy"));
    copy.type = "button";
    copy.title = _("Copy the answer as Markdown, with its sources as footnotes");
    copy.addEventListener("click", () => {
      copyText(answerMarkdown(this.text, this.sources), copy, this.answer, _("Copy"));
    });
    const buttons = [copy];
    if (onRegenerate) {
      const again = el("button", "link regenerate", _("Regenerate"));
      again.type = "button";
      again.addEventListener("click", onRegenerate);
      buttons.push(again);
    }
    if (feedback) buttons.push(...this.feedbackControls(feedback));
    this.actions.replaceChildren(...buttons);
    this.actions.hidden = !this.text;
  }

  /** ▲ Helpful / ▼ Not helpful and, once voted, an optional comment.
   * ``feedback.send(rating, comment)`` stores the vote (PUT .../feedback);
   * ``feedback.current`` is the vote already given. */
  feedbackControls(feedback) {
    let current = feedback.current || null;
    const box = el("span", "feedback");
    // Text arrows, not emoji: an intranet desktop may have no emoji font. (The labels are
    // not inside the template literals: the string extractor skips those.)
    const helpful = _("Helpful");
    const notHelpful = _("Not helpful");
    const up = el("button", "link vote vote-up", `▲ ${helpful}`);
    const down = el("button", "link vote vote-down", `▼ ${notHelpful}`);
    const note = el("span", "feedback-note muted");
    // Not a <form>: nothing an answer holds may look like one (the XSS checks count them).
    const form = el("span", "feedback-comment");
    form.hidden = true;
    const input = el("input");
    input.name = "comment";
    input.maxLength = 2000;
    input.placeholder = _("Add a comment (optional)");
    const send = el("button", "", _("Send"));
    send.type = "button";
    form.append(input, send);
    const show = () => {
      for (const [button, rating] of [[up, "up"], [down, "down"]]) {
        button.type = "button";
        button.setAttribute("aria-pressed", String(Boolean(current && current.rating === rating)));
      }
    };
    const vote = async (rating, comment) => {
      try {
        current = await feedback.send(rating, comment);
        note.textContent = _("Thanks for the feedback.");
        show();
        return true;
      } catch (err) {
        note.textContent = err.message || String(err);
        return false;
      }
    };
    up.addEventListener("click", async () => {
      if (await vote("up", current ? current.comment : "")) form.hidden = false;
    });
    down.addEventListener("click", async () => {
      if (await vote("down", current ? current.comment : "")) form.hidden = false;
    });
    const sendComment = async () => {
      if (current && (await vote(current.rating, input.value))) form.hidden = true;
    };
    send.addEventListener("click", sendComment);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        sendComment();
      }
    });
    if (current && current.comment) input.value = current.comment;
    show();
    box.append(up, down, note, form);
    return [box];
  }

  /** The status line: searching -> found -> queued -> writing -> done (empty). */
  setPhase(phase, text) {
    this.status.dataset.phase = phase;
    this.status.textContent = text;
  }

  showSources(sources, dropped = 0) {
    this.sources = sources || [];
    this.sourcesList.replaceChildren(...this.sources.map(sourceItem));
    this.sourcesBox.hidden = false;
    this.sourcesHeading.textContent = this.sources.length
      ? _("Sources (%(n)s)", { n: this.sources.length }) : _("Sources");
    if (this.sources.length === 0) {
      // "dropped": passages were found but none fitted into the model's context window.
      const text = dropped ? _("The passages found did not fit into the model's context.")
        : _("No matching passages.");
      this.sourcesList.replaceChildren(el("li", "muted no-sources", text));
    }
    if (this.status.dataset.phase === "searching") { // live, not redrawn from history
      const n = this.sources.length;
      this.setPhase("found", n ? ngettext("Found %(n)s source", "Found %(n)s sources", n)
        : _("No matching passages"));
    }
  }

  showQueued(position) {
    this.setPhase("queued", _("Waiting for the model: position %(position)s", { position }));
  }

  /** Append streamed text; the markdown is re-rendered at most once per frame. */
  addToken(text) {
    if (this.state === "waiting") {
      this.setState("streaming");
      this.setPhase("writing", _("Writing…"));
    }
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
      const note = ngettext(
        "%(n)s citation pointed at no source and was removed.",
        "%(n)s citations pointed at no source and were removed.", event.invalid);
      this.meta.append(el("span", "invalid-citations", note + " "));
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
      ? _("Closest passages (%(n)s)", { n: this.sources.length }) : _("Closest passages");
    this.sourcesBox.open = false;
  }

  finish(done) {
    this.messageId = done.message_id || null; // the stored answer, in a chat
    this.setPhase("done", "");
    this.setState("done");
    this.showOutcome(done.outcome);
    const parts = [modeLabel(done.mode, done.outcome)];
    if (done.model) parts.push(done.model);
    const oneDecimal = { minimumFractionDigits: 1, maximumFractionDigits: 1 };
    if (done.time_to_first_token_ms !== undefined) {
      parts.push(_("first token %(seconds)s s", {
        seconds: formatNumber(done.time_to_first_token_ms / 1000, oneDecimal),
      }));
    }
    if (done.tokens_per_s) {
      parts.push(_("%(rate)s tokens/s", { rate: formatNumber(done.tokens_per_s, oneDecimal) }));
    }
    if (done.finish_reason === "length") parts.push(_("cut off at the token limit"));
    this.meta.append(el("span", "mode", parts.join(" · ")));
  }

  /** The user pressed Stop: keep what arrived, say that it is incomplete. */
  stop() {
    this.flush();
    this.setPhase("done", "");
    this.setState("stopped");
    this.meta.append(el("span", "stopped-note", _("Stopped.")));
    if (this.sources.length) {
      linkCitations(this.answer, citationTargets({ sources: this.sources }));
    }
  }

  fail(message) {
    this.flush();
    this.setPhase("done", "");
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
    view.setPhase("done", "");
    const meta = message.meta || {};
    view.showSources(meta.sources || []);
    view.text = message.content || "";
    renderMarkdown(view.answer, view.text);
    linkCitations(view.answer, citationTargets({
      sources: view.sources, citations: meta.citations, highlights: meta.highlights,
    }));
    if (meta.error) {
      view.errorBox.textContent = meta.error.message || _("the answer failed");
      view.errorBox.hidden = false;
      view.setState("error");
    } else if (meta.finish_reason === "cancelled") {
      view.setState("stopped");
      view.meta.append(el("span", "stopped-note", _("Stopped.")));
    } else {
      view.setState("done");
      view.showOutcome(message.outcome);
      const label = meta.mode || message.outcome === "not_found"
        ? modeLabel(meta.mode, message.outcome) : "";
      const parts = [label, meta.model].filter(Boolean);
      if (parts.length) view.meta.append(el("span", "mode", parts.join(" · ")));
    }
    return view;
  }
}
