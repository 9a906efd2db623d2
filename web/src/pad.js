// A drawing pad: dark ink on white paper, drawn with a mouse, a pen or a finger (pointer events).

export class Pad {
  /** Draw on `canvas`; `onStroke` is called after each stroke ends. */
  constructor(canvas, onStroke, { lineWidth = 0.075 } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { willReadFrequently: true });
    this.onStroke = onStroke;
    this.lineWidth = lineWidth * canvas.width;
    this.last = null;
    this.clear();
    canvas.style.touchAction = "none"; // the finger draws instead of scrolling the page
    canvas.addEventListener("pointerdown", (e) => this.#down(e));
    canvas.addEventListener("pointermove", (e) => this.#move(e));
    canvas.addEventListener("pointerup", (e) => this.#up(e));
    canvas.addEventListener("pointercancel", (e) => this.#up(e));
  }

  /** Wipe the pad to white paper. */
  clear() {
    this.ctx.fillStyle = "#fff";
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  #point(e) {
    const box = this.canvas.getBoundingClientRect();
    return [
      ((e.clientX - box.left) * this.canvas.width) / box.width,
      ((e.clientY - box.top) * this.canvas.height) / box.height,
    ];
  }

  #line(from, to) {
    const ctx = this.ctx;
    ctx.strokeStyle = "#000";
    ctx.lineWidth = this.lineWidth;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(...from);
    ctx.lineTo(...to);
    ctx.stroke();
  }

  #down(e) {
    if (e.button !== 0) return;
    e.preventDefault();
    this.canvas.setPointerCapture(e.pointerId);
    this.last = this.#point(e);
    this.#line(this.last, this.last);
  }

  #move(e) {
    if (this.last === null) return;
    e.preventDefault();
    // Coalesced events keep fast strokes smooth where the browser batches pointer moves.
    const events = e.getCoalescedEvents?.() ?? [e];
    for (const ev of events.length ? events : [e]) {
      const point = this.#point(ev);
      this.#line(this.last, point);
      this.last = point;
    }
  }

  #up(e) {
    if (this.last === null) return;
    this.last = null;
    if (this.canvas.hasPointerCapture(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    this.onStroke();
  }
}
