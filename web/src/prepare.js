// Turn a picture of a handwritten digit into a 28x28 MNIST-style digit (light ink on black, 0-1).
//
// The same algorithm as digitvae.runtime.digits.prepare (Python), step for step and operation for
// operation, so both give the same 28x28 array within float rounding:
//   1. grey: ITU-R 601-2 luma (299/587/114 per mille); RGBA composited over white;
//   2. polarity: inverted when the median is above the middle of the range (dark ink on paper);
//   3. locate, on a copy max-pooled to at most 256 pixels a side: subtract the paper level
//      interpolated between blocks (lower quartiles, opened; uneven light), take as ink what
//      lies above both Otsu's and the triangle threshold, refuse ink scattered like noise rather
//      than clumped like strokes, stretch ink to 1 and paper to 0, keep the connected ink that
//      is not a speck, take its bounding box;
//   4. shape, on the full-resolution crop max-pooled to at most 64 pixels a side: dilate thin
//      strokes to MNIST's width (estimated as 2 * ink area / boundary pixels);
//   5. fit: area-average into a 20x20 box (aspect kept), centre the mass in 28x28.
// No dependencies; an ES module.

const LOCATE_SIDE = 256;
const SHAPE_SIDE = 64;
const BACKGROUND_BLOCKS = 8;
const MIN_BLOCK = 8; // a lower quartile of fewer pixels is not the paper's
const BOX_SIDE = 20;
const FIELD_SIDE = 28;
const STROKE_WIDTH = 2.6;
const CENTRE = 14.0;
const MIN_CONTRAST = 0.1;
const SPECK_SHARE = 0.1;
const MIN_CLUMPING = 0.125;
const MIN_CLUMPING_Z = 8.0;

/**
 * Convert canvas RGBA bytes (composited over white) to grey in [0, 1] by 601 luma.
 * @param {Uint8ClampedArray|Uint8Array} rgba width * height * 4 bytes, row-major
 * @param {number} width
 * @param {number} height
 * @returns {Float32Array} width * height grey values, row-major
 */
export function rgbaToGray(rgba, width, height) {
  checkSize(width, height);
  const n = width * height;
  if (!rgba || rgba.length !== n * 4) {
    throw new RangeError(`rgbaToGray: expected ${n * 4} RGBA bytes for ${width}x${height}, got ${rgba ? rgba.length : rgba}`);
  }
  const grey = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const a = rgba[4 * i + 3];
    const r = (rgba[4 * i] * a + 255 * (255 - a)) / 255;
    const g = (rgba[4 * i + 1] * a + 255 * (255 - a)) / 255;
    const b = (rgba[4 * i + 2] * a + 255 * (255 - a)) / 255;
    grey[i] = (299 * r + 587 * g + 114 * b) / 255000;
  }
  return grey;
}

/**
 * Turn a grey picture of one digit into an MNIST-style digit.
 * @param {Float32Array|ArrayLike<number>} gray width * height values in [0, 1], row-major
 * @param {number} width
 * @param {number} height
 * @returns {Float32Array} 784 values in [0, 1]: 28 rows of 28, light ink on black
 * @throws {RangeError} for a wrong size, values outside [0, 1] or NaN, or a picture without ink
 */
export function prepareDigit(gray, width, height) {
  checkSize(width, height);
  if (!gray || gray.length !== width * height) {
    throw new RangeError(`prepareDigit: expected ${width * height} grey values for ${width}x${height}, got ${gray ? gray.length : gray}`);
  }
  const grey = Float32Array.from(gray);
  for (let i = 0; i < grey.length; i++) {
    const v = grey[i];
    if (!(v >= 0 && v <= 1)) {
      throw new RangeError(`prepareDigit: grey values must be in [0, 1], found ${v} at index ${i}`);
    }
  }
  const ink = inkUp(grey);
  const img = { data: ink, h: height, w: width };
  return fit(shape(img, locate(img)));
}

function checkSize(width, height) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`the picture must be at least 1x1 pixels, got ${width}x${height}`);
  }
}

function noInk(why) {
  return new RangeError(`no ink found: ${why}`);
}

function quantise(v) {
  const b = Math.floor(v * 255 + 0.5);
  return b < 0 ? 0 : b > 255 ? 255 : b;
}

// The lower median of a 256-bin histogram: the first bin whose running count reaches (n + 1) / 2.
function medianBin(hist) {
  let total = 0;
  for (let b = 0; b < 256; b++) total += hist[b];
  const target = Math.floor((total + 1) / 2);
  let run = 0;
  for (let b = 0; b < 256; b++) {
    run += hist[b];
    if (run >= target) return b;
  }
  return 255;
}

