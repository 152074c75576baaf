// The page of `restore serve`: open an image, paint the mask, restore, compare, download.
// Plain JavaScript, no build step; it talks only to this server (/api, see /api/docs).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  file: null, width: 0, height: 0, previewUrl: null,
  tool: "brush", zoom: 1, panX: 0, panY: 0, spaceDown: false,
  undo: [], redo: [], job: null, events: null,
  depth: 0,  // how deep the mask's holes are (maskChanged)
  holeDepth: Infinity,  // the depth from which a mask's holes take the hole defaults (/api/options)
};
const imageCanvas = $("image-canvas"), maskCanvas = $("mask-canvas");
const imageCtx = imageCanvas.getContext("2d");
// The mask at the image's resolution: opaque white = fill, transparent = keep.
const mask = document.createElement("canvas");
const maskCtx = mask.getContext("2d", { willReadFrequently: true });
const overlayCtx = maskCanvas.getContext("2d");
// Undo steps kept: 40, fewer for large images (each step is a copy of the mask, 4 bytes a pixel; about 256 MB in all).
const history = () => Math.min(40, Math.max(3, Math.floor(256e6 / (4 * mask.width * mask.height))));

function say(text) { $("message").textContent = text || ""; }

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

// ------------------------------------------------------------------ options and defaults

async function loadOptions() {
  const options = await api("/api/options");
  fill($("task"), options.tasks.map((t) => [t, t]));
  fill($("prior"), options.priors.map((p) => [p, p]));
  fill($("target"), options.targets.map((t) => [t, t]));
  state.methods = options.methods;
  $("scale").value = options.task_defaults.scale;
  $("kernel").value = options.task_defaults.kernel;
  state.holeDepth = options.hole_depth;
  await showDefaults();
  showTask();
}

function fill(select, pairs) {
  select.innerHTML = "";
  for (const [value, label] of pairs) select.add(new Option(label, value));
}

let defaultsAsked = 0;  // the latest request: an earlier one answering late must not overwrite it

async function showDefaults() {
  const asked = ++defaultsAsked;
  const current = $("method").value;
  const query = new URLSearchParams({ task: $("task").value, quality: $("quality").value, target: $("target").value,
    method: current, prior: $("prior").value });  // a conditional network's defaults are its own
  if ($("noise").value !== "") query.set("noise", $("noise").value);  // a mask's defaults depend on its noise
  query.set("depth", state.depth);  // and on how deep its holes are
  const chosen = await api(`/api/defaults?${query}`);
  if (asked !== defaultsAsked) return chosen;  // stale: the page shows the later answer
  const params = Object.entries(chosen.params).map(([key, value]) => `, ${key} ${value}`).join("");
  fill($("method"), [["", `default (${chosen.method}${params})`], ...state.methods.map((m) => [m, m])]);
  $("method").value = state.methods.includes(current) ? current : "";
  $("steps").placeholder = `default (${chosen.steps})`;
  const samples = $("samples");  // an estimate is one deterministic result: no samples, no spread to show
  samples.disabled = chosen.estimator;
  if (chosen.estimator) samples.value = "";
  samples.placeholder = chosen.estimator ? "1 (an estimate)" : `default (${chosen.samples})`;
  samples.title = chosen.estimator ? "this method estimates the posterior mean: one deterministic result" : "";
  const trained = chosen.trained_for;  // a conditional prior restores only what its network was trained for
  $("prior-note").hidden = !trained;
  $("prior-note").textContent = trained
    ? `${$("prior").value} restores only ${describeOperator(trained.operator)} with noise sigma ${trained.noise}` : "";
  return chosen;
}

function describeOperator({ name, ...attributes }) {
  const listed = Object.entries(attributes).map(([key, value]) => `${key} ${value}`).join(", ");
  return listed ? `${name} (${listed})` : name;
}

// Choosing a conditional prior sets the task, scale and noise to the ones its network was trained for.
async function choosePrior() {
  const trained = (await showDefaults()).trained_for;
  if (!trained) return;
  const { name, scale } = trained.operator;
  if ([...$("task").options].some((option) => option.value === name)) $("task").value = name;
  if (scale !== undefined) $("scale").value = scale;
  $("noise").value = trained.noise;
  showTask();
  await showDefaults();
}

