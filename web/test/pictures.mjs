// Regenerate docs/pictures/web-desktop.png and web-phone.png: serve the page, draw a 7, screenshot.
//
//   npm run pictures
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { serve } from "../server.js";
import { checkLayout } from "./layout-check.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const server = await serve(0);
try {
  await checkLayout(`http://127.0.0.1:${server.address().port}/`, join(here, "..", "..", "docs", "pictures"));
} finally {
  server.close();
}
