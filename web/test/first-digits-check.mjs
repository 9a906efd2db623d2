// Open the default page and write which decoder drew its first digits and what its calls return.
//
//   node test/first-digits-check.mjs URL INPUT.json OUT_DIR [stale]
//
// With `stale`, the browser gets the model's first-digits file with another decoder sha256 in
// its header (as a file made from an older decoder.onnx would have), which the page refuses.
// INPUT.json: {z: [...n*D], n, noise: [...m*D], uniform: [...m]}. OUT_DIR receives
// first-digits.json: the URLs requested in order, the files fetched before the first digits,
// the first and the page's model descriptions, `decode(z)` asked for as soon as the page's API
// exists (before the first digits, as a rule) and again after, `generate` from the given draws
// with the page's decoder and with `variant: "int8"`, the rejection of an unknown variant, and
// whether the grid on screen is the page's decoder's drawing of its digits.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { firstPage, installGridProbe, withBrowser } from "./browser.mjs";

const [url, inputPath, outDir, mode] = process.argv.slice(2);
if (!url || !inputPath || !outDir || (mode !== undefined && mode !== "stale")) {
  console.error("usage: node test/first-digits-check.mjs URL INPUT.json OUT_DIR [stale]");
  process.exit(2);
}
const input = JSON.parse(readFileSync(inputPath, "utf8"));

/** Answer with the first-digits file, its decoder sha256 changed in the header (the same length). */
async function staleFile(route) {
  const response = await route.fetch();
  const body = Buffer.from(await response.body());
  const at = body.indexOf('"sha256":"') + '"sha256":"'.length; // the decoder's, first in the header
  body[at] = body[at] === 0x30 ? 0x31 : 0x30;
  await route.fulfill({ response, body });
}

const result = await withBrowser({ viewport: { width: 1280, height: 800 } }, async (context, log) => {
  const page = await firstPage(context);
  const requested = [];
  page.on("request", (request) => requested.push(new URL(request.url()).pathname));
  if (mode === "stale") await page.route("**/first-decoder/*.bin", staleFile);
  await page.goto(url);
  await page.waitForFunction(() => window.digitvae !== undefined, null, { timeout: 120_000 });
  const early = await page.evaluate(async (input) => {
    const api = window.digitvae;
    const before = api.timings.firstDigitsMs === undefined;
    const pixels = await api.decode(new Float32Array(input.z), input.n);
    return { askedBeforeFirstDigits: before, pixels: Array.from(pixels) };
  }, input);
  await page.waitForFunction(() => window.digitvae.timings.firstDigitsMs !== undefined, null, { timeout: 120_000 });
  await page.waitForSelector("body[data-ready=true]");
  await installGridProbe(page);
  const out = await page.evaluate(async (input) => {
    const api = window.digitvae;
    const z = new Float32Array(input.z);
    const draws = { noise: new Float32Array(input.noise), uniform: new Float32Array(input.uniform) };
    const m = input.uniform.length;
    let unknown = null;
    try {
      await api.generate(1, { variant: "fp64" });
    } catch (err) {
      unknown = { name: err.name, message: err.message };
    }
    // The grid on screen against the page's decoder's digits for its seed, drawn the same way.
    const { redraw, same } = window.gridProbe;
    const shown = window.gridProbe.shown();
    const seed = Number(document.getElementById("seed").value);
    const fp32Grid = redraw((await api.generate(40, { seed })).images);
    const int8Grid = redraw((await api.generate(40, { seed, variant: "int8" })).images);
    return {
      first: await api.first,
      info: await api.generator,
      decoded: Array.from(await api.decode(z, input.n)),
      decodedInt8: Array.from(await api.decode(z, input.n, undefined, { variant: "int8" })),
      generated: Array.from((await api.generate(m, draws)).images),
      generatedInt8: Array.from((await api.generate(m, { ...draws, variant: "int8" })).images),
      unknown,
      gridIsPageDecoders: same(shown, fp32Grid),
      gridIsInt8s: same(shown, int8Grid),
      int8GridDiffers: !same(fp32Grid, int8Grid),
      timings: { ...window.digitvae.timings },
      firstGrid: api.firstGrid && Object.fromEntries(Object.entries(api.firstGrid).map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v) : v])),
      wasmPaths: api.ort.env.wasm.wasmPaths,
    };
  }, input);
  return { requested, early, ...out, console: log };
});
writeFileSync(join(outDir, "first-digits.json"), JSON.stringify(result));
