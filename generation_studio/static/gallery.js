// The gallery, enhanced: videos play while pointed at or focused, selection
// count, "All on this page", and Compare enabled for 2 to 4 selected
// operations (it opens /compare?ids=…). Without JavaScript the selection bar
// still posts the checked tiles.
"use strict";

function previewOnHover(tile) {
  const video = tile.querySelector("video"), still = tile.querySelector("img[data-animated]");
  if (!video && !still) return;
  const thumb = still && still.src;
  const start = () => {
    if (video) video.play().catch(() => {});  // refused (e.g. data saver): the poster stays
    else still.src = still.dataset.animated;
  };
  const stop = () => {
    if (video) video.pause();
    else still.src = thumb;
  };
  tile.addEventListener("pointerenter", start);
  tile.addEventListener("pointerleave", stop);
  tile.addEventListener("focusin", start);
  tile.addEventListener("focusout", stop);
}

function selection(bar) {
  const picks = [...document.querySelectorAll("input.pick[form='bulk']")];
  const count = bar.querySelector(".selected"), all = bar.querySelector(".select-all");
  const compare = bar.querySelector("button.compare"), actions = bar.querySelectorAll("button");
  count.hidden = false;
  all.closest("label").hidden = picks.length === 0;
  const update = () => {
    const chosen = picks.filter((p) => p.checked);
    count.textContent = `${chosen.length} selected`;
    for (const button of actions) button.disabled = chosen.length === 0;
    if (compare) compare.disabled = chosen.length < 2 || chosen.length > 4;
    all.checked = chosen.length > 0 && chosen.length === picks.length;
    for (const pick of picks) pick.closest(".tile").classList.toggle("chosen", pick.checked);
  };
  for (const pick of picks) pick.addEventListener("change", update);
  all.addEventListener("change", () => { for (const pick of picks) pick.checked = all.checked; update(); });
  if (compare) {
    compare.addEventListener("click", (event) => {
      event.preventDefault();
      const ids = picks.filter((p) => p.checked).map((p) => "ids=" + encodeURIComponent(p.value));
      window.location.href = compare.getAttribute("formaction") + "?" + ids.join("&");
    });
  }
  update();
}

for (const tile of document.querySelectorAll(".tile")) previewOnHover(tile);
const bar = document.querySelector("form.bulk");
if (bar) selection(bar);
