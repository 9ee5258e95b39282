// The settings panel: answer preferences and theme, saved per user on the server
// (PUT /api/v1/me/preferences). The ask endpoint reads them, so they apply to every
// question without being sent along. An empty field means "the default".

import { _ } from "../i18n.js";
import { api } from "./api.js";

const FIELDS = [
  // [preference key, input id, kind]
  ["system_prompt", "set-system-prompt", "text"],
  ["temperature", "set-temperature", "float"],
  ["top_p", "set-top-p", "float"],
  ["max_tokens", "set-max-tokens", "int"],
];

const $ = (id) => document.getElementById(id);
// the language preference the page was drawn with: saving another one reloads the page
let savedLanguage = "";

/** Switch the page theme (and the matching code-highlighting stylesheet). */
export function applyTheme(theme) {
  const value = theme === "light" ? "light" : "dark";
  document.documentElement.dataset.theme = value;
  const dark = $("hljs-dark");
  const light = $("hljs-light");
  if (dark) dark.disabled = value !== "dark";
  if (light) light.disabled = value !== "light";
}

function fill(preferences, defaults) {
  for (const [key, id] of FIELDS) {
    const input = $(id);
    const value = preferences[key];
    input.value = value === undefined || value === null ? "" : String(value);
    if (defaults[key] !== undefined) input.placeholder = String(defaults[key]);
  }
  $("set-theme").value = preferences.theme === "light" ? "light" : "dark";
  $("set-language").value = preferences.language || "";
  savedLanguage = preferences.language || "";
}

function parse(kind, raw) {
  const text = raw.trim();
  if (text === "") return null; // reset to the default
  if (kind === "text") return raw;
  const number = Number(text);
  if (!Number.isFinite(number)) throw new Error(_("enter a number"));
  return kind === "int" ? Math.trunc(number) : number;
}

function collect() {
  const prefs = {};
  for (const [key, id, kind] of FIELDS) {
    try {
      prefs[key] = parse(kind, $(id).value);
    } catch (err) {
      throw new Error(`${$(id).closest("label")?.firstChild?.textContent?.trim() || key}: ${err.message}`);
    }
  }
  prefs.theme = $("set-theme").value;
  prefs.language = $("set-language").value || null; // "": as in the browser
  return prefs;
}

function status(text, isError) {
  const el = $("settings-status");
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
  el.classList.toggle("ok", !isError && text !== "");
}

async function save(event) {
  event.preventDefault();
  status("", false);
  let prefs;
  try {
    prefs = collect();
  } catch (err) {
    status(err.message, true);
    return;
  }
  const button = $("save-settings");
  button.disabled = true;
  try {
    const before = savedLanguage;
    const result = await api("PUT", "/api/v1/me/preferences", prefs);
    applyTheme(result.preferences.theme);
    if ((result.preferences.language || "") !== before) {
      // The page's words come from the server in the chosen language: load it again.
      window.location.reload();
      return;
    }
    status(_("Saved."), false);
  } catch (err) {
    status(err.message, true);
  } finally {
    button.disabled = false;
  }
}

function toggle() {
  const panel = $("settings-panel");
  panel.hidden = !panel.hidden;
  $("settings-toggle").setAttribute("aria-expanded", String(!panel.hidden));
}

/** Show the saved values; `me` is the /api/v1/me answer (preferences + defaults). */
export function showPreferences(me) {
  fill(me.preferences || {}, me.defaults || {});
  applyTheme((me.preferences || {}).theme);
}

/** Wire the toggle, the form and the theme preview (before /me has answered). */
export function initSettings() {
  $("settings-toggle").addEventListener("click", toggle);
  $("settings-panel").addEventListener("submit", save);
  // Preview the theme at once; saving keeps it.
  $("set-theme").addEventListener("change", (e) => applyTheme(e.target.value));
}
