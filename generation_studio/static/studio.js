// The studio's forms, enhanced: post with fetch, show that it is working, then
// the result or the server's error. Without JavaScript the same forms post
// natively and the server redirects to the operation's page.
"use strict";

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;  // textContent: never parsed as HTML
  return node;
}

function checkFiles(form) {
  for (const input of form.querySelectorAll('input[type="file"]')) {
    const count = input.files.length, low = +input.dataset.min, high = +input.dataset.max;
    if (count < low || count > high) {
      const wanted = low === high ? `exactly ${low}` : `${low} to ${high}`;
      return `Choose ${wanted} image(s); ${count} chosen.`;
    }
  }
  return null;
}

function showResult(outcome, body) {
  outcome.replaceChildren();
  const url = body.fileUrl || body.resultUrl;
  if (url) {
    const isVideo = (body.contentType || "").startsWith("video/");
    outcome.append(isVideo ? el("video", {src: url, controls: "", loop: "", muted: "", autoplay: ""})
                           : el("img", {src: url, alt: "Result of " + body.operationType}));
  }
  if (body.operationId) {
    const line = el("p", {}, `${body.operationType} in ${Math.round(body.durationMs)} ms · `);
    line.append(el("a", {href: "/history/" + body.operationId}, "Open the record"));
    outcome.append(line);
  }
}

// A job still running after the server's wait (202): follow its event stream.
function follow(outcome, body) {
  const line = el("p", {class: "working"}, `${body.status}… `);
  line.append(el("a", {href: "/history/" + body.operationId}, "Open the record"));
  outcome.replaceChildren(line);
  const events = new EventSource(body.eventsUrl);
  events.addEventListener("status", (event) => {
    const state = JSON.parse(event.data), percent = state.progress === null ? "" :
      ` ${Math.round(state.progress * 100)}%`;
    line.firstChild.textContent = `${state.status}${percent}… `;
  });
  events.addEventListener("end", (event) => {
    events.close();
    const record = JSON.parse(event.data).operation, output = (record.outputs || [])[0];
    if (record.status === "succeeded" && output) {
      showResult(outcome, {operationId: record.operationId, operationType: record.operationType,
                           durationMs: record.durationMs, contentType: output.contentType,
                           fileUrl: `/api/history/${record.operationId}/files/${output.file}`});
    } else {
      outcome.replaceChildren(el("p", {class: "error", role: "alert"}, record.error || record.status));
    }
  });
}

async function submit(event) {
  const form = event.target, outcome = form.querySelector(".outcome"), button = form.querySelector("button");
  event.preventDefault();
  const problem = checkFiles(form);
  if (problem) { outcome.replaceChildren(el("p", {class: "error", role: "alert"}, problem)); return; }
  button.disabled = true;
  outcome.replaceChildren(el("p", {class: "working"}, "Working…"));
  try {
    const response = await fetch(form.action, {method: "POST", body: new FormData(form),
                                               headers: {Accept: "application/json"}});
    const body = await response.json().catch(() => ({error: `The server answered ${response.status}.`}));
    if (response.status === 202 && body.success) follow(outcome, body);
    else if (response.ok && body.success) showResult(outcome, body);
    else {
      outcome.replaceChildren(el("p", {class: "error", role: "alert"}, body.error || "It failed."));
      if (body.operationId) outcome.append(el("a", {href: "/history/" + body.operationId}, "Open the failed record"));
    }
  } catch (error) {
    outcome.replaceChildren(el("p", {class: "error", role: "alert"}, "The studio could not be reached: " + error.message));
  } finally {
    button.disabled = false;
  }
}

for (const form of document.querySelectorAll("form.op-form")) form.addEventListener("submit", submit);