function showTask() {
  const task = $("task").value;
  for (const element of document.querySelectorAll("[data-task]")) element.hidden = element.dataset.task !== task;
  for (const element of document.querySelectorAll("[data-not-task]")) element.hidden = element.dataset.notTask === task;
  drawOverlay();
}

// ------------------------------------------------------------------ the image

async function openImage(file) {
  say("");
  const form = new FormData();
  form.append("image", file);
  let info;
  try { info = await api("/api/preview", { method: "POST", body: form }); } catch (error) { say(error.message); return; }
  const picture = await loadImage(info.png);
  state.file = file;
  state.width = info.width;
  state.height = info.height;
  state.previewUrl = info.png;
  for (const canvas of [imageCanvas, maskCanvas, mask]) { canvas.width = info.width; canvas.height = info.height; }
  imageCtx.drawImage(picture, 0, 0);
  state.undo = []; state.redo = [];
  $("image-info").textContent = `${file.name}: ${info.width} x ${info.height}, ${info.channels} channel(s), ${info.bits}-bit`;
  $("drop-hint").hidden = true;
  $("restore").disabled = false;
  $("result").hidden = true;
  fit();
  drawOverlay();
  maskChanged();  // a new image starts with an empty mask
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("the browser could not show this preview"));
    image.src = url;
  });
}

async function openMask(file) {
  if (!state.file) { say("open an image first"); return; }
  const form = new FormData();
  form.append("image", file);
  let info;
  try { info = await api("/api/preview", { method: "POST", body: form }); } catch (error) { say(error.message); return; }
  if (info.width !== state.width || info.height !== state.height) {
    say(`the mask is ${info.width} x ${info.height}, the image ${state.width} x ${state.height}`);
    return;
  }
  const picture = await loadImage(info.png);
  const scratch = document.createElement("canvas");
  scratch.width = info.width; scratch.height = info.height;
  const ctx = scratch.getContext("2d");
  ctx.drawImage(picture, 0, 0);
  const pixels = ctx.getImageData(0, 0, info.width, info.height);
  const data = pixels.data;
  for (let i = 0; i < data.length; i += 4) {  // white (luma >= 0.5) = fill, as on the command line
    const fillHere = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2] >= 127.5;
    data[i] = data[i + 1] = data[i + 2] = 255;
    data[i + 3] = fillHere ? 255 : 0;
  }
  remember();
  maskCtx.putImageData(pixels, 0, 0);
  drawOverlay();
  maskChanged();
}

// ------------------------------------------------------------------ painting

function remember() {
  state.undo.push(maskCtx.getImageData(0, 0, mask.width, mask.height));
  while (state.undo.length > history()) state.undo.shift();
  state.redo = [];
}

function restoreFrom(from, to) {
  if (!from.length) return;
  to.push(maskCtx.getImageData(0, 0, mask.width, mask.height));
  maskCtx.putImageData(from.pop(), 0, 0);
  drawOverlay();
  maskChanged();
}

// A mask's defaults depend on whether its holes are deep (restore.strategies.catalog.mask_kind):
// asked again when a change of the painted mask crosses that line, not after every stroke.
function maskChanged() {
  const alpha = maskCtx.getImageData(0, 0, mask.width, mask.height).data;
  const wasHole = state.depth >= state.holeDepth;
  state.depth = maskDepth(alpha, mask.width, mask.height);
  if ((state.depth >= state.holeDepth) !== wasHole) showDefaults();
}

// restore.strategies.catalog.hole_depth of the mask whose alpha (RGBA bytes) is >= 128 where it
// fills: the mean, over the filled pixels, of the chessboard distance to the nearest kept pixel
// (exact in two raster passes, each pixel taking the least of its scanned neighbours' + 1).
function maskDepth(alpha, width, height) {
  const far = width + height;  // beyond any distance inside the image
  const distance = new Int32Array(width * height);
  let hidden = 0;
  for (let i = 0; i < distance.length; i++) {
    const fill = alpha[4 * i + 3] >= 128;  // as the server reads it
    distance[i] = fill ? far : 0;
    hidden += fill;
  }
  if (hidden === 0) return 0;
  if (hidden === distance.length) return Math.max(width, height);  // nothing kept
  const at = (y, x) => (y >= 0 && y < height && x >= 0 && x < width ? distance[y * width + x] : far);
  for (let y = 0; y < height; y++) {  // from the kept pixels above and to the left
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (distance[i] > 0) distance[i] = Math.min(distance[i], at(y, x - 1) + 1, at(y - 1, x - 1) + 1, at(y - 1, x) + 1, at(y - 1, x + 1) + 1);
    }
  }
  for (let y = height - 1; y >= 0; y--) {  // and from those below and to the right
    for (let x = width - 1; x >= 0; x--) {
      const i = y * width + x;
      if (distance[i] > 0) distance[i] = Math.min(distance[i], at(y, x + 1) + 1, at(y + 1, x + 1) + 1, at(y + 1, x) + 1, at(y + 1, x - 1) + 1);
    }
  }
  let total = 0;
  for (let i = 0; i < distance.length; i++) if (alpha[4 * i + 3] >= 128) total += distance[i];
  return total / hidden;
}

