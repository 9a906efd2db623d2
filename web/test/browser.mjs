// Headless Chromium for the page's checks: the system's browser (none is downloaded), a fresh profile.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

export const EXECUTABLE = process.env.CHROMIUM ?? "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Run `use(context, log)` in a fresh persistent browser context; close it and remove the profile after. */
export async function withBrowser(options, use) {
  const profile = mkdtempSync(join(tmpdir(), "digitvae-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: EXECUTABLE,
    headless: true,
    args: FLAGS,
    ...options,
  });
  const log = [];
  context.on("page", (page) => watch(page, log));
  for (const page of context.pages()) watch(page, log);
  try {
    return await use(context, log);
  } catch (err) {
    console.error(log.join("\n"));
    throw err;
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

function watch(page, log) {
  page.on("console", (msg) => log.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => log.push(`pageerror: ${err.message}`));
}

/**
 * Give the page `window.gridProbe`: `shown()`, the pixels of the digit grid on screen; `redraw(images)`,
 * the pixels the page's own drawDigits makes of 40 images, 10 a row; `same(a, b)`, whether two are equal.
 */
export async function installGridProbe(page) {
  await page.evaluate(async () => {
    const { drawDigits } = await import("/src/digits.js");
    const pixels = (canvas) => canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    window.gridProbe = {
      shown: () => pixels(document.getElementById("grid")),
      redraw: (images) => {
        const canvas = document.createElement("canvas");
        drawDigits(canvas, images, 40, 10);
        return pixels(canvas);
      },
      same: (a, b) => a.length === b.length && a.every((v, i) => v === b[i]),
    };
  });
}

/** Return the context's first page (a persistent context opens with one). */
export async function firstPage(context) {
  return context.pages()[0] ?? (await context.newPage());
}

/** Draw one stroke through `points` (fractions of the element's box) with synthesised mouse events. */
export async function stroke(page, selector, points) {
  const target = page.locator(selector);
  await target.scrollIntoViewIfNeeded(); // raw mouse events only reach what is in view
  const box = await target.boundingBox();
  const at = ([fx, fy]) => [box.x + fx * box.width, box.y + fy * box.height];
  await page.mouse.move(...at(points[0]));
  await page.mouse.down();
  for (const point of points.slice(1)) await page.mouse.move(...at(point), { steps: 8 });
  await page.mouse.up();
}

/** Wait until the page has scored `n` strokes in all. */
export async function scored(page, n) {
  await page.waitForFunction((count) => window.digitvae.pad.strokes >= count, n, { timeout: 60_000 });
}

export const SEVEN = [
  [0.25, 0.2],
  [0.5, 0.2],
  [0.72, 0.2],
  [0.6, 0.45],
  [0.5, 0.65],
  [0.42, 0.85],
];
