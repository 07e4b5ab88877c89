// The studio page, enhanced. A menu of tasks shows one form at a time (its id
// in the URL); a form's images are a list in order, each with its role, that
// can be reordered and removed (stored images by reference, op:<id>/<file>);
// forms post with fetch and show the result (a 202 is followed to its end); a
// strip of recent results, polled, offers each image as an input. Without
// JavaScript the menu's links load the page with the form chosen and the
// forms post natively (the server redirects to the operation's page).
"use strict";

const DATA = JSON.parse(document.getElementById("studio-data").textContent);
const POLL_MS = 4000;
const announcer = document.getElementById("studio-status");

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;  // textContent: never parsed as HTML
  return node;
}

function say(text) {
  announcer.textContent = "";
  requestAnimationFrame(() => { announcer.textContent = text; });
}

function typeName(type) {
  return DATA.typeNames[type] || type;
}

// ---- The task menu ---------------------------------------------------------

const sections = [...document.querySelectorAll("section.op")];
const menuLinks = [...document.querySelectorAll("nav.tasks a[data-form]")];
const initialForm = (sections.find((s) => !s.hidden) || sections[0]).id;

function shownSection() {
  return sections.find((s) => !s.hidden);
}

function choose(id, {focus = false, push = false} = {}) {
  const section = sections.find((s) => s.id === id);
  if (!section) return null;
  for (const s of sections) s.hidden = s !== section;
  for (const link of menuLinks) {
    if (link.dataset.form === id) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (push) history.pushState({form: id}, "", "?form=" + encodeURIComponent(id));
  if (focus) section.querySelector("h2").focus();
  return section;
}

for (const link of menuLinks) {
  link.addEventListener("click", (event) => {
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    choose(link.dataset.form, {focus: true, push: true});
  });
}
window.addEventListener("popstate", () => {
  choose(new URLSearchParams(location.search).get("form") || initialForm);
});

// ---- Images: in order, with their roles ------------------------------------
// Each pick is {ref, url, name} (a stored image) or {file, url, name} (a file).

const picks = new WeakMap();  // fieldset -> {items, reordered}

function roleOf(fieldset, index) {
  return JSON.parse(fieldset.dataset.roles || "[]")[index] || `Image ${index + 1}`;
}

function renderPicks(fieldset) {
  const {items} = picks.get(fieldset), high = +fieldset.dataset.max;
  fieldset.querySelector('input[type="file"]').disabled = high > 1 && items.length >= high;
  fieldset.querySelector(".picked").replaceChildren(...items.map((pick, i) => {
    const li = el("li", {class: "pick"});
    const text = el("span", {class: "pick-text"});
    text.append(el("strong", {class: "role"}, roleOf(fieldset, i)), " ",
                el("span", {class: "pick-name"}, pick.name));
    li.append(el("img", {src: pick.url, alt: "", width: 56, height: 56}), text,
              pickButton("↑", `Move ${pick.name} up`, "up", i === 0),
              pickButton("↓", `Move ${pick.name} down`, "down", i === items.length - 1),
              pickButton("✕", `Remove ${pick.name}`, "remove", false));
    return li;
  }));
}

function pickButton(symbol, label, action, disabled) {
  const button = el("button", {type: "button", class: "pick-action", "aria-label": label,
                               "data-action": action}, symbol);
  button.disabled = disabled;
  return button;
}

function addPick(fieldset, pick, where = "") {
  const state = picks.get(fieldset), high = +fieldset.dataset.max;
  if (high === 1) {
    for (const old of state.items.splice(0, state.items.length, pick)) if (old.file) URL.revokeObjectURL(old.url);
  }
  else if (state.items.length >= high) {
    say(`This form takes at most ${high} images: remove one first.`);
    return false;
  } else state.items.push(pick);
  renderPicks(fieldset);
  say(`${where}${pick.name} added as ${roleOf(fieldset, state.items.indexOf(pick))}.`);
  return true;
}

function onPickAction(fieldset, button) {
  const state = picks.get(fieldset), items = state.items;
  const index = [...fieldset.querySelectorAll(".pick")].indexOf(button.closest(".pick"));
  const action = button.dataset.action, pick = items[index];
  if (action === "remove") {
    items.splice(index, 1);
    if (pick.file) URL.revokeObjectURL(pick.url);
    renderPicks(fieldset);
    const next = fieldset.querySelectorAll(".pick")[Math.min(index, items.length - 1)];
    (next ? next.querySelector('[data-action="remove"]') : fieldset.querySelector('input[type="file"]')).focus();
    say(`${pick.name} removed.`);
    return;
  }
  const to = index + (action === "up" ? -1 : 1);
  [items[index], items[to]] = [items[to], items[index]];
  state.reordered = true;
  renderPicks(fieldset);
  const moved = fieldset.querySelectorAll(".pick")[to];
  const same = moved.querySelector(`[data-action="${action}"]`);
  (same.disabled ? moved.querySelector(`[data-action="${action === "up" ? "down" : "up"}"]`) : same).focus();
  say(`${pick.name} is now ${roleOf(fieldset, to)}.`);
}

function setUpPicks(fieldset) {
  const items = [...fieldset.querySelectorAll(".pick")].map((li) => (
    {ref: li.dataset.ref, url: li.dataset.url, name: li.dataset.name}));
  picks.set(fieldset, {items, reordered: false});
  renderPicks(fieldset);  // with buttons, without the no-JS hidden inputs
  const input = fieldset.querySelector('input[type="file"]');
  input.required = false;  // the count is checked on submit, over the list
  input.addEventListener("change", () => {
    for (const file of input.files) {
      if (!addPick(fieldset, {file, url: URL.createObjectURL(file), name: file.name})) break;
    }
    input.value = "";
  });
  fieldset.querySelector(".picked").addEventListener("click", (event) => {
    const button = event.target.closest("button.pick-action");
    if (button) onPickAction(fieldset, button);
  });
}

function checkImages(form) {
  const fieldset = form.querySelector("fieldset.images");
  if (!fieldset) return null;
  const count = picks.get(fieldset).items.length;
  const low = +fieldset.dataset.min, high = +fieldset.dataset.max;
  if (count >= low && count <= high) return null;
  const wanted = low === high ? `exactly ${low}` : `${low} to ${high}`;
  return `Choose ${wanted} image(s); ${count} chosen.`;
}

// ---- Posting a form --------------------------------------------------------

function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// Stored images, a changed order or a rerun: JSON, whose list keeps the exact
// order. Otherwise multipart, the files in the list's order.
async function requestFor(form) {
  const fieldset = form.querySelector("fieldset.images");
  const state = fieldset ? picks.get(fieldset) : {items: [], reordered: false};
  const fields = new FormData(form);
  fields.delete("images");
  const headers = {Accept: "application/json"};
  if (form.dataset.rerun || state.reordered || state.items.some((p) => p.ref)) {
    const body = Object.fromEntries(fields);
    if (fieldset) body.images = await Promise.all(state.items.map((p) => p.ref || dataUrl(p.file)));
    return [form.dataset.rerun || form.action,
            {method: "POST", body: JSON.stringify(body),
             headers: {...headers, "Content-Type": "application/json"}}];
  }
  for (const pick of state.items) fields.append("images", pick.file, pick.name);
  return [form.action, {method: "POST", body: fields, headers}];
}

function showResult(outcome, body) {
  outcome.replaceChildren();
  const url = body.fileUrl || body.resultUrl;
  if (url) {
    const isVideo = (body.contentType || "").startsWith("video/");
    outcome.append(isVideo ? el("video", {src: url, controls: "", loop: "", muted: "", autoplay: ""})
                           : el("img", {src: url, alt: "Result of " + typeName(body.operationType)}));
  }
  if (body.operationId) {
    const line = el("p", {}, `${typeName(body.operationType)} in ${Math.round(body.durationMs)} ms · `);
    line.append(el("a", {href: "/history/" + body.operationId}, "Open the record"));
    outcome.append(line);
  }
}

function showError(outcome, message, operationId) {
  outcome.replaceChildren(el("p", {class: "error", role: "alert"}, message));
  if (operationId) outcome.append(el("a", {href: "/history/" + operationId}, "Open the failed record"));
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
    refreshRecent();
    const record = JSON.parse(event.data).operation, output = (record.outputs || [])[0];
    if (record.status === "succeeded" && output) {
      showResult(outcome, {operationId: record.operationId, operationType: record.operationType,
                           durationMs: record.durationMs, contentType: output.contentType,
                           fileUrl: `/api/history/${record.operationId}/files/${output.file}`});
    } else showError(outcome, record.error || record.status, record.operationId);
  });
}

