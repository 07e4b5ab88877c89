// Compare two images: the range input shows that much of A over B (a clip
// driven by the --split custom property), in a box of the images' shape
// (--ratio). Custom properties set from script, as CSP allows.
"use strict";

const overlay = document.querySelector(".overlay"), split = document.querySelector("#split");
if (overlay && split) {
  overlay.style.setProperty("--ratio", overlay.dataset.ratio);
  const show = () => overlay.style.setProperty("--split", split.value + "%");
  split.addEventListener("input", show);
  show();
}
