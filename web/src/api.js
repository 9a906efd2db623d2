// window.digitvae: the page's model for scripts and tests, each call waiting for the model to load.
import * as ort from "onnxruntime-web";

import { InputError } from "./errors.js";
import { PIXELS, asCount, asImages } from "./inputs.js";
import { Model, compileOrt } from "./model.js";
import { Random } from "./rng.js";

export const DEFAULT_MODEL = "mnist-vae";

/** Return the model name a page URL asks for (?model=NAME), or the default. */
export function modelName(search) {
  const name = new URLSearchParams(search).get("model") ?? DEFAULT_MODEL;
  if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith(".")) {
    throw new InputError(`model must be a shipped model's name, got ${JSON.stringify(name)}`);
  }
  return name;
}

/** Return the model variant a page URL asks for (?variant=int8), or "fp32". */
export function variantName(search) {
  const variant = new URLSearchParams(search).get("variant") ?? "fp32";
  if (!/^[a-z0-9]+$/.test(variant)) {
    throw new InputError(`variant must be a variant name in model.json (fp32, int8, fp16), got ${JSON.stringify(variant)}`);
  }
  return variant;
}

/**
 * Return the variant whose decoder draws the page's first digits: int8 on an fp32 page whose
 * model ships an int8 decoder with the same prior file (a quarter of the fp32 decoder's bytes;
 * scripts/web_first_grid.py compares their digits), else the page's own variant.
 */
export function firstVariant(manifest, variant) {
  const own = manifest.variants?.[variant];
  const quick = manifest.variants?.int8;
  if (variant !== "fp32" || !own || !quick?.decoder) return variant;
  const samePrior = manifest.prior === "standard_normal" || quick.prior?.sha256 === own.prior?.sha256;
  return samePrior ? "int8" : variant;
}

function timed(record, key, promise) {
  const started = performance.now();
  return promise.then((value) => {
    record[key] = performance.now() - started;
    return value;
  });
}

/** Sum the bytes fetched so far over the wire (headers and compressed bodies): the page and every resource. */
export function bytesFetched() {
  const entries = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
  return entries.reduce((sum, e) => sum + (e.transferSize || 0), 0);
}

/**
 * Return the API object. Generating needs only the prior and the decoder. `first` resolves once
 * the first digits' decoder is loaded (`firstVariant`: int8 on an fp32 page); `generator` loads
 * the page's variant's decoder (asking starts it) and resolves to the model's description, and
 * every call without a `variant` option waits for that decoder. The encoder, the prior density and the
 * outlier checks' reference model load on first need (`loadAll`: the pad's first use, or any
 * call that encodes or scores); `ready` starts that and resolves to the description with all files.
 *
 * `timings` holds the load breakdown and the last duration of each call, in milliseconds.
 */
