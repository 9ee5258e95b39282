// Summaries page: submit a summary, follow the jobs' progress (polled while any is active),
// cancel, and read a finished summary with page links into the document viewer.
// Statement text comes from a model: it is only ever set as textContent, never as HTML.

import { _, lang } from "../i18n.js";
import { api } from "./api.js";

const POLL_MS = 2000;
const ACTIVE = new Set(["queued", "running"]);

const list = document.getElementById("summary-jobs");
const empty = document.getElementById("no-summaries");
const form = document.getElementById("summary-form");
const resultCard = document.getElementById("summary-result");

let openJob = list.dataset.openJob || null;
let lastSignature = null;
let pollTimer = null;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function jobUrl(id, suffix = "") {
  return `/api/v1/summaries/${encodeURIComponent(id)}${suffix}`;
}

// ---- the job list ----------------------------------------------------------------------

/** How the summary was made, in the page's language (the server's label is English). */
/** "Summary of …" in the page's language (results stored before "subject" existed keep
 * their English title). */
function summaryTitle(result) {
  if (result.kind === "collection" && result.collection_name) {
    return _("Summary of collection %(name)s", { name: result.collection_name });
  }
  if (result.subject) return _("Summary of %(name)s", { name: result.subject });
  return result.title;
}

function summaryLabel(result) {
  if (lang.startsWith("en")) return result.label;
  const labels = {
    extractive: _(
      "Extractive summary (no language model is configured): the most central sentences, quoted from the documents with their pages.",
    ),
    generative: _(
      "Summary written by the language model from the document text; every statement cites the pages it comes from.",
    ),
  };
  return labels[result.model] || result.label;
}

/** Job states and targets as people read them (the API's values are identifiers). */
function statusLabel(status) {
  const labels = {
    queued: _("queued"), running: _("running"), done: _("done"),
    failed: _("failed"), cancelled: _("cancelled"),
  };
  return labels[status] || status;
}

function targetLabel(target) {
  const labels = { document: _("document"), collection: _("collection") };
  return labels[target] || target || "";
}

function jobRow(job) {
  const li = el("li", "summary-job");
  li.dataset.jobId = job.id;
  li.dataset.status = job.status;
  if (job.id === openJob) li.classList.add("open");
  const name = el("span", "job-name", job.name || job.id);
  name.translate = false;
  li.append(name, el("span", "muted", targetLabel(job.target)));
  li.append(el("span", `badge ${job.status}`, statusLabel(job.status)));
  const bar = el("progress");
  bar.max = 1;
  bar.value = job.progress;
  bar.title = `${Math.round(job.progress * 100)} %`;
  li.append(bar);
  const actions = el("span", "job-actions");
  if (job.status === "done") {
    const show = el("button", "link", job.id === openJob ? _("Showing") : _("Show"));
    show.type = "button";
    show.addEventListener("click", () => showResult(job.id));
    actions.append(show);
  }
  if (ACTIVE.has(job.status) && !job.cancel_requested) {
    const cancel = el("button", "link danger", _("Cancel"));
    cancel.type = "button";
    cancel.addEventListener("click", () => cancelJob(job.id, cancel));
    actions.append(cancel);
  } else if (job.cancel_requested && ACTIVE.has(job.status)) {
    actions.append(el("span", "muted small", _("cancelling…")));
  }
  li.append(actions);
  if (job.error) li.append(el("span", "muted small job-error", job.error));
  return li;
}

function render(jobs) {
  const signature = JSON.stringify(
    jobs.map((j) => [j.id, j.status, j.progress, j.error, j.cancel_requested]).concat([openJob]),
  );
  if (signature === lastSignature) return;
  lastSignature = signature;
  list.replaceChildren(...jobs.map(jobRow));
  empty.classList.toggle("hidden", jobs.length > 0);
}

async function refresh() {
  pollTimer = null;
  let jobs;
  try {
    jobs = (await api("GET", list.dataset.listUrl)).jobs;
  } catch {
    schedule(POLL_MS * 2);
    return;
  }
  render(jobs);
  const open = jobs.find((j) => j.id === openJob);
  if (open && open.status === "done" && resultCard.dataset.jobId !== open.id) showResult(open.id);
  if (jobs.some((j) => ACTIVE.has(j.status))) schedule();
}

function schedule(delay = POLL_MS) {
  if (pollTimer === null) pollTimer = setTimeout(refresh, delay);
}

