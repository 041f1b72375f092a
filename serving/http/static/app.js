// Denarius web page: two photos -> POST v1/identify -> candidates; per side POST v1/landmarks
// (overlay PNG) with a method switch and the epsilon slider; the chosen type's guidebook
// (GET v1/guidebook/{label}: the mean landmarks of its coins, when the bundle has one) and catalogue text.
// Plain JavaScript, no build step, no external resources.
"use strict";

(() => {
  const EPSILONS = [0.1, 0.3, 0.5, 0.7, 1.0]; // the paper's Figure 6 progression (denarius landmarks --sweep)
  const SIDES = ["obverse", "reverse"];
  const METHOD_NAMES = { optimized: "optimised", occlusion: "occlusion", saliency: "saliency" };
  const state = {
    files: { obverse: null, reverse: null },
    result: null, chosen: 0, classes: null,
    guidebook: null, // {entries: Map "kind|label" -> entry, method, settings} or {missing: message}
    guidebookPictures: new Map(), guidebookShown: { obverse: null, reverse: null },
    method: "optimized", epsilon: 2,
    cache: new Map(), pending: {}, identifying: null,
  };
  const $ = (selector) => document.querySelector(selector);

  // -- talking to the API ---------------------------------------------------------------------
  function authHeaders() {
    const token = $("#token").value.trim();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      if (error.name === "AbortError") throw error;  // aborted while the body was read: not an answer
      body = null;
    }
    if (!response.ok) {
      const detail = body && body.error ? body.error : null;
      const error = new Error(detail ? detail.message : `the server answered HTTP ${response.status}`);
      error.status = response.status;
      if (response.status === 401) {
        $("#token-box").hidden = false;
        error.message = `${error.message}. Enter the access token above.`;
      }
      throw error;
    }
    return body;
  }

  function setStatus(text, kind = "") {
    const status = $("#status");
    status.textContent = text;
    status.className = kind;
  }

  const percent = (p) => (p === undefined || p === null ? "–" : `${(100 * p).toFixed(1)}%`);
  const text = (value, fallback = "–") => (value === undefined || value === null || value === "" ? fallback : String(value));

  function element(tag, attributes = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  // -- the model ------------------------------------------------------------------------------
  async function loadModel() {
    try {
      const info = await api("v1/model");
      state.classes = { obverse: new Set(info.emperors), reverse: new Set(info.rics) };
      $("#model").textContent = `Model ${info.version}: ${info.emperors.length} emperors, ${info.rics.length} RIC types ` +
        `(${info.backend}, ${info.precision}, ${info.input_size} px).`;
      loadGuidebook();
      if (info.calibrated) {
        $("#score-note").textContent = "Tap a row to explain that type. Score: p(emperor | obverse) \u00d7 p(RIC | reverse) when both " +
          "sides are given, otherwise the one side's probability, calibrated by temperature scaling fitted on held-out coins.";
      }
    } catch (error) {
      $("#model").textContent = error.status === 401 ? "This server needs an access token." : `Model unavailable: ${error.message}`;
    }
  }

  // -- guidebook ------------------------------------------------------------------------------
  async function loadGuidebook() {
    for (const url of state.guidebookPictures.values()) URL.revokeObjectURL(url);
    state.guidebookPictures.clear();
    try {
      const index = await api("v1/guidebook");
      const entries = new Map(index.entries.map((entry) => [`${entry.kind}|${entry.label}`, entry]));
      state.guidebook = { entries, method: index.method, settings: index.settings || {} };
    } catch (error) {
      state.guidebook = { missing: error.status === 404 ? "none" : error.message };
    }
    if (state.result) renderGuidebook(state.result.candidates[state.chosen]);
  }

  async function guidebookPicture(entry) {
    const key = `${entry.kind}|${entry.label}`;
    if (!state.guidebookPictures.has(key)) {
      // fetch, not <img src>: the bearer token travels in a header
      const response = await fetch(entry.url, { headers: authHeaders() });
      if (!response.ok) {
        let message = `the server answered HTTP ${response.status}`;
        try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
        throw new Error(message);
      }
      state.guidebookPictures.set(key, URL.createObjectURL(await response.blob()));
    }
    return state.guidebookPictures.get(key);
  }

  function guidebookMethod() {
    const settings = state.guidebook.settings;
    const method = METHOD_NAMES[state.guidebook.method] || state.guidebook.method;
    return state.guidebook.method === "optimized" && settings.epsilon !== undefined ? `${method}, epsilon ${settings.epsilon}` : method;
  }

  async function showGuidebookSide(side, kind, label) {
    const figure = $(`#gb-${side}`);
    const entry = label && state.guidebook && state.guidebook.entries ? state.guidebook.entries.get(`${kind}|${label}`) : null;
    state.guidebookShown[side] = entry ? `${kind}|${label}` : null;
    figure.hidden = !entry;
    figure.dataset.label = entry ? entry.label : "";
    if (!entry) return false;
    const caption = figure.querySelector("figcaption");
    caption.className = "";
    caption.textContent = `${side}: mean landmarks of ${entry.coins} held-out coin${entry.coins === 1 ? "" : "s"} of ` +
      `${entry.label} (${guidebookMethod()}), drawn over coin ${entry.representative}`;
    try {
      const url = await guidebookPicture(entry);
      if (state.guidebookShown[side] === `${kind}|${label}`) figure.querySelector("img").src = url;
    } catch (error) {
      caption.textContent = `Guidebook unavailable: ${error.message}`;
      caption.className = "error";
    }
    return true;
  }

  // -- photos ---------------------------------------------------------------------------------
  function setFile(side, file) {
    state.files[side] = file || null;
    const drop = $(`#drop-${side}`);
    const img = drop.querySelector("img");
    if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
    if (file) {
      img.dataset.url = URL.createObjectURL(file);
      img.onload = () => { img.hidden = false; };
      img.onerror = () => { img.hidden = true; };  // not an image the browser can show: the server will say why
      img.src = img.dataset.url;
      drop.classList.add("filled");
      drop.querySelector(".drop-text").innerHTML = `<strong>${side[0].toUpperCase() + side.slice(1)}</strong><br>${escapeHtml(file.name)}`;
    } else {
      img.hidden = true;
      img.removeAttribute("src");
      drop.classList.remove("filled");
    }
    state.cache.clear();
    $("#identify").disabled = !SIDES.some((s) => state.files[s]);
    if (state.files.obverse && state.files.reverse) identify();
  }

  function escapeHtml(value) {
    return String(value).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  function wireDrop(side) {
    const drop = $(`#drop-${side}`);
    const input = $(`#file-${side}`);
    input.addEventListener("change", () => setFile(side, input.files[0]));
    drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (file) setFile(side, file);
    });
  }

  // -- identification -------------------------------------------------------------------------
  async function identify() {
    const sides = SIDES.filter((s) => state.files[s]);
    if (!sides.length) return;
    if (state.identifying) state.identifying.abort();
    const controller = new AbortController();
    state.identifying = controller;
    const form = new FormData();
    for (const side of sides) form.append(side, state.files[side], state.files[side].name);
    form.append("top_k", "5");
    setStatus(`Identifying from the ${sides.join(" and ")}…`, "busy");
    try {
      const result = await api("v1/identify", { method: "POST", body: form, signal: controller.signal });
      if (controller !== state.identifying) return;
      state.result = result;
      setStatus(`Identified in ${Math.round(result.timing.total_ms)} ms (model ${result.model_version}).`, "ok");
      renderCandidates(result);
      choose(0);
    } catch (error) {
      if (error.name === "AbortError") return;
      state.result = null;
      for (const id of ["#results", "#landmarks", "#guidebook"]) $(id).hidden = true;
      setStatus(`Could not identify the coin: ${error.message}`, "error");
    }
  }

  function renderCandidates(result) {
    $("#results").hidden = false;
    const modes = {
      joint: "Both sides: RIC types ranked by p(emperor | obverse) × p(RIC | reverse).",
      ric: "Reverse only: RIC types ranked by p(RIC | reverse).",
      emperor: "Obverse only: emperors ranked by p(emperor | obverse); add the reverse for the RIC type.",
    };
    $("#mode").textContent = modes[result.mode] || "";
    renderFlags(result);
    const body = $("#candidates tbody");
    body.replaceChildren();
    const candidates = result.candidates || [];
    candidates.forEach((candidate, index) => {
      const label = candidate.ric || candidate.emperor;
      const typeCell = element("td", { class: "type" }, [
        element("strong", { class: "ric", text: label }),
        candidate.ric ? element("span", { class: "emperor", text: ` ${candidate.emperor}` }) : "",
      ]);
      for (const [name, value] of [["obv", candidate.obverse_description], ["rev", candidate.reverse_description]]) {
        if (value) typeCell.append(element("span", { class: `desc ${name}`, text: value }));
      }
      if (candidate.watchlist) typeCell.append(element("span", { class: "tag alert", text: `watchlist: ${describe(candidate.watchlist)}` }));
      const parts = [];
      if (candidate.p_emperor !== undefined) parts.push(`p(emperor) ${percent(candidate.p_emperor)}`);
      if (candidate.p_ric !== undefined) parts.push(`p(RIC) ${percent(candidate.p_ric)}`);
      if (candidate.calibrated_score !== undefined) parts.push(`calibrated ${percent(candidate.calibrated_score)}`);
      const bar = element("span", { class: "bar" });
      bar.style.width = `${Math.max(2, 100 * candidate.score)}%`;
      const scoreCell = element("td", { class: "score", "data-score": String(candidate.score) }, [
        element("span", { class: "value", text: percent(candidate.score) }), element("span", { class: "track" }, [bar]),
        element("span", { class: "parts", text: parts.join(" · ") }),
      ]);
      const row = element("tr", { tabindex: "0", "data-index": String(index), "data-ric": candidate.ric, "data-emperor": candidate.emperor },
        [element("td", { class: "rank", text: String(candidate.rank) }), typeCell, scoreCell]);
      row.addEventListener("click", () => choose(index));
      row.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); choose(index); } });
      body.append(row);
    });
  }

  function describe(value) {
    if (value === true) return "match";
    if (typeof value === "string") return value;
    if (Array.isArray(value)) return value.map(describe).join(", ");
    if (value && typeof value === "object") return value.label || value.name || value.reason || value.message || JSON.stringify(value);
    return String(value);
  }

  // `unknown` (the bundle's open-set decision) and `watchlist` (a later server version): shown when the answer has them.
  function renderFlags(result) {
    const unknown = $("#unknown");
    unknown.hidden = !result.unknown;
    if (result.unknown === true) {
      const score = typeof result.open_set_score === "number" ? ` (open-set score ${result.open_set_score.toFixed(3)})` : "";
      unknown.textContent = `Not in the catalogue: the evidence${score} is below this model's threshold for a known coin. ` +
        "The closest types are still listed.";
    } else if (result.unknown) {
      unknown.textContent = `Possibly a type the model does not know: ${describe(result.unknown)}`;
    }
    const watch = $("#watchlist");
    const matches = Array.isArray(result.watchlist) ? result.watchlist : (result.watchlist ? [result.watchlist] : []);
    watch.hidden = matches.length === 0;
    if (matches.length) watch.textContent = `Watchlist match: ${matches.map(describe).join("; ")}`;
  }

  function choose(index) {
    const candidates = (state.result && state.result.candidates) || [];
    if (!candidates.length) {
      for (const id of ["#landmarks", "#guidebook"]) $(id).hidden = true;
      return;
    }
    state.chosen = Math.min(index, candidates.length - 1);
    for (const row of document.querySelectorAll("#candidates tbody tr")) {
      row.setAttribute("aria-selected", row.dataset.index === String(state.chosen) ? "true" : "false");
    }
    renderGuidebook(candidates[state.chosen]);
    renderLandmarks();
  }

  function renderGuidebook(candidate) {
    $("#guidebook").hidden = false;
    const label = candidate.ric || candidate.emperor;
    $("#gb-type").textContent = label;
    $("#gb-emperor").textContent = text(candidate.emperor);
    $("#gb-obverse-text").textContent = text(candidate.obverse_description, "no catalogue description in this bundle");
    $("#gb-reverse-text").textContent = text(candidate.reverse_description, "no catalogue description in this bundle");
    const note = $("#gb-note");
    const book = state.guidebook;
    if (!book || book.missing) {
      for (const side of SIDES) { $(`#gb-${side}`).hidden = true; state.guidebookShown[side] = null; }
      note.textContent = book && book.missing !== "none"
        ? `The guidebook could not be loaded: ${book.missing}. Shown are the catalogue descriptions of the chosen type.`
        : "This bundle has no guidebook (the mean landmarks of each type's coins; build one with the command denarius guidebook). " +
          "Shown are the catalogue descriptions of the chosen type.";
      note.dataset.state = book && book.missing !== "none" ? "error" : "none";
      return;
    }
    const shown = [showGuidebookSide("reverse", "ric", candidate.ric), showGuidebookSide("obverse", "emperor", candidate.emperor)];
    Promise.all(shown).then(([reverse, obverse]) => {
      if ($("#gb-type").textContent !== label) return;  // another type was chosen meanwhile
      const missing = [!reverse && candidate.ric ? `the type ${candidate.ric}` : "", !obverse ? `the emperor ${candidate.emperor}` : ""].filter(Boolean);
      note.dataset.state = missing.length ? "partial" : "shown";
      note.textContent = (reverse || obverse
        ? "Where the model usually looks on coins of this class: the mean landmark map of held-out coins, drawn over the most typical one."
        : "") + (missing.length ? ` The bundle's guidebook has no entry for ${missing.join(" or ")} (no held-out coins of it when it was built).` : "");
    });
  }

  // -- landmarks ------------------------------------------------------------------------------
  function targetFor(side) {
    const candidate = state.result.candidates[state.chosen];
    const label = side === "obverse" ? candidate.emperor : candidate.ric;
    // Only a class of that side's classifier can be explained; otherwise the predicted class.
    return label && (!state.classes || state.classes[side].has(label)) ? label : "";
  }

  function renderLandmarks() {
    $("#landmarks").hidden = false;
    const candidate = state.result.candidates[state.chosen];
    $("#lm-target").textContent = candidate.ric || candidate.emperor;
    const optimized = state.method === "optimized";
    $("#epsilon").disabled = !optimized;
    $("#epsilon-value").textContent = EPSILONS[state.epsilon].toFixed(1);
    for (const side of SIDES) {
      const figure = $(`#lm-${side}`);
      figure.hidden = !state.files[side];
      if (state.files[side]) landmarks(side);
    }
  }

  async function landmarks(side) {
    const figure = $(`#lm-${side}`);
    const method = state.method;
    const epsilon = method === "optimized" ? EPSILONS[state.epsilon] : null;
    const target = targetFor(side);
    const key = [side, method, epsilon, target].join("|");
    if (state.pending[side]) state.pending[side].abort();  // the server stops a search whose caller left
    if (state.cache.has(key)) {
      showLandmarks(figure, state.cache.get(key), method, epsilon);
      return;
    }
    const controller = new AbortController();
    state.pending[side] = controller;
    const form = new FormData();
    form.append("image", state.files[side], state.files[side].name);
    form.append("side", side.toUpperCase());
    form.append("method", method.toUpperCase());
    form.append("include_overlay", "true");
    if (epsilon !== null) form.append("epsilon", String(epsilon));
    if (target) form.append("target", target);
    figure.querySelector(".spinner").hidden = false;
    figure.querySelector(".spinner").textContent = method === "occlusion"
      ? "occlusion: thousands of forward passes, up to a minute…" : "computing…";
    figure.classList.add("busy");
    try {
      const answer = await api("v1/landmarks?heatmap=false", { method: "POST", body: form, signal: controller.signal });
      if (!answer) throw new Error("the server's answer had no body");
      state.cache.set(key, answer);
      if (state.pending[side] === controller) showLandmarks(figure, answer, method, epsilon);
    } catch (error) {
      if (error.name === "AbortError") return;
      const caption = figure.querySelector("figcaption");
      caption.textContent = `Landmarks failed: ${error.message}`;
      caption.className = "error";
    } finally {
      if (state.pending[side] === controller) {
        delete state.pending[side];
        figure.querySelector(".spinner").hidden = true;
        figure.classList.remove("busy");
      }
    }
  }

  function showLandmarks(figure, answer, method, epsilon) {
    const img = figure.querySelector("img");
    img.src = `data:image/png;base64,${answer.overlay_png}`;
    figure.dataset.method = method;
    figure.dataset.epsilon = epsilon === null ? "" : String(epsilon);
    figure.dataset.target = answer.target;
    const side = figure.id.replace("lm-", "");
    const lines = [`${side}: ${METHOD_NAMES[method]} landmarks of ${answer.target}, p = ${percent(answer.probability)} on the whole photo`];
    if (answer.masked_probability !== undefined) {
      lines.push(`${percent(answer.masked_probability)} on the landmarks alone (epsilon ${epsilon.toFixed(1)}, ${answer.iterations} iterations${answer.converged ? "" : ", not converged"})`);
      if (answer.masked_probability >= answer.probability) {
        // The mask kept p(class) at or above the whole photo's: epsilon, which only bounds
        // how far p may fall, did not come into play, and other values may give the same map.
        lines.push("the landmarks alone score at least as high as the whole photo, so epsilon did not come into play");
      }
    }
    lines.push(`${Math.round(answer.forward_equivalents)} forward passes, ${(answer.timing.total_ms / 1000).toFixed(1)} s`);
    const caption = figure.querySelector("figcaption");
    caption.textContent = lines.join("; ");
    caption.className = "";
    figure.querySelector(".spinner").hidden = true;
    figure.classList.remove("busy");
  }

  // -- wiring ---------------------------------------------------------------------------------
  function clearAll() {
    for (const side of SIDES) { $(`#file-${side}`).value = ""; setFile(side, null); }
    for (const controller of Object.values(state.pending)) controller.abort();
    state.pending = {};
    state.result = null;
    for (const id of ["#results", "#landmarks", "#guidebook"]) $(id).hidden = true;
    for (const side of SIDES) {
      $(`#drop-${side} .drop-text`).innerHTML =
        `<strong>${side[0].toUpperCase() + side.slice(1)}</strong> (${side === "obverse" ? "portrait" : "tail"} side)<br>drop a photo here or tap to choose`;
    }
    setStatus("");
  }

  function init() {
    SIDES.forEach(wireDrop);
    $("#identify").addEventListener("click", identify);
    $("#clear").addEventListener("click", clearAll);
    for (const radio of document.querySelectorAll("input[name=method]")) {
      radio.addEventListener("change", () => { state.method = radio.value; if (state.result) renderLandmarks(); });
    }
    const slider = $("#epsilon");
    slider.addEventListener("input", () => { $("#epsilon-value").textContent = EPSILONS[Number(slider.value)].toFixed(1); });
    slider.addEventListener("change", () => { state.epsilon = Number(slider.value); if (state.result) renderLandmarks(); });
    $("#token-box").addEventListener("submit", (event) => event.preventDefault());
    $("#token").addEventListener("change", () => { loadModel(); if (state.result === null) identify(); });
    loadModel();
  }

  init();
})();
