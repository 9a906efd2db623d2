// The outlier checks of digitvae.runtime (detector.py, scoring.py, likelihood.py), in JavaScript.
//
// Each image gets the IW-NLL under the model (Burda et al. 2015, k posterior samples), the
// IW-NLL minus its zlib code length ("complexity"), and the IW-NLL minus the IW-NLL under the
// calibration's reference model ("ratio"). Each is compared with the typical range calibrated
// on validation digits (model.json metrics.score). With the same posterior noise as Python
// (numpy's default_rng(seed).standard_normal((n, k, D))) the scores are Python's, up to float
// rounding; with the page's own noise they are other draws of the same estimate.
import { deflate } from "pako";

import { InputError, ModelError } from "./errors.js";
import { PIXELS, asCount, asImages } from "./inputs.js";
import { Model } from "./model.js";

export const CHECKS = ["nll", "complexity", "ratio"];
// Posterior samples per decoder call: bounds the wasm heap as the Python runtime bounds memory.
const CHUNK = 4096;
const LOG_2PI = Math.log(2 * Math.PI);
const f32 = Math.fround;

function softplus(v) {
  return Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v)));
}

/** Round half to even, as numpy's rint. */
function rint(v) {
  const floor = Math.floor(v);
  const frac = v - floor;
  if (frac !== 0.5) return frac < 0.5 ? floor : floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Return each image's zlib (level 9) code length in nats, from its 8-bit pixels. */
export function codeLength(images, n) {
  const out = new Float64Array(n);
  const row = new Uint8Array(PIXELS);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < PIXELS; p++) row[p] = rint(f32(images[i * PIXELS + p] * 255));
    out[i] = deflate(row, { level: 9 }).length * 8 * Math.LN2;
  }
  return out;
}

/**
 * Return each image's importance-weighted estimate of -log p(x) in nats (Float64Array of n).
 *
 * `eps` (Float32Array n x k x D) is the posterior noise; without it `random.normal` draws it.
 */
export async function iwNll(model, images, n, k, { labels, eps, random } = {}) {
  const count = asCount(n, "n");
  const samples = asCount(k, "k");
  const x = asImages(images, count);
  const d = model.latentDim;
  const size = count * samples * d;
  let noise = eps;
  if (noise === undefined) {
    if (!random) throw new InputError("iwNll needs eps (n x k x D posterior noise) or a random source");
    noise = random.normal(size);
  } else if (!(noise instanceof Float32Array) || noise.length !== size) {
    throw new InputError(`eps must be a Float32Array of n x k x D = ${count} x ${samples} x ${d} values`);
  }
  const { mean, logvar } = await model.encode(x, count, labels);
  const classes = model.numClasses ? Array.from(typeof labels === "number" ? [labels] : labels, Number) : null;
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const label = classes ? classes[classes.length === 1 ? 0 : i] : undefined;
    let logvarSum = 0;
    for (let j = 0; j < d; j++) logvarSum += logvar[i * d + j];
    let top = -Infinity;
    let scaled = 0;
    for (let s0 = 0; s0 < samples; s0 += CHUNK) {
      const m = Math.min(CHUNK, samples - s0);
      const z = new Float32Array(m * d);
      const logQ = new Float64Array(m);
      for (let s = 0; s < m; s++) {
        let sq = 0;
        for (let j = 0; j < d; j++) {
          const e = noise[(i * samples + s0 + s) * d + j];
          const lv = logvar[i * d + j];
          // float32 steps, as numpy computes mean + exp(0.5 * logvar) * eps
          z[s * d + j] = f32(mean[i * d + j] + f32(f32(Math.exp(f32(0.5 * lv))) * e));
          sq += e * e;
        }
        logQ[s] = -0.5 * (sq + logvarSum + d * LOG_2PI);
      }
      const rowLabels = classes ? new Array(m).fill(label) : undefined;
      const logits = await model.decode(z, m, rowLabels, "logits");
      const logPz = await model.logPrior(z, m, classes ? BigInt64Array.from(rowLabels, BigInt) : undefined);
      const logW = new Float64Array(m);
      for (let s = 0; s < m; s++) {
        let logPx = 0;
        for (let p = 0; p < PIXELS; p++) {
          const l = logits[s * PIXELS + p];
          logPx += x[i * PIXELS + p] * l - softplus(l);
        }
        logW[s] = logPx + logPz[s] - logQ[s];
      }
      // A log-sum-exp over the samples, kept up to date chunk by chunk.
      const chunkTop = Math.max(...logW);
      const newTop = Math.max(top, chunkTop);
      scaled = top === -Infinity ? 0 : scaled * Math.exp(top - newTop);
      for (const w of logW) scaled += Math.exp(w - newTop);
      top = newTop;
    }
    out[i] = -(top + Math.log(scaled) - Math.log(samples));
  }
  return out;
}