async function cancelJob(id, button) {
  button.disabled = true;
  try {
    await api("POST", jobUrl(id, "/cancel"));
  } catch (err) {
    button.disabled = false;
    button.title = err.message;
  }
  lastSignature = null;
  refresh();
}

// ---- one result --------------------------------------------------------------------------

function viewerUrl(statement, page) {
  const params = new URLSearchParams({ page: String(page) });
  const span = statement.span;
  if (span && span.page === page) {
    params.set("start", String(span.char_start));
    params.set("end", String(span.char_end));
  }
  return `/documents/${encodeURIComponent(statement.document_id)}/view?${params}`;
}

function statementItem(statement, withDocument) {
  const li = el("li");
  li.append(el("span", "statement-text", statement.text));
  const cite = el("span", "cite");
  const pages = statement.pages || [];
  const lead = withDocument ? `(${statement.document_name}, ` : "(";
  // The page links go where %(pages)s stands in the phrase of the page's language
  // ("p. 4" in English, "第 4 页" in Chinese).
  const phrase = pages.length > 1 ? _("pp. %(pages)s") : _("p. %(pages)s");
  const [before, after = ""] = phrase.split("%(pages)s");
  cite.append(document.createTextNode(lead + before));
  pages.forEach((page, i) => {
    if (i > 0) cite.append(document.createTextNode(", "));
    const link = el("a", "page-link", String(page));
    link.href = viewerUrl(statement, page);
    link.target = "_blank";
    link.rel = "noopener";
    cite.append(link);
  });
  cite.append(document.createTextNode(`${after})`));
  li.append(cite);
  return li;
}

async function showResult(id) {
  openJob = id;
  let job;
  try {
    job = (await api("GET", jobUrl(id))).job;
  } catch (err) {
    resultCard.classList.remove("hidden");
    document.getElementById("result-title").textContent = err.message;
    return;
  }
  const result = job.result;
  if (!result) return;
  resultCard.dataset.jobId = id;
  document.getElementById("result-title").textContent = summaryTitle(result);
  document.getElementById("result-label").textContent = summaryLabel(result);
  document.getElementById("download-md").href = jobUrl(id, ".md");
  document.getElementById("download-json").href = jobUrl(id, ".json");
  const collection = result.kind === "collection";
  document
    .getElementById("result-statements")
    .replaceChildren(...result.statements.map((s) => statementItem(s, collection)));
  const docs = document.getElementById("result-documents");
  docs.replaceChildren(
    ...(result.documents || []).map((doc) => {
      const details = el("details");
      details.append(el("summary", "", doc.document_name));
      const ul = el("ul", "statements");
      ul.append(...doc.statements.map((s) => statementItem(s, false)));
      details.append(ul);
      return details;
    }),
  );
  resultCard.classList.remove("hidden");
  lastSignature = null;
  refresh();
  resultCard.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

// ---- submitting -------------------------------------------------------------------------

async function loadDocuments(select, collectionId) {
  select.disabled = true;
  select.replaceChildren(el("option", "", _("loading…")));
  try {
    const { documents } = await api("GET", `/api/v1/collections/${collectionId}/documents`);
    const ready = documents.filter((d) => d.status === "indexed");
    select.replaceChildren(
      ...(ready.length
        ? ready.map((d) => {
            const option = el("option", "", d.title && d.title !== d.name ? `${d.name} — ${d.title}` : d.name);
            option.value = d.id;
            return option;
          })
        : [el("option", "", _("no indexed documents"))]),
    );
    select.disabled = ready.length === 0;
  } catch (err) {
    select.replaceChildren(el("option", "", err.message));
  }
}

if (form) {
  const collection = document.getElementById("summary-collection");
  const docSelect = document.getElementById("summary-document");
  const status = document.getElementById("summary-form-status");
  collection.addEventListener("change", () => loadDocuments(docSelect, collection.value));
  loadDocuments(docSelect, collection.value);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const which = event.submitter ? event.submitter.value : "document";
    const body =
      which === "collection"
        ? { collection_id: Number(collection.value) }
        : { document_id: docSelect.value };
    if (which === "document" && !docSelect.value) {
      status.textContent = _("Choose an indexed document first.");
      return;
    }
    status.textContent = _("Submitting…");
    try {
      const { job } = await api("POST", form.dataset.submitUrl, body);
      status.textContent = _("Queued: %(name)s.", { name: job.name });
      openJob = job.id;
      lastSignature = null;
      refresh();
    } catch (err) {
      status.textContent = err.message;
    }
  });
}

refresh();
