// Generate a PNG grid of new digits from a digitvae model folder with onnxruntime-node.
//
//   node generate.mjs [-o digits.png] [-n 60] [--seed 0] [--digit D] [--cols 10] [--scale 2] [--model DIR]
//
// Reads everything from the folder's model.json (latent size, the prior, file names, sha256)
// and follows the ONNX contract (docs/contract.md): noise ~ N(0, I) and uniform ~ U[0, 1) go
// through prior.onnx (with label -1 for any digit, or the digit asked for) to codes z, and
// decoder.onnx turns them into pixels. A model whose prior is "standard_normal" decodes the
// noise itself. The digits differ from Python's for the same seed (another random generator);
// feed numpy's draws as noise and uniform to get Python's digits exactly.
import { createHash } from "node:crypto";
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import * as ort from "onnxruntime-node";

import { encodePng } from "./png.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const SIDE = 28;

class UsageError extends Error {}

/** Return the named option as an integer within [low, high], or throw UsageError. */
function integer(options, name, low, high) {
  const value = Number(options[name]);
  if (!Number.isInteger(value) || value < low || value > high) {
    throw new UsageError(`--${name} must be an integer from ${low} to ${high}, got ${options[name]}`);
  }
  return value;
}

/** A seeded generator of uniform [0, 1) floats (mulberry32), and N(0, 1) draws by Box-Muller. */
function randomSource(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 8) / 16777216;
  };
  const normal = (n) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - next())); // 1 - u is in (0, 1]
      const angle = 2 * Math.PI * next();
      out[i] = r * Math.cos(angle);
      if (i + 1 < n) out[i + 1] = r * Math.sin(angle);
    }
    return out;
  };
  const uniform = (n) => Float32Array.from({ length: n }, next);
  return { normal, uniform };
}

/** Open one of the model's ONNX files by role, after checking its sha256 against model.json. */
async function session(folder, files, role) {
  const entry = files[role];
  if (!entry) throw new Error(`${folder}/model.json names no ${role} file`);
  const bytes = readFileSync(join(folder, entry.path));
  if (createHash("sha256").update(bytes).digest("hex") !== entry.sha256) {
    throw new Error(`${join(folder, entry.path)}: sha256 differs from model.json; the file is damaged or replaced`);
  }
  return ort.InferenceSession.create(bytes, { executionProviders: ["cpu"] });
}

/** Return n digits (Float32Array n x 784 in [0, 1]) drawn through the model's prior. */
export async function generate(folder, n, seed, digit) {
  const manifest = JSON.parse(readFileSync(join(folder, "model.json"), "utf8"));
  if (manifest.format !== "digitvae-model") throw new Error(`${folder}/model.json is not a digitvae model`);
  const { latent_dim: d, num_classes: numClasses, prior } = manifest;
  const files = manifest.variants.fp32;
  const random = randomSource(seed);
  const noise = random.normal(n * d);
  const uniform = random.uniform(n);
  const learned = prior !== "standard_normal";
  const classes = learned ? Number(prior.classes) || 0 : 0;
  if (digit !== null && !classes && !numClasses) {
    throw new UsageError(`${manifest.name} can be asked for no digit: its prior has no classes`);
  }
  let z = noise;
  if (learned) {
    const label = new BigInt64Array(n).fill(BigInt(digit !== null && classes ? digit : -1));
    const sampler = await session(folder, files, "prior");
    const feeds = {
      noise: new ort.Tensor("float32", noise, [n, d]),
      uniform: new ort.Tensor("float32", uniform, [n]),
      label: new ort.Tensor("int64", label, [n]),
    };
    z = (await sampler.run(feeds)).z.data;
  }
  const decoder = await session(folder, files, "decoder");
  const feeds = { z: new ort.Tensor("float32", z, [n, d]) };
  if (numClasses) {
    // A conditional decoder takes the class too: the digit asked for, else 0, 1, ..., 9 in turn.
    const labels = BigInt64Array.from({ length: n }, (_, i) => BigInt(digit ?? i % numClasses));
    feeds.label = new ort.Tensor("int64", labels, [n]);
  }
  return (await decoder.run(feeds, ["image"])).image.data;
}

/** Lay n 28x28 digits out in a grid, `cols` a row, each pixel `scale` x `scale`: 8-bit grey rows. */
export function grid(pixels, n, cols, scale) {
  const rows = Math.ceil(n / cols);
  const width = Math.min(n, cols) * SIDE * scale;
  const height = rows * SIDE * scale;
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const row = Math.floor(y / (SIDE * scale));
    const py = Math.floor(y / scale) % SIDE;
    for (let x = 0; x < width; x++) {
      const i = row * cols + Math.floor(x / (SIDE * scale));
      if (i >= n) continue;
      const px = Math.floor(x / scale) % SIDE;
      out[y * width + x] = Math.round(pixels[i * SIDE * SIDE + py * SIDE + px] * 255);
    }
  }
  return { width, height, data: out };
}

/** Say why a file could not be written, naming the output asked for, never the temporary file beside it. */
function writeFailure(err, partial, output) {
  const reasons = {
    ENOENT: `folder ${dirname(resolve(output))} does not exist`,
    ENOTDIR: "a part of its path is not a folder",
    EISDIR: "it is a folder",
    EACCES: "permission denied",
    EPERM: "operation not permitted",
    EROFS: "the file system is read-only",
    ENOSPC: "no space left on the device",
    EDQUOT: "the disk quota is exceeded",
    ENAMETOOLONG: "the name is too long",
  };
  return reasons[err.code] ?? String(err.message).replaceAll(partial, output);
}

async function main() {
  const { values } = parseArgs({
    options: {
      output: { type: "string", short: "o", default: "digits.png" },
      n: { type: "string", short: "n", default: "60" },
      seed: { type: "string", default: "0" },
      digit: { type: "string" },
      cols: { type: "string", default: "10" },
      scale: { type: "string", default: "2" },
      model: { type: "string", default: resolve(here, "..", "..", "models", "mnist-vae") },
    },
  });
  const n = integer(values, "n", 1, 10000);
  const seed = integer(values, "seed", 0, 2 ** 32 - 1);
  const digit = values.digit === undefined ? null : integer(values, "digit", 0, 9);
  const cols = integer(values, "cols", 1, 1000);
  const scale = integer(values, "scale", 1, 16);
  const started = performance.now();
  const pixels = await generate(resolve(values.model), n, seed, digit);
  const picture = grid(pixels, n, cols, scale);
  // Written beside the target and renamed into place: a failed run leaves no half-written file.
  const partial = `${values.output}.partial-${process.pid}`;
  try {
    writeFileSync(partial, encodePng(picture.width, picture.height, picture.data));
    renameSync(partial, values.output);
  } catch (err) {
    rmSync(partial, { force: true });
    throw new Error(`cannot write ${values.output}: ${writeFailure(err, partial, values.output)}`);
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  console.log(`${values.output}: ${n} digits, ${picture.width}x${picture.height} pixels, in ${seconds} s`);
}

main().catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(err instanceof UsageError || err.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" ? 2 : 1);
});
