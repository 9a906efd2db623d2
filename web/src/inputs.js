// Argument checks for the browser API: counts, codes, images and labels.
import { InputError } from "./errors.js";

export const PIXELS = 784;
// The Python runtime's cap on one call; a browser tab would run out of memory well before.
const MAX_COUNT = 1_000_000;

/** Return n if it is a positive integer (at most MAX_COUNT), else throw InputError. */
export function asCount(n, name = "n") {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > MAX_COUNT) {
    throw new InputError(`${name} must be a positive integer (at most ${MAX_COUNT}), got ${String(n)}`);
  }
  return n;
}

function checkFloats(values, length, name, what) {
  if (!(values instanceof Float32Array)) {
    const type = values === null ? "null" : (values?.constructor?.name ?? typeof values);
    throw new InputError(`${name} must be a Float32Array of ${what}, got ${type}`);
  }
  if (values.length !== length) {
    throw new InputError(`${name} must hold ${what} = ${length} values, got ${values.length}`);
  }
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new InputError(`${name}[${i}] is ${values[i]}; values must be finite`);
  }
  return values;
}

/** Return codes z (n x d) as given, or throw InputError. */
export function asLatents(z, n, d, name = "z") {
  return checkFloats(z, n * d, name, `n x D (${n} x ${d})`);
}

/** Return images (n x 784, pixels in [0, 1]) as given, or throw InputError. */
export function asImages(images, n, name = "images") {
  checkFloats(images, n * PIXELS, name, `n x 784 (${n} x ${PIXELS})`);
  for (let i = 0; i < images.length; i++) {
    if (images[i] < 0 || images[i] > 1) {
      throw new InputError(`${name}[${i}] is ${images[i]}; pixel values must be in [0, 1]`);
    }
  }
  return images;
}

/**
 * Return n int64 labels as a BigInt64Array from one number (repeated) or n numbers, each an
 * integer from low to high; else throw InputError.
 */
export function asLabels(labels, n, low, high, name = "labels") {
  if (typeof labels === "string" || typeof labels === "bigint") {
    throw new InputError(`${name} must be a number or an array of numbers, got a ${typeof labels}`);
  }
  const values = typeof labels === "number" ? new Array(n).fill(labels) : Array.from(labels ?? [], Number);
  if (values.length !== n) {
    throw new InputError(`${name} must be one number or ${n} numbers (one per digit), got ${values.length}`);
  }
  const out = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (!Number.isInteger(v) || v < low || v > high) {
      throw new InputError(`${name}[${i}] is ${v}; it must be an integer from ${low} to ${high}`);
    }
    out[i] = BigInt(v);
  }
  return out;
}

/**
 * Return the prior's `label` rows (BigInt64Array) for n draws from `digit`: -1 (any class) or a
 * class below `classes` (the prior's), one or one per draw; else throw InputError.
 */
export function asPriorLabels(digit, n, classes, model) {
  try {
    return asLabels(digit ?? -1, n, -1, Math.max(classes - 1, -1), "digit");
  } catch (err) {
    if (classes || !(err instanceof InputError)) throw err;
    throw new InputError(`model ${model}'s prior has no classes; it cannot be asked for a digit (only -1, any)`);
  }
}
