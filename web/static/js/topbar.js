// The top bar on narrow screens: the navigation folds into a menu behind the ☰ button
// (CSS shows the button below 760 px). Escape or a click elsewhere closes it.

const toggle = document.getElementById("menu-toggle");
const bar = toggle ? toggle.closest(".topbar") : null;

function setOpen(open) {
  bar.classList.toggle("menu-open", open);
  toggle.setAttribute("aria-expanded", String(open));
}

if (toggle && bar) {
  toggle.addEventListener("click", (event) => {
    event.stopPropagation();
    setOpen(!bar.classList.contains("menu-open"));
  });
  document.addEventListener("click", (event) => {
    if (!event.target.closest("#topnav")) setOpen(false);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") setOpen(false);
  });
}
