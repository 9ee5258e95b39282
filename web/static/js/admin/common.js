// Shared by every console page (loaded as a module; CSP allows no inline script).

import { copyText } from "../clipboard.js";

// Forms marked data-confirm ask first. Delegated, so rows added later are covered too.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// "Copy" buttons: data-copy holds the selector of the element whose text to copy.
for (const button of document.querySelectorAll("button[data-copy]")) {
  button.addEventListener("click", () => {
    const source = document.querySelector(button.dataset.copy);
    if (source) copyText(source.textContent.trim(), button, source);
  });
}
