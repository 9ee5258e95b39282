// Talking to /api/v1 from the portal: JSON in and out, the CSRF header on every change,
// and error messages a person can act on ("retry in 12 s").

import { _, saidInPageLanguage } from "../i18n.js";

/** The per-session CSRF token the server put into <meta name="csrf-token">. */
export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") || "" : "";
}

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** The reader's-language sentence for an error code the portal meets, or null. */
function known(code) {
  const texts = {
    busy: _("The model is busy answering other questions."),
    rate_limited: _("Too many requests; please wait a moment."),
    unavailable: _("This is not available right now; please try again shortly."),
    index_unavailable: _("The documents are still being indexed; please try again shortly."),
    not_found: _("Not found, or no longer available to you."),
    forbidden: _("You may not do this."),
    too_large: _("That is too large."),
    model_not_built: _("No language model is built yet."),
    generation: _("The model could not write an answer."),
    internal: _("Something went wrong on our side."),
  };
  return texts[code] || null;
}

/** What to show for a server error: the server's own words when they are in the page's
 * language (it translates what its catalog has); else the sentence for its code when there
 * is one, else the server's (English) words. */
export function errorText(code, message) {
  if (saidInPageLanguage(message)) return message;
  return known(code) || message;
}

/** Set when a 401 sent the page to sign-in. */
let leaving = false;

/** An ApiError from a non-2xx response: the server's {"error": {code, message}} if any. */
export async function errorFrom(resp) {
  let code = `http_${resp.status}`;
  let message = `${resp.status} ${resp.statusText || "error"}`;
  try {
    const body = await resp.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // not JSON (a proxy's error page): keep the status line
  }
  if (resp.status === 401 && !leaving) {
    // The session ended on the server (signed out elsewhere, or the password or role
    // changed): the page cannot do anything more, so go to sign-in and come back here.
    // Once: several requests may fail together, and a second navigation aborts the first.
    leaving = true;
    const here = window.location.pathname + window.location.search;
    window.location.assign(`/login?next=${encodeURIComponent(here)}`);
  }
  message = errorText(code, message);
  const retry = Number.parseInt(resp.headers.get("Retry-After") || "", 10);
  const retryAfter = Number.isFinite(retry) ? retry : null;
  if ((resp.status === 429 || resp.status === 503) && retryAfter !== null) {
    // The header is the number to trust; the server's wording may carry one already.
    const base = message.replace(/[;,]?\s*retry in (about )?\d+ s\.?$/i, "");
    // A translated message may carry the number already, in its own words.
    if (!base.includes(String(retryAfter))) {
      message = _("%(message)s; retry in %(seconds)s s", { message: base, seconds: retryAfter });
    }
  }
  return new ApiError(resp.status, code, message, retryAfter);
}

/** fetch + JSON; resolves to the parsed body (null for 204), rejects with ApiError. */
export async function api(method, url, body) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(url, init);
  if (!resp.ok) throw await errorFrom(resp);
  if (resp.status === 204) return null;
  return resp.json();
}

/** Start an answer stream; the caller reads resp.body as server-sent events. */
export function askStream(body, signal) {
  return fetch("/api/v1/ask", {
    method: "POST",
    credentials: "same-origin",
    headers: {
      "Content-Type": "application/json",
      Accept: "text/event-stream",
      "X-CSRF-Token": csrfToken(),
    },
    body: JSON.stringify(body),
    signal,
  });
}
