// Open the page at a desktop and a phone size, report where the drawing pad lies, save screenshots.
//
//   node test/layout-check.mjs URL OUT_DIR
//
// OUT_DIR receives layout.json ({desktop, phone}: viewport, the pad's box on load, the page's
// scroll width) and web-desktop.png / web-phone.png, taken after a 7 is drawn and scored.
// `npm run pictures` writes the pictures to docs/pictures/.
import { writeFileSync } from "node:fs";
import { join } from "node:path";

import { SEVEN, firstPage, scored, stroke, withBrowser } from "./browser.mjs";

export const SIZES = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
};

/** Open url at each size; return the layout and write the screenshots into outDir. */
export async function checkLayout(url, outDir, { extra } = {}) {
  const layout = {};
  for (const [name, viewport] of Object.entries(SIZES)) {
    const phone = name === "phone";
    layout[name] = await withBrowser({ viewport, isMobile: phone, hasTouch: phone }, async (context, log) => {
      const page = await firstPage(context);
      await page.goto(url);
      await page.waitForSelector("body[data-ready=true]", { timeout: 120_000 });
      const onLoad = await page.evaluate(() => {
        const box = document.getElementById("pad").getBoundingClientRect();
        return {
          pad: { left: box.left, top: box.top, right: box.right, bottom: box.bottom },
          viewport: { width: window.innerWidth, height: window.innerHeight },
          scrollWidth: document.documentElement.scrollWidth,
          scrollY: window.scrollY,
        };
      });
      await stroke(page, "#pad", SEVEN);
      await scored(page, 1);
      if (extra) await extra(page);
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: join(outDir, `web-${name}.png`) });
      return { ...onLoad, console: log };
    });
  }
  return layout;
}

if (process.argv[1] && process.argv[1].endsWith("layout-check.mjs")) {
  const [url, outDir] = process.argv.slice(2);
  if (!url || !outDir) {
    console.error("usage: node test/layout-check.mjs URL OUT_DIR");
    process.exit(2);
  }
  writeFileSync(join(outDir, "layout.json"), JSON.stringify(await checkLayout(url, outDir)));
}
