// The page: load the model, show load and inference times, generate grids, score drawn digits.
import { DEFAULT_MODEL, createApi, modelName, variantName } from "./api.js";
import { drawDigits } from "./digits.js";
import { Pad } from "./pad.js";

const $ = (id) => document.getElementById(id);
const ms = (v) => (v === undefined ? "-" : `${v.toFixed(1)} ms`);
const kb = (bytes) => `${(bytes / 1024).toFixed(0)} KiB`;

function showTimings(api) {
  const t = api.timings;
  const rows = [
    ["prior and decoder load (fetch + sha256)", ms(t.fetchMs)],
    ["prior and decoder load (sessions)", ms(t.sessionsMs)],
    ["prior and decoder load (total)", ms(t.loadMs)],
    ["page open to first digits", ms(t.firstDigitsMs)],
    ["first digits drawn with", t.firstPath ?? "-"],
    ["bytes fetched before the first digits", t.bytesBeforeFirstDigits === undefined ? "-" : kb(t.bytesBeforeFirstDigits)],
    ["encoder and prior density load (on the pad's first use)", ms(t.encoderLoadMs)],
    ["detector load (reference model)", ms(t.detectorLoadMs)],
    ["last generate", ms(t.generateMs)],
    ["last reconstruct (1 digit)", ms(t.reconstructMs)],
    ["last score (1 digit)", ms(t.scoreMs)],
    ["explorer load (mnist-vae-2d decoder, codes)", ms(t.explorerLoadMs)],
    ["last interpolation (encode 2, decode steps)", ms(t.interpolateMs)],
  ];
  $("timings").replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = k;
      dd.textContent = v;
      return [dt, dd];
    }),
  );
}

function seedValue() {
  const value = Number($("seed").value);
  return Number.isInteger(value) ? value : undefined;
}

async function generate(api, info) {
  const digit = Number($("digit").value);
  const n = 40;
  const { images } = await api.generate(n, { seed: seedValue(), digit });
  drawDigits($("grid"), images, n, 10);
  const what = digit < 0 ? "any digit" : `the digit ${digit}`;
  $("grid-caption").textContent = `${n} digits (${what}) from ${info.model}'s prior in ${ms(api.timings.generateMs)}`;
  showTimings(api);
}

/** Draw the first grid (`api.generateFirst`: in JavaScript where the page can). */
async function generateFirst(api, info) {
  const digit = Number($("digit").value);
  const n = 40;
  const images = await api.generateFirst(n, { seed: seedValue(), digit });
  drawDigits($("grid"), images, n, 10);
  const how = info.path === "javascript" ? "in JavaScript" : `with the ${info.variant} decoder`;
  $("grid-caption").textContent = `${n} digits from ${info.model}'s prior, ${how}, in ${ms(api.timings.generateMs)}`;
}

async function generateEach(api, info) {
  const n = 30;
  const digits = Array.from({ length: n }, (_, i) => i % 10);
  const { images } = await api.generate(n, { seed: seedValue(), digit: digits });
  drawDigits($("each-grid"), images, n, 10);
  $("each-caption").textContent = `0-9 asked for, one per column, in ${ms(api.timings.generateMs)}`;
  showTimings(api);
}

