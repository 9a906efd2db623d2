// The first grid's digits in plain JavaScript, before onnxruntime-web has loaded.
//
// The learned prior's Gaussian mixture and the decoder's MLP, from the numbers of prior.onnx and
// decoder.onnx that scripts/web_first_decoder.py writes to public/first-decoder/<model>.bin (the
// decoder's weights as int8 per output channel, a float32 scale each). The file names the sha256
// of the ONNX files it was made from; `FirstDecoder.read` refuses one that is not the model.json's,
// and the page then draws its first digits with onnxruntime-web, as it does for everything after.
import { ModelError } from "./errors.js";

export const FORMAT = "digitvae-first-decoder";
export const FORMAT_VERSION = 1;
const PIXELS = 784;
const TYPES = { int8: Int8Array, float32: Float32Array };

// A 247-byte WebAssembly module, assembled by hand, with one function and its memory:
// layer(w, x, y, n, inputs, outputs) writes to y (float32 [n, outputs]) the products of the int8
// weights at w ([outputs, inputs]) and the float32 inputs at x ([n, inputs]), byte offsets into
// the memory, `inputs` a multiple of 4. Each product is a dot(w, x, inputs) of four lanes at a
// time (SIMD: v128.load32_zero, i16x8.extend_low_i8x16_s, i32x4.extend_low_i16x8_s,
// f32x4.convert_i32x4_s, f32x4.mul, f32x4.add; the four lanes summed at the end). The same
// products in a JavaScript loop took 55-125 ms for the first 40 digits in the page, before the
// loop was compiled; `decode` uses that loop where WebAssembly SIMD is not available.
// prettier-ignore
const LAYER = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 17, 2, 96, 3, 127, 127, 127, 1, 125, 96, 6, 127, 127, 127, 127, 127, 127, 0, 3,
  3, 2, 0, 1, 5, 3, 1, 0, 1, 7, 18, 2, 5, 108, 97, 121, 101, 114, 0, 1, 6, 109, 101, 109, 111, 114, 121, 2,
  0, 10, 187, 1, 2, 97, 1, 1, 123, 32, 1, 32, 2, 65, 2, 116, 106, 33, 2, 2, 64, 3, 64, 32, 1, 32, 2, 79,
  13, 1, 32, 3, 32, 0, 253, 92, 0, 0, 253, 135, 1, 253, 167, 1, 253, 250, 1, 32, 1, 253, 0, 0, 0, 253, 230, 1,
  253, 228, 1, 33, 3, 32, 0, 65, 4, 106, 33, 0, 32, 1, 65, 16, 106, 33, 1, 12, 0, 11, 11, 32, 3, 253, 31, 0,
  32, 3, 253, 31, 1, 146, 32, 3, 253, 31, 2, 146, 32, 3, 253, 31, 3, 146, 11, 87, 1, 2, 127, 2, 64, 3, 64, 32,
  6, 32, 3, 79, 13, 1, 65, 0, 33, 7, 2, 64, 3, 64, 32, 7, 32, 5, 79, 13, 1, 32, 2, 32, 0, 32, 7, 32,
  4, 108, 106, 32, 1, 32, 6, 32, 4, 108, 65, 2, 116, 106, 32, 4, 16, 0, 56, 2, 0, 32, 2, 65, 4, 106, 33, 2,
  32, 7, 65, 1, 106, 33, 7, 12, 0, 11, 11, 32, 6, 65, 1, 106, 33, 6, 12, 0, 11, 11, 11,
]);
const PAGE = 65536;

/** Return the layer kernel {layer, memory}, or null where WebAssembly SIMD is not available. */
function layerKernel() {
  if (typeof WebAssembly !== "object" || !WebAssembly.validate(LAYER)) return null;
  const { layer, memory } = new WebAssembly.Instance(new WebAssembly.Module(LAYER)).exports;
  return { layer, memory };
}

/** Grow a WebAssembly memory to at least `bytes`. */
function reserve(memory, bytes) {
  const short = bytes - memory.buffer.byteLength;
  if (short > 0) memory.grow(Math.ceil(short / PAGE));
}

const elu = (v) => (v > 0 ? v : Math.expm1(v));
const sigmoid = (v) => 1 / (1 + Math.exp(-v));

/** Return the URL of a model's first-digits file, next to the page. */
export function firstDecoderUrl(name, page) {
  return new URL(`/first-decoder/${name}.bin`, page);
}

