// Compress the page's largest file at brotli's best, once, for the server to send.
//
//   node precompress.mjs [FILE...]      (npm ci runs it; default: onnxruntime-web's wasm)
//
// Brotli at quality 11 takes about a minute for onnxruntime-web's 14 MB wasm on one core: too
// long to do per request, so the server compresses large files at quality 5 on the fly (2.83 MB
// for the wasm) and sends this file (2.36 MB) instead where it exists. Written to web/.cache
// (or $DIGITVAE_WEB_CACHE), named by the content's sha256: a changed file is simply not found.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { precompress } from "./assets.js";

const here = dirname(fileURLToPath(import.meta.url));
const DEFAULT = [join(here, "node_modules", "onnxruntime-web", "dist", "ort-wasm-simd-threaded.wasm")];

const files = process.argv.length > 2 ? process.argv.slice(2).map((f) => resolve(f)) : DEFAULT;
const absent = files.filter((file) => !existsSync(file));
if (absent.length) {
  console.error(`error: no such file: ${absent.join(", ")}`);
  process.exit(1);
}
for (const file of files) {
  const started = Date.now();
  const { path, bytes, made } = await precompress(file);
  const what = made ? `made in ${((Date.now() - started) / 1000).toFixed(1)} s` : "already made";
  console.log(`${file}: brotli 11, ${bytes.toLocaleString("en")} bytes, ${what}: ${path}`);
}