/** Return the fp32 sha256 of the files a model's likelihood depends on. */
function likelihoodHashes(manifest) {
  const files = manifest.variants.fp32;
  const out = {};
  for (const role of ["encoder", "decoder", "prior_density"]) if (files[role]) out[role] = files[role].sha256;
  return out;
}

function sameHashes(a, b) {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b ?? {}).length && keys.every((key) => a[key] === b[key]);
}

/** The calibrated outlier checks of a model (model.json metrics.score), with its reference model. */
export class Detector {
  constructor(model, calibration, reference) {
    this.model = model;
    this.k = calibration.k;
    this.ranges = calibration.ranges;
    this.reference = reference;
  }

  /** Read a loaded model's calibration and load the reference model it names (a shipped sibling). */
  static async load(model) {
    const stored = model.manifest.metrics?.score;
    if (!stored?.checks?.nll) {
      throw new ModelError(`model ${model.name} has no calibrated score ranges (model.json metrics.score)`);
    }
    const ranges = {};
    for (const name of CHECKS) {
      const range = stored.checks[name];
      if (range) ranges[name] = [Number(range.low), Number(range.high)];
    }
    let reference = null;
    if (stored.reference) {
      const name = stored.reference.model;
      if (typeof name !== "string" || !/^[A-Za-z0-9._-]+$/.test(name)) {
        throw new ModelError(`the calibration's reference ${JSON.stringify(name)} is not a shipped model name`);
      }
      reference = await Model.load(new URL(`../${name}/`, model.base), {
        roles: ["encoder", "decoder", "prior_density"],
      });
      if (!sameHashes(likelihoodHashes(reference.manifest), stored.reference.sha256)) {
        throw new ModelError(`the reference model ${name} changed since calibration (its sha256 differs)`);
      }
    }
    if (("ratio" in ranges) !== (reference !== null)) {
      throw new ModelError("model.json metrics.score: the ratio check and its reference model come together");
    }
    return new Detector(model, { k: Number(stored.k), ranges }, reference);
  }

  get checks() {
    return Object.keys(this.ranges);
  }

  /**
   * Return each calibrated check's score per image ({nll, complexity, ratio}: Float64Arrays).
   *
   * `eps` and `epsReference` are the posterior noise of the model and of the reference
   * (n x k x D each); without them `random` draws it.
   */
  async scores(images, n, { labels, eps, epsReference, random } = {}) {
    const nll = await iwNll(this.model, images, n, this.k, { labels, eps, random });
    const scores = { nll };
    if ("complexity" in this.ranges) {
      const bits = codeLength(images, n);
      scores.complexity = nll.map((v, i) => v - bits[i]);
    }
    if (this.reference) {
      const ref = await iwNll(this.reference, images, n, this.k, { eps: epsReference, random });
      scores.ratio = nll.map((v, i) => v - ref[i]);
    }
    return scores;
  }

  /** Return "" for each typical image and the failed checks (e.g. "ratio low") for each outlier. */
  flags(scores) {
    const n = scores.nll.length;
    const marks = Array.from({ length: n }, () => []);
    for (const name of CHECKS) {
      if (!(name in this.ranges)) continue;
      const [low, high] = this.ranges[name];
      for (let i = 0; i < n; i++) {
        if (scores[name][i] < low) marks[i].push(`${name} low`);
        else if (scores[name][i] > high) marks[i].push(`${name} high`);
      }
    }
    return marks.map((m) => m.join(", "));
  }
}
