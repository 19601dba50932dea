// difflab studio: one script for every page (body[data-page]); the server does the work, this only asks and shows.
"use strict";
const $ = (id) => document.getElementById(id);
const page = document.body.dataset.page;
let RUNS = [], OPTIONS = {};

async function api(url, init) {
  const r = await fetch(url, init);
  const body = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(body.error || `${r.status}`);
  return body;
}
function showError(e, where) { (where || $("error")).textContent = e ? (e.message || String(e)) : ""; }
function fill(select, values, labels) {
  select.innerHTML = "";
  values.forEach((v, k) => { const o = document.createElement("option"); o.value = v; o.textContent = labels ? labels[k] : v; select.appendChild(o); });
}
const runById = (id) => RUNS.find((r) => r.id === id);
const query = (name) => new URLSearchParams(location.search).get(name);

async function loadRuns(select) {
  RUNS = (await api("/api/runs")).runs;
  OPTIONS = await api("/api/options");
  if (select) {
    fill(select, RUNS.map((r) => r.id));
    if (query("run") && runById(query("run"))) select.value = query("run");
  }
}

// A job: POST, then follow its server-sent events until it ends. ui: {progress, state, onStep, onDone, cancel}
function follow(jobId, ui) {
  const source = new EventSource(`/api/jobs/${jobId}/events`);
  let steps = 1;
  if (ui.cancel) { ui.cancel.disabled = false; ui.cancel.onclick = () => api(`/api/jobs/${jobId}/cancel`, { method: "POST" }); }
  return new Promise((resolve) => {
    source.onmessage = (m) => {
      const e = JSON.parse(m.data);
      if (e.type === "plan") { steps = e.steps || ui.steps || 1; if (ui.onPlan) ui.onPlan(e); if (ui.state) ui.state.textContent = "running"; }
      else if (e.type === "step") {
        if (ui.progress) { ui.progress.max = e.of || steps; ui.progress.value = e.i; }
        if (ui.state) ui.state.textContent = `step ${e.i} / ${e.of || steps}`;
        if (ui.onStep) ui.onStep(e);
      } else if (["done", "failed", "cancelled"].includes(e.type)) {
        source.close();
        if (ui.cancel) ui.cancel.disabled = true;
        if (ui.state) ui.state.textContent = e.type;
        if (e.type === "failed") showError(new Error(e.error), ui.error);
        if (e.type === "done" && ui.onDone) ui.onDone(e.result, jobId);
        resolve(e);
      }
    };
    source.onerror = () => { if (ui.state) ui.state.textContent = "connection lost"; };
  });
}
function downloads(box, jobId, files) {
  box.innerHTML = files.map((f) => `<a href="/api/jobs/${jobId}/files/${f}" download>${f}</a>`).join(" · ");
}

// -- index -----------------------------------------------------------------------------------------------------
async function indexPage() {
  await loadRuns();
  const body = document.querySelector("#runs tbody");
  body.innerHTML = RUNS.map((r) => `<tr><td><a href="/run/${r.id}">${r.id}</a></td><td>${r.data}</td><td>${r.step}</td>
    <td>${r.images}</td><td>${r.schedule}</td><td>${r.parameterization}</td>
    <td>${r.classes.length ? r.classes.length + " classes" : r.text ? "text" : r.latent ? "latent" : "-"}</td></tr>`).join("");
  if (!RUNS.length) showError(new Error("no diffusion runs found: start the studio with --run FOLDER"));
}

