// Run the page's JavaScript first-digits path (src/first.js) in Node and write what it computed.
//
//   node test/first-decoder-check.mjs INPUT.json OUT_DIR
//
// INPUT.json: {model, n, noise: [...n*D], uniform: [...n], priorLabels: [...n], z: [...n*D],
// labels: [...n] or null}. Reads public/first-decoder/MODEL.bin and ../models/MODEL/model.json.
// OUT_DIR receives first-decoder.json: the prior's codes for the draws, the decoder's pixels for
// `z` with the WebAssembly kernel and with the JavaScript loop, whether the kernel was used, and
// the errors the file is refused with against a model.json with another decoder sha256, another
// prior sha256 and another model's name.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { FirstDecoder, firstDecoderUrl } from "../src/first.js";

const [inputPath, outDir] = process.argv.slice(2);
if (!inputPath || !outDir) {
  console.error("usage: node test/first-decoder-check.mjs INPUT.json OUT_DIR");
  process.exit(2);
}
const input = JSON.parse(readFileSync(inputPath, "utf8"));
const here = new URL("..", import.meta.url);
const file = readFileSync(new URL(`public${firstDecoderUrl(input.model, "http://page/").pathname}`, here));
const buffer = file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength);
const manifest = JSON.parse(readFileSync(new URL(`../models/${input.model}/model.json`, here), "utf8"));

const simd = FirstDecoder.read(buffer, manifest);
const plain = FirstDecoder.read(buffer, manifest, { simd: false });
const { n } = input;
const z = new Float32Array(input.z);
const started = performance.now();
const sampled = simd.samplePrior(new Float32Array(input.noise), new Float32Array(input.uniform), input.priorLabels, n);
const decodedSimd = simd.decode(z, n, input.labels);
const firstMs = performance.now() - started;
const decodedPlain = plain.decode(z, n, input.labels);

const refused = (change) => {
  const other = structuredClone(manifest);
  change(other);
  try {
    FirstDecoder.read(buffer, other);
    return null;
  } catch (err) {
    return { name: err.name, message: err.message };
  }
};
const result = {
  kernel: simd.kernel !== null,
  firstMs,
  z: Array.from(sampled),
  simd: Array.from(decodedSimd),
  plain: Array.from(decodedPlain),
  refusals: {
    decoder: refused((m) => (m.variants.fp32.decoder.sha256 = "0".repeat(64))),
    prior: refused((m) => (m.variants.fp32.prior.sha256 = "0".repeat(64))),
    model: refused((m) => (m.name = "mnist-vae-other")),
  },
};
writeFileSync(join(outDir, "first-decoder.json"), JSON.stringify(result));
