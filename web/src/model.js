// A digitvae model folder in the browser: model.json, the ONNX contract, onnxruntime-web sessions.
//
// Reads everything through the manifest (latent size, classes, file names, sha256) and the
// public ONNX contract in docs/contract.md, as any app in any language would.
import * as ort from "onnxruntime-web";

import { InputError, ModelError } from "./errors.js";
import { asCount, asImages, asLabels, asLatents, asPriorLabels } from "./inputs.js";
import { fetchManifest, fetchOk, readManifest } from "./manifest.js";
import { compileRuntime } from "./runtime.js";

export { ort };

// onnxruntime-web starts its wasm runtime at its first session: it fetches and compiles the
// 14 MB binary then, and sets itself up (a few hundred ms on one core), after the model files
// are in. The page compiles the binary as it opens (compileOrt) and starts the runtime while
// the model files download (startRuntime).
let runtime = null;

// The smallest ONNX model (y = Identity(x), float [1], opset 13, 67 bytes, made with onnx.helper):
// its session starts the runtime before the model files are in.
const IDENTITY = new Uint8Array([
  8, 7, 18, 0, 58, 55, 10, 16, 10, 1, 120, 18, 1, 121, 34, 8, 73, 100, 101, 110, 116, 105, 116, 121, 18, 1, 119,
  90, 15, 10, 1, 120, 18, 10, 10, 8, 8, 1, 18, 4, 10, 2, 8, 1, 98, 15, 10, 1, 121, 18, 10, 10, 8, 8, 1, 18, 4, 10, 2,
  8, 1, 66, 4, 10, 0, 16, 13,
]);

/**
 * Start fetching and compiling onnxruntime-web's wasm binary at `url` (the file it would fetch
 * itself), once; the runtime starts from it when the first model files are being fetched.
 */
export function compileOrt(url) {
  compileRuntime(url);
  ort.env.wasm.wasmPaths ??= { mjs: new URL("./runtime.js", import.meta.url).href, wasm: String(url) };
}

/**
 * Start onnxruntime-web's runtime (once): its setup holds this thread, so it starts once the
 * model files are requested and runs while they download. A failure here is not one: the
 * first model session then starts the runtime itself and reports what fails.
 */
function startRuntime() {
  runtime ??= ort.InferenceSession.create(IDENTITY, { executionProviders: ["wasm"] }).then(
    (session) => session.release(),
    () => {},
  );
  return runtime;
}

