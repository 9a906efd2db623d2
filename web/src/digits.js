// Digits on a canvas: 28x28 grey levels in [0, 1] (1 = ink), white on black, scaled up without smoothing.

/** Draw n 28x28 digits (Float32Array n x 784, 1 = ink) into a canvas, `cols` per row, white ink on black. */
export function drawDigits(canvas, pixels, n, cols, scale = 2) {
  const rows = Math.ceil(n / cols);
  const tile = document.createElement("canvas");
  tile.width = cols * 28;
  tile.height = rows * 28;
  const ctx = tile.getContext("2d");
  const image = ctx.createImageData(tile.width, tile.height);
  for (let i = 0; i < n; i++) {
    const ox = (i % cols) * 28;
    const oy = Math.floor(i / cols) * 28;
    for (let p = 0; p < 784; p++) {
      const v = Math.round(pixels[i * 784 + p] * 255);
      const at = ((oy + Math.floor(p / 28)) * tile.width + ox + (p % 28)) * 4;
      image.data.set([v, v, v, 255], at);
    }
  }
  ctx.putImageData(image, 0, 0);
  canvas.width = tile.width * scale;
  canvas.height = tile.height * scale;
  const out = canvas.getContext("2d");
  out.imageSmoothingEnabled = false;
  out.drawImage(tile, 0, 0, canvas.width, canvas.height);
}
