// fer_keras' page: the webcam's frames go to /api/live, pictures to /api/predict. Plain JS, no library.
"use strict";

// One colour per FER2013 class, as in fer_keras/inference/annotate.py (the annotated pictures and plots).
const COLOURS = {angry: "#d62728", disgust: "#2ca02c", fear: "#9467bd", happy: "#ffbf00", sad: "#1f77b4",
  surprise: "#ff7f0e", neutral: "#8c8c8c", contempt: "#17becf"};
const SEND_WIDTH = 320;        // frames are sent at the size the server searches them for faces (serve_cli LIVE_DETECT_SIDE)
const JPEG_QUALITY = 0.7;
const IN_FLIGHT = 2;           // frames on their way at once: one is analysed while the next is encoded and sent
const TIMELINE_SECONDS = 60;

const $ = (id) => document.getElementById(id);
let classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];

// Read by the browser tests and the benchmark: annotated frames so far, the frames/s of the last second.
const stats = window.ferStats = {frames: 0, framesWithFaces: 0, fps: 0, lastFaces: [], errors: 0, drawnAt: []};

// === Models ===

fetch("/api/health").then((r) => r.json()).then((h) => {
  classes = h.classes;
  const live = h.live_members.join(", "), all = h.members.join(", ");
  $("models").textContent = `photo: ${h.members.length} member(s) (${all}) · live: ${live}`;
  buildLegend();
}).catch(() => { $("models").textContent = "the server does not answer"; });

function buildLegend() {
  $("legend").replaceChildren(...classes.map((c) => {
    const li = document.createElement("li");
    li.innerHTML = `<i style="background:${COLOURS[c] || "#999"}"></i>${c}`;
    return li;
  }));
}
buildLegend();

// === Camera ===

const video = $("video"), overlay = $("overlay"), button = $("camera-button");
const grab = document.createElement("canvas");
let stream = null, running = false, sent = 0, lastDrawn = -1, history = [];

function cameraMessage(text, kind = "camera") {
  $("camera-message").textContent = text;
  $("camera-message").hidden = !text;
  $("camera-message").dataset.kind = kind;
}

function explain(error) {
  const name = error && error.name;
  if (name === "NotAllowedError" || name === "SecurityError")
    return "Camera access was refused. Allow the camera for this page (the camera icon in the address bar), "
      + "then press Start camera again. The photo upload below works without a camera.";
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError")
    return "No camera was found. Plug one in and press Start camera again, or use the photo upload below.";
  if (name === "NotReadableError" || name === "TrackStartError")
    return "The camera is busy (another program is using it). Close that program and press Start camera again.";
  return `The camera could not be started (${name || error}). The photo upload below works without a camera.`;
}

async function startCamera() {
  cameraMessage("");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    cameraMessage("This browser gives no camera access to this page: open it at http://127.0.0.1:<port>/ "
      + "(or over HTTPS), in a recent browser. The photo upload below works without a camera.");
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({video: {width: {ideal: 640}, height: {ideal: 480}}, audio: false});
  } catch (error) {
    cameraMessage(explain(error));
    return;
  }
  video.srcObject = stream;
  await video.play().catch(() => {});
  $("stage-hint").hidden = true;
  running = true;
  button.textContent = "Stop camera";
  button.classList.add("stop");
  for (let i = 0; i < IN_FLIGHT; i++) sendLoop();
}

function stopCamera() {
  running = false;
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  video.srcObject = null;
  overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  $("stage-hint").hidden = false;
  button.textContent = "Start camera";
  button.classList.remove("stop");
}

button.addEventListener("click", () => (running ? stopCamera() : startCamera()));

function frameBlob() {
  const w = Math.min(SEND_WIDTH, video.videoWidth), h = Math.round(video.videoHeight * w / video.videoWidth);
  grab.width = w; grab.height = h;
  grab.getContext("2d").drawImage(video, 0, 0, w, h);
  return new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
}