function drawOverlay(rect) {
  overlayCtx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
  if ($("task").value !== "inpaint") return;
  overlayCtx.globalCompositeOperation = "source-over";
  overlayCtx.drawImage(mask, 0, 0);
  overlayCtx.globalCompositeOperation = "source-in";  // tint the painted region
  overlayCtx.fillStyle = "#ff2d55";
  overlayCtx.fillRect(0, 0, maskCanvas.width, maskCanvas.height);
  overlayCtx.globalCompositeOperation = "source-over";
  if (rect) {
    overlayCtx.strokeStyle = "#ffd60a";
    overlayCtx.lineWidth = Math.max(1, 2 / state.zoom);
    overlayCtx.strokeRect(rect.x, rect.y, rect.w, rect.h);
  }
}

function imagePoint(event) {
  const box = maskCanvas.getBoundingClientRect();
  return { x: (event.clientX - box.left) * (mask.width / box.width), y: (event.clientY - box.top) * (mask.height / box.height) };
}

function stroke(from, to) {
  maskCtx.globalCompositeOperation = state.tool === "eraser" ? "destination-out" : "source-over";
  maskCtx.strokeStyle = maskCtx.fillStyle = "#fff";
  maskCtx.lineWidth = Number($("brush-size").value);
  maskCtx.lineCap = maskCtx.lineJoin = "round";
  maskCtx.beginPath();
  maskCtx.moveTo(from.x, from.y);
  maskCtx.lineTo(to.x + 0.01, to.y);
  maskCtx.stroke();
  maskCtx.globalCompositeOperation = "source-over";
}

function rectangle(a, b) {
  return { x: Math.min(a.x, b.x), y: Math.min(a.y, b.y), w: Math.abs(a.x - b.x), h: Math.abs(a.y - b.y) };
}

let drag = null;
maskCanvas.addEventListener("pointerdown", (event) => {
  if (!state.file) return;
  maskCanvas.setPointerCapture(event.pointerId);
  const panning = state.tool === "pan" || state.spaceDown || event.button === 1;
  const point = imagePoint(event);
  drag = { panning, start: point, last: point, client: { x: event.clientX, y: event.clientY } };
  if (panning || $("task").value !== "inpaint") { drag.panning = true; return; }
  remember();
  if (state.tool !== "rect") { stroke(point, point); drawOverlay(); }
});
maskCanvas.addEventListener("pointermove", (event) => {
  if (!drag) return;
  if (drag.panning) {
    state.panX += event.clientX - drag.client.x;
    state.panY += event.clientY - drag.client.y;
    drag.client = { x: event.clientX, y: event.clientY };
    place();
    return;
  }
  const point = imagePoint(event);
  if (state.tool === "rect") { drawOverlay(rectangle(drag.start, point)); return; }
  stroke(drag.last, point);
  drag.last = point;
  drawOverlay();
});
maskCanvas.addEventListener("pointerup", (event) => {
  if (drag && !drag.panning && state.tool === "rect") {
    const r = rectangle(drag.start, imagePoint(event));
    maskCtx.fillStyle = "#fff";
    maskCtx.fillRect(r.x, r.y, r.w, r.h);
    drawOverlay();
  }
  if (drag && !drag.panning) maskChanged();
  drag = null;
});

// ------------------------------------------------------------------ zoom and pan

function place() {
  $("stage").style.transform = `translate(${state.panX}px, ${state.panY}px) scale(${state.zoom})`;
  $("zoom-level").textContent = `${Math.round(state.zoom * 100)}%`;
}