function inkUp(grey) {
  let low = Infinity;
  let high = -Infinity;
  const hist = new Float64Array(256);
  for (let i = 0; i < grey.length; i++) {
    const v = grey[i];
    if (v < low) low = v;
    if (v > high) high = v;
    hist[quantise(v)] += 1;
  }
  if (high - low < MIN_CONTRAST) {
    throw noInk(`the picture is nearly uniform (values from ${low.toFixed(3)} to ${high.toFixed(3)})`);
  }
  const out = new Float64Array(grey.length);
  const invert = medianBin(hist) / 255 > (low + high) / 2;
  for (let i = 0; i < grey.length; i++) out[i] = invert ? 1 - grey[i] : grey[i];
  return out;
}

// Max-pool by `factor`; partial blocks at the ends count their pixels only (values are >= 0).
function maxPool(img, factor) {
  if (factor === 1) return img;
  const h = Math.ceil(img.h / factor);
  const w = Math.ceil(img.w / factor);
  const out = new Float64Array(h * w);
  for (let y = 0; y < img.h; y++) {
    const row = Math.floor(y / factor) * w;
    for (let x = 0; x < img.w; x++) {
      const v = img.data[y * img.w + x];
      const k = row + Math.floor(x / factor);
      if (v > out[k]) out[k] = v;
    }
  }
  return { data: out, h, w };
}

// The paper's level per block: the block's lower quartile (ink is bright here), then a 3x3
// opening of the blocks (least over neighbours, then most), which drops the blocks a thick
// stroke fills, even along an edge, and keeps a gradient of light as it is.
function background(img) {
  const size = Math.max(MIN_BLOCK, Math.ceil(Math.max(img.h, img.w) / BACKGROUND_BLOCKS));
  const rows = Math.ceil(img.h / size);
  const cols = Math.ceil(img.w / size);
  const quartiles = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const y1 = Math.min(img.h, (r + 1) * size);
      const x1 = Math.min(img.w, (c + 1) * size);
      const block = new Float64Array((y1 - r * size) * (x1 - c * size));
      let n = 0;
      for (let y = r * size; y < y1; y++) for (let x = c * size; x < x1; x++) block[n++] = img.data[y * img.w + x];
      block.sort();
      quartiles[r * cols + c] = block[Math.floor((n - 1) / 4)];
    }
  }
  const levels = around(around(quartiles, rows, cols, Math.min), rows, cols, Math.max);
  return { levels, size, rows, cols };
}

// `pick` (Math.min or Math.max) over each cell's 3x3 neighbours, the grid extended linearly
// beyond its edges (2 edge - inner; the edge itself for a one-cell grid), so that a gradient of
// light survives the opening up to the grid's edges.
function around(grid, rows, cols, pick) {
  const pr = rows + 2;
  const pc = cols + 2;
  const padded = new Float64Array(pr * pc);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) padded[(r + 1) * pc + c + 1] = grid[r * cols + c];
  for (let c = 1; c <= cols; c++) {
    padded[c] = rows > 1 ? 2 * padded[pc + c] - padded[2 * pc + c] : padded[pc + c];
    padded[(pr - 1) * pc + c] = rows > 1 ? 2 * padded[rows * pc + c] - padded[(rows - 1) * pc + c] : padded[rows * pc + c];
  }
  for (let r = 0; r < pr; r++) {
    padded[r * pc] = cols > 1 ? 2 * padded[r * pc + 1] - padded[r * pc + 2] : padded[r * pc + 1];
    padded[r * pc + pc - 1] = cols > 1 ? 2 * padded[r * pc + cols] - padded[r * pc + cols - 1] : padded[r * pc + cols];
  }
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      let m = padded[(r + 1) * pc + c + 1];
      for (let dr = 0; dr < 3; dr++) for (let dc = 0; dc < 3; dc++) m = pick(m, padded[(r + dr) * pc + c + dc]);
      out[r * cols + c] = m;
    }
  }
  return out;
}

// The two blocks around a pixel along one axis and the weight of the second (linear interpolation).
function axisWeights(pixel, size, count) {
  let u = (pixel + 0.5) / size - 0.5;
  u = u < 0 ? 0 : u > count - 1 ? count - 1 : u;
  const first = Math.floor(u);
  return [first, Math.min(first + 1, count - 1), u - first];
}

