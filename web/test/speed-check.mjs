// Open the page in a fresh browser profile and write what it fetched before its first digits.
//
//   node test/speed-check.mjs URL OUT_DIR [INPUT.json]
//
// OUT_DIR receives speed.json: the page's timings (open to first digits, bytes over the wire
// before them), the files fetched before them, the files fetched once a digit is drawn (with
// their bytes over the wire and decoded), and
// with INPUT.json ({noise, uniform} for n digits) the digits generate() makes from those draws.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { SEVEN, firstPage, scored, stroke, withBrowser } from "./browser.mjs";

const [url, outDir, inputPath] = process.argv.slice(2);
const input = inputPath ? JSON.parse(readFileSync(inputPath, "utf8")) : null;
if (!url || !outDir) {
  console.error("usage: node test/speed-check.mjs URL OUT_DIR");
  process.exit(2);
}

const result = await withBrowser({ viewport: { width: 1280, height: 800 } }, async (context, log) => {
  const page = await firstPage(context);
  const responses = [];
  page.on("response", async (response) => {
    const headers = response.headers();
    responses.push({ url: response.url(), status: response.status(), encoding: headers["content-encoding"] ?? null });
  });
  await page.goto(url);
  await page.waitForFunction(() => window.digitvae?.timings.firstDigitsMs !== undefined, null, { timeout: 120_000 });
  const first = await page.evaluate(() => ({ ...window.digitvae.timings }));
  const generated = input
    ? await page.evaluate(async ({ noise, uniform }) => {
        const { images } = await window.digitvae.generate(uniform.length, {
          noise: new Float32Array(noise),
          uniform: new Float32Array(uniform),
        });
        return Array.from(images);
      }, input)
    : null;
  await page.waitForSelector("body[data-ready=true]");
  await stroke(page, "#pad", SEVEN);
  await scored(page, 1);
  const after = await page.evaluate(() => performance.getEntriesByType("resource").map((e) => e.name));
  const afterFiles = await page.evaluate(() =>
    performance.getEntriesByType("resource").map((e) => ({ url: e.name, bytes: e.transferSize, size: e.decodedBodySize })),
  );
  const info = await page.evaluate(() => window.digitvae.ready);
  return { timings: first, generated, info, after, afterFiles, responses, console: log };
});
writeFileSync(join(outDir, "speed.json"), JSON.stringify(result));
