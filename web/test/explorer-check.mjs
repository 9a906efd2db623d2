// Move a synthesised pointer over the latent explorer's plane and write what the page decoded.
//
//   node test/explorer-check.mjs URL OUT_DIR
//
// OUT_DIR receives explorer.json: the plane's box and bounds, for each pointer position the
// code the page decoded there and its pixels, the dots drawn ({count, perClass}), the legend,
// and the colour found at the centre of the dots drawn last.
import { writeFileSync } from "node:fs";
import { join } from "node:path";

import { firstPage, withBrowser } from "./browser.mjs";

const [url, outDir] = process.argv.slice(2);
if (!url || !outDir) {
  console.error("usage: node test/explorer-check.mjs URL OUT_DIR");
  process.exit(2);
}
// Fractions of the plane's box: off centre, near two corners, and a point in the middle.
const POSITIONS = [
  [0.31, 0.62],
  [0.83, 0.21],
  [0.12, 0.9],
  [0.5, 0.5],
];

const result = await withBrowser({ viewport: { width: 1280, height: 800 } }, async (context, log) => {
  const page = await firstPage(context);
  await page.goto(url);
  await page.waitForSelector("body[data-ready=true]", { timeout: 120_000 });
  await page.evaluate(async () => (window.explorerForTest = await window.digitvae.explorer));
  const plane = page.locator("#plane");
  await plane.scrollIntoViewIfNeeded();
  const box = await plane.boundingBox();
  const moves = [];
  for (const [fx, fy] of POSITIONS) {
    const point = [box.x + fx * box.width, box.y + fy * box.height];
    await page.mouse.move(...point, { steps: 5 });
    const code = await page.evaluate(([x, y]) => window.digitvae.explorerCodeAt(x, y), point);
    // The decode of the last move lands after the event: wait for a code within 1e-3 of the
    // pointer's (the event's coordinates are rounded a little).
    await page.waitForFunction(
      (z) => {
        const last = window.explorerForTest.last;
        return last !== null && Math.abs(last.z[0] - z[0]) < 1e-3 && Math.abs(last.z[1] - z[1]) < 1e-3;
      },
      code,
      { timeout: 30_000 },
    );
    const shown = await page.evaluate(async () => {
      const last = (await window.digitvae.explorer).last;
      return { z: last.z, pixels: Array.from(last.pixels), text: document.getElementById("explored-code").textContent };
    });
    moves.push({ point, code, ...shown });
  }
  const drawn = await page.evaluate(async () => {
    const explorer = await window.digitvae.explorer;
    const canvas = document.getElementById("plane");
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const { codes, labels } = explorer.asset;
    // The last 20 dots: none is drawn over by a later one (checked in Python), so each centre
    // shows its own class's colour.
    const centres = [];
    for (let i = labels.length - 20; i < labels.length; i++) {
      const [px, py] = explorer.pixelOf([codes[2 * i], codes[2 * i + 1]]);
      const [r, g, b] = ctx.getImageData(Math.floor(px), Math.floor(py), 1, 1).data;
      centres.push({ index: i, pixel: [px, py], rgb: [r, g, b] });
    }
    const legend = Array.from(document.querySelectorAll("#legend li"), (li) => ({
      text: li.textContent,
      colour: li.dataset.colour,
      shown: getComputedStyle(li, "::before").backgroundColor,
    }));
    return { dots: explorer.dots, centres, legend, size: [canvas.width, canvas.height] };
  });
  return { box, moves, ...drawn, console: log };
});
writeFileSync(join(outDir, "explorer.json"), JSON.stringify(result));
