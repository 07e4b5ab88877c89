// A queued or running operation's page follows it live: the status and the
// progress from its event stream, then, once it has ended, the page's new
// content in place (no reload). Without JavaScript, reload to see it.
"use strict";

const live = document.querySelector(".live");
if (live && window.EventSource) {
  const status = live.querySelector(".live-status"), bar = live.querySelector("progress");
  const events = new EventSource(live.dataset.events);
  events.addEventListener("status", (event) => {
    const state = JSON.parse(event.data);
    status.textContent = state.status;
    if (state.progress !== null && state.progress !== undefined) {
      bar.value = state.progress;
      bar.textContent = Math.round(state.progress * 100) + "%";
    }
  });
  events.addEventListener("end", async () => {
    events.close();
    const page = await fetch(window.location.href, {headers: {Accept: "text/html"}});
    const html = new DOMParser().parseFromString(await page.text(), "text/html");
    document.querySelector("main").replaceWith(html.querySelector("main"));
  });
}
