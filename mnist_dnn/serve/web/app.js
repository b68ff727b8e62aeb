// mnist-dnn serve: the page. Plain JavaScript, no build step; every number shown comes from the server.
"use strict";

const STROKE_WIDTH = 20; // px on the 280 px pad: about 2 px at 28x28, as MNIST's pen strokes
const DEBOUNCE_MS = 80; // live updates wait this long after the last pointer move

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const ctx = pad.getContext("2d");
const strokes = []; // each a list of [x, y] in pad pixels; undo drops the last
let current = null;
let timer = null;
let inFlight = false;
let again = false;
let runs = [];
let notice = ""; // shown under the bars while the pad is empty (after a save)
let version = 0; // of the drawing; a reading is shown only for the version it was made from

// --- talking to the server ---------------------------------------------------------------------

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const isJson = (response.headers.get("content-type") || "").includes("application/json");
  const body = isJson ? await response.json() : null;
  if (!response.ok) {
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function say(text) {
  $("message").textContent = text || "";
}

function padPng() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

// --- drawing ------------------------------------------------------------------------------------

function paint() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
  ctx.lineWidth = STROKE_WIDTH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const points of strokes) {
    if (points.length === 1) {
      ctx.beginPath();
      ctx.arc(points[0][0], points[0][1], STROKE_WIDTH / 2, 0, 2 * Math.PI);
      ctx.fill();
      continue;
    }
    ctx.beginPath();
    ctx.moveTo(points[0][0], points[0][1]);
    for (const [x, y] of points.slice(1)) ctx.lineTo(x, y);
    ctx.stroke();
  }
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [((event.clientX - box.left) * pad.width) / box.width, ((event.clientY - box.top) * pad.height) / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  pad.setPointerCapture(event.pointerId);
  notice = "";
  current = [padPoint(event)];
  strokes.push(current);
  paint();
  schedule();
});
pad.addEventListener("pointermove", (event) => {
  if (!current) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) current.push(padPoint(e));
  paint();
  schedule();
});
for (const name of ["pointerup", "pointercancel"]) {
  pad.addEventListener(name, () => {
    current = null;
    schedule();
  });
}
$("undo").addEventListener("click", () => {
  strokes.pop();
  paint();
  schedule();
});
$("clear").addEventListener("click", () => {
  strokes.length = 0;
  paint();
  schedule();
});

// --- live reading -------------------------------------------------------------------------------

function schedule() {
  version += 1;
  pad.dataset.version = String(version);
  clearTimeout(timer);
  timer = setTimeout(update, DEBOUNCE_MS);
}

async function update() {
  if (inFlight) {
    again = true; // one request at a time; the newest drawing is sent when it returns
    return;
  }
  const sent = version;
  if (!strokes.length) {
    showReading(null, sent);
    return;
  }
  const run = $("model").value;
  if (!run) {
    showGrid(null);
    say("No usable run to read the drawing: train one with 'mnist-dnn train'.");
    return;
  }
  inFlight = true;
  try {
    const result = await api(`/api/predict?run=${encodeURIComponent(run)}`, {
      method: "POST",
      headers: { "Content-Type": "image/png" },
      body: await padPng(),
    });
    if (sent === version) {
      showReading(result.empty ? null : result, sent);
      say("");
    } else {
      again = true; // the drawing changed while it was read: read the new one
    }
  } catch (error) {
    showReading(null, sent);
    say(error.message);
  } finally {
    inFlight = false;
    if (again) {
      again = false;
      update();
    }
  }
}

function showGrid(grid) {
  const preview = $("preview").getContext("2d");
  const image = preview.createImageData(28, 28);
  for (let i = 0; i < 28 * 28; i++) {
    const shade = grid ? 255 - grid[i] : 255; // 255 = ink, shown dark as the paper's figure 8
    image.data.set([shade, shade, shade, 255], i * 4);
  }
  preview.putImageData(image, 0, 0);
}

function buildBars() {
  const bars = $("bars");
  for (let d = 0; d < 10; d++) {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.digit = String(d);
    bar.innerHTML = `<span class="p"></span><div class="fill"></div><span class="d">${d}</span>`;
    bars.appendChild(bar);
  }
}

function showReading(result, shown) {
  pad.dataset.shown = String(shown ?? version); // tests wait for data-shown == data-version
  showGrid(result && result.grid);
  const probabilities = result ? result.probabilities : new Array(10).fill(0);
  document.querySelectorAll("#bars .bar").forEach((bar, d) => {
    const p = probabilities[d];
    bar.dataset.p = p.toFixed(4);
    bar.classList.toggle("top", Boolean(result) && d === result.predicted);
    bar.querySelector(".fill").style.height = `${(p * 100).toFixed(1)}%`;
    bar.querySelector(".p").textContent = result ? `${Math.round(p * 100)}%` : "";
  });
  $("predicted").textContent = result ? String(result.predicted) : strokes.length ? "…" : "–";
  $("latency").textContent = result
    ? `digitized and read in ${result.ms.toFixed(0)} ms by ${result.run}`
    : strokes.length ? "" : notice || "Draw a digit: the model reads it as you draw.";
}

