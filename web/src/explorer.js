// The latent explorer: mnist-vae-2d's 2-D latent plane, the training digits' codes drawn as dots
// coloured by class, and the digit the decoder makes of the code under the pointer, live.
//
// The codes come from /latent-codes.json (scripts/web_latent_codes.py): encoder means of a fixed
// class-balanced subset of the training digits, with the plane's bounds and the encoder's sha256.
import { ModelError } from "./errors.js";
import { Model } from "./model.js";

export const EXPLORER_MODEL = "mnist-vae-2d";
export const CODES_URL = "/latent-codes.json";
/** One colour per class 0-9 (the Tableau 10 palette): dots and legend alike. */
export const COLOURS = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ac",
];
const DOT_RADIUS = 2.5;

/** Check the codes asset's shape; return it. */
function readAsset(asset, model) {
  const { codes, labels, bounds } = asset ?? {};
  if (!Array.isArray(codes) || !Array.isArray(labels) || codes.length !== 2 * labels.length || !bounds) {
    throw new ModelError(`${CODES_URL} is not a latent codes file: it needs codes (2 per digit), labels and bounds`);
  }
  const expected = model.manifest.variants?.fp32?.encoder?.sha256;
  if (asset.model !== model.name || asset.encoder?.sha256 !== expected) {
    throw new ModelError(
      `${CODES_URL} was made with another encoder than ${model.name}'s: run scripts/web_latent_codes.py again`,
    );
  }
  return asset;
}

export class Explorer {
  /** Use Explorer.load(canvas, onDecoded). */
  constructor(canvas, asset, model, onDecoded) {
    this.canvas = canvas;
    this.asset = asset;
    this.model = model;
    this.onDecoded = onDecoded;
    this.last = null; // {z: [x, y], pixels: Float32Array(784)} of the last code decoded
    this.pending = null;
    this.busy = null;
    this.dots = this.#drawDots();
    canvas.style.touchAction = "none"; // a finger explores instead of scrolling the page
    canvas.addEventListener("pointermove", (e) => this.#pointer(e));
    canvas.addEventListener("pointerdown", (e) => this.#pointer(e));
  }

  /** Fetch the codes and load mnist-vae-2d's decoder (the only file the explorer runs). */
  static async load(canvas, onDecoded) {
    const started = performance.now();
    const base = new URL(`/models/${EXPLORER_MODEL}/`, location.href);
    const [response, model] = await Promise.all([fetch(CODES_URL), Model.load(base, { roles: ["decoder"] })]);
    if (!response.ok) throw new ModelError(`cannot read ${CODES_URL}: HTTP ${response.status}`);
    const explorer = new Explorer(canvas, readAsset(await response.json(), model), model, onDecoded);
    explorer.loadMs = performance.now() - started;
    return explorer;
  }

  /** Return the code [x, y] under a point in client (viewport) pixels, or null outside the plane. */
  codeAt(clientX, clientY) {
    const box = this.canvas.getBoundingClientRect();
    const fx = (clientX - box.left) / box.width;
    const fy = (clientY - box.top) / box.height;
    if (!(fx >= 0 && fx <= 1 && fy >= 0 && fy <= 1)) return null;
    const { x, y } = this.asset.bounds;
    return [x[0] + fx * (x[1] - x[0]), y[1] - fy * (y[1] - y[0])];
  }

  /** Return the canvas pixel (x, y) where a code is drawn. */
  pixelOf([zx, zy]) {
    const { x, y } = this.asset.bounds;
    return [
      ((zx - x[0]) / (x[1] - x[0])) * this.canvas.width,
      ((y[1] - zy) / (y[1] - y[0])) * this.canvas.height,
    ];
  }

  /** Decode a code [x, y] and show it; resolves to the pixels (Float32Array of 784). */
  async decodeAt(z) {
    const pixels = await this.model.decode(new Float32Array(z), 1);
    this.last = { z: Array.from(z), pixels };
    this.onDecoded(this.last);
    return pixels;
  }

  #pointer(e) {
    const z = this.codeAt(e.clientX, e.clientY);
    if (z === null) return;
    // Pointer moves come faster than decodes on a slow machine: decode only the latest code.
    this.pending = z;
    this.busy ??= this.#drain().finally(() => (this.busy = null));
  }

  async #drain() {
    while (this.pending !== null) {
      const z = this.pending;
      this.pending = null;
      await this.decodeAt(z);
    }
  }

  /** Draw the axes and one dot per code; return {count, perClass} of what was drawn. */
  #drawDots() {
    const ctx = this.canvas.getContext("2d");
    const { width, height } = this.canvas;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    const [ox, oy] = this.pixelOf([0, 0]);
    ctx.strokeStyle = "#d5d9e0";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, oy);
    ctx.lineTo(width, oy);
    ctx.moveTo(ox, 0);
    ctx.lineTo(ox, height);
    ctx.stroke();
    const { codes, labels } = this.asset;
    const perClass = new Array(COLOURS.length).fill(0);
    for (let i = 0; i < labels.length; i++) {
      const [px, py] = this.pixelOf([codes[2 * i], codes[2 * i + 1]]);
      ctx.fillStyle = COLOURS[labels[i]];
      ctx.beginPath();
      ctx.arc(px, py, DOT_RADIUS, 0, 2 * Math.PI);
      ctx.fill();
      perClass[labels[i]] += 1;
    }
    return { count: labels.length, perClass };
  }
}
