// window.digitvae: the page's model for scripts and tests, each call waiting for the model to load.
//
// onnxruntime-web (./model.js) is imported on first need: on an fp32 page the first digits come
// from plain JavaScript (./first.js) and onnxruntime-web loads after them, for everything else.
import { InputError, ModelError } from "./errors.js";
import { FirstDecoder, firstDecoderUrl } from "./first.js";
import { PIXELS, asCount, asImages, asPriorLabels } from "./inputs.js";
import { fetchManifest } from "./manifest.js";
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
 * Fetch the model's first-digits file (public/first-decoder/NAME.bin) and read it against its
 * model.json; rejects with a ModelError saying why it cannot draw the first digits.
 */
async function readFirst(name, manifest) {
  const url = firstDecoderUrl(name, location.href);
  const response = await fetch(url);
  if (!response.ok) throw new ModelError(`no first-digits file at ${url}: HTTP ${response.status}`);
  const [buffer, m] = await Promise.all([response.arrayBuffer(), manifest]);
  return FirstDecoder.read(buffer, m);
}

/**
 * Return the API object. Generating needs only the prior and the decoder. `first` resolves once
 * the first digits' decoder is loaded: on an fp32 page the JavaScript one (`readFirst`), else, or
 * where its file is refused, `firstVariant`'s in onnxruntime-web (int8 on an fp32 page); `generator` loads
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
  const base = new URL(`/models/${name}/`, location.href);
  const manifest = fetchManifest(base);
  let runtime = null;
  /** Import onnxruntime-web and the page's Model (once); its wasm downloads and compiles from then on. */
  const loadRuntime = () => {
    runtime ??= import("./model.js").then((module) => {
      module.compileOrt(new URL("ort-wasm-simd-threaded.wasm", import.meta.resolve("onnxruntime-web")));
      api.ort = module.ort;
      return module;
    });
    return runtime;
  };
  // The first grid in plain JavaScript where the page is fp32's and its first-digits file was
  // made from this model.json's decoder and prior; else (null) with onnxruntime-web, as before.
  const quick =
    variant === "fp32"
      ? readFirst(name, manifest).then(
          (decoder) => {
            timings.firstLoadMs = performance.now() - started;
            return decoder;
          },
          (err) => {
            timings.firstRefused = err.message;
            return null;
          },
        )
      : Promise.resolve(null);
  if (variant !== "fp32") loadRuntime();
  const models = new Map(); // variant -> Promise of its Model with the prior and the decoder loaded
  const created = [];
  /** Return the Model of a variant with its prior and decoder, loading it (once) on first need. */
  const modelOf = (which) => {
    if (!models.has(which)) {
      const loading = Promise.all([manifest, loadRuntime()]).then(async ([m, { Model }]) => {
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
  // The first digits come from the JavaScript decoder, or else from `firstVariant`'s decoder in
  // onnxruntime-web; every call without a variant uses the page's, fetched after the first
  // digits are shown (or on a call's first need).
  const firstPath = quick.then((decoder) => {
    timings.firstPath = decoder ? "javascript" : "onnxruntime-web";
    if (decoder) return { decoder };
    return manifest
      .then((m) => modelOf(firstVariant(m, variant)))
      .then((model) => {
        Object.assign(timings, model.timings, { loadMs: performance.now() - started });
        return { model };
      });
  });
  let pageModel = null;
  const generating = () => {
    pageModel ??= firstPath.then(({ model }) => {
      if (model) return model.variant === variant ? model : timed(timings, "variantLoadMs", modelOf(variant));
      return modelOf(variant).then((loaded) => {
        Object.assign(timings, loaded.timings);
        return loaded;
      });
    });
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
    /** onnxruntime-web's module, once imported (null before). */
    ort: null,
    timings,
    /**
     * A Promise of the description of what draws the first digits: `path` "javascript" (the
     * first-digits file) or "onnxruntime-web" (then `variant` says which decoder: int8 on an fp32 page).
     */
    first: firstPath.then(({ decoder, model }) => (decoder ? api.describeFirst(decoder) : api.info(model))),
    /** The first grid as drawn: {path, digit, noise, uniform, labels, z, images}, once drawn (null before). */
    firstGrid: null,
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
        path: "onnxruntime-web",
        latentDim: model.latentDim,
        numClasses: model.numClasses,
        prior: typeof model.prior === "string" ? model.prior : model.prior.kind,
        priorClasses: model.priorClasses,
        bytes: { ...model.bytes },
        ortVersion: api.ort?.env.versions?.web ?? "",
        threads: api.ort?.env.wasm.numThreads,
        crossOriginIsolated: globalThis.crossOriginIsolated === true,
      };
    },
    /** Describe the JavaScript first-digits decoder as `info` describes a model. */
    async describeFirst(decoder) {
      const m = await manifest;
      return {
        model: m.name,
        variant: variant,
        path: "javascript",
        latentDim: decoder.latentDim,
        numClasses: decoder.numClasses,
        prior: typeof m.prior === "string" ? m.prior : m.prior.kind,
        priorClasses: typeof m.prior === "object" ? Number(m.prior.classes) || 0 : 0,
        bytes: { [`first-decoder/${name}.bin`]: decoder.bytes },
        ortVersion: "",
        threads: undefined,
        crossOriginIsolated: globalThis.crossOriginIsolated === true,
      };
    },
    /**
     * Draw the page's first grid: n digits through the prior from `seed` and `digit` (as
     * `generate`), with the JavaScript decoder or else the first onnxruntime-web decoder; kept
     * in `firstGrid`. Resolves to its images.
     */
    async generateFirst(n, { seed, digit = -1 } = {}) {
      const { decoder, model } = await firstPath;
      if (model) {
        const { z, images, labels } = await api.generate(n, { seed, digit, variant: model.variant });
        api.firstGrid = { path: "onnxruntime-web", digit, z, labels, images };
        return images;
      }
      const m = await manifest;
      const count = asCount(n, "n");
      const begun = performance.now();
      const priorClasses = typeof m.prior === "object" ? Number(m.prior.classes) || 0 : 0;
      const prior = asPriorLabels(digit, count, priorClasses, name);
      const random = new Random(seed);
      const noise = random.normal(count * decoder.latentDim);
      const uniform = random.uniform(count);
      const z = decoder.samplePrior(noise, uniform, prior, count);
      const labels = decoder.numClasses
        ? Array.from(prior, (v, i) => (v < 0n ? i % decoder.numClasses : Number(v)))
        : undefined;
      const images = decoder.decode(z, count, labels);
      timings.generateMs = performance.now() - begun;
      api.firstGrid = { path: "javascript", digit, noise, uniform, labels, z, images };
      return images;
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
     * `variant` decodes with that variant's decoder instead of the page's.
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
