// Copying to the clipboard from a button, shared by the portal and the console.

import { _ } from "./i18n.js";

/** Copy ``text``; the button says "Copied". Without clipboard access (plain http on an
 * intranet host) the text of ``fallbackNode`` is selected and the button says to press
 * Ctrl+C. With ``resetLabel`` the button gets its label back after two seconds. */
export async function copyText(text, button, fallbackNode, resetLabel) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = _("Copied");
  } catch {
    const range = document.createRange();
    range.selectNodeContents(fallbackNode);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = _("Press Ctrl+C");
  }
  if (resetLabel) setTimeout(() => { button.textContent = resetLabel; }, 2000);
}
