// The server's files in memory: each read once, compressed once per encoding, with a strong ETag.
//
// A file is read again when its size or mtime changes. Brotli runs at quality 11 on small files
// and 5 on large ones (onnxruntime-web's 14 MB wasm takes about a minute at 11 on one core, half
// a second at 5); gzip at level 9. Compression runs in libuv's thread pool, off the event loop,
// and concurrent requests for the same file share one read and one compression.
import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { extname } from "node:path";
import { brotliCompress, constants, gzip } from "node:zlib";
import { promisify } from "node:util";

const brotliAsync = promisify(brotliCompress);
const gzipAsync = promisify(gzip);

/** Encodings the server can send, best first. */
export const ENCODINGS = ["br", "gzip"];
const LARGE = 1 << 20;
// Already compressed: sending them encoded again only costs time.
const STORED = new Set([".png", ".gz"]);

const entries = new Map(); // path -> Promise of {size, mtimeMs, tag, body, encoded: Map}

/**
 * Return the encoding to send for an Accept-Encoding header: "br", "gzip" or null (identity).
 *
 * Follows RFC 9110: the highest q wins, q=0 refuses, "*" stands for any encoding not named;
 * on a tie brotli is preferred.
 */
export function negotiate(header) {
  if (typeof header !== "string" || header.trim() === "") return null;
  const q = new Map();
  for (const part of header.split(",")) {
    const [name, ...params] = part.trim().toLowerCase().split(";");
    if (!name) continue;
    let weight = 1;
    for (const param of params) {
      const [key, value] = param.trim().split("=");
      if (key === "q") weight = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(value ?? "") ? Number(value) : 0;
    }
    q.set(name, weight);
  }
  let best = null;
  let bestWeight = 0;
  for (const encoding of ENCODINGS) {
    const weight = q.get(encoding) ?? q.get("*") ?? 0;
    if (weight > bestWeight) [best, bestWeight] = [encoding, weight];
  }
  return best;
}

function compress(encoding, body) {
  if (encoding === "gzip") return gzipAsync(body, { level: 9 });
  return brotliAsync(body, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: body.length > LARGE ? 5 : 11,
      [constants.BROTLI_PARAM_SIZE_HINT]: body.length,
    },
  });
}

async function load(file, info) {
  const body = await readFile(file);
  // The tag names the content: a file put back as it was gets its old tag, and caches stay valid.
  const tag = createHash("sha256").update(body).digest("base64url").slice(0, 27);
  return { size: info.size, mtimeMs: info.mtimeMs, tag, body, encoded: new Map() };
}

/**
 * Return what to send for a file: {body, tag, encoding} with encoding "br", "gzip" or null.
 *
 * The tag is a strong ETag value (quoted) for this representation: the same content sent with
 * another encoding has another tag. Rejects where the file cannot be read.
 */
export async function asset(file, acceptEncoding) {
  const info = await stat(file);
  let pending = entries.get(file);
  let entry = pending && (await pending.catch(() => null));
  if (!entry || entry.size !== info.size || entry.mtimeMs !== info.mtimeMs) {
    pending = load(file, info);
    entries.set(file, pending);
    pending.catch(() => entries.delete(file));
    entry = await pending;
  }
  const encoding = STORED.has(extname(file)) ? null : negotiate(acceptEncoding);
  if (encoding === null) return { body: entry.body, tag: `"${entry.tag}"`, encoding };
  if (!entry.encoded.has(encoding)) {
    const compressed = compress(encoding, entry.body);
    entry.encoded.set(encoding, compressed);
    compressed.catch(() => entry.encoded.delete(encoding));
  }
  return { body: await entry.encoded.get(encoding), tag: `"${entry.tag}-${encoding}"`, encoding };
}

/** Say whether an If-None-Match header names the tag (or is "*"). */
export function matches(ifNoneMatch, tag) {
  if (typeof ifNoneMatch !== "string") return false;
  return ifNoneMatch.split(",").some((t) => {
    const candidate = t.trim();
    return candidate === "*" || candidate === tag || candidate === `W/${tag}`;
  });
}