function showScore(result) {
  const table = $("scores");
  const rows = Object.entries(result.ranges).map(([name, [low, high]]) => {
    const value = result.scores[name][0];
    const tr = document.createElement("tr");
    const ok = value >= low && value <= high;
    for (const text of [name, value.toFixed(1), `${low.toFixed(1)} to ${high.toFixed(1)}`, ok ? "typical" : "outside"]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    tr.className = ok ? "ok" : "bad";
    return tr;
  });
  table.tBodies[0].replaceChildren(...rows);
  const flag = result.flags[0];
  $("verdict").textContent = flag ? `Outlier: ${flag}` : "Typical: like the digits the model was calibrated on";
  $("verdict").className = flag ? "bad" : "ok";
}

async function onStroke(api, info, pad, prepare) {
  const { prepareDigit, rgbaToGray } = await prepare;
  // A conditional model reads the drawing as the digit chosen above.
  const labels = info.numClasses ? Number($("digit").value) : undefined;
  if (labels !== undefined && labels < 0) {
    $("verdict").textContent = `${info.model} is conditional: choose the digit you draw above, then draw it`;
    return;
  }
  const { width, height } = pad.canvas;
  const rgba = pad.canvas.getContext("2d").getImageData(0, 0, width, height).data;
  let prepared;
  try {
    prepared = prepareDigit(rgbaToGray(rgba, width, height), width, height);
  } catch (err) {
    $("verdict").textContent = `Cannot read the drawing: ${err.message}`;
    return;
  }
  drawDigits($("prepared"), prepared, 1, 1, 4);
  const reconstruction = await api.reconstruct(prepared, 1, labels);
  drawDigits($("reconstruction"), reconstruction, 1, 1, 4);
  api.pad.last = { prepared, reconstruction };
  $("set-a").disabled = $("set-b").disabled = false;
  showTimings(api);
  $("verdict").textContent = "Scoring…";
  const result = await api.score(prepared, 1, { labels, seed: 0 });
  api.pad.last = { prepared, reconstruction, ...result };
  api.pad.strokes += 1;
  showScore(result);
  showTimings(api);
}

/** Load the latent explorer into its card; resolves to the Explorer. */
async function startExplorer(api) {
  const { COLOURS, Explorer } = await import("./explorer.js");
  $("legend").replaceChildren(
    ...COLOURS.map((colour, digit) => {
      const li = document.createElement("li");
      li.textContent = String(digit);
      li.style.setProperty("--dot", colour);
      li.dataset.colour = colour;
      return li;
    }),
  );
  const plane = $("plane");
  const marker = $("plane-marker");
  const explorer = await Explorer.load(plane, ({ z, pixels }) => {
    drawDigits($("explored"), pixels, 1, 1, 4);
    $("explored-code").textContent = `z = (${z[0].toFixed(2)}, ${z[1].toFixed(2)})`;
    const [px, py] = explorer.pixelOf(z);
    marker.style.left = `${(px / plane.width) * plane.clientWidth + plane.clientLeft}px`;
    marker.style.top = `${(py / plane.height) * plane.clientHeight + plane.clientTop}px`;
    marker.hidden = false;
  });
  api.timings.explorerLoadMs = explorer.loadMs;
  const per = explorer.dots.perClass.join(", ");
  $("explorer-status").textContent = `${explorer.dots.count} training digits (per class 0-9: ${per}).`;
  await explorer.decodeAt([0, 0]);
  return explorer;
}

const STEPS = 10;

/** Keep the pad's last digit as end A or B; once both are set, show the steps between them. */
async function setEnd(api, info, which) {
  const last = api.pad.last;
  if (!last) return;
  const ends = api.pad.ends;
  ends[which] = last.prepared;
  drawDigits($(`end-${which}`), last.prepared, 1, 1, 3);
  if (!ends.a || !ends.b) {
    $("frames-caption").textContent = `Now draw another digit and press Use as ${which === "a" ? "B" : "A"}.`;
    return;
  }
  const labels = info.numClasses ? Number($("digit").value) : undefined;
  if (labels !== undefined && labels < 0) {
    $("frames-caption").textContent = `${info.model} is conditional: choose the digit above first`;
    return;
  }
  const result = await api.interpolate(ends.a, ends.b, STEPS, labels);
  drawDigits($("frames"), result.frames, STEPS, STEPS);
  $("frames-caption").textContent = `${STEPS} steps from A to B, decoded in ${ms(api.timings.interpolateMs)}`;
  api.interpolation = { a: ends.a, b: ends.b, steps: STEPS, ...result };
  showTimings(api);
}

function showFiles(info) {
  const files = Object.entries(info.bytes).map(([file, size]) => `${file} ${kb(size)}`);
  $("files").textContent = `${info.model}: ${files.join(", ")}; cross-origin isolated: ${info.crossOriginIsolated}`;
}

/**
 * Register the service worker and hand it every URL the page fetches, from the first digits on
 * (what loaded before the worker took over, or around that moment, passed it by), so that the
 * page opens offline next time; resolves to the number of files cached in the first batch.
 */
async function keepOffline() {
  if (!("serviceWorker" in navigator)) return 0;
  await navigator.serviceWorker.register("/sw.js");
  const { active } = await navigator.serviceWorker.ready;
  const sent = new Set();
  const post = (urls) => {
    const fresh = urls.filter((url) => !sent.has(url));
    fresh.forEach((url) => sent.add(url));
    if (fresh.length) active.postMessage({ cache: fresh });
    return fresh.length;
  };
  const answered = new Promise((resolve, reject) => {
    const first = (event) => {
      if (!("cached" in event.data) && !("error" in event.data)) return;
      navigator.serviceWorker.removeEventListener("message", first);
      if ("error" in event.data) reject(new Error(event.data.error));
      else resolve(event.data.cached);
    };
    navigator.serviceWorker.addEventListener("message", first);
  });
  new PerformanceObserver((list) => post(list.getEntries().map((e) => e.name))).observe({
    type: "resource",
    buffered: true,
  });
  post([location.href, new URL("/", location.href).href]);
  return answered;
}

function showStatus(info, note = "") {
  if (info.path === "javascript") {
    $("status").textContent = `${info.model}: ${info.latentDim} latents, prior ${info.prior}; first digits in JavaScript${note}`;
    return;
  }
  $("status").textContent =
    `${info.model}${info.variant === "fp32" ? "" : ` (${info.variant})`}: ${info.latentDim} latents, prior ${info.prior}; onnxruntime-web ${info.ortVersion} ` +
    `(wasm, ${info.threads} thread${info.threads === 1 ? "" : "s"})${note}`;
}

async function main() {
  let name = DEFAULT_MODEL;
  let variant = "fp32";
  try {
    name = modelName(location.search);
    variant = variantName(location.search);
  } catch (err) {
    $("status").textContent = err.message;
  }
  const api = createApi(name, variant);
  api.pad = { last: null, strokes: 0 };
  window.digitvae = api;
  const failed = (err) => {
    $("status").textContent = `Cannot load ${name}: ${err.message}`;
    $("status").className = "bad";
  };
  // The first digits come from the JavaScript decoder (no onnxruntime-web to fetch, compile and
  // set up first), or where it cannot, from the first decoder loaded (int8 on an fp32 page); the
  // page's own decoder in onnxruntime-web follows, draws them again and everything after.
  let info;
  try {
    info = await api.first;
  } catch (err) {
    return failed(err);
  }
  const interim = info.path === "javascript" || info.variant !== variant;
  const loading = info.path === "javascript" ? "onnxruntime-web" : `the ${variant} decoder`;
  showStatus(info, interim ? `; loading ${loading}` : "");
  const select = $("digit");
  select.disabled = !info.priorClasses && !info.numClasses;
  await generateFirst(api, info);
  api.firstDigitsShown();
  showTimings(api);
  try {
    info = await api.generator;
  } catch (err) {
    return failed(err);
  }
  showFiles(info);
  showStatus(info);
  if (interim) await generate(api, info);
  $("generate").onclick = () => generate(api, info);
  $("each").onclick = () => generateEach(api, info);
  $("each").disabled = select.disabled;
  api.offline = keepOffline();
  api.offline.catch((err) => console.warn(`no offline copy: ${err.message}`));
  if (!select.disabled) await generateEach(api, info);

  // What only the pad needs loads when the pad is first touched: the encoder, the outlier
  // checks' files and the drawing's preparation (on its own, so that generation works even
  // where the preparation is missing).
  let prepare = null;
  const startPad = () => {
    if (prepare !== null) return;
    prepare = import("./prepare.js");
    prepare.catch((err) => ($("verdict").textContent = `The drawing pad is unavailable: ${err.message}`));
    api.ready.then(showFiles, () => {});
    api.detector.then(
      (detector) => {
        $("k").textContent = String(detector.k);
        showTimings(api);
      },
      (err) => ($("verdict").textContent = `No outlier checks: ${err.message}`),
    );
  };
  $("pad").addEventListener("pointerdown", startPad);
  const pad = new Pad($("pad"), () => {
    startPad();
    onStroke(api, info, pad, prepare).catch((err) => ($("verdict").textContent = err.message));
  });
  $("clear").onclick = () => pad.clear();
  api.pad.ends = { a: null, b: null };
  api.interpolation = null;
  for (const which of ["a", "b"]) {
    $(`set-${which}`).onclick = () =>
      setEnd(api, info, which).catch((err) => ($("frames-caption").textContent = err.message));
  }
  // The explorer loads its model when its card comes near the screen, or when a script asks for it.
  let explorer = null;
  const loadExplorer = () => {
    if (explorer === null) {
      explorer = startExplorer(api);
      explorer.catch((err) => ($("explorer-status").textContent = `The explorer is unavailable: ${err.message}`));
    }
    return explorer;
  };
  Object.defineProperty(api, "explorer", { get: loadExplorer, enumerable: true });
  const near = new IntersectionObserver(
    (seen) => {
      if (seen.some((entry) => entry.isIntersecting)) {
        near.disconnect();
        loadExplorer();
      }
    },
    { rootMargin: "200px" },
  );
  near.observe($("plane"));
  /** Return the 2-D code under a point in client pixels (null outside the plane); waits for the explorer. */
  api.explorerCodeAt = async (x, y) => (await api.explorer).codeAt(x, y);
  document.body.dataset.ready = "true";
}

main();
