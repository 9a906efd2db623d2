// The server's files in memory: each read once, compressed once per encoding, with a strong ETag.
//
// A file is read again when its size or mtime changes. Brotli runs at quality 11 on small files
// and 5 on large ones (onnxruntime-web's 14 MB wasm takes about a minute at 11 on one core, half
// a second at 5); gzip at level 9. A large file's brotli at quality 11 made beforehand
// (`precompress`: `npm ci` runs it for onnxruntime-web's wasm) is sent instead, from the cache
// folder (web/.cache, or $DIGITVAE_WEB_CACHE), named by the file's sha256 and checked against the
// file before use. Compression runs in libuv's thread pool, off the event loop, and concurrent
// requests for the same file share one read and one compression.
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompress, brotliDecompress, constants, gzip } from "node:zlib";
import { promisify } from "node:util";

const brotliAsync = promisify(brotliCompress);
const unbrotliAsync = promisify(brotliDecompress);
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

function compress(encoding, body, quality = body.length > LARGE ? 5 : 11) {
  if (encoding === "gzip") return gzipAsync(body, { level: 9 });
  return brotliAsync(body, {
    params: { [constants.BROTLI_PARAM_QUALITY]: quality, [constants.BROTLI_PARAM_SIZE_HINT]: body.length },
  });
}

/** Return the folder of the precompressed files: $DIGITVAE_WEB_CACHE, or web/.cache. */
export function cacheFolder() {
  return process.env.DIGITVAE_WEB_CACHE || join(dirname(fileURLToPath(import.meta.url)), ".cache");
}

const storedPath = (digest) => join(cacheFolder(), "brotli", `${digest.toString("hex")}.br`);

/** Return the precompressed brotli of `body` if there is one that decompresses to it, else null. */
async function readStored(digest, body) {
  let stored;
  try {
    stored = await readFile(storedPath(digest));
    if (body.equals(await unbrotliAsync(stored))) return stored;
  } catch {
    // none, or not brotli: compressed on the fly instead
  }
  return null;
}

/**
 * Write a file's brotli at quality 11 to the cache folder, unless a valid one is there already;
 * resolve to {path, bytes, made}. Written whole or not at all (a temporary file, then renamed).
 */
export async function precompress(file) {
  const body = await readFile(file);
  const digest = createHash("sha256").update(body).digest();
  const path = storedPath(digest);
  const present = await readStored(digest, body);
  if (present) return { path, bytes: present.length, made: false };
  const compressed = await compress("br", body, 11);
  await mkdir(dirname(path), { recursive: true });
  const partial = `${path}.${process.pid}.partial`;
  try {
    await writeFile(partial, compressed);
    await rename(partial, path);
  } finally {
    await rm(partial, { force: true });
  }
  return { path, bytes: compressed.length, made: true };
}

async function load(file, info) {
  const body = await readFile(file);
  const digest = createHash("sha256").update(body).digest();
  // The tag names the content: a file put back as it was gets its old tag, and caches stay valid.
  const tag = digest.toString("base64url").slice(0, 27);
  const entry = { size: info.size, mtimeMs: info.mtimeMs, tag, body, encoded: new Map(), stored: false };
  const stored = body.length > LARGE ? await readStored(digest, body) : null;
  if (stored) {
    entry.encoded.set("br", Promise.resolve(stored));
    entry.stored = true;
  }
  return entry;
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
  // The precompressed brotli has other bytes than the one made on the fly: another tag.
  const kind = encoding === "br" && entry.stored ? "br11" : encoding;
  return { body: await entry.encoded.get(encoding), tag: `"${entry.tag}-${kind}"`, encoding };
}

/** Say whether an If-None-Match header names the tag (or is "*"). */
export function matches(ifNoneMatch, tag) {
  if (typeof ifNoneMatch !== "string") return false;
  return ifNoneMatch.split(",").some((t) => {
    const candidate = t.trim();
    return candidate === "*" || candidate === tag || candidate === `W/${tag}`;
  });
}