export function createApi(name, variant = "fp32") {
  const timings = {};
  const started = performance.now();
  // onnxruntime-web's wasm downloads and compiles while model.json and the model files download.
  compileOrt(new URL("ort-wasm-simd-threaded.wasm", import.meta.resolve("onnxruntime-web")));
  const base = new URL(`/models/${name}/`, location.href);
  const manifest = Model.manifest(base);
  const models = new Map(); // variant -> Promise of its Model with the prior and the decoder loaded
  const created = [];
  /** Return the Model of a variant with its prior and decoder, loading it (once) on first need. */
  const modelOf = (which) => {
    if (!models.has(which)) {
      const loading = manifest.then(async (m) => {
        if (!m.variants?.[which]) {
          const known = Object.keys(m.variants ?? {}).join(", ");
          throw new InputError(`variant must be one of ${name}'s variants (${known}), got ${JSON.stringify(which)}`);
        }
        const model = new Model(base, m, which);
        created.forEach((other) => model.share(other)); // the prior, loaded once for all variants
        created.push(model);
        const loadStarted = performance.now();
        const { fetchMs, sessionsMs } = await model.ensure(["prior", "decoder"]);
        model.timings = { fetchMs, sessionsMs, loadMs: performance.now() - loadStarted };
        return model;
      });
      models.set(which, loading);
      loading.catch(() => models.delete(which)); // may be tried again
    }
    return models.get(which);
  };
  // The first digits come from `firstVariant`'s decoder; every call without a variant uses the
  // page's, fetched after the first digits are shown (or on a call's first need).
  const first = manifest.then((m) => firstVariant(m, variant));
  const firstModel = first.then((which) => modelOf(which)).then((model) => {
    Object.assign(timings, model.timings, { loadMs: performance.now() - started });
    return model;
  });
  let pageModel = null;
  const generating = () => {
    pageModel ??= firstModel.then((model) =>
      model.variant === variant ? model : timed(timings, "variantLoadMs", modelOf(variant)),
    );
    return pageModel;
  };
  /** Return the model for a call's `variant` option (the page's when undefined). */
  const forCall = (which) => (which === undefined || which === variant ? generating() : modelOf(which));
  let full = null;
  let detector = null;
  /** Load the encoder, the prior density and the detector's reference model (once). */
  const loadAll = () => {
    if (full === null) {
      full = generating().then((model) =>
        timed(timings, "encoderLoadMs", model.ensure(["encoder", "prior_density"]).then(() => model)),
      );
      detector = full.then((model) =>
        timed(
          timings,
          "detectorLoadMs",
          import("./scoring.js").then(({ Detector }) => Detector.load(model)),
        ),
      );
      detector.catch(() => {}); // reported where it is awaited; not an unhandled rejection meanwhile
    }
    return full;
  };
  const api = {
    ort,
    timings,
    /** A Promise of the description of the model the first digits come from (its `variant`: int8 on an fp32 page). */
    first: firstModel.then((model) => api.info(model)),
    /** A Promise of the description once the page's variant's prior and decoder are loaded (asking starts it). */
    get generator() {
      return generating().then((model) => api.info(model));
    },
    loadAll,
    get ready() {
      return loadAll().then((model) => api.info(model));
    },
    get detector() {
      loadAll();
      return detector;
    },
    info(model) {
      return {
        model: model.name,
        variant: model.variant,
        latentDim: model.latentDim,
        numClasses: model.numClasses,
        prior: typeof model.prior === "string" ? model.prior : model.prior.kind,
        priorClasses: model.priorClasses,
        bytes: { ...model.bytes },
        ortVersion: ort.env.versions?.web ?? "",
        threads: ort.env.wasm.numThreads,
        crossOriginIsolated: globalThis.crossOriginIsolated === true,
      };
    },
    /** Note the page's first digits on screen: the time since the page opened and the bytes fetched till then. */
    firstDigitsShown() {
      if (timings.firstDigitsMs !== undefined) return;
      timings.firstDigitsMs = performance.now();
      timings.bytesBeforeFirstDigits = bytesFetched();
      timings.filesBeforeFirstDigits = performance
        .getEntriesByType("resource")
        .map((e) => ({ url: e.name, bytes: e.transferSize, size: e.decodedBodySize }));
    },
    /**
     * Decode codes z (Float32Array n x D) to pixels (Float32Array n x 784 in [0, 1]) with the
     * page's variant's decoder, or `variant`'s.
     */
    async decode(z, n, labels, { variant: which } = {}) {
      const model = await forCall(which);
      return timed(timings, "decodeMs", model.decode(z, n, labels));
    },
    /** Encode images (Float32Array n x 784 in [0, 1]) to {mean, logvar} (Float32Arrays n x D). */
    async encode(images, n, labels) {
      const model = await loadAll();
      return timed(timings, "encodeMs", model.encode(images, n, labels));
    },
    /** Encode, then decode the means: Float32Array n x 784. */
    async reconstruct(images, n, labels) {
      const model = await loadAll();
      const started = performance.now();
      const { mean } = await model.encode(images, n, labels);
      const out = await model.decode(mean, n, labels);
      timings.reconstructMs = performance.now() - started;
      return out;
    },
    /**
     * Draw n digits through the prior: {z, images}. `digit` is -1 (any class), 0-9, or one per
     * digit; `seed` an integer for a repeatable draw. `noise` (Float32Array n x D) and `uniform`
     * (Float32Array n) replace the page's random draws: numpy's default_rng(seed) draws (first
     * standard_normal((n, D), float32), then random(n, float32)) give Python's digits for that seed.
     * A conditional model's decoder gets the same classes (any class: digit i % classes).
     * `variant` decodes with that variant's decoder instead of the page's (the first digits: int8).
     */
    async generate(n, { seed, digit = -1, noise, uniform, variant: which } = {}) {
      const model = await forCall(which);
      const count = asCount(n, "n");
      const started = performance.now();
      const random = new Random(seed);
      noise ??= random.normal(count * model.latentDim);
      uniform ??= random.uniform(count);
      const labels = model.priorLabels(digit, count);
      const z = await model.samplePrior(noise, uniform, Array.from(labels, Number), count);
      let decoderLabels;
      if (model.numClasses) {
        decoderLabels = Array.from(labels, (v, i) => (v < 0n ? i % model.numClasses : Number(v)));
      }
      const images = await model.decode(z, count, decoderLabels);
      timings.generateMs = performance.now() - started;
      return { z, images, labels: decoderLabels };
    },
    /**
     * Decode `steps` codes evenly spaced on the line between the encoder means of two images
     * (Float32Arrays of 784; the first and last steps are the means themselves): {means, z, frames}.
     */
    async interpolate(a, b, steps = 10, labels) {
      const model = await loadAll();
      const count = asCount(steps, "steps");
      if (count < 2) throw new InputError(`steps must be at least 2 (the two ends), got ${steps}`);
      const started = performance.now();
      const images = new Float32Array(2 * PIXELS);
      images.set(asImages(a, 1, "a"), 0);
      images.set(asImages(b, 1, "b"), PIXELS);
      // A conditional model reads both digits as the one class given (a number).
      const { mean } = await model.encode(images, 2, labels);
      const d = model.latentDim;
      const z = new Float32Array(count * d);
      for (let i = 0; i < count; i++) {
        const t = i / (count - 1);
        for (let j = 0; j < d; j++) z[i * d + j] = (1 - t) * mean[j] + t * mean[d + j];
      }
      const frames = await model.decode(z, count, labels);
      timings.interpolateMs = performance.now() - started;
      return { means: [mean.slice(0, d), mean.slice(d)], z, frames };
    },
    /**
     * Score images (Float32Array n x 784) with the calibrated checks: {scores, flags, ranges}.
     * `eps` / `epsReference` (n x k x D posterior noise) make the scores repeatable.
     */
    async score(images, n, { labels, eps, epsReference, seed } = {}) {
      const scorer = await api.detector;
      const started = performance.now();
      const scores = await scorer.scores(images, n, { labels, eps, epsReference, random: new Random(seed) });
      timings.scoreMs = performance.now() - started;
      return { scores, flags: scorer.flags(scores), ranges: scorer.ranges, k: scorer.k };
    },
  };
  return api;
}
