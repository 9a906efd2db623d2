// Open pages in turn, each in a fresh browser profile, and print their open-to-first-digits times.
//
//   node test/open-times.mjs RUNS URL [URL...]
//
// Interleaved: run i opens every URL once before run i + 1 starts, so that a machine's load
// weighs on each alike. Prints each run's figures and, per URL, the median and the range of
// `firstDigitsMs` and the bytes over the wire before the first digits.
import { firstPage, withBrowser } from "./browser.mjs";

const [runsArg, ...urls] = process.argv.slice(2);
const runs = Number(runsArg);
if (!Number.isInteger(runs) || runs < 1 || !urls.length) {
  console.error("usage: node test/open-times.mjs RUNS URL [URL...]");
  process.exit(2);
}

const open = (url) =>
  withBrowser({ viewport: { width: 1280, height: 800 } }, async (context) => {
    const page = await firstPage(context);
    await page.goto(url);
    await page.waitForFunction(() => window.digitvae?.timings.firstDigitsMs !== undefined, null, { timeout: 120_000 });
    return page.evaluate(() => ({
      ms: window.digitvae.timings.firstDigitsMs,
      bytes: window.digitvae.timings.bytesBeforeFirstDigits,
    }));
  });

const seen = urls.map(() => []);
for (let i = 0; i < runs; i++) {
  for (const [j, url] of urls.entries()) {
    const figures = await open(url);
    seen[j].push(figures);
    console.log(`run ${i + 1} ${url}: ${figures.ms.toFixed(0)} ms, ${figures.bytes.toLocaleString("en")} bytes`);
  }
}
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
console.log("\n| page | first digits, median ms | min-max ms | bytes before them |\n| --- | ---: | ---: | ---: |");
for (const [j, url] of urls.entries()) {
  const ms = seen[j].map((f) => f.ms);
  const bytes = [...new Set(seen[j].map((f) => f.bytes.toLocaleString("en")))].join(" / ");
  console.log(`| ${url} | ${median(ms).toFixed(0)} | ${Math.min(...ms).toFixed(0)}-${Math.max(...ms).toFixed(0)} | ${bytes} |`);
}
