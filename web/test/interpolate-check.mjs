// Draw two digits on the pad with synthesised pointer events, use them as A and B, and write
// the page's interpolation between them.
//
//   node test/interpolate-check.mjs URL OUT_DIR
//
// OUT_DIR receives interpolation.json: for A and B the pad's RGBA pixels (base64) and the
// prepared digit, then the encoder means, the codes and the decoded frames the page showed.
import { writeFileSync } from "node:fs";
import { join } from "node:path";

import { SEVEN, firstPage, scored, stroke, withBrowser } from "./browser.mjs";

const [url, outDir] = process.argv.slice(2);
if (!url || !outDir) {
  console.error("usage: node test/interpolate-check.mjs URL OUT_DIR");
  process.exit(2);
}
// A "0": an oval, drawn in one stroke.
const ZERO = Array.from({ length: 25 }, (_, i) => {
  const t = (i / 24) * 2 * Math.PI;
  return [0.5 + 0.22 * Math.sin(t), 0.5 - 0.3 * Math.cos(t)];
});

const padPixels = () => {
  const pad = document.getElementById("pad");
  const rgba = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height).data;
  let binary = "";
  for (let i = 0; i < rgba.length; i += 8192) binary += String.fromCharCode(...rgba.subarray(i, i + 8192));
  return { rgba: btoa(binary), width: pad.width, height: pad.height };
};

const result = await withBrowser({ viewport: { width: 1280, height: 800 } }, async (context, log) => {
  const page = await firstPage(context);
  await page.goto(url);
  await page.waitForSelector("body[data-ready=true]", { timeout: 120_000 });
  const ends = {};
  for (const [which, points, n] of [
    ["a", SEVEN, 1],
    ["b", ZERO, 2],
  ]) {
    await page.click("#clear");
    await stroke(page, "#pad", points);
    await scored(page, n);
    ends[which] = await page.evaluate(padPixels);
    await page.click(`#set-${which}`);
  }
  await page.waitForFunction(() => window.digitvae.interpolation !== null, null, { timeout: 60_000 });
  const shown = await page.evaluate(() => {
    const r = window.digitvae.interpolation;
    return {
      steps: r.steps,
      a: Array.from(r.a),
      b: Array.from(r.b),
      means: r.means.map((m) => Array.from(m)),
      z: Array.from(r.z),
      frames: Array.from(r.frames),
      caption: document.getElementById("frames-caption").textContent,
      canvas: [document.getElementById("frames").width, document.getElementById("frames").height],
    };
  });
  shown.errors = await page.evaluate(async () => {
    const blank = new Float32Array(784);
    const reject = (call) => call.then(() => null, (err) => ({ name: err.name, message: err.message }));
    return {
      oneStep: await reject(window.digitvae.interpolate(blank, blank, 1)),
      shortImage: await reject(window.digitvae.interpolate(blank, new Float32Array(783))),
    };
  });
  await page.locator(".morph").screenshot({ path: join(outDir, "interpolation.png") });
  return { ends, ...shown, console: log };
});
writeFileSync(join(outDir, "interpolation.json"), JSON.stringify(result));
