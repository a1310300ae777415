"""The page ``illustration-tl serve`` shows at ``/``: drop or pick an image, see its top 5.

Plain HTML, CSS and JavaScript in one string, with no external resource (fonts,
scripts, images), so it works offline and under a strict Content-Security-Policy.
The script sends the image to the same REST endpoint a program would use
(``POST /v1/models/NAME:predict`` with ``{"instances": [{"image_bytes": {"b64": ...}}]}``)
and ranks the answer's ``all_scores`` against the class names given in the page.
Class names are written with ``textContent`` only, never parsed as HTML.
"""

from __future__ import annotations

import html
import json
from typing import Sequence

TOP = 5
"""Classes shown per image."""

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>illustration-tl: __TITLE__</title>
<style>
 body { font: 15px/1.4 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto;
        padding: 0 1rem; color: #222; }
 h1 { font-size: 1.3rem; margin-bottom: .2rem; }
 .sub { color: #666; margin-top: 0; }
 #drop { display: block; border: 2px dashed #999; border-radius: 8px; padding: 2rem;
         text-align: center; cursor: pointer; background: #fafafa; }
 #drop.over { border-color: #2a6ebb; background: #eef4fb; }
 #preview { max-width: 100%; max-height: 16rem; display: none; margin: 1rem auto 0; }
 #status { min-height: 1.4em; margin: .8rem 0; color: #555; }
 #status.error { color: #b00020; }
 ol { list-style: none; padding: 0; }
 li { display: grid; grid-template-columns: 12rem 1fr 5rem; gap: .6rem;
      align-items: center; margin: .35rem 0; }
 .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
 .track { background: #e6e6e6; border-radius: 4px; height: 1rem; }
 .bar { background: #2a6ebb; border-radius: 4px; height: 100%; min-width: 2px; }
 .score { text-align: right; font-variant-numeric: tabular-nums; }
</style>
</head>
<body data-model="__MODEL__" data-head="__HEAD__">
<h1>__TITLE__</h1>
<p class="sub">__SUBTITLE__</p>
<label id="drop" for="file">Drop an image here, or click to pick one
 <input id="file" type="file" accept="image/*,.svg" hidden>
</label>
<img id="preview" alt="">
<div id="status" role="status"></div>
<ol id="results"></ol>
<script type="application/json" id="classes">__CLASSES__</script>
<script>
"use strict";
const MODEL = document.body.dataset.model;
const SOFTMAX = document.body.dataset.head === "softmax";
const CLASSES = JSON.parse(document.getElementById("classes").textContent);
const TOP = __TOP__;
const drop = document.getElementById("drop");
const input = document.getElementById("file");
const statusLine = document.getElementById("status");
const results = document.getElementById("results");
const preview = document.getElementById("preview");

function say(text, isError) {
  statusLine.textContent = text;
  statusLine.className = isError ? "error" : "";
}

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function show(prediction) {
  const scores = prediction.all_scores;
  const order = scores.map((s, i) => i).sort((a, b) => scores[b] - scores[a]).slice(0, TOP);
  const lo = Math.min(...scores), hi = Math.max(...scores);
  results.replaceChildren();
  for (const i of order) {
    const width = SOFTMAX ? scores[i] : (hi > lo ? (scores[i] - lo) / (hi - lo) : 1);
    const li = document.createElement("li");
    li.dataset.class = CLASSES[i];
    li.dataset.score = String(scores[i]);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = CLASSES[i];
    name.title = CLASSES[i];
    const track = document.createElement("span");
    track.className = "track";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.display = "block";
    bar.style.width = (100 * Math.max(0, Math.min(1, width))).toFixed(1) + "%";
    track.append(bar);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = SOFTMAX ? (100 * scores[i]).toFixed(1) + "%" : scores[i].toFixed(3);
    li.append(name, track, score);
    results.append(li);
  }
}

async function classify(file) {
  if (!file) return;
  results.replaceChildren();
  say("Classifying " + file.name + " ...");
  preview.src = URL.createObjectURL(file);
  preview.style.display = "block";
  try {
    const b64 = await readBase64(file);
    const response = await fetch("/v1/models/" + encodeURIComponent(MODEL) + ":predict", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({instances: [{image_bytes: {b64: b64}}]}),
    });
    const body = await response.json();
    if (!response.ok) { say(file.name + ": " + body.error, true); return; }
    show(body.predictions[0]);
    say(file.name);
  } catch (e) {
    say(file.name + ": " + e, true);
  }
}

input.addEventListener("change", () => classify(input.files[0]));
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  classify(e.dataTransfer.files[0]);
});
</script>
</body>
</html>
"""


def render(model_name: str, class_names: Sequence[str], head: str, subtitle: str) -> bytes:
    """The page for one served model, as UTF-8 bytes."""
    # Inside <script type="application/json">, only "</" could end the element early.
    classes = json.dumps(list(class_names), ensure_ascii=True).replace("</", "<\\/")
    text = (_TEMPLATE.replace("__TITLE__", html.escape(model_name))
            .replace("__SUBTITLE__", html.escape(subtitle))
            .replace("__MODEL__", html.escape(model_name))
            .replace("__HEAD__", html.escape(head))
            .replace("__TOP__", str(TOP))
            .replace("__CLASSES__", classes))
    return text.encode("utf-8")
