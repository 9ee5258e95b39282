// The browser's half of the UI languages (web/i18n.py). Each page carries the strings of
// its language as JSON in <script type="application/json" id="i18n-catalog"> (data, not
// script: the CSP allows no inline script); _() and ngettext() look them up, falling back
// to the English msgid. Placeholders are Python-style, %(name)s, as in the .po files.

// Without a page (Node, in the JS unit checks) there is no catalog: English.
const page = typeof document === "undefined" ? null : document;
const node = page ? page.getElementById("i18n-catalog") : null;
const catalog = node ? JSON.parse(node.textContent || "{}") : {};

/** The page's language as a BCP 47 tag ("en", "zh-Hans"), for Intl formatting. */
export const lang = (page && page.documentElement.lang) || "en";

function format(text, params) {
  if (!params) return text;
  return text.replace(/%\((\w+)\)s/g, (whole, key) => (key in params ? String(params[key]) : whole));
}

/** Whether text from the server is already in the page's language: the server says its
 * messages in the reader's language where its catalog has them, and leaves the rest English.
 * Chinese is told apart by its script. */
export function saidInPageLanguage(text) {
  if (lang.startsWith("en")) return true;
  return /[\u3400-\u9fff]/.test(text);
}

/** The translation of msgid, with %(name)s placeholders filled from params. */
export function _(msgid, params) {
  const text = catalog[msgid];
  return format(typeof text === "string" && text ? text : msgid, params);
}

/** Singular or plural by n (Chinese has one form); %(n)s is n unless params say otherwise. */
export function ngettext(singular, plural, n, params) {
  const forms = catalog[singular];
  const values = { n: formatNumber(n), ...params };
  if (Array.isArray(forms) && forms.length) {
    const text = forms[Math.min(forms.length - 1, n === 1 ? 0 : 1)] || forms[0];
    if (text) return format(text, values);
  }
  return format(n === 1 ? singular : plural, values);
}

/** A number the reader's way (1,234.5 / 1,234.5 in Chinese too, but never 1.234,5 by accident). */
export function formatNumber(n, options) {
  return new Intl.NumberFormat(lang, options).format(n);
}

/** A date and time the reader's way (ISO strings and Date objects). */
export function formatDateTime(value, options = { dateStyle: "medium", timeStyle: "short" }) {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  return new Intl.DateTimeFormat(lang, options).format(date);
}
