// Visit the page once (generate, draw a digit, open the explorer), go offline, open it again.
//
//   node test/offline-check.mjs URL OUT_DIR
//
// OUT_DIR receives offline.json: the files the service worker cached on the first visit, and
// offline: whether a file never fetched is unreachable, the page's first digits and the score
// of a drawn digit, the explorer's decode, and the console.
import { writeFileSync } from "node:fs";
import { join } from "node:path";

import { SEVEN, firstPage, scored, stroke, withBrowser } from "./browser.mjs";

const [url, outDir] = process.argv.slice(2);
if (!url || !outDir) {
  console.error("usage: node test/offline-check.mjs URL OUT_DIR");
  process.exit(2);
}

const visit = async (page) => {
  await page.waitForFunction(() => window.digitvae?.timings.firstDigitsMs !== undefined, null, { timeout: 120_000 });
  await page.waitForSelector("body[data-ready=true]");
  await stroke(page, "#pad", SEVEN);
  await scored(page, 1);
  return page.evaluate(async () => {
    const explorer = await window.digitvae.explorer;
    const pixels = await explorer.decodeAt([0.5, -0.5]);
    const grid = document.getElementById("grid");
    return {
      score: window.digitvae.pad.last.scores.nll[0],
      explored: Array.from(pixels),
      grid: grid.toDataURL(),
      status: document.getElementById("status").textContent,
      controlled: navigator.serviceWorker.controller !== null,
    };
  });
};

const result = await withBrowser({ viewport: { width: 1280, height: 800 } }, async (context, log) => {
  const page = await firstPage(context);
  page.on("requestfailed", (r) => log.push(`failed: ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(url);
  const online = await visit(page);
  const cached = await page.evaluate(() => window.digitvae.offline);
  // Everything this visit fetched is kept, whether or not it went through the worker.
  await page.waitForFunction(async () => {
    const kept = new Set((await (await caches.open("digitvae-v1")).keys()).map((r) => r.url));
    return performance.getEntriesByType("resource").every((e) => kept.has(e.name));
  }, null, { timeout: 60_000, polling: 250 });
  const keys = await page.evaluate(async () => (await (await caches.open("digitvae-v1")).keys()).map((r) => r.url));

  await context.setOffline(true);
  const unreachable = await page.evaluate(async () => {
    try {
      await fetch(`/never-fetched-${Date.now()}.txt`);
      return false;
    } catch {
      return true;
    }
  });
  await page.reload();
  const offline = await visit(page);
  return { online, cached, keys, unreachable, offline, console: log };
});
writeFileSync(join(outDir, "offline.json"), JSON.stringify(result));
