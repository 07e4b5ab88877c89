// An operation's page: times in the viewer's local time (UTC on hover), the
// "Copy as curl" button, and, while the operation is queued or running, its
// status and progress from its event stream, then the page's new content in
// place (no reload). Without JavaScript: UTC times, no curl button, reload.
"use strict";

function localTimes(root) {
  for (const node of root.querySelectorAll("time[datetime]")) {
    const moment = new Date(node.dateTime);
    if (Number.isNaN(moment.getTime())) continue;
    node.title = moment.toISOString().replace("T", " ").slice(0, 19) + " UTC";
    node.textContent = moment.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "medium"});
  }
}

// A shell word: single quotes, with each ' written as '\''.
function quote(text) {
  return "'" + String(text).replace(/'/g, "'\\''") + "'";
}

function curlCommand(data) {
  const url = new URL(data.url, window.location.origin).href;
  return `curl -X POST ${quote(url)} \\\n  -H 'Content-Type: application/json' \\\n` +
         `  -d ${quote(JSON.stringify(data.fields))}`;
}

function copyCurl(root) {
  const button = root.querySelector(".copy-curl"), source = root.querySelector("#curl-data");
  if (!button || !source) return;
  const status = root.querySelector(".copy-status"), shown = root.querySelector(".curl-text");
  const command = curlCommand(JSON.parse(source.textContent));
  button.hidden = false;
  button.addEventListener("click", async () => {
    shown.textContent = command;
    try {
      await navigator.clipboard.writeText(command);
      status.textContent = "Copied the curl command to the clipboard.";
      shown.hidden = true;
    } catch (error) {  // no clipboard (an insecure origin, or refused): show it to copy by hand
      status.textContent = "Copy the command below:";
      shown.hidden = false;
    }
  });
}

function follow(live) {
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
    const main = html.querySelector("main");
    document.querySelector("main").replaceWith(main);
    enhance(main);
  });
}

function enhance(root) {
  localTimes(root);
  copyCurl(root);
  const live = root.querySelector(".live");
  if (live && window.EventSource) follow(live);
}

enhance(document);