function unpack(buffer) {
  if (buffer.byteLength < 4) throw new ModelError("the first-digits file is empty");
  const length = new DataView(buffer).getUint32(0, true);
  if (length % 4 || 4 + length > buffer.byteLength) throw new ModelError("the first-digits file's header is cut short");
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
  } catch {
    throw new ModelError("the first-digits file's header is not JSON");
  }
  if (header?.format !== FORMAT || header?.format_version !== FORMAT_VERSION) {
    throw new ModelError(`the first-digits file is not a ${FORMAT} file of format_version ${FORMAT_VERSION}`);
  }
  const start = 4 + length;
  const arrays = {};
  for (const [name, { dtype, offset, length: bytes }] of Object.entries(header.arrays ?? {})) {
    const Type = TYPES[dtype];
    if (!Type || offset % Type.BYTES_PER_ELEMENT || start + offset + bytes > buffer.byteLength) {
      throw new ModelError(`the first-digits file's array ${name} is not a whole ${dtype} array inside the file`);
    }
    arrays[name] = new Type(buffer, start + offset, bytes / Type.BYTES_PER_ELEMENT);
  }
  return { header, arrays };
}

/** Throw a ModelError unless the file was made from the model.json's fp32 decoder and prior. */
function checkMade(header, manifest) {
  const files = manifest.variants?.fp32 ?? {};
  const stale = (what, made, now) =>
    new ModelError(`the first-digits file was made from another ${what} (sha256 ${made}, model.json's is ${now})`);
  if (header.model !== manifest.name) throw new ModelError(`the first-digits file is ${header.model}'s, not ${manifest.name}'s`);
  if (header.decoder?.sha256 !== files.decoder?.sha256) throw stale("decoder", header.decoder?.sha256, files.decoder?.sha256);
  const standard = manifest.prior === "standard_normal";
  if (standard !== (header.prior === null) || (!standard && header.prior.sha256 !== files.prior?.sha256)) {
    throw stale("prior", header.prior?.sha256 ?? "none", standard ? "none" : files.prior?.sha256);
  }
  if (header.latent_dim !== manifest.latent_dim || header.num_classes !== manifest.num_classes) {
    throw new ModelError("the first-digits file's latent size or classes are not model.json's");
  }
}

export class FirstDecoder {
  /** Use FirstDecoder.read(buffer, manifest); `simd: false` keeps to the JavaScript loop. */
  constructor(header, arrays, { simd = true } = {}) {
    this.latentDim = header.latent_dim;
    this.numClasses = header.num_classes;
    this.bytes = 0;
    let inputs = this.latentDim + this.numClasses;
    this.layers = header.layers.map(({ in: n, out, activation }, i) => {
      const [q, scale, bias] = [arrays[`w${i}`], arrays[`s${i}`], arrays[`b${i}`]];
      if (n !== inputs || q?.length !== n * out || scale?.length !== out || bias?.length !== out) {
        throw new ModelError(`the first-digits file's layer ${i} does not map ${inputs} inputs to its weights`);
      }
      inputs = out;
      return { inputs: n, outputs: out, weight: q, scale, bias, activation };
    });
    const inner = this.layers.slice(0, -1).every((layer) => layer.activation === "elu");
    if (inputs !== PIXELS || !inner || this.layers.at(-1).activation !== "sigmoid") {
      throw new ModelError(`the first-digits file's decoder is not ELU layers ending in ${PIXELS} sigmoid pixels`);
    }
    // The weights of each layer whose inputs are a multiple of 4 go into the kernel's memory once.
    this.kernel = simd ? layerKernel() : null;
    if (this.kernel) {
      let end = 0;
      for (const layer of this.layers) {
        if (layer.inputs % 4) continue;
        layer.at = end;
        end += layer.weight.length;
      }
      this.inputsAt = Math.ceil(end / 16) * 16;
      reserve(this.kernel.memory, this.inputsAt);
      for (const layer of this.layers) {
        if (layer.at !== undefined) new Int8Array(this.kernel.memory.buffer, layer.at, layer.weight.length).set(layer.weight);
      }
    }
    this.prior = null;
    if (header.prior) {
      const { rows, components } = header.prior;
      const d = this.latentDim;
      const { cumulative, means, cholesky } = arrays;
      if (cumulative?.length !== rows * components || means?.length !== components * d) {
        throw new ModelError("the first-digits file's mixture does not match its component count");
      }
      if (cholesky?.length !== (components * d * (d + 1)) / 2) {
        throw new ModelError("the first-digits file's cholesky factors are not lower triangles");
      }
      this.prior = { rows, components, cumulative, means, cholesky };
    }
  }

