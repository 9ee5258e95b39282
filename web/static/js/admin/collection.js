// Collection page: every file is uploaded in its own XHR (so each has its own progress
// bar), then the documents' statuses are polled until each upload is indexed or failed.
// The documents table is refreshed from the same poll.

import { _, formatDateTime, formatNumber, ngettext, saidInPageLanguage } from "../i18n.js";

const FINAL = new Set(["indexed", "failed"]);
// How far along the bar each stage is: the upload itself fills the first 40 %, so a file
// that is sent but still queued does not read 100 %.
const STAGE_PROGRESS = { queued: 55, processing: 80, indexed: 100, failed: 100 };
const UPLOAD_SHARE = 40;
const PARALLEL_UPLOADS = 3;
const POLL_MS = 1000;
const POLL_RETRY_MS = 4000;

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const form = document.getElementById("upload-form");
const input = document.getElementById("upload-input");
const folderInput = document.getElementById("folder-input");
const zone = document.getElementById("drop-zone");
const list = document.getElementById("upload-list");
const table = document.getElementById("documents");

const uploadUrl = form ? form.dataset.uploadUrl : null;
const maxBytes = form ? Number(form.dataset.maxMb) * 1024 * 1024 : Infinity;
const canWrite = table.dataset.canWrite === "true";
const statusFilter = table.dataset.statusFilter;

// ---- upload rows -------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Document states as people read them (the API's values are identifiers). */
function stateLabel(state) {
  const labels = {
    uploading: _("uploading"), queued: _("queued"), processing: _("processing"),
    indexed: _("indexed"), failed: _("failed"),
  };
  return labels[state] || state;
}

function failedText(reason) {
  // Not nested in the other call: the string extractor would miss an inner _().
  const why = reason || _("unknown reason");
  return _("failed: %(reason)s", { reason: why });
}

function makeRow(name, before = null) {
  const row = el("li", "upload");
  row.dataset.name = name;
  const bar = el("progress", "progress");
  bar.max = 100;
  bar.value = 0;
  const label = el("span", "name", name);
  label.translate = false;
  row.append(label, bar, el("span", "state"));
  list.insertBefore(row, before);
  setState(row, "uploading");
  return row;
}

function setState(row, state, reason) {
  row.dataset.state = state;
  row.querySelector(".state").textContent =
    state === "failed" ? failedText(reason) : stateLabel(state);
  if (state in STAGE_PROGRESS) row.querySelector(".progress").value = STAGE_PROGRESS[state];
}

function fail(row, reason) {
  setState(row, "failed", reason);
}

// ---- sending -------------------------------------------------------------------------

const waiting = [];
let running = 0;

function enqueue(file, name) {
  const row = makeRow(name);
  if (file.size > maxBytes) {
    // Checked here too, so a huge file is not sent only to be refused with 413.
    fail(row, _("the file is %(size)s bytes; the limit is %(limit)s bytes", {
      size: formatNumber(file.size), limit: formatNumber(maxBytes),
    }));
    return;
  }
  waiting.push({ file, name, row });
  pump();
}

function pump() {
  while (running < PARALLEL_UPLOADS && waiting.length) {
    running += 1;
    send(waiting.shift()).finally(() => {
      running -= 1;
      pump();
    });
  }
}

function errorText(xhr) {
  let message = null;
  try {
    message = JSON.parse(xhr.responseText).error.message;
  } catch {
    /* not our JSON error: fall back to the status line */
  }
  if (xhr.status === 401) return _("signed out; reload the page and sign in again");
  return message || `HTTP ${xhr.status} ${xhr.statusText}`.trim();
}

function send({ file, name, row }) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    const bar = row.querySelector(".progress");
    xhr.open("POST", uploadUrl);
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) {
        bar.value = Math.round((event.loaded / event.total) * UPLOAD_SHARE);
      }
    };
    xhr.onload = () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && data && Array.isArray(data.uploads)) {
        accepted(row, data.uploads);
      } else {
        fail(row, errorText(xhr));
      }
      resolve();
    };
    xhr.onerror = () => {
      fail(row, _("the upload did not reach the server (network error or connection closed)"));
      resolve();
    };
    const body = new FormData();
    body.append("file", file, name);
    xhr.send(body);
  });
}

function accepted(row, uploads) {
  row.querySelector(".progress").value = UPLOAD_SHARE;
  if (uploads.length === 0) {
    fail(row, _("the archive contains no files"));
    return;
  }
  const single = uploads.length === 1 && uploads[0].name === uploads[0].source;
  if (single) {
    track(row, uploads[0]);
    return;
  }
  // A zip archive: one row per member (named by the server) in place of the archive's.
  for (const upload of uploads) {
    const member = makeRow(upload.name, row);
    member.querySelector(".progress").value = UPLOAD_SHARE;
    track(member, upload);
  }
  row.remove();
}