async function sendLoop() {
  while (running) {
    if (!video.videoWidth) { await new Promise((r) => setTimeout(r, 50)); continue; }
    const id = sent++;
    try {
      const blob = await frameBlob();
      const response = await fetch("/api/live", {method: "POST", body: blob, headers: {"Content-Type": "image/jpeg"}});
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || response.status);
      if (running && id > lastDrawn) { lastDrawn = id; show(data); }
    } catch (error) {
      stats.errors++;
      cameraMessage(`The server did not analyse a frame: ${error.message || error}`, "server");
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

// === Drawing ===

function show(data) {
  const now = performance.now();
  stats.frames++;
  if (data.faces.length) stats.framesWithFaces++;
  if ($("camera-message").dataset.kind === "server") cameraMessage("");  // the server answers again
  stats.lastFaces = data.faces;
  stats.drawnAt.push(now);
  while (stats.drawnAt.length && now - stats.drawnAt[0] > 1000) stats.drawnAt.shift();
  stats.fps = stats.drawnAt.length;
  $("fps").textContent = stats.fps;
  $("latency").textContent = Math.round(data.seconds * 1000);
  $("face-count").textContent = data.faces.length;
  drawOverlay(data);
  const main = data.faces.reduce((a, f) => (!a || f.box[2] * f.box[3] > a.box[2] * a.box[3] ? f : a), null);
  showBars(main);
  history.push({t: now, p: main ? main.probabilities : null});
  while (history.length && now - history[0].t > TIMELINE_SECONDS * 1000) history.shift();
  drawTimeline(now);
}

function fit(canvas) {
  // The canvas' pixels follow its displayed size; reallocated only when that changes (not every frame).
  const rect = canvas.getBoundingClientRect(), ratio = window.devicePixelRatio || 1;
  const w = Math.round(rect.width * ratio), h = Math.round(rect.height * ratio);
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  return rect;
}

function drawOverlay(data) {
  // The canvas matches the displayed video; the video is letter-boxed (object-fit: contain).
  const rect = fit(overlay), ratio = window.devicePixelRatio || 1;
  const ctx = overlay.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, rect.width, rect.height);
  const scale = Math.min(rect.width / data.width, rect.height / data.height);
  const ox = (rect.width - data.width * scale) / 2, oy = (rect.height - data.height * scale) / 2;
  for (const face of data.faces) {
    const [x, y, w, h] = face.box.map((v) => v * scale);
    const colour = COLOURS[face.label] || "#fff";
    ctx.lineWidth = 3; ctx.strokeStyle = colour;
    ctx.strokeRect(ox + x, oy + y, w, h);
    const text = `${face.label} ${Math.round(face.confidence * 100)}%`;
    ctx.font = "600 15px system-ui, sans-serif";
    const tw = ctx.measureText(text).width + 10, ty = Math.max(oy + y - 22, 0);
    ctx.fillStyle = colour; ctx.fillRect(ox + x - 1.5, ty, tw, 22);
    ctx.fillStyle = ink(colour); ctx.fillText(text, ox + x + 4, ty + 16);
    // a bar per class under the box
    const barW = Math.max(w, 90), rowH = 6, top = oy + y + h + 4;
    classes.forEach((c, i) => {
      ctx.fillStyle = "rgba(17,24,39,.55)"; ctx.fillRect(ox + x, top + i * (rowH + 1), barW, rowH);
      ctx.fillStyle = COLOURS[c] || "#999"; ctx.fillRect(ox + x, top + i * (rowH + 1), barW * (face.probabilities[c] || 0), rowH);
    });
  }
}

function ink(hex) {
  const v = parseInt(hex.slice(1), 16), r = v >> 16, g = (v >> 8) & 255, b = v & 255;
  return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#000" : "#fff";
}

function showBars(face) {
  $("top-label").textContent = face ? `${face.label} ${Math.round(face.confidence * 100)}%` : "no face";
  $("bars").replaceChildren(...classes.map((c) => {
    const p = face ? face.probabilities[c] || 0 : 0, li = document.createElement("li");
    li.innerHTML = `<span>${c}</span><span class="track"><span class="fill" style="width:${(p * 100).toFixed(1)}%;`
      + `background:${COLOURS[c] || "#999"}"></span></span><span class="value">${Math.round(p * 100)}%</span>`;
    return li;
  }));
}

function drawTimeline(now) {
  const canvas = $("timeline"), rect = fit(canvas), ratio = window.devicePixelRatio || 1;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, rect.width, rect.height);
  const W = rect.width, H = rect.height, perMs = W / (TIMELINE_SECONDS * 1000);
  // A stacked strip: each analysed frame's probabilities, newest at the right.
  history.forEach((sample, i) => {
    if (!sample.p) return;
    const x = W - (now - sample.t) * perMs;
    const next = history[i + 1], width = Math.max((next ? next.t - sample.t : 50) * perMs, 1);
    let y = 0;
    for (const c of classes) {
      const h = (sample.p[c] || 0) * H;
      ctx.fillStyle = COLOURS[c] || "#999"; ctx.fillRect(x, y, width + 0.5, h + 0.5);
      y += h;
    }
  });
}

// === Photo ===

const drop = $("drop"), file = $("file");

function photoMessage(text) {
  $("photo-message").textContent = text;
  $("photo-message").hidden = !text;
}

async function upload(picture) {
  photoMessage("");
  if (!picture) return;
  const form = new FormData();
  form.append("image", picture, "upload");
  $("photo-summary").textContent = "analysing…";
  try {
    const response = await fetch("/api/predict?annotate=true", {method: "POST", body: form});
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    $("annotated").src = data.annotated;
    const rows = data.faces.map((f, i) => {
      const ranked = Object.entries(f.probabilities).sort((a, b) => b[1] - a[1]);
      const tr = document.createElement("tr");
      tr.innerHTML = `<td>${i + 1}</td><td>${f.box.join(", ")}</td><td><i class="swatch" style="color:${COLOURS[f.label]}">●</i> ${f.label}</td>`
        + `<td>${(f.confidence * 100).toFixed(1)}%</td><td>${ranked[1][0]} ${(ranked[1][1] * 100).toFixed(1)}%</td>`;
      return tr;
    });
    $("faces-table").tBodies[0].replaceChildren(...rows);
    $("faces-table").hidden = !rows.length;
    $("photo-summary").textContent = `${data.faces.length || "no"} face(s) in ${data.width}x${data.height} px, `
      + `${Math.round(data.seconds * 1000)} ms on the server, ${data.members.length} member(s)`;
    $("photo-result").hidden = false;
  } catch (error) {
    $("photo-summary").textContent = "";
    photoMessage(`The picture was not analysed: ${error.message || error}`);
  }
}

file.addEventListener("change", () => upload(file.files[0]));
["dragenter", "dragover"].forEach((e) => drop.addEventListener(e, (ev) => { ev.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((e) => drop.addEventListener(e, (ev) => { ev.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (ev) => upload(ev.dataTransfer.files[0]));
