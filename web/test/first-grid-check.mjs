// Open a page and write what drew its first grid, what it fetched before it, and what it shows after.
//
//   node test/first-grid-check.mjs URL OUT_DIR [INPUT.json]
//
// INPUT.json: {z: [...n*D], n, labels: [...n] or null}, decoded as soon as the page's API exists
// (before the first digits, as a rule). OUT_DIR receives first-grid.json: the URLs requested in
// order, the page's timings at its first digits (`firstPath`, the files before them), the first
// grid as drawn (`firstGrid`: draws, codes, pixels), `first` and the page's model descriptions,
// the early decode, and whether the grid on screen at the end is the page's own decoder's drawing
// of its digits (and not the first grid's).
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { firstPage, installGridProbe, withBrowser } from "./browser.mjs";

const [url, outDir, inputPath] = process.argv.slice(2);
if (!url || !outDir) {
  console.error("usage: node test/first-grid-check.mjs URL OUT_DIR [INPUT.json]");
  process.exit(2);
}
const input = inputPath ? JSON.parse(readFileSync(inputPath, "utf8")) : null;
const result = await withBrowser({ viewport: { width: 1280, height: 800 } }, async (context, log) => {
  const page = await firstPage(context);
  const requested = [];
  page.on("request", (request) => requested.push(new URL(request.url()).pathname));
  await page.goto(url);
  await page.waitForFunction(() => window.digitvae !== undefined, null, { timeout: 120_000 });
  const early = input
    ? await page.evaluate(async ({ z, n, labels }) => {
        const api = window.digitvae;
        const before = api.timings.firstDigitsMs === undefined;
        const pixels = await api.decode(new Float32Array(z), n, labels ?? undefined);
        return { askedBeforeFirstDigits: before, pixels: Array.from(pixels) };
      }, input)
    : null;
  await page.waitForFunction(() => window.digitvae.timings.firstDigitsMs !== undefined, null, { timeout: 120_000 });
  const atFirst = await page.evaluate(() => ({ ...window.digitvae.timings }));
  await page.waitForSelector("body[data-ready=true]");
  await installGridProbe(page);
  const out = await page.evaluate(async () => {
    const api = window.digitvae;
    const { redraw, same } = window.gridProbe;
    const shown = window.gridProbe.shown();
    const seed = Number(document.getElementById("seed").value);
    return {
      first: await api.first,
      info: await api.generator,
      // Typed arrays as plain arrays of numbers (BigInt labels too), for JSON.
      firstGrid: Object.fromEntries(
        Object.entries(api.firstGrid).map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v, Number) : v]),
      ),
      gridIsPageDecoders: same(shown, redraw((await api.generate(40, { seed })).images)),
      gridIsFirstGrids: same(shown, redraw(api.firstGrid.images)),
      status: document.getElementById("status").textContent,
      caption: document.getElementById("grid-caption").textContent,
    };
  });
  return { requested, early, atFirst, ...out, console: log };
});
writeFileSync(join(outDir, "first-grid.json"), JSON.stringify(result));