// -- sample ----------------------------------------------------------------------------------------------------
function sampleForm() {
  const run = runById($("run").value) || {};
  $("class-box").style.display = run.classes && run.classes.length ? "" : "none";
  $("prompt-box").style.display = run.text ? "" : "none";
  $("guidance-box").style.display = (run.classes && run.classes.length) || run.text ? "" : "none";
  fill($("classes"), ["", ...(run.classes || [])], ["(cycle through all)", ...(run.classes || [])]);
}
async function samplePage() {
  await loadRuns($("run"));
  fill($("sampler"), OPTIONS.samplers); fill($("grid"), OPTIONS.grids);
  $("run").onchange = sampleForm; sampleForm();
  $("go").onclick = async () => {
    showError(null); $("result").removeAttribute("src"); $("downloads").innerHTML = "";
    const body = { run: $("run").value, sampler: $("sampler").value, nfe: +$("nfe").value, grid: $("grid").value,
      num: +$("num").value, seed: +$("seed").value, guidance: +$("guidance").value || 0 };
    if ($("classes").value) body.classes = [$("classes").value];
    if ($("prompt").value) body.prompt = $("prompt").value;
    try {
      const { job } = await api("/api/sample", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      $("state").textContent = "queued";
      await follow(job, { progress: $("progress"), state: $("state"), cancel: $("cancel"),
        onPlan: (e) => { $("plan").textContent = `${e.sampler} on the ${e.grid} grid, ${e.nfe} NFE, ~${e.seconds} s`; },
        onStep: (e) => { $("xt").src = e.xt; $("x0").src = e.x0; },
        onDone: (r, id) => { $("result").src = r.grid; $("result").dataset.shape = r.shape.join(","); downloads($("downloads"), id, r.files); } });
    } catch (e) { showError(e); }
  };
}

// -- compare ---------------------------------------------------------------------------------------------------
async function comparePage() {
  await loadRuns($("run"));
  document.querySelectorAll(".sampler").forEach((s) => fill(s, OPTIONS.samplers));
  $("go").onclick = async () => {
    showError(null);
    const sides = [...document.querySelectorAll("[data-side]")];
    try {
      const jobs = await Promise.all(sides.map((side) => api("/api/sample", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ run: $("run").value, seed: +$("seed").value, num: +$("num").value,
          sampler: side.querySelector(".sampler").value, nfe: +side.querySelector(".nfe").value }) })));
      await Promise.all(jobs.map(({ job }, k) => follow(job, { progress: sides[k].querySelector("progress"), state: sides[k].querySelector(".state"),
        onPlan: (e) => { sides[k].querySelector(".plan").textContent = `${e.sampler}, ${e.grid} grid, ${e.nfe} NFE`; },
        onDone: (r) => { sides[k].querySelector(".result").src = r.grid; } })));
    } catch (e) { showError(e); }
  };
}

// -- restore / edit --------------------------------------------------------------------------------------------
const SCALE = 8;
let drawn = false;
async function restoreImage() {
  const run = runById($("run").value); if (!run) return;
  const canvas = $("canvas"), ctx = canvas.getContext("2d");
  try {
    const t = await api(`/api/runs/${run.id}/test-image?index=${+$("index").value}`);
    const [, h, w] = t.shape;
    canvas.width = w * SCALE; canvas.height = h * SCALE;
    const img = new Image();
    img.onload = () => { ctx.imageSmoothingEnabled = false; ctx.drawImage(img, 0, 0, canvas.width, canvas.height); };
    img.src = t.image; canvas.dataset.base = t.image; drawn = false;
  } catch (e) { showError(e); }
}
function restoreHint() {
  const task = $("task").value;
  $("hint").textContent = task === "inpaint" ? "inpaint: paint the pixels to fill in (white)" :
    task === "edit" ? "edit: draw strokes (white ink); SDEdit makes them plausible" : `${task}: the operator degrades the image shown`;
}
function drawing(canvas) {
  // two layers: what is shown (image + paint) and the paint alone (the mask / strokes sent to the server)
  const paint = document.createElement("canvas"); canvas.paint = paint;
  let last = null;  // the previous point of the stroke: segments join them, however fast the pointer moves
  const at = (ev) => { const r = canvas.getBoundingClientRect(); return [(ev.clientX - r.left) * canvas.width / r.width, (ev.clientY - r.top) * canvas.height / r.height]; };
  const stroke = (ev) => {
    const [x, y] = at(ev), [x0, y0] = last || [x, y];
    for (const c of [canvas, paint]) {
      const g = c.getContext("2d");
      g.strokeStyle = "#fff"; g.lineWidth = 3 * SCALE; g.lineCap = "round";
      g.beginPath(); g.moveTo(x0, y0); g.lineTo(x, y); g.stroke();
    }
    last = [x, y]; drawn = true;
  };
  canvas.addEventListener("pointerdown", (ev) => { if (paint.width !== canvas.width) { paint.width = canvas.width; paint.height = canvas.height; } last = null; stroke(ev); });
  canvas.addEventListener("pointermove", (ev) => { if (last) stroke(ev); });
  window.addEventListener("pointerup", () => { last = null; });
}
const blobOf = (c) => new Promise((res) => c.toBlob(res, "image/png"));
async function restorePage() {
  await loadRuns($("run"));
  fill($("task"), OPTIONS.tasks); fill($("method"), OPTIONS.methods);
  drawing($("canvas"));
  $("run").onchange = restoreImage; $("index").onchange = restoreImage; $("task").onchange = restoreHint;
  $("clear").onclick = () => { const p = $("canvas").paint; p.getContext("2d").clearRect(0, 0, p.width, p.height); restoreImage(); };
  restoreHint(); await restoreImage();
  $("go").onclick = async () => {
    showError(null); $("panels").innerHTML = ""; $("downloads").innerHTML = "";
    const form = new FormData(), task = $("task").value, canvas = $("canvas");
    for (const k of ["run", "task", "method", "nfe", "strength", "seed", "index"]) form.append(k, $(k).value);
    if ($("upload").files.length) form.append("image", $("upload").files[0]);
    if (task === "inpaint" && drawn) form.append("mask", await blobOf(canvas.paint), "mask.png");
    if (task === "edit" && !$("upload").files.length) form.append("image", await blobOf(canvas), "drawn.png");
    try {
      const { job } = await api("/api/restore", { method: "POST", body: form });
      $("state").textContent = "queued";
      await follow(job, { progress: $("progress"), state: $("state"), cancel: $("cancel"), steps: +$("nfe").value,
        onStep: (e) => { $("xt").src = e.xt; $("x0").src = e.x0; },
        onDone: (r, id) => {
          $("panels").innerHTML = r.panels.map((p) => `<div class="panel"><img class="pix result-panel" data-name="${p.name}" src="${p.image}" width="168">
            <div>${p.name}</div><div class="muted">${p.psnr == null ? "" : p.psnr.toFixed(2) + " dB"}</div></div>`).join("");
          downloads($("downloads"), id, r.files);
        } });
    } catch (e) { showError(e); }
  };
}