// The paper level at pixel (y, x), interpolated between block centres.
function paperAt(bg, y, x) {
  const [r0, r1, a] = axisWeights(y, bg.size, bg.rows);
  const [c0, c1, b] = axisWeights(x, bg.size, bg.cols);
  const l = bg.levels;
  const n = bg.cols;
  const top = l[r0 * n + c0] + (l[r0 * n + c1] - l[r0 * n + c0]) * b;
  const bottom = l[r1 * n + c0] + (l[r1 * n + c1] - l[r1 * n + c0]) * b;
  return top + (bottom - top) * a;
}

function otsu(hist) {
  let total = 0;
  let totalSum = 0;
  for (let b = 0; b < 256; b++) {
    total += hist[b];
    totalSum += hist[b] * b;
  }
  let w0 = 0;
  let s0 = 0;
  let best = -Infinity;
  let bestBin = 0;
  for (let b = 0; b < 256; b++) {
    w0 += hist[b];
    s0 += hist[b] * b;
    const w1 = total - w0;
    let between = -1;
    if (w0 !== 0 && w1 !== 0) {
      const m0 = s0 / w0;
      const m1 = (totalSum - s0) / w1;
      between = w0 * w1 * (m0 - m1) * (m0 - m1);
    }
    if (between > best) {
      best = between;
      bestBin = b;
    }
  }
  return bestBin;
}

// The knee where the paper's peak falls off towards the brightest bin: Otsu's threshold falls
// inside the paper's noise when the ink is a tiny share of the pixels; the knee does not.
function triangle(hist) {
  let peak = 0;
  let last = 0;
  for (let b = 0; b < 256; b++) {
    if (hist[b] > hist[peak]) peak = b;
    if (hist[b] > 0) last = b;
  }
  if (last <= peak) return peak;
  let best = -Infinity;
  let bestBin = peak;
  for (let b = peak; b <= last; b++) {
    // Distance below the line from (peak, hist[peak]) to (last, 0), up to a constant factor.
    const distance = hist[peak] * (last - b) - (last - peak) * hist[b];
    if (distance > best) {
      best = distance;
      bestBin = b;
    }
  }
  return bestBin;
}

// (low, high) stretch levels of background-subtracted values: ink is above both Otsu's and the
// triangle threshold; low is that threshold, high the median ink. Throws when there is no ink.
function levels(values) {
  const bins = new Int32Array(values.length);
  const hist = new Float64Array(256);
  for (let i = 0; i < values.length; i++) {
    bins[i] = quantise(values[i]);
    hist[bins[i]] += 1;
  }
  const threshold = Math.max(otsu(hist), triangle(hist));
  const paperHist = new Float64Array(256);
  const inkValues = [];
  for (let i = 0; i < values.length; i++) {
    if (bins[i] > threshold) inkValues.push(values[i]);
    else paperHist[bins[i]] += 1;
  }
  if (inkValues.length === 0 || inkValues.length === values.length) {
    throw noInk('the picture has no strokes that stand out from the paper');
  }
  const paper = medianBin(paperHist) / 255;
  const sorted = Float64Array.from(inkValues).sort();
  const ink = sorted[(sorted.length - 1) >> 1];
  if (ink - paper < MIN_CONTRAST) {
    throw noInk(`strokes differ from the paper by ${(ink - paper).toFixed(3)}, less than ${MIN_CONTRAST} (on a 0-1 scale)`);
  }
  return { low: (threshold + 0.5) / 255, high: ink };
}

function stretch(v, lv) {
  const s = (v - lv.low) / (lv.high - lv.low);
  return s < 0 ? 0 : s > 1 ? 1 : s;
}

function clip01(v) {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

// Throw when the ink is scattered like noise. The clumping (c - p) / (1 - p), where c is the share
// of ink pixels' 8-neighbours (inside the picture) that are ink and p the share of all pixels that
// are ink, is 0 for noise of any kind and density and 1/4 or more for strokes. Ink is strokes when
// the clumping is at least MIN_CLUMPING, or MIN_CLUMPING_Z standard errors above 0 (strokes among
// heavy noise). Integers (all below 2^53), then float64 in the same order as Python.
function checkClumped(mask, h, w) {
  let inked = 0;
  let present = 0;
  let count = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!mask[y * w + x]) continue;
      count++;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if ((dy === 0 && dx === 0) || xx < 0 || xx >= w) continue;
          present++;
          inked += mask[yy * w + xx];
        }
      }
    }
  }
  const total = h * w;
  const excess = inked * total - count * present;
  if (8 * inked * total - 7 * count * present >= present * total) return;
  if (excess > 0 && 4.0 * excess * excess >= MIN_CLUMPING_Z ** 2 * present * present * (total - count)) return;
  const c = inked / Math.max(present, 1);
  const p = count / total;
  throw noInk(
    `the marks are scattered like noise, not drawn as strokes (clumping ${((c - p) / (1 - p)).toFixed(3)}; strokes show at least ${MIN_CLUMPING}, noise 0)`,
  );
}