/** Return the hex sha256 of an ArrayBuffer. */
async function sha256(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Model {
  /** Use Model.load(baseUrl). */
  constructor(base, manifest, variant) {
    this.base = base;
    this.manifest = manifest;
    ({ latentDim: this.latentDim, numClasses: this.numClasses } = readManifest(manifest, base));
    this.prior = manifest.prior;
    // Classes the prior's label may name (0 for N(0, I) or a prior fit without labels).
    this.priorClasses = typeof manifest.prior === "object" ? Number(manifest.prior.classes) || 0 : 0;
    this.variant = variant;
    this.files = manifest.variants?.[variant];
    if (!this.files) throw new ModelError(`${base}model.json has no variant ${JSON.stringify(variant)}`);
    this.sessions = {};
    this.loading = {}; // role -> Promise of its session, so that each file is fetched once
    this.bytes = {};
    this.timings = {};
  }

  get name() {
    return this.manifest.name;
  }

  /**
   * Load a model folder served at `base` (a URL ending in "/").
   *
   * `roles` picks the ONNX files to load now (each checked against its sha256 in model.json);
   * `ensure` loads others later. The prior's files are skipped for a model whose prior is N(0, I).
   */
  static async load(base, { variant = "fp32", roles = ["encoder", "decoder", "prior", "prior_density"] } = {}) {
    const started = performance.now();
    const model = new Model(base, await Model.manifest(base), variant);
    const { fetchMs, sessionsMs } = await model.ensure(roles);
    model.timings = { fetchMs, sessionsMs, loadMs: performance.now() - started };
    return model;
  }

  /** Fetch and check the model.json of the folder served at `base`. */
  static async manifest(base) {
    return fetchManifest(base);
  }

  /**
   * Use another variant's sessions (loaded or loading) for every role whose file is the same
   * (the same sha256: the int8 and fp32 variants share prior.onnx), instead of loading it again.
   */
  share(other) {
    for (const [role, loading] of Object.entries(other.loading)) {
      if (role in this.loading || this.files[role]?.sha256 !== other.files[role]?.sha256) continue;
      this.loading[role] = loading.then((session) => {
        this.sessions[role] = session;
        this.bytes[this.files[role].path] = other.bytes[other.files[role].path];
        return session;
      });
      this.loading[role].catch(() => delete this.loading[role]);
    }
  }

  /** Load the roles not loaded yet; resolve to {fetchMs, sessionsMs} of this call. */
  async ensure(roles) {
    const started = performance.now();
    const wanted = roles.filter(
      (role) => !(role.startsWith("prior") && this.prior === "standard_normal") && !(role in this.loading),
    );
    const buffers = wanted.map((role) => this.#fetchRole(role));
    const runtimeReady = startRuntime();
    let fetched = started;
    const sessions = (async () => {
      const ready = await Promise.all(buffers);
      await runtimeReady;
      fetched = performance.now();
      const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
      const created = [];
      for (const [i, role] of wanted.entries()) {
        this.bytes[this.files[role].path] = ready[i].byteLength;
        created.push(await ort.InferenceSession.create(new Uint8Array(ready[i]), options));
        this.sessions[role] = created[i];
      }
      return created;
    })();
    for (const [i, role] of wanted.entries()) this.loading[role] = sessions.then((created) => created[i]);
    // A failed load may be tried again.
    sessions.catch(() => wanted.forEach((role) => delete this.loading[role]));
    await Promise.all(roles.filter((role) => role in this.loading).map((role) => this.loading[role]));
    return { fetchMs: fetched - started, sessionsMs: performance.now() - fetched };
  }

  async #fetchRole(role) {
    const entry = this.files[role];
    if (!entry || typeof entry.path !== "string" || entry.path.includes("/")) {
      throw new ModelError(`${this.base}model.json names no plain ${role} file for variant ${this.variant}`);
    }
    const buffer = await (await fetchOk(new URL(entry.path, this.base), `the ${role}`)).arrayBuffer();
    if ((await sha256(buffer)) !== entry.sha256) {
      throw new ModelError(`${this.base}${entry.path}: sha256 differs from model.json; the file is damaged or replaced`);
    }
    return buffer;
  }

  async #run(role, feeds, outputs) {
    const session = this.sessions[role];
    if (!session) throw new ModelError(`model ${this.name} was loaded without its ${role}`);
    try {
      return await session.run(feeds, outputs);
    } catch (err) {
      throw new ModelError(`the ${role} failed: ${err.message}`);
    }
  }

  #labelFeed(labels, n) {
    if (!this.numClasses) {
      if (labels !== undefined && labels !== null) {
        throw new InputError(`model ${this.name} is not conditional; it takes no labels`);
      }
      return {};
    }
    if (labels === undefined || labels === null) {
      throw new InputError(
        `model ${this.name} is conditional: pass labels (integers 0-${this.numClasses - 1}, one per digit)`,
      );
    }
    return { label: new ort.Tensor("int64", asLabels(labels, n, 0, this.numClasses - 1, "labels"), [n]) };
  }

  /** Return the decoder's `image` (or `logits`) for codes z (n x D), a Float32Array of n x 784. */
  async decode(z, n, labels, output = "image") {
    const count = asCount(n, "n");
    const codes = asLatents(z, count, this.latentDim);
    const feeds = { z: new ort.Tensor("float32", codes, [count, this.latentDim]), ...this.#labelFeed(labels, count) };
    const result = await this.#run("decoder", feeds, [output]);
    return result[output].data;
  }

  /** Return the encoder's {mean, logvar} (Float32Arrays n x D) for images (n x 784 in [0, 1]). */
  async encode(images, n, labels) {
    const count = asCount(n, "n");
    const x = asImages(images, count);
    const feeds = { image: new ort.Tensor("float32", x, [count, 1, 28, 28]), ...this.#labelFeed(labels, count) };
    const result = await this.#run("encoder", feeds, ["mean", "logvar"]);
    return { mean: result.mean.data, logvar: result.logvar.data };
  }

  /** Return the prior's `label` rows for n draws from `digit`: -1 (any class) or a class, one or one per draw. */
  priorLabels(digit, n) {
    return asPriorLabels(digit, n, this.priorClasses, this.name);
  }

  /** Return codes z (n x D) from the prior for the given random inputs (noise n x D, uniform n). */
  async samplePrior(noise, uniform, digit, n) {
    const count = asCount(n, "n");
    const labels = this.priorLabels(digit, count);
    const eps = asLatents(noise, count, this.latentDim, "noise");
    if (this.prior === "standard_normal") return eps;
    if (!(uniform instanceof Float32Array) || uniform.length !== count) {
      throw new InputError(`uniform must be a Float32Array of n = ${count} values in [0, 1)`);
    }
    const feeds = {
      noise: new ort.Tensor("float32", eps, [count, this.latentDim]),
      uniform: new ort.Tensor("float32", uniform, [count]),
      label: new ort.Tensor("int64", labels, [count]),
    };
    return (await this.#run("prior", feeds, ["z"])).z.data;
  }

  /** Return log p(z) per row (log p(z | class) where labels are given), a Float64Array of n. */
  async logPrior(z, n, labels) {
    const d = this.latentDim;
    const out = new Float64Array(n);
    if (this.prior === "standard_normal") {
      for (let i = 0; i < n; i++) {
        let sq = 0;
        for (let j = 0; j < d; j++) sq += z[i * d + j] * z[i * d + j];
        out[i] = -0.5 * (sq + d * Math.log(2 * Math.PI));
      }
      return out;
    }
    const feeds = {
      z: new ort.Tensor("float32", z, [n, d]),
      label: new ort.Tensor("int64", labels ?? new BigInt64Array(n).fill(-1n), [n]),
    };
    out.set((await this.#run("prior_density", feeds, ["log_prob"])).log_prob.data);
    return out;
  }

  /** Release the onnxruntime sessions (shared ones too). */
  async release() {
    await Promise.all([...new Set(Object.values(this.sessions))].map((s) => s.release()));
  }
}
