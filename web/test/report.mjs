// Measure the page in headless Chromium: model load and inference times, and what a web app ships.
//
//   npm run report [-- RUNS]     (default 3 runs, each in a fresh browser profile)
//
// Serves the page on a free loopback port, runs test/browser-check.mjs RUNS times on random
// inputs and test/speed-check.mjs RUNS times per variant (fp32, int8), and prints the median of
// each figure with the sizes of the files the page fetched (as on disk, and gzip -9 / brotli 11
// compressed; the server itself sends brotli 5 for files over 1 MiB, or brotli 11 where
// `npm run precompress` made it: onnxruntime-web's wasm).
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

import { resolvePath, serve } from "../server.js";

const here = dirname(fileURLToPath(import.meta.url));
const runs = Number(process.argv[2] ?? 3);
if (!Number.isInteger(runs) || runs < 1) {
  console.error(`error: RUNS must be a positive integer, got ${process.argv[2]}`);
  process.exit(2);
}

const readModel = (name) => JSON.parse(readFileSync(join(here, "..", "..", "models", name, "model.json"), "utf8"));
const manifest = readModel("mnist-vae");
const d = manifest.latent_dim;
const { k, reference } = manifest.metrics.score;
const dRef = reference ? readModel(reference.model).latent_dim : d;
const normal = (n) => Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(1 - Math.random())) * Math.cos(6.283 * Math.random()));
const input = {
  z: Array.from({ length: 4 }, () => normal(d)),
  images: [Array.from({ length: 784 }, (_, i) => (i % 28 > 10 && i % 28 < 16 ? 1 : 0))],
  eps: normal(k * d),
  epsReference: normal(k * dRef),
  digits: [7],
  noise: normal(d),
  uniform: [0.5],
  conditionalNoise: normal(readModel("mnist-cvae").latent_dim),
  conditionalUniform: [0.5],
};

const work = mkdtempSync(join(tmpdir(), "digitvae-report-"));
writeFileSync(join(work, "input.json"), JSON.stringify(input));
const server = await serve(0);
const url = `http://127.0.0.1:${server.address().port}/`;
const results = [];
const opened = { fp32: [], int8: [] };
try {
  for (let i = 0; i < runs; i++) {
    // Run asynchronously: this process's event loop serves the page meanwhile.
    await promisify(execFile)("node", [join(here, "browser-check.mjs"), url, join(work, "input.json"), work]);
    results.push(JSON.parse(readFileSync(join(work, "result.json"), "utf8")));
    for (const [variant, query] of [
      ["fp32", ""],
      ["int8", "?variant=int8"],
    ]) {
      await promisify(execFile)("node", [join(here, "speed-check.mjs"), url + query, work]);
      opened[variant].push(JSON.parse(readFileSync(join(work, "speed.json"), "utf8")).timings);
    }
  }
} finally {
  server.close();
  rmSync(work, { recursive: true, force: true });
}

const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
const figure = (pick) => median(results.map(pick)).toFixed(1);
const info = results[0].info;
console.log(`\nheadless Chromium, onnxruntime-web ${info.ortVersion} wasm, ${info.threads} thread(s); median of ${runs} runs\n`);
console.log("| figure | ms |\n| --- | ---: |");
const rows = [
  ["page open to every model file loaded (`ready`)", (r) => r.readyMs],
  ["prior and decoder load: fetch + sha256", (r) => r.timings.fetchMs],
  ["prior and decoder load: onnxruntime sessions", (r) => r.timings.sessionsMs],
  ["prior and decoder load: total (from model.json's fetch)", (r) => r.timings.loadMs],
  ["encoder and prior density load (after them)", (r) => r.timings.encoderLoadMs],
  ["outlier checks' reference model load", (r) => r.timings.detectorLoadMs],
  ["decode 1 digit", (r) => r.speed.decode1Ms],
  ["decode 64 digits", (r) => r.speed.decode64Ms],
  ["encode 1 digit", (r) => r.speed.encode1Ms],
  ["generate 60 digits (prior + decoder)", (r) => r.speed.generate60Ms],
  [`score 1 digit (IW-NLL k=${k} under both models, zlib)`, (r) => r.speed.score1Ms],
];
for (const [name, pick] of rows) console.log(`| ${name} | ${figure(pick)} |`);

console.log("\n| first visit (fresh profile) | fp32 | ?variant=int8 |\n| --- | ---: | ---: |");
const both = (pick) => ["fp32", "int8"].map((v) => median(opened[v].map(pick)));
console.log(`| page open to first digits, ms | ${both((t) => t.firstDigitsMs).map((v) => v.toFixed(0)).join(" | ")} |`);
const bytes = both((t) => t.bytesBeforeFirstDigits).map((v) => v.toLocaleString("en"));
console.log(`| bytes over the wire before the first digits | ${bytes.join(" | ")} |`);

console.log("\n| file the page fetched | bytes | gzip -9 | brotli |\n| --- | ---: | ---: | ---: |");
let totals = [0, 0, 0];
const seen = new Set();
for (const { url: address } of [{ url }, ...results[0].resources]) {
  const path = new URL(address).pathname;
  const file = resolvePath(path);
  if (file === null || seen.has(file)) continue;
  seen.add(file);
  const bytes = readFileSync(file);
  const sizes = [
    bytes.length,
    gzipSync(bytes, { level: 9 }).length,
    brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length,
  ];
  totals = totals.map((t, i) => t + sizes[i]);
  console.log(`| ${path} | ${sizes.map((s) => s.toLocaleString("en")).join(" | ")} |`);
}
console.log(`| total | ${totals.map((s) => s.toLocaleString("en")).join(" | ")} |`);