// Find the digit on a max-pooled copy: flatten the background, stretch the levels, drop specks.
function locate(img) {
  const factor = Math.max(1, Math.ceil(Math.max(img.h, img.w) / LOCATE_SIDE));
  const small = maxPool(img, factor);
  const bg = background(small);
  const n = small.h * small.w;
  const flat = new Float64Array(n);
  for (let y = 0; y < small.h; y++) {
    for (let x = 0; x < small.w; x++) {
      flat[y * small.w + x] = clip01(small.data[y * small.w + x] - paperAt(bg, y, x));
    }
  }
  const lv = levels(flat);
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) mask[i] = stretch(flat[i], lv) > 0 ? 1 : 0;
  checkClumped(mask, small.h, small.w);
  // 8-connected components, by a flood fill from each unlabelled ink pixel.
  const label = new Int32Array(n).fill(-1);
  const sizes = [];
  const stack = new Int32Array(n);
  for (let start = 0; start < n; start++) {
    if (!mask[start] || label[start] >= 0) continue;
    const id = sizes.length;
    let top = 0;
    let count = 0;
    stack[top++] = start;
    label[start] = id;
    while (top > 0) {
      const p = stack[--top];
      count++;
      const py = Math.floor(p / small.w);
      const px = p - py * small.w;
      for (let dy = -1; dy <= 1; dy++) {
        const y = py + dy;
        if (y < 0 || y >= small.h) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const x = px + dx;
          if (x < 0 || x >= small.w) continue;
          const q = y * small.w + x;
          if (mask[q] && label[q] < 0) {
            label[q] = id;
            stack[top++] = q;
          }
        }
      }
    }
    sizes.push(count);
  }
  let largest = 0;
  for (const s of sizes) largest = Math.max(largest, s);
  const keep = new Uint8Array(n);
  let y0 = Infinity;
  let y1 = -1;
  let x0 = Infinity;
  let x1 = -1;
  for (let i = 0; i < n; i++) {
    if (mask[i] && sizes[label[i]] >= SPECK_SHARE * largest) {
      keep[i] = 1;
      const y = Math.floor(i / small.w);
      const x = i - y * small.w;
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
    }
  }
  const box = {
    top: y0 * factor,
    bottom: Math.min(img.h, (y1 + 1) * factor),
    left: x0 * factor,
    right: Math.min(img.w, (x1 + 1) * factor),
  };
  return { box, factor, bg, lv, keep: { data: keep, h: small.h, w: small.w } };
}

// Grey dilation by a (2 radius + 1) square, after padding by `radius` zeros on every side.
function dilate(img, radius) {
  const h = img.h + 2 * radius;
  const w = img.w + 2 * radius;
  const rows = new Float64Array(h * img.w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < img.w; x++) {
      let m = 0;
      for (let s = y - 2 * radius; s <= y; s++) {
        if (s >= 0 && s < img.h) m = Math.max(m, img.data[s * img.w + x]);
      }
      rows[y * img.w + x] = m;
    }
  }
  const out = new Float64Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let m = 0;
      for (let s = x - 2 * radius; s <= x; s++) {
        if (s >= 0 && s < img.w) m = Math.max(m, rows[y * img.w + s]);
      }
      out[y * w + x] = m;
    }
  }
  return { data: out, h, w };
}

// 2 * ink area / boundary pixels (ink with a 4-neighbour that is not ink; outside is not ink).
function strokeWidth(img) {
  const ink = (y, x) => y >= 0 && y < img.h && x >= 0 && x < img.w && img.data[y * img.w + x] >= 0.5;
  let area = 0;
  let boundary = 0;
  for (let y = 0; y < img.h; y++) {
    for (let x = 0; x < img.w; x++) {
      if (!ink(y, x)) continue;
      area++;
      if (!(ink(y - 1, x) && ink(y + 1, x) && ink(y, x - 1) && ink(y, x + 1))) boundary++;
    }
  }
  return area === 0 ? 0 : (2 * area) / boundary;
}