// -- run -------------------------------------------------------------------------------------------------------
function plotLoss(canvas, points) {
  const g = canvas.getContext("2d"), W = canvas.width, H = canvas.height, pad = 36;
  g.clearRect(0, 0, W, H); g.font = "11px sans-serif"; g.fillStyle = "#555";
  if (!points.length) { g.fillText("no metrics.jsonl", pad, H / 2); return; }
  const xs = points.map((p) => p[0]), ys = points.map((p) => Math.log10(p[1]));
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs) || 1, Math.min(...ys), Math.max(...ys)];
  const X = (x) => pad + (W - 2 * pad) * (x - x0) / ((x1 - x0) || 1), Y = (y) => H - pad - (H - 2 * pad) * (y - y0) / ((y1 - y0) || 1);
  g.strokeStyle = "#999"; g.strokeRect(pad, pad, W - 2 * pad, H - 2 * pad);
  g.strokeStyle = "#1f6feb"; g.beginPath(); points.forEach((p, k) => (k ? g.lineTo : g.moveTo).call(g, X(p[0]), Y(Math.log10(p[1])))); g.stroke();
  g.fillText(`loss ${Math.pow(10, y1).toPrecision(3)}`, 2, pad - 4); g.fillText(`${Math.pow(10, y0).toPrecision(3)}`, 2, H - pad + 12);
  g.fillText(`step ${x1}`, W - pad - 50, H - 6);
}
async function runPage() {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  try {
    const r = await api(`/api/runs/${id}`);
    $("title").textContent = r.id;
    $("facts").textContent = `${r.data} · ${r.step} steps · ${r.images} images · ${r.schedule} schedule · predicts ${r.parameterization}` +
      (r.classes.length ? ` · classes ${r.classes.join(", ")}` : "") + (r.text ? " · text-to-image" : "") + (r.latent ? " · latent" : "") +
      (r.summary.test_bpd != null ? ` · test bound ${r.summary.test_bpd.toFixed(3)} ± ${(r.summary.test_bpd_stderr || 0).toFixed(3)} bits/dim` : "");
    plotLoss($("loss"), r.loss);
    $("images").innerHTML = r.files.filter((f) => f.endsWith(".png")).map((f) => `<div><div>${f}</div><img class="pix" src="/api/runs/${r.id}/files/${f}" width="300"></div>`).join("") +
      `<p><a href="/sample?run=${r.id}">sample from it</a> · <a href="/restore?run=${r.id}">restore with it</a></p>`;
    $("settings").textContent = JSON.stringify(r.config, null, 1);
    if (r.files.includes("report.md")) $("report").textContent = await (await fetch(`/api/runs/${r.id}/files/report.md`)).text();
  } catch (e) { showError(e); }
}

({ index: indexPage, sample: samplePage, compare: comparePage, restore: restorePage, run: runPage })[page]().catch(showError);