async function submit(event) {
  const form = event.target, outcome = form.querySelector(".outcome"), button = form.querySelector("button[type=submit]");
  event.preventDefault();
  const problem = checkImages(form);
  if (problem) { showError(outcome, problem); return; }
  button.disabled = true;
  outcome.replaceChildren(el("p", {class: "working"}, "Working…"));
  try {
    const response = await fetch(...await requestFor(form));
    const body = await response.json().catch(() => ({error: `The server answered ${response.status}.`}));
    if (response.status === 202 && body.success) follow(outcome, body);
    else if (response.ok && body.success) showResult(outcome, body);
    else showError(outcome, body.error || "It failed.", body.operationId);
  } catch (error) {
    showError(outcome, "The studio could not be reached: " + error.message);
  } finally {
    button.disabled = false;
    refreshRecent();
  }
}

// ---- Recent results ----------------------------------------------------------

const strip = document.querySelector("ul.strip");
let shownSignature = null;

function isStill(output) {
  return output && String(output.contentType).startsWith("image/") && !(output.frames > 1);
}

function tile(op) {
  const output = (op.outputs || [])[0], name = typeName(op.operationType);
  const li = el("li", {class: `mini ${op.status}`, "data-id": op.operationId});
  const link = el("a", {href: "/history/" + op.operationId});
  if (op.status === "succeeded" && output) {
    link.append(el("img", {src: `/history/${op.operationId}/thumb`, alt: "", width: 128, height: 96,
                           loading: "lazy"}));
    if (String(output.contentType).startsWith("video/") || output.frames > 1) {
      link.append(el("span", {class: "play", "aria-hidden": "true"}, "▶"));
    }
  } else {
    const percent = op.status === "running" && op.progress != null ? ` ${Math.round(op.progress * 100)}%` : "";
    link.append(el("span", {class: "placeholder"}, op.status + percent));
  }
  link.append(el("span", {class: "cap"}, name), el("span", {class: "cap-prompt"}, (op.prompt || "").trim() || "(no prompt)"));
  li.append(link);
  if (op.status === "succeeded" && isStill(output)) {
    li.append(el("button", {type: "button", class: "use", "data-ref": `op:${op.operationId}/${output.file}`,
                            "aria-label": `Use as input: ${name}, ${(op.prompt || "").slice(0, 60)}`},
                 "Use as input"));
  }
  return li;
}

