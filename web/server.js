// A static server for the demo: the page, onnxruntime-web's dist files and the shipped models.
//
// Every response carries COOP same-origin and COEP require-corp, which make the page
// cross-origin isolated: SharedArrayBuffer is then available and onnxruntime-web can run
// its wasm backend on several threads. Models are served from ../models, not copied here.
// Files are sent compressed where the client accepts it (brotli or gzip, from memory: assets.js),
// with a strong ETag and Cache-Control: no-cache, so that a revisit costs one 304 per file.
import { createServer } from "node:http";
import { existsSync, realpathSync, statSync } from "node:fs";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

import { asset, matches } from "./assets.js";

const here = dirname(fileURLToPath(import.meta.url));

// URL prefix -> folder. The first matching prefix wins; "/" serves the page itself.
export const MOUNTS = [
  ["/ort/", join(here, "node_modules", "onnxruntime-web", "dist")],
  ["/vendor/pako/", join(here, "node_modules", "pako", "dist")],
  ["/models/", resolve(here, "..", "models")],
  ["/src/", join(here, "src")],
  ["/", join(here, "public")],
];

// Files the page cannot run without, each from an npm package that `npm ci` installs.
export const REQUIRED = [
  ["onnxruntime-web", join("dist", "ort.wasm.min.mjs")],
  ["onnxruntime-web", join("dist", "ort-wasm-simd-threaded.wasm")],
  ["pako", join("dist", "pako.esm.mjs")],
];

/** Return the names of the npm packages whose files the page needs but that are not installed. */
export function missingPackages() {
  const missing = REQUIRED.filter(([name, file]) => !existsSync(join(here, "node_modules", name, file)));
  return [...new Set(missing.map(([name]) => name))];
}

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".onnx": "application/octet-stream",
  ".png": "image/png",
  ".svg": "image/svg+xml",
};

const ISOLATION = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
  "X-Content-Type-Options": "nosniff",
};

/** Return the file a URL path names, or null when it names nothing servable. */
export function resolvePath(urlPath) {
  let path;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (path.includes("\0")) return null;
  if (path.endsWith("/")) path += "index.html";
  for (const [prefix, root] of MOUNTS) {
    if (!path.startsWith(prefix)) continue;
    const file = resolve(root, "." + path.slice(prefix.length - 1));
    // Refuse anything that leaves its folder, by ".." or by a link.
    if (!file.startsWith(root + sep)) return null;
    try {
      const real = realpathSync(file);
      const realRoot = realpathSync(root);
      if (!real.startsWith(realRoot + sep) || !statSync(real).isFile()) return null;
      return real;
    } catch {
      return null;
    }
  }
  return null;
}

/** Return the path of a request target (origin-form: "/path?query"), or null for any other target. */
export function requestPath(target) {
  // Only a path is served: "//host/...", "http://host/..." and "*" name no file here. The target
  // is parsed below a fixed origin, so no part of it is ever read as a host or a port.
  if (typeof target !== "string" || !target.startsWith("/") || target.startsWith("//")) return null;
  try {
    return new URL("http://localhost" + target).pathname;
  } catch {
    return null;
  }
}

function send(res, status, text) {
  res.writeHead(status, { ...ISOLATION, "Content-Type": "text/plain; charset=utf-8" });
  res.end(text + "\n");
}

async function handle(req, res) {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("Allow", "GET, HEAD");
    return send(res, 405, "only GET and HEAD are allowed");
  }
  const path = requestPath(req.url);
  if (path === null) return send(res, 400, "bad request target: give a path that starts with a single /");
  const file = resolvePath(path);
  let sent;
  try {
    sent = file === null ? null : await asset(file, req.headers["accept-encoding"]);
  } catch {
    sent = null; // gone since it was resolved, or unreadable
  }
  if (sent === null) return send(res, 404, `not found: ${path}`);
  const headers = {
    ...ISOLATION,
    "Content-Type": TYPES[extname(file)] ?? "application/octet-stream",
    // Revalidate every time: a revisit costs a 304 per file, and never shows a stale model.
    "Cache-Control": "no-cache",
    ETag: sent.tag,
    Vary: "Accept-Encoding",
  };
  if (sent.encoding) headers["Content-Encoding"] = sent.encoding;
  if (matches(req.headers["if-none-match"], sent.tag)) {
    res.writeHead(304, headers);
    return res.end();
  }
  res.writeHead(200, { ...headers, "Content-Length": sent.body.length });
  res.end(req.method === "HEAD" ? undefined : sent.body);
}

/** Start serving on host:port; resolve to the listening server. */
export function serve(port, host = "127.0.0.1") {
  const server = createServer((req, res) =>
    handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, "internal error");
      else res.destroy();
    }),
  );
  return new Promise((resolveServer, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolveServer(server));
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const raw = process.env.PORT ?? "8080";
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`error: PORT must be an integer from 0 to 65535, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  // Without its packages the page would wait on "Loading the model..." forever: refuse instead.
  const missing = missingPackages();
  if (missing.length) {
    const what = `${missing.join(" and ")} ${missing.length > 1 ? "are" : "is"}`;
    console.error(`error: ${what} not installed in ${here}: run \`npm ci\` there first`);
    process.exit(1);
  }
  const host = process.env.HOST ?? "127.0.0.1";
  serve(port, host).then(
    (server) => console.log(`digitvae demo at http://${host}:${server.address().port}/`),
    (err) => {
      console.error(`error: cannot listen on ${host}:${port}: ${err.message}`);
      process.exit(1);
    },
  );
}
