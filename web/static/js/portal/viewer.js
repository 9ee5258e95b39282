// The document viewer: opens a cited passage.
//
// URL: /documents/<id>/view?page=N&start=S&end=E, where S..E are char offsets in the text
// of page N as stored by the server (GET /api/v1/documents/<id>/pages).
// - PDFs are drawn with pdf.js from /api/v1/documents/<id>/file; the text-layer pieces
//   that cover text[S:E] of page N get the class "hl". A scanned page read by OCR has no
//   text layer: the boxes of its lines that cover text[S:E] are drawn over it instead.
// - Every other type shows the stored page texts (textContent only), with text[S:E] of
//   page N wrapped in <mark class="hl">.
// #viewer gets data-current-page once page N is in view and data-ready="1" when done.

import { _ } from "../i18n.js";
import { api } from "./api.js";
import { passageRanges } from "./passage.js";

const viewer = document.getElementById("viewer");
const status = document.getElementById("viewer-status");
const MAX_SCALE = 2;

function option(name) {
  const raw = viewer.dataset[name];
  if (raw === undefined || raw === "") return null;
  const value = Number.parseInt(raw, 10);
  return Number.isFinite(value) && value >= 0 ? value : null;
}

function say(text, isError = false) {
  status.textContent = text;
  status.classList.toggle("error", isError);
  status.hidden = text === "";
}

/** [start, end) clamped to the page text; null when the link names no passage. */
function passageRange(text, start, end) {
  if (start === null) return null;
  const s = Math.min(start, text.length);
  const e = Math.min(end === null ? text.length : end, text.length);
  return e > s ? [s, e] : null;
}

function finish(pageNumber) {
  viewer.dataset.currentPage = String(pageNumber);
  viewer.dataset.ready = "1";
}

// -- plain text ---------------------------------------------------------------------------

function textPage(number, text, range, showHeading) {
  const section = document.createElement("section");
  section.className = "text-page";
  section.dataset.page = String(number);
  if (showHeading) {
    const h = document.createElement("h2");
    h.className = "page-number";
    h.textContent = _("Page %(number)s", { number });
    section.append(h);
  }
  const body = document.createElement("div");
  body.className = "page-text";
  if (range) {
    const mark = document.createElement("mark");
    mark.className = "hl";
    mark.textContent = text.slice(range[0], range[1]);
    body.append(text.slice(0, range[0]), mark, text.slice(range[1]));
  } else {
    body.textContent = text;
  }
  section.append(body);
  return section;
}

function showText(pages, target, start, end) {
  const number = pages.some((p) => p.number === target) ? target : (pages[0]?.number ?? target);
  const sections = pages.map((p) => {
    const range = p.number === number ? passageRange(p.text, start, end) : null;
    return textPage(p.number, p.text, range, pages.length > 1);
  });
  viewer.replaceChildren(...sections);
  if (!pages.length) say(_("This document has no text."));
  const mark = viewer.querySelector("mark.hl");
  const page = viewer.querySelector(`.text-page[data-page="${number}"]`);
  (mark || page)?.scrollIntoView({ block: mark ? "center" : "start" });
  finish(number);
}

// -- PDF ----------------------------------------------------------------------------------

async function loadPdfjs() {
  const pdfjsLib = await import("/static/vendor/pdfjs/pdf.min.mjs");
  pdfjsLib.GlobalWorkerOptions.workerSrc = viewer.dataset.workerUrl;
  return pdfjsLib;
}

function pageShell(number, width, height) {
  const div = document.createElement("div");
  div.className = "pdf-page";
  div.dataset.page = String(number);
  div.style.width = `${width}px`;
  div.style.height = `${height}px`;
  const canvas = document.createElement("canvas");
  const layer = document.createElement("div");
  layer.className = "textLayer";
  div.append(canvas, layer);
  return div;
}

class PdfView {
  constructor(pdfjsLib, pdf, scale) {
    this.lib = pdfjsLib;
    this.pdf = pdf;
    this.scale = scale;
    this.rendered = new Map(); // page number -> Promise<TextLayer>
  }

  shell(number) {
    return viewer.querySelector(`.pdf-page[data-page="${number}"]`);
  }

  /** Draw a page once (canvas + text layer); resolves to its TextLayer. */
  render(number) {
    if (!this.rendered.has(number)) this.rendered.set(number, this.draw(number));
    return this.rendered.get(number);
  }