function renderStrip(operations) {
  const signature = operations.map((o) => `${o.operationId}:${o.status}:${o.progress}`).join(" ");
  if (signature === shownSignature) return;
  shownSignature = signature;
  const focused = strip.contains(document.activeElement) ? document.activeElement : null;
  const focusId = focused && focused.closest("li").dataset.id, focusUse = focused && focused.matches("button");
  strip.replaceChildren(...(operations.length ? operations.map(tile)
    : [el("li", {class: "empty"}, "Nothing yet: what you make shows here.")]));
  const again = focusId && strip.querySelector(`li[data-id="${focusId}"] ${focusUse ? "button" : "a"}`);
  if (again) again.focus();
}

async function refreshRecent() {
  if (!strip) return;
  try {
    const response = await fetch(strip.dataset.source, {headers: {Accept: "application/json"}});
    if (response.ok) renderStrip((await response.json()).operations || []);
  } catch (error) {
    // The next poll tries again; the strip keeps what it shows.
  }
}

function useAsInput(button) {
  let section = shownSection(), fieldset = section.querySelector("fieldset.images");
  if (!fieldset) {
    section = choose(sections.find((s) => s.querySelector("fieldset.images")).id, {push: true});
    fieldset = section.querySelector("fieldset.images");
  }
  const ref = button.dataset.ref, [opId, file] = ref.slice(3).split("/");
  addPick(fieldset, {ref, url: `/history/${opId}/preview/${file}?w=480`, name: file},
          `${section.querySelector("h2").textContent}: `);
}

// ---- Start -----------------------------------------------------------------

for (const fieldset of document.querySelectorAll("fieldset.images")) setUpPicks(fieldset);
for (const form of document.querySelectorAll("form.op-form")) {
  form.addEventListener("submit", submit);
  form.addEventListener("keydown", (event) => {  // Ctrl+Enter in the prompt sends the form
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.matches("textarea")) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}
if (strip) {
  strip.addEventListener("click", (event) => {
    const button = event.target.closest("button.use");
    if (button) useAsInput(button);
  });
  refreshRecent();
  setInterval(() => { if (document.visibilityState === "visible") refreshRecent(); }, POLL_MS);
}