// --- keeping ------------------------------------------------------------------------------------

function buildSaveButtons() {
  for (let d = 0; d < 10; d++) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = String(d);
    button.title = `Save the drawing as a ${d}`;
    button.dataset.label = String(d);
    button.addEventListener("click", () => save(d));
    $("save-buttons").appendChild(button);
  }
}

async function save(label) {
  if (!strokes.length) {
    say("Draw a digit before saving it.");
    return;
  }
  try {
    const result = await api(`/api/digits?label=${label}`, {
      method: "POST",
      headers: { "Content-Type": "image/png" },
      body: await padPng(),
    });
    say("");
    notice = `Saved ${result.saved} as a ${label}.`;
    strokes.length = 0;
    paint();
    schedule();
    $("latency").textContent = `Saved ${result.saved} as a ${label}.`;
  } catch (error) {
    say(error.message);
  }
}

function thumbnail(pixels, className) {
  const canvas = document.createElement("canvas");
  canvas.width = 28;
  canvas.height = 28;
  if (className) canvas.className = className;
  if (pixels) {
    const context = canvas.getContext("2d");
    const image = context.createImageData(28, 28);
    pixels.forEach((v, i) => image.data.set([255 - v, 255 - v, 255 - v, 255], i * 4));
    context.putImageData(image, 0, 0);
  }
  return canvas;
}

async function showKeep() {
  const state = await api("/api/digits");
  $("digits-dir").textContent = state.directory;
  const warning = $("keep-warning");
  const unlisted = Object.keys(state.unlisted);
  if (state.problem) {
    warning.textContent = `Saving is off: ${state.problem}`;
  } else if (unlisted.length) {
    warning.textContent =
      `${unlisted.length} CSV file(s) here are not in labels.csv (${unlisted.join(", ")}). ` +
      "The next save lists them with the digit their name starts with.";
  }
  warning.hidden = !(state.problem || unlisted.length);
  const thumbs = $("thumbs");
  thumbs.replaceChildren();
  if (!state.digits.length) thumbs.textContent = "No digits saved yet: draw one and press a digit under 'Save as'.";
  for (const digit of state.digits) {
    const box = document.createElement("div");
    box.className = digit.error ? "thumb broken" : "thumb";
    box.dataset.file = digit.file;
    box.title = digit.error || digit.file;
    box.append(thumbnail(digit.pixels));
    box.insertAdjacentHTML("beforeend", `<div class="label">${digit.label}</div><div class="file"></div>`);
    box.querySelector(".file").textContent = digit.file;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = digit.missing ? "Remove row" : "Delete";
    remove.addEventListener("click", async () => {
      try {
        await api(`/api/digits?file=${encodeURIComponent(digit.file)}`, { method: "DELETE" });
        showKeep();
      } catch (error) {
        say(error.message);
      }
    });
    box.append(remove);
    thumbs.append(box);
  }
}

// --- scoring ------------------------------------------------------------------------------------

async function showScore() {
  const [table, kept] = await Promise.all([api("/api/score"), api("/api/digits")]);
  const pixels = Object.fromEntries(kept.digits.map((d) => [d.file, d.pixels]));
  const element = $("score-table");
  element.replaceChildren();
  $("score-warning").hidden = !table.problem;
  $("score-warning").textContent = table.problem || "";
  if (!table.digits.length || !table.runs.length) {
    element.innerHTML = `<tr><td>${!table.digits.length ? "No digits saved yet." : "No complete runs to score."}</td></tr>`;
    $("most-missed").replaceChildren();
    return;
  }
  const head = element.insertRow();
  head.insertAdjacentHTML("beforeend", '<th class="name">run</th>');
  for (const digit of table.digits) {
    const th = document.createElement("th");
    th.append(thumbnail(pixels[digit.file]));
    th.append(String(digit.label));
    th.title = digit.file;
    head.append(th);
  }
  head.insertAdjacentHTML("beforeend", "<th>accuracy</th>");
  for (const row of table.runs) {
    const tr = element.insertRow();
    const name = tr.insertCell();
    name.className = "name";
    name.textContent = row.run;
    if (row.error) {
      const cell = tr.insertCell();
      cell.colSpan = table.digits.length + 1;
      cell.textContent = `unusable: ${row.error}`;
      continue;
    }
    row.predicted.forEach((p, k) => {
      const cell = tr.insertCell();
      cell.className = row.correct[k] ? "right" : "wrong";
      cell.textContent = String(p);
    });
    tr.insertCell().textContent = `${(row.accuracy * 100).toFixed(0)}%`;
  }
  const list = $("most-missed");
  list.replaceChildren();
  for (const miss of table.most_missed) {
    const item = document.createElement("li");
    const readAs = Object.entries(miss.read_as).map(([d, n]) => `${d} (${n}×)`).join(", ");
    item.textContent = `${miss.file} (a ${miss.label}): missed by ${miss.missed_by} of ${miss.of} models, read as ${readAs}`;
    list.append(item);
  }
  if (!table.most_missed.length) list.innerHTML = "<li>Every model read every digit right.</li>";
}

