// Drive the demo page in headless Chromium and write what it computed to a JSON file.
//
//   node test/browser-check.mjs URL INPUT.json OUT_DIR
//
// INPUT.json: {z: [[...D]...], images: [[...784]...], eps: [...n*k*D], epsReference: [...],
// digits: [...m], noise: [...m*D], uniform: [...m], and conditionalNoise / conditionalUniform for
// mnist-cvae}.
// OUT_DIR receives result.json (decoded pixels, codes, scores, the drawn digit, timings, the
// errors bad arguments raise) and page.png. Uses the system's Chromium; downloads no browser.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { firstPage, withBrowser } from "./browser.mjs";

const [url, inputPath, outDir] = process.argv.slice(2);
if (!url || !inputPath || !outDir) {
  console.error("usage: node test/browser-check.mjs URL INPUT.json OUT_DIR");
  process.exit(2);
}
const input = JSON.parse(readFileSync(inputPath, "utf8"));
await withBrowser({ viewport: { width: 1000, height: 1100 } }, async (context, log) => {
  const page = await firstPage(context);
  const started = Date.now();
  await page.goto(url);
  const info = await page.evaluate(() => window.digitvae.ready);
  const readyMs = Date.now() - started;
  await page.waitForSelector("body[data-ready=true]");

  const result = await page.evaluate(async (input) => {
    const api = window.digitvae;
    const flat = (rows) => new Float32Array(rows.flat());
    const n = input.z.length;
    const decoded = await api.decode(flat(input.z), n);
    const encoded = await api.encode(flat(input.images), input.images.length);
    const m = input.images.length;
    const scored = await api.score(flat(input.images), m, {
      eps: new Float32Array(input.eps),
      epsReference: new Float32Array(input.epsReference),
    });
    const d = api.timings && (await api.ready).latentDim;
    // Bad arguments: each must reject with an Error that says what is wrong.
    const rejection = async (call) => {
      try {
        await call();
        return null;
      } catch (err) {
        return { name: err.name, message: err.message, isError: err instanceof Error };
      }
    };
    const errors = {
      wrongLength: await rejection(() => api.decode(new Float32Array(d + 1), 1)),
      zeroCount: await rejection(() => api.decode(new Float32Array(d), 0)),
      fractionalCount: await rejection(() => api.encode(new Float32Array(784), 1.5)),
      notTyped: await rejection(() => api.decode(Array(d).fill(0), 1)),
      pixelRange: await rejection(() => api.encode(new Float32Array(784).fill(2), 1)),
      digitRange: await rejection(() => api.generate(1, { digit: 10 })),
      labelsOnUnconditional: await rejection(() => api.decode(new Float32Array(d), 1, [3])),
    };
    // Inference times: the median of repeated calls, after one warm-up call each.
    const median = async (call, repeats) => {
      await call();
      const times = [];
      for (let i = 0; i < repeats; i++) {
        const t = performance.now();
        await call();
        times.push(performance.now() - t);
      }
      times.sort((a, b) => a - b);
      return times[Math.floor(times.length / 2)];
    };
    const one = new Float32Array(d);
    const batch = new Float32Array(64 * d);
    const image = flat(input.images.slice(0, 1));
    const speed = {
      decode1Ms: await median(() => api.decode(one, 1), 20),
      decode64Ms: await median(() => api.decode(batch, 64), 10),
      encode1Ms: await median(() => api.encode(image, 1), 20),
      generate60Ms: await median(() => api.generate(60, { seed: 1 }), 5),
      score1Ms: await median(() => api.score(image, 1, { seed: 1 }), 3),
    };
    const asked = await api.generate(input.digits.length, {
      digit: input.digits,
      noise: new Float32Array(input.noise),
      uniform: new Float32Array(input.uniform),
    });
    return {
      decoded: Array.from(decoded),
      mean: Array.from(encoded.mean),
      logvar: Array.from(encoded.logvar),
      scores: Object.fromEntries(Object.entries(scored.scores).map(([k, v]) => [k, Array.from(v)])),
      flags: scored.flags,
      errors,
      speed,
      timings: { ...api.timings },
      generated: { z: Array.from(asked.z), images: Array.from(asked.images) },
    };
  }, input);

  const isolated = await page.evaluate(() => globalThis.crossOriginIsolated);
  // What the page fetched, with each file's size as served (uncompressed).
  const resources = await page.evaluate(() =>
    performance.getEntriesByType("resource").map((e) => ({ url: e.name, bytes: e.decodedBodySize })),
  );
  const out = { info, readyMs, isolated, resources, ...result, console: log };
  writeFileSync(join(outDir, "result.json"), JSON.stringify(out));

  // Strokes drawn on the pad with synthesised pointer events (mouse down, moves, up).
  const draw = async (points, strokes) => {
    await page.locator("#pad").scrollIntoViewIfNeeded(); // raw mouse events only reach what is in view
    const pad = await page.locator("#pad").boundingBox();
    const at = ([fx, fy]) => [pad.x + fx * pad.width, pad.y + fy * pad.height];
    await page.mouse.move(...at(points[0]));
    await page.mouse.down();
    for (const point of points.slice(1)) await page.mouse.move(...at(point), { steps: 8 });
    await page.mouse.up();
    try {
      await page.waitForFunction((n) => window.digitvae.pad.strokes >= n, strokes, { timeout: 60_000 });
    } catch (err) {
      const verdict = await page.locator("#verdict").textContent();
      throw new Error(`the drawn stroke was not scored (the page says: ${verdict}): ${err.message}`);
    }
  };
  // A "7".
  const seven = [
    [0.25, 0.2],
    [0.5, 0.2],
    [0.72, 0.2],
    [0.6, 0.45],
    [0.5, 0.65],
    [0.42, 0.85],
  ];
  await draw(seven, 1);
  const drawn = await page.evaluate(() => {
    const last = window.digitvae.pad.last;
    const pad = document.getElementById("pad");
    const rgba = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height).data;
    let binary = "";
    for (let i = 0; i < rgba.length; i += 8192) binary += String.fromCharCode(...rgba.subarray(i, i + 8192));
    return {
      rgba: btoa(binary),
      width: pad.width,
      height: pad.height,
      prepared: Array.from(last.prepared),
      reconstruction: Array.from(last.reconstruction),
      scores: Object.fromEntries(Object.entries(last.scores).map(([k, v]) => [k, v[0]])),
      flag: last.flags[0],
      verdict: document.getElementById("verdict").textContent,
    };
  });
  await page.screenshot({ path: join(outDir, "page.png"), fullPage: true });

  // Then a square, which no digit resembles: the checks should call it an outlier.
  await page.click("#clear");
  const square = [
    [0.22, 0.22],
    [0.78, 0.22],
    [0.78, 0.78],
    [0.22, 0.78],
    [0.22, 0.22],
  ];
  await draw(square, 2);
  drawn.square = await page.evaluate(() => ({
    flag: window.digitvae.pad.last.flags[0],
    verdict: document.getElementById("verdict").textContent,
  }));
  await page.screenshot({ path: join(outDir, "square.png") });
  out.drawn = drawn;

  // The conditional model: the same draws, the class fed to the prior and the decoder alike.
  await page.goto(new URL("?model=mnist-cvae", url).href);
  out.conditional = await page.evaluate(async (input) => {
    const api = window.digitvae;
    const info = await api.ready;
    const asked = await api.generate(input.digits.length, {
      digit: input.digits,
      noise: new Float32Array(input.conditionalNoise),
      uniform: new Float32Array(input.conditionalUniform),
    });
    let missingLabels = null;
    try {
      await api.decode(asked.z, input.digits.length);
    } catch (err) {
      missingLabels = err.message;
    }
    return { info, z: Array.from(asked.z), images: Array.from(asked.images), missingLabels };
  }, input);
  writeFileSync(join(outDir, "result.json"), JSON.stringify(out));
});