// Crop to the bounding box of the non-zero pixels.
function trim(img) {
  let y0 = Infinity;
  let y1 = -1;
  let x0 = Infinity;
  let x1 = -1;
  for (let y = 0; y < img.h; y++) {
    for (let x = 0; x < img.w; x++) {
      if (img.data[y * img.w + x] > 0) {
        y0 = Math.min(y0, y);
        y1 = Math.max(y1, y);
        x0 = Math.min(x0, x);
        x1 = Math.max(x1, x);
      }
    }
  }
  if (y1 < 0) throw noInk('the picture has no strokes that stand out from the paper');
  const h = y1 - y0 + 1;
  const w = x1 - x0 + 1;
  const out = new Float64Array(h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = img.data[(y + y0) * img.w + x + x0];
  return { data: out, h, w };
}

// Cut the digit out at full resolution, clean it, pool it to at most SHAPE_SIDE, normalise its strokes.
function shape(img, where) {
  const { box, factor, bg, lv, keep } = where;
  const near = new Uint8Array(keep.h * keep.w);
  for (let y = 0; y < keep.h; y++) {
    for (let x = 0; x < keep.w; x++) {
      let any = 0;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy >= 0 && yy < keep.h && xx >= 0 && xx < keep.w && keep.data[yy * keep.w + xx]) any = 1;
        }
      }
      near[y * keep.w + x] = any;
    }
  }
  const h = box.bottom - box.top;
  const w = box.right - box.left;
  const data = new Float64Array(h * w);
  for (let y = 0; y < h; y++) {
    const fy = y + box.top;
    for (let x = 0; x < w; x++) {
      const fx = x + box.left;
      const cy = Math.floor(fy / factor);
      const cx = Math.floor(fx / factor);
      if (!near[cy * keep.w + cx]) continue;
      data[y * w + x] = stretch(clip01(img.data[fy * img.w + fx] - paperAt(bg, cy, cx)), lv);
    }
  }
  const pool = Math.max(1, Math.ceil(Math.max(h, w) / SHAPE_SIDE));
  let crop = trim(maxPool({ data, h, w }, pool));
  const target = (STROKE_WIDTH * Math.max(crop.h, crop.w)) / BOX_SIDE;
  const radius = Math.floor((target - strokeWidth(crop)) / 2 + 0.5);
  if (radius > 0) crop = trim(dilate(crop, radius));
  return crop;
}

// [target][source] weights that area-average `source` pixels into `target` pixels.
function areaWeights(source, target) {
  const weights = new Float64Array(target * source);
  const step = source / target;
  for (let i = 0; i < target; i++) {
    const start = i * step;
    const end = (i + 1) * step;
    for (let j = Math.floor(start); j < Math.min(source, Math.ceil(end)); j++) {
      const overlap = Math.min(end, j + 1) - Math.max(start, j);
      if (overlap > 0) weights[i * source + j] = overlap / step;
    }
  }
  return weights;
}

// Area-average the digit into the 20x20 box (aspect kept) and centre its mass in 28x28.
function fit(crop) {
  const { h, w } = crop;
  const side = Math.max(h, w);
  const th = Math.max(1, Math.floor((BOX_SIDE * h) / side + 0.5));
  const tw = Math.max(1, Math.floor((BOX_SIDE * w) / side + 0.5));
  const wr = areaWeights(h, th);
  const wc = areaWeights(w, tw);
  const cols = new Float64Array(h * tw);
  for (let y = 0; y < h; y++) {
    for (let j = 0; j < tw; j++) {
      let s = 0;
      for (let x = 0; x < w; x++) s += crop.data[y * w + x] * wc[j * w + x];
      cols[y * tw + j] = s;
    }
  }
  const box = new Float64Array(th * tw);
  for (let i = 0; i < th; i++) {
    for (let j = 0; j < tw; j++) {
      let s = 0;
      for (let y = 0; y < h; y++) s += wr[i * h + y] * cols[y * tw + j];
      box[i * tw + j] = s;
    }
  }
  let mass = 0;
  let rowMoment = 0;
  let colMoment = 0;
  for (let i = 0; i < th; i++) {
    for (let j = 0; j < tw; j++) {
      const v = box[i * tw + j];
      mass += v;
      rowMoment += v * i;
      colMoment += v * j;
    }
  }
  const top = Math.min(FIELD_SIDE - th, Math.max(0, Math.floor(CENTRE - rowMoment / mass + 0.5)));
  const left = Math.min(FIELD_SIDE - tw, Math.max(0, Math.floor(CENTRE - colMoment / mass + 0.5)));
  const field = new Float32Array(FIELD_SIDE * FIELD_SIDE);
  for (let i = 0; i < th; i++) {
    for (let j = 0; j < tw; j++) field[(top + i) * FIELD_SIDE + left + j] = clip01(box[i * tw + j]);
  }
  return field;
}