function track(row, upload) {
  if (!upload.document_id) {
    fail(row, upload.error);
    return;
  }
  row.dataset.docId = upload.document_id;
  setState(row, upload.status, upload.error);
  if (!FINAL.has(upload.status)) schedulePoll();
}

// ---- picking and dropping files -------------------------------------------------------

function readEntries(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

async function filesOfEntry(entry) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    // Files inside a dropped folder keep their relative path, like a folder pick does.
    return [{ file, name: entry.fullPath.replace(/^\/+/, "") || file.name }];
  }
  const reader = entry.createReader();
  const found = [];
  // readEntries returns at most ~100 entries per call: read until it returns none.
  for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) {
    for (const child of batch) found.push(...(await filesOfEntry(child)));
  }
  return found;
}

async function droppedFiles(dataTransfer) {
  // Items must be read synchronously: the list is emptied once the handler yields.
  const picked = [];
  for (const item of dataTransfer.items || []) {
    if (item.kind !== "file") continue;
    const entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
    if (entry && entry.isDirectory) picked.push({ entry });
    else {
      const file = item.getAsFile();
      if (file) picked.push({ file, name: file.name });
    }
  }
  if (!picked.length) {
    for (const file of dataTransfer.files || []) picked.push({ file, name: file.name });
  }
  const files = [];
  for (const p of picked) files.push(...(p.entry ? await filesOfEntry(p.entry) : [p]));
  return files;
}