  /** Read a first-digits file (an ArrayBuffer) made for `manifest` (a model.json); throws a ModelError otherwise. */
  static read(buffer, manifest, options) {
    const { header, arrays } = unpack(buffer);
    checkMade(header, manifest);
    const decoder = new FirstDecoder(header, arrays, options);
    decoder.bytes = buffer.byteLength;
    return decoder;
  }

  /**
   * Return codes z (Float32Array n x D) from the prior, as prior.onnx computes them: row `label`
   * of the cumulative weights (-1: the last row, any class), the first component whose cumulative
   * weight exceeds the uniform draw, then its mean + its cholesky factor @ the noise.
   */
  samplePrior(noise, uniform, labels, n) {
    const d = this.latentDim;
    if (!this.prior) return Float32Array.from(noise.subarray(0, n * d));
    const { rows, components, cumulative, means, cholesky } = this.prior;
    const tri = (d * (d + 1)) / 2;
    const z = new Float32Array(n * d);
    for (let i = 0; i < n; i++) {
      const label = Number(labels[i]);
      const row = (label < 0 ? rows + label : label) * components;
      let c = 0;
      while (c < components && !(uniform[i] < cumulative[row + c])) c++;
      if (c === components) c = 0; // prior.onnx's ArgMax of all zeros
      const factor = c * tri;
      for (let r = 0; r < d; r++) {
        let sum = 0;
        const at = factor + (r * (r + 1)) / 2;
        for (let k = 0; k <= r; k++) sum += cholesky[at + k] * noise[i * d + k];
        z[i * d + r] = means[c * d + r] + sum;
      }
    }
    return z;
  }

  /** Return the decoder's image (Float32Array n x 784 in [0, 1]) for codes z (n x D) and, if conditional, labels. */
  decode(z, n, labels) {
    const d = this.latentDim;
    let x = new Float32Array(n * (d + this.numClasses));
    for (let i = 0; i < n; i++) {
      x.set(z.subarray(i * d, (i + 1) * d), i * (d + this.numClasses));
      if (this.numClasses) x[i * (d + this.numClasses) + d + Number(labels[i])] = 1; // the label's one-hot columns
    }
    for (const layer of this.layers) x = this.kernel && layer.at !== undefined ? this.#simd(layer, x, n) : layerJs(layer, x, n);
    return x;
  }

  /** Return a layer's outputs for inputs x (n rows) with the WebAssembly kernel: (q . x) scale + bias, then the activation. */
  #simd({ inputs, outputs, at, scale, bias, activation }, x, n) {
    const { layer, memory } = this.kernel;
    const sumsAt = this.inputsAt + Math.ceil(x.byteLength / 16) * 16;
    reserve(memory, sumsAt + n * outputs * 4);
    new Float32Array(memory.buffer, this.inputsAt, x.length).set(x);
    layer(at, this.inputsAt, sumsAt, n, inputs, outputs);
    const sums = new Float32Array(memory.buffer, sumsAt, n * outputs);
    const act = activation === "elu" ? elu : sigmoid;
    const y = new Float32Array(n * outputs);
    for (let i = 0; i < n; i++) {
      for (let o = 0; o < outputs; o++) y[i * outputs + o] = act(sums[i * outputs + o] * scale[o] + bias[o]);
    }
    return y;
  }
}

/** Return a layer's outputs for inputs x (n rows) in a JavaScript loop: (q . x) scale + bias, then the activation. */
function layerJs({ inputs, outputs, weight, scale, bias, activation }, x, n) {
  const y = new Float32Array(n * outputs);
  const act = activation === "elu" ? elu : sigmoid;
  // Four digits at a time: each weight read once serves four products.
  for (let i = 0; i < n; i += 4) {
    const rows = Math.min(4, n - i);
    const x0 = i * inputs;
    const x1 = rows > 1 ? x0 + inputs : x0;
    const x2 = rows > 2 ? x0 + 2 * inputs : x0;
    const x3 = rows > 3 ? x0 + 3 * inputs : x0;
    for (let o = 0; o < outputs; o++) {
      const w = o * inputs;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let k = 0; k < inputs; k++) {
        const wk = weight[w + k];
        s0 += wk * x[x0 + k];
        s1 += wk * x[x1 + k];
        s2 += wk * x[x2 + k];
        s3 += wk * x[x3 + k];
      }
      const s = scale[o];
      const b = bias[o];
      const at = i * outputs + o;
      y[at] = act(s0 * s + b);
      if (rows > 1) y[at + outputs] = act(s1 * s + b);
      if (rows > 2) y[at + 2 * outputs] = act(s2 * s + b);
      if (rows > 3) y[at + 3 * outputs] = act(s3 * s + b);
    }
  }
  return y;
}