// --- runs ---------------------------------------------------------------------------------------

async function loadRuns() {
  const listing = await api("/api/runs");
  runs = listing.runs;
  $("runs-dir").textContent = listing.runs_dir;
  const select = $("model");
  const chosen = select.value || listing.default;
  select.replaceChildren();
  for (const run of runs.filter((r) => r.has_model)) {
    const option = document.createElement("option");
    option.value = run.name;
    const accuracy = run.test_accuracy == null ? "" : ` · test ${(run.test_accuracy * 100).toFixed(2)}%`;
    const kept =
      run.kept_accuracy == null ? "" : ` · your ${listing.kept_digits} digits ${(run.kept_accuracy * 100).toFixed(1)}%`;
    const kind = run.kind ? ` · ${run.kind}` : "";
    option.textContent = `${run.name}${kind}${kept}${accuracy} · ${run.date.slice(0, 10)}`;
    if (!run.usable) {
      option.disabled = true;
      option.textContent += ` (unusable: ${run.problem || run.status})`;
    }
    select.append(option);
  }
  if (chosen) select.value = chosen;
  if (!runs.some((r) => r.usable)) say(`No complete run under ${listing.runs_dir}: train one with 'mnist-dnn train'.`);
}

function showRuns() {
  const table = $("runs-table");
  table.replaceChildren();
  const head = table.insertRow();
  for (const title of ["", "run", "status", "date (UTC)", "test accuracy", "epochs", "differs from the paper"]) {
    head.insertAdjacentHTML("beforeend", `<th class="${title === "run" ? "name" : ""}">${title}</th>`);
  }
  for (const run of runs) {
    const tr = table.insertRow();
    tr.className = "clickable";
    tr.dataset.run = run.name;
    const tick = document.createElement("input");
    tick.type = "checkbox";
    tick.value = run.name;
    tick.addEventListener("click", (event) => event.stopPropagation());
    tr.insertCell().append(tick);
    const cells = [
      run.name,
      run.problem ? `${run.status}: ${run.problem}` : run.status,
      run.date.replace("T", " ").slice(0, 16),
      run.test_accuracy == null ? "" : `${(run.test_accuracy * 100).toFixed(2)}%`,
      run.epochs == null ? "" : String(run.epochs),
      Object.entries(run.differences).map(([k, v]) => `${k}=${v}`).join(", ") || "(the paper's settings)",
    ];
    cells.forEach((text, k) => {
      const cell = tr.insertCell();
      cell.textContent = text;
      if (k === 0) cell.className = "name";
      if (k === 5) cell.className = "diff";
    });
    tr.addEventListener("click", () => showFigure([run.name], `Figure 6 of ${run.name}`));
  }
}

function showFigure(names, caption) {
  const query = names.map((n) => `run=${encodeURIComponent(n)}`).join("&");
  const img = $("figure-img");
  img.onerror = async () => {
    const response = await fetch(`/api/runs/figure?${query}`);
    say((await response.json()).error);
    $("figure").hidden = true;
  };
  img.src = `/api/runs/figure?${query}`;
  $("figure-caption").textContent = caption;
  $("figure").hidden = false;
}

$("overlay").addEventListener("click", () => {
  const ticked = [...document.querySelectorAll("#runs-table input:checked")].map((box) => box.value);
  if (ticked.length < 2) {
    say("Tick two or more runs to overlay their curves.");
    return;
  }
  say("");
  showFigure(ticked, `Accuracy and loss of ${ticked.join(", ")}`);
});

$("model").addEventListener("change", () => update());

// --- pages --------------------------------------------------------------------------------------

async function showPage() {
  const page = (location.hash || "#draw").slice(1);
  document.querySelectorAll(".page").forEach((s) => s.classList.toggle("active", s.id === page));
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  say("");
  try {
    if (page === "keep") await showKeep();
    if (page === "score") await showScore();
    if (page === "runs") {
      await loadRuns();
      showRuns();
    }
  } catch (error) {
    say(error.message);
  }
}

window.addEventListener("hashchange", showPage);
buildBars();
buildSaveButtons();
paint();
showReading(null);
showPage()
  .then(loadRuns)
  .catch((error) => say(error.message));