function zoomAt(factor, cx, cy) {
  const zoom = Math.min(32, Math.max(0.02, state.zoom * factor));
  state.panX = cx - (cx - state.panX) * (zoom / state.zoom);
  state.panY = cy - (cy - state.panY) * (zoom / state.zoom);
  state.zoom = zoom;
  place();
}

function fit() {
  const view = $("viewport").getBoundingClientRect();
  if (!state.width) return;
  state.zoom = Math.min(view.width / state.width, view.height / state.height);
  state.panX = (view.width - state.width * state.zoom) / 2;
  state.panY = (view.height - state.height * state.zoom) / 2;
  place();
}

function centre() {
  const view = $("viewport").getBoundingClientRect();
  return [view.width / 2, view.height / 2];
}

$("viewport").addEventListener("wheel", (event) => {
  if (!state.file) return;
  event.preventDefault();
  const view = $("viewport").getBoundingClientRect();
  zoomAt(event.deltaY < 0 ? 1.15 : 1 / 1.15, event.clientX - view.left, event.clientY - view.top);
}, { passive: false });

// ------------------------------------------------------------------ restoring

function maskBlob() {
  const out = document.createElement("canvas");
  out.width = mask.width; out.height = mask.height;
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(mask, 0, 0);  // white where painted
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

async function submit() {
  say("");
  const form = new FormData();
  const task = $("task").value;
  form.append("image", state.file, state.file.name);
  if (task === "inpaint") form.append("mask", await maskBlob(), "mask.png");
  const truth = $("truth-file").files[0];
  if (truth) form.append("truth", truth, truth.name);
  const fields = { task, prior: $("prior").value, target: $("target").value, quality: $("quality").value,
    method: $("method").value,
    steps: $("steps").value, samples: $("samples").value, seed: $("seed").value };
  if (task !== "denoise") fields.noise = $("noise").value;
  if (task === "sr") fields.scale = $("scale").value;
  if (task === "deblur") fields.kernel = $("kernel").value;
  if (task === "denoise") fields.sigma = $("sigma").value;
  if (task === "inpaint") fields.crop_to_mask = $("crop").value;
  for (const [key, value] of Object.entries(fields)) if (value !== "") form.append(key, value);
  let job;
  try { job = await api("/api/jobs", { method: "POST", body: form }); } catch (error) { say(error.message); return; }
  state.job = job.id;
  state.submitted = performance.now();
  document.body.dataset.job = job.id;
  document.body.dataset.state = job.state;
  $("restore").disabled = true;
  $("cancel").disabled = false;
  $("result").hidden = true;
  $("live").hidden = true;
  $("bar").value = 0;
  $("progress-text").textContent = `queued (seed ${job.seed})`;
  follow(job.id);
}

function follow(id) {
  if (state.events) state.events.close();
  const events = new EventSource(`/api/jobs/${id}/events`);
  state.events = events;
  events.onmessage = (message) => {
    const job = JSON.parse(message.data);
    document.body.dataset.state = job.state;
    const p = job.progress;
    if (p.total) {
      $("bar").value = p.step / p.total;
      const eta = p.eta == null ? "" : ` · ETA ${p.eta.toFixed(1)} s`;
      const run = p.run > 1 ? ` · box ${p.run}` : "";
      $("progress-text").textContent = `step ${p.step} / ${p.total} · NFE ${p.nfe} · ${p.elapsed.toFixed(1)} s${eta}${run}`;
    } else if (job.state === "running") {
      $("progress-text").textContent = "starting";
    }
    if (job.preview) { $("preview").src = job.preview; $("live").hidden = false; }
    if (["done", "failed", "cancelled"].includes(job.state)) {
      events.close();
      finish(job);
    }
  };
}

async function finish(job) {
  $("restore").disabled = false;
  $("cancel").disabled = true;
  if (job.state === "failed") { say(job.error); $("progress-text").textContent = "failed"; return; }
  if (job.state === "cancelled") { $("progress-text").textContent = "cancelled"; return; }
  const seconds = (performance.now() - state.submitted) / 1000;
  $("progress-text").textContent = `done in ${seconds.toFixed(1)} s (seed ${job.seed})`;
  $("before").src = state.previewUrl;
  $("after").src = job.display;
  $("download-image").href = job.result;
  $("download-image").download = job.filename;
  $("download-record").href = job.record;
  $("download-record").download = job.filename.replace(/\.[^.]+$/, "") + ".json";
  const m = job.metrics;
  $("metrics").textContent = !m ? "" : m.error ? m.error : `PSNR ${m.psnr.toFixed(2)} dB · SSIM ${m.ssim.toFixed(4)}`;
  $("std-box").hidden = !job.std;
  if (job.std) $("std").src = job.std;
  $("result-info").textContent = `seed ${job.seed}`;
  $("live").hidden = true;
  $("result").hidden = false;
  await new Promise((resolve) => { if ($("after").complete) resolve(); else $("after").onload = $("after").onerror = resolve; });
  document.body.dataset.state = "shown";
  $("result").scrollIntoView({ block: "nearest" });
}

// ------------------------------------------------------------------ wiring

$("image-file").addEventListener("change", (event) => event.target.files[0] && openImage(event.target.files[0]));
$("mask-file").addEventListener("change", (event) => event.target.files[0] && openMask(event.target.files[0]));
$("task").addEventListener("change", async () => { showTask(); await showDefaults(); });
$("prior").addEventListener("change", choosePrior);
$("quality").addEventListener("change", showDefaults);
$("target").addEventListener("change", showDefaults);
$("method").addEventListener("change", showDefaults);
$("noise").addEventListener("change", showDefaults);
$("restore").addEventListener("click", submit);
$("cancel").addEventListener("click", () => state.job && api(`/api/jobs/${state.job}/cancel`, { method: "POST" }).catch((e) => say(e.message)));
$("undo").addEventListener("click", () => restoreFrom(state.undo, state.redo));
$("redo").addEventListener("click", () => restoreFrom(state.redo, state.undo));
$("clear").addEventListener("click", () => {
  remember(); maskCtx.clearRect(0, 0, mask.width, mask.height); drawOverlay(); maskChanged();
});
$("zoom-in").addEventListener("click", () => zoomAt(1.25, ...centre()));
$("zoom-out").addEventListener("click", () => zoomAt(1 / 1.25, ...centre()));
$("zoom-fit").addEventListener("click", fit);
$("split").addEventListener("input", (event) => split(event.target.value));

function split(percent) {
  $("after").style.clipPath = `inset(0 0 0 ${percent}%)`;
  $("split-line").style.left = `${percent}%`;
}
for (const button of document.querySelectorAll("[data-tool]")) {
  button.addEventListener("click", () => selectTool(button.dataset.tool));
}

function selectTool(tool) {
  state.tool = tool;
  for (const b of document.querySelectorAll("[data-tool]")) b.classList.toggle("active", b.dataset.tool === tool);
  $("viewport").classList.toggle("panning", tool === "pan");
}

document.addEventListener("keydown", (event) => {
  if (event.target.matches("input, select")) return;
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && key === "z") { event.preventDefault(); restoreFrom(state.undo, state.redo); }
  else if ((event.ctrlKey || event.metaKey) && key === "y") { event.preventDefault(); restoreFrom(state.redo, state.undo); }
  else if (key === " ") { state.spaceDown = true; $("viewport").classList.add("panning"); event.preventDefault(); }
  else if (key === "b") selectTool("brush");
  else if (key === "e") selectTool("eraser");
  else if (key === "r") selectTool("rect");
  else if (key === "h") selectTool("pan");
  else if (key === "+" || key === "=") zoomAt(1.25, ...centre());
  else if (key === "-") zoomAt(1 / 1.25, ...centre());
});
document.addEventListener("keyup", (event) => {
  if (event.key === " ") { state.spaceDown = false; $("viewport").classList.toggle("panning", state.tool === "pan"); }
});

for (const name of ["dragenter", "dragover"]) {
  document.addEventListener(name, (event) => { event.preventDefault(); $("viewport").classList.add("drag"); });
}
for (const name of ["dragleave", "drop"]) {
  document.addEventListener(name, (event) => { event.preventDefault(); $("viewport").classList.remove("drag"); });
}
document.addEventListener("drop", (event) => {
  const file = event.dataTransfer.files[0];
  if (file) openImage(file);
});
window.addEventListener("resize", () => state.file && fit());

loadOptions().catch((error) => say(error.message));
