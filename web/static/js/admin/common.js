// Shared by every console page (loaded as a module; CSP allows no inline script).

import { _ } from "../i18n.js";

// Forms marked data-confirm ask first. Delegated, so rows added later are covered too.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// "Copy" buttons: data-copy holds the selector of the element whose text to copy.
for (const button of document.querySelectorAll("button[data-copy]")) {
  button.addEventListener("click", async () => {
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = _("Copied");
    } catch {
      // No clipboard access (plain http on an intranet host): select it for Ctrl+C.
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = _("Press Ctrl+C");
    }
  });
}
