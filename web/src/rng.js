// A seeded random source for the page: reproducible digits from a seed typed in the page.
//
// Not numpy's generator: the same seed gives other digits than Python's `--seed`. Tests that
// compare with Python pass the random inputs explicitly instead (the ONNX contract takes them
// as inputs for exactly that).

/** Return a function giving uniform 32-bit integers from a seed (splitmix32 seeding sfc32). */
function sfc32(seed) {
  let s = seed >>> 0;
  const split = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 16), 0x21f0aaad);
    t = Math.imul(t ^ (t >>> 15), 0x735a2d97);
    return (t ^ (t >>> 15)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  return () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t;
  };
}

export class Random {
  /** A generator seeded with an integer; without one, from crypto.getRandomValues. */
  constructor(seed) {
    const start = Number.isInteger(seed) ? seed : crypto.getRandomValues(new Uint32Array(1))[0];
    this.next = sfc32(start);
  }

  /** Return n floats in [0, 1), each exactly representable in float32. */
  uniform(n) {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (this.next() >>> 8) / 16777216;
    return out;
  }

  /** Return n float32 draws from N(0, 1) (Box-Muller). */
  normal(n) {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i += 2) {
      const u = ((this.next() >>> 8) + 1) / 16777217; // in (0, 1): log(u) stays finite
      const v = (this.next() >>> 8) / 16777216;
      const r = Math.sqrt(-2 * Math.log(u));
      out[i] = r * Math.cos(2 * Math.PI * v);
      if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
    }
    return out;
  }
}