  async draw(number) {
    const page = await this.pdf.getPage(number);
    const viewport = page.getViewport({ scale: this.scale });
    const div = this.shell(number);
    div.style.width = `${viewport.width}px`;
    div.style.height = `${viewport.height}px`;
    // The text layer sizes its pieces with this variable (pdf.js text_layer.css).
    div.style.setProperty("--total-scale-factor", String(this.scale));
    const canvas = div.querySelector("canvas");
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.floor(viewport.width * ratio);
    canvas.height = Math.floor(viewport.height * ratio);
    canvas.style.width = `${viewport.width}px`;
    canvas.style.height = `${viewport.height}px`;
    const transform = ratio !== 1 ? [ratio, 0, 0, ratio, 0, 0] : null;
    await page.render({ canvas, viewport, transform }).promise;
    const textLayer = new this.lib.TextLayer({
      textContentSource: page.streamTextContent(),
      container: div.querySelector(".textLayer"),
      viewport,
    });
    await textLayer.render();
    return textLayer;
  }

  /** Render the other pages as they come near the viewport. */
  renderLazily() {
    const observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        this.render(Number(entry.target.dataset.page)).catch((err) => console.warn(err));
      }
    }, { rootMargin: "600px 0px" });
    for (const div of viewer.querySelectorAll(".pdf-page")) observer.observe(div);
  }
}

/** Mark text[start:end] of one text-layer piece: the whole span, or a part of it. */
function markPiece(div, start, end) {
  const text = div.textContent;
  if (start <= 0 && end >= text.length) {
    div.classList.add("hl");
    return;
  }
  if (div.childNodes.length !== 1 || div.firstChild.nodeType !== Node.TEXT_NODE) {
    div.classList.add("hl"); // not a plain piece: mark it all rather than nothing
    return;
  }
  // Like pdf.js's own search highlights: the covered part becomes an inline child span.
  const part = document.createElement("span");
  part.className = "hl hl-part";
  part.textContent = text.slice(start, end);
  div.replaceChildren(text.slice(0, start), part, text.slice(end));
}

function highlightPieces(textLayer, passage) {
  const divs = textLayer.textDivs;
  const ranges = passageRanges(textLayer.textContentItemsStr, passage);
  for (const { index, start, end } of ranges) {
    if (divs[index]) markPiece(divs[index], start, end);
  }
  return ranges.length;
}

/** An OCR'd page (a scan) has no text layer to mark: the passage's lines get boxes over
 * the page image instead, from the line boxes stored with the page's text. */
function highlightBoxes(shell, boxes, range) {
  let marked = 0;
  for (const [s, e, left, top, right, bottom] of boxes) {
    if (e <= range[0] || s >= range[1]) continue;
    const box = document.createElement("div");
    box.className = "hl ocr-box";
    box.style.left = `${left * 100}%`;
    box.style.top = `${top * 100}%`;
    box.style.width = `${(right - left) * 100}%`;
    box.style.height = `${(bottom - top) * 100}%`;
    shell.append(box);
    marked += 1;
  }
  return marked;
}

async function showPdf(pages, target, start, end) {
  const pdfjsLib = await loadPdfjs();
  const pdf = await pdfjsLib.getDocument({
    url: viewer.dataset.fileUrl,
    isEvalSupported: false,
  }).promise;
  const number = Math.min(Math.max(target, 1), pdf.numPages);
  const first = await pdf.getPage(number);
  const base = first.getViewport({ scale: 1 });
  const room = Math.max(320, viewer.clientWidth - 2);
  const scale = Math.min(MAX_SCALE, room / base.width);
  // Every page gets a placeholder of the cited page's size, so scrolling is stable while
  // the pages around it are still being drawn.
  viewer.replaceChildren(...Array.from({ length: pdf.numPages }, (_, i) =>
    pageShell(i + 1, base.width * scale, base.height * scale)));
  const view = new PdfView(pdfjsLib, pdf, scale);
  const textLayer = await view.render(number);
  const stored = pages.find((p) => p.number === number);
  const range = stored ? passageRange(stored.text, start, end) : null;
  let marked = 0;
  if (range && stored.boxes) marked = highlightBoxes(view.shell(number), stored.boxes, range);
  else if (range) marked = highlightPieces(textLayer, stored.text.slice(range[0], range[1]));
  say(range && !marked ? _("The passage could not be located on the page image.") : "");
  const hl = view.shell(number).querySelector(".hl");
  (hl || view.shell(number)).scrollIntoView({ block: hl ? "center" : "start" });
  finish(number);
  view.renderLazily();
}

// -- start --------------------------------------------------------------------------------

async function start() {
  const target = option("page") || 1;
  const start = option("start");
  const end = option("end");
  try {
    const { pages } = await api("GET", viewer.dataset.pagesUrl);
    say("");
    if (viewer.dataset.docType === "pdf") {
      try {
        await showPdf(pages, target, start, end);
        return;
      } catch (err) {
        console.warn("pdf.js could not draw the document", err);
        say(_("The PDF could not be drawn here; showing its text instead."));
      }
    }
    showText(pages, target, start, end);
  } catch (err) {
    say(_("Could not show the document: %(reason)s", { reason: err.message || err }), true);
    viewer.dataset.ready = "1";
  }
}

start();