if (form) {
  form.addEventListener("submit", (event) => event.preventDefault());
  input.addEventListener("change", () => {
    for (const file of input.files) enqueue(file, file.name);
    input.value = ""; // picking the same file again must fire "change" again
  });
  folderInput.addEventListener("change", () => {
    for (const file of folderInput.files) enqueue(file, file.webkitRelativePath || file.name);
    folderInput.value = "";
  });
  zone.addEventListener("click", (event) => {
    if (!event.target.closest("label, input")) input.click();
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    for (const { file, name } of await droppedFiles(event.dataTransfer)) enqueue(file, name);
  });
  // A file dropped next to the zone must not make the browser navigate away to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

// ---- polling and the documents table ---------------------------------------------------

let pollTimer = null;
let lastSignature = null;

function schedulePoll(delay = POLL_MS) {
  if (pollTimer === null) pollTimer = setTimeout(poll, delay);
}

function pending() {
  const uploading = list && list.querySelector('.upload:not([data-state="indexed"]):not([data-state="failed"])');
  const inTable = table.querySelector('tr[data-status="queued"], tr[data-status="processing"]');
  return Boolean(uploading || inTable);
}

async function poll() {
  pollTimer = null;
  let docs;
  try {
    const resp = await fetch(table.dataset.jsonUrl, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    docs = await resp.json();
  } catch {
    schedulePoll(POLL_RETRY_MS);
    return;
  }
  updateUploads(new Map(docs.map((d) => [d.id, d])));
  renderTable(docs);
  if (pending()) schedulePoll();
}

function updateUploads(byId) {
  if (!list) return;
  for (const row of list.querySelectorAll(".upload[data-doc-id]")) {
    if (FINAL.has(row.dataset.state)) continue;
    const doc = byId.get(row.dataset.docId);
    if (doc) setState(row, doc.status, doc.error);
    else fail(row, _("the document was deleted meanwhile"));
  }
}

function sizeText(bytes) {
  // Mirrors the server's filesize filter (web/i18n.py), so both renderings look alike.
  if (bytes < 1000) return ngettext("%(n)s byte", "%(n)s bytes", bytes);
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = "";
  for (const u of units) {
    value /= 1000;
    unit = u;
    if (value < 1000) break;
  }
  return `${formatNumber(value, { minimumFractionDigits: 1, maximumFractionDigits: 1 })} ${unit}`;
}

function hiddenInput(name, value) {
  const node = el("input");
  node.type = "hidden";
  node.name = name;
  node.value = value;
  return node;
}

function actionForm(url, docId, label, danger) {
  const f = el("form", "inline");
  f.method = "post";
  f.action = url;
  f.append(hiddenInput("csrf_token", csrf), hiddenInput("doc_id", docId));
  f.append(hiddenInput("status", statusFilter));
  const button = el("button", danger ? "link danger" : "link", label);
  button.type = "submit";
  f.append(button);
  return f;
}

function documentRow(doc) {
  const tr = el("tr");
  tr.dataset.docId = doc.id;
  tr.dataset.status = doc.status;
  const name = el("td", "name");
  name.translate = false;
  if (doc.status === "indexed") {
    // Preview: the document viewer, in a new tab.
    const link = el("a", "preview", doc.name);
    link.href = `/documents/${encodeURIComponent(doc.id)}/view`;
    link.target = "_blank";
    link.rel = "noopener";
    name.append(link);
  } else {
    name.textContent = doc.name;
  }
  if (doc.title && doc.title !== doc.name) name.append(el("div", "muted small", doc.title));
  const badgeCell = el("td");
  badgeCell.append(el("span", `badge status ${doc.status}`, stateLabel(doc.status)));
  if (doc.status === "indexed" && doc.ocr_pages) {
    const ocr = el("span", "badge ocr", "OCR");
    ocr.title = ngettext("%(n)s page read by OCR", "%(n)s pages read by OCR", doc.ocr_pages);
    badgeCell.append(" ", ocr);
  }
  // UTC, as the server renders the same column
  const utc = { dateStyle: "short", timeStyle: "short", timeZone: "UTC" };
  const when = el("td", "when", doc.updated_at ? formatDateTime(doc.updated_at, utc) : "—");
  const type = el("td", "", (doc.type || "").toUpperCase());
  type.translate = false;
  const reason = el("td", "reason", doc.error || "");
  if (!saidInPageLanguage(doc.error || "")) reason.lang = "en"; // the server's English
  tr.append(
    name,
    type,
    el("td", "num", sizeText(doc.size_bytes)),
    el("td", "num", doc.pages === null || doc.pages === undefined ? "" : formatNumber(doc.pages)),
    el("td", "num", doc.chunks === null || doc.chunks === undefined ? "" : formatNumber(doc.chunks)),
    badgeCell,
    reason,
    when,
  );
  if (canWrite) {
    const actions = el("td", "row-actions");
    if (doc.status === "indexed") {
      actions.append(actionForm(table.dataset.summarizeUrl, doc.id, _("Summarize")));
    }
    if (doc.retryable) { // not offered where the file itself is the problem
      actions.append(actionForm(table.dataset.retryUrl, doc.id, _("Retry")));
    }
    actions.append(actionForm(table.dataset.deleteUrl, doc.id, _("Delete"), true));
    tr.append(actions);
  }
  return tr;
}

function renderTable(docs) {
  const signature = docs.map((d) => `${d.id}:${d.status}:${d.error}:${d.chunks}`).join("|");
  if (signature === lastSignature) return;
  lastSignature = signature;
  const shown = statusFilter ? docs.filter((d) => d.status === statusFilter) : docs;
  const body = table.tBodies[0];
  body.replaceChildren(...shown.map(documentRow));
  document.getElementById("no-documents").classList.toggle("hidden", shown.length > 0);
  updateCounts(docs);
  applySearch();
}

// ---- finding a document by name ---------------------------------------------------------

const search = document.getElementById("doc-search");

function applySearch() {
  const words = (search ? search.value : "").trim().toLowerCase();
  for (const row of table.tBodies[0].rows) {
    const text = row.querySelector(".name")?.textContent.toLowerCase() || "";
    row.hidden = Boolean(words) && !text.includes(words);
  }
}

if (search) search.addEventListener("input", applySearch);

function updateCounts(docs) {
  const counts = { queued: 0, processing: 0, indexed: 0, failed: 0 };
  for (const d of docs) counts[d.status] = (counts[d.status] || 0) + 1;
  for (const [status, n] of Object.entries(counts)) {
    const badge = document.querySelector(`[data-count="${status}"]`);
    if (badge) badge.textContent = `${stateLabel(status)}: ${formatNumber(n)}`;
    const link = document.querySelector(`a[data-filter="${status}"]`);
    if (link) link.textContent = `${stateLabel(status)} (${formatNumber(n)})`;
  }
  document.getElementById("doc-total").textContent = formatNumber(docs.length);
  const chunks = docs.reduce((sum, d) => sum + (d.chunks || 0), 0);
  document.getElementById("chunk-total").textContent = formatNumber(chunks);
  const retryAll = document.querySelector("#retry-failed button");
  if (retryAll) retryAll.disabled = !docs.some((d) => d.retryable);
  // Available as soon as something is indexed, not only after a reload.
  const summarize = document.querySelector("#summarize-collection button");
  if (summarize) summarize.disabled = counts.indexed === 0;
}

// Documents still in flight when the page opens (after a retry or re-index) are followed too.
if (pending()) schedulePoll();
