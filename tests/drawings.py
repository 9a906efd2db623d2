"""Digits drawn the way people draw them: pen strokes for 0-9 rendered with Pillow on varied paper.

Each digit has two or three stroke shapes (a 1 with or without its flag, a 7 with or without
a bar, an open or closed 4, ...). `Style` says how a picture is made: canvas, size and place of
the digit, pen width, slant, ink and paper, uneven light, noise, and the file format.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Point = tuple[float, float]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 24) -> list[Point]:
    """Points on an ellipse from angle `start` to `end` (degrees, 0 = right, 90 = down)."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a))) for a in np.linspace(start, end, n)
    ]


#: Pen strokes per digit and shape, in a box 0.6 wide and 1 high (x right, y down).
SHAPES: dict[int, list[list[list[Point]]]] = {
    0: [
        [_arc(0.3, 0.5, 0.27, 0.48, -90, 270, 40)],
        [_arc(0.3, 0.5, 0.22, 0.47, -100, 265, 40)],
    ],
    1: [
        [[(0.32, 0.0), (0.3, 1.0)]],
        [[(0.12, 0.22), (0.34, 0.0), (0.32, 1.0)]],
        [[(0.14, 0.2), (0.34, 0.0), (0.34, 1.0)], [(0.12, 1.0), (0.52, 1.0)]],
    ],
    2: [
        [_arc(0.3, 0.28, 0.26, 0.26, 200, 380) + [(0.02, 1.0), (0.6, 1.0)]],
        [_arc(0.3, 0.3, 0.27, 0.28, 190, 390) + _arc(0.25, 0.95, 0.2, 0.05, 250, 110) + [(0.6, 1.0)]],
    ],
    3: [
        [_arc(0.3, 0.26, 0.25, 0.24, 200, 450) + _arc(0.3, 0.74, 0.28, 0.26, 270, 520)],
        [[(0.04, 0.0), (0.56, 0.0), (0.26, 0.42)] + _arc(0.3, 0.7, 0.27, 0.28, 270, 520)],
    ],
    4: [
        [[(0.42, 1.0), (0.42, 0.0), (0.0, 0.7), (0.6, 0.7)]],
        [[(0.08, 0.0), (0.04, 0.6), (0.6, 0.6)], [(0.46, 0.1), (0.46, 1.0)]],
    ],
    5: [
        [[(0.56, 0.0), (0.08, 0.0), (0.04, 0.45)] + _arc(0.3, 0.7, 0.28, 0.29, 240, 500)],
        [[(0.08, 0.02), (0.04, 0.45)] + _arc(0.3, 0.7, 0.27, 0.29, 240, 500), [(0.08, 0.02), (0.58, 0.0)]],
    ],
    6: [
        [_arc(0.5, 0.55, 0.46, 0.55, 280, 180, 20) + _arc(0.3, 0.73, 0.26, 0.26, 180, 540)],
        [[(0.5, 0.0), (0.1, 0.55)] + _arc(0.32, 0.74, 0.25, 0.25, 200, 560)],
    ],
    7: [
        [[(0.0, 0.0), (0.6, 0.0), (0.2, 1.0)]],
        [[(0.0, 0.05), (0.6, 0.0), (0.26, 1.0)], [(0.14, 0.5), (0.54, 0.5)]],
    ],
    8: [
        [_arc(0.3, 0.25, 0.22, 0.24, 90, 450) + _arc(0.3, 0.73, 0.28, 0.26, -90, 270)],
        [_arc(0.3, 0.26, 0.24, 0.25, 0, 360) + _arc(0.3, 0.74, 0.28, 0.25, 0, 360)],
    ],
    9: [
        [_arc(0.3, 0.27, 0.27, 0.26, 0, 360) + [(0.57, 0.27), (0.52, 1.0)]],
        [_arc(0.3, 0.28, 0.26, 0.27, 20, 380) + [(0.56, 0.35), (0.3, 1.0)]],
    ],
}


@dataclass(frozen=True)
class Style:
    """How one picture is made; sizes in pixels, levels on a 0-255 scale."""

    canvas: tuple[int, int] = (280, 280)  # width, height
    height: float = 0.6  # digit height as a share of the canvas height
    centre: tuple[float, float] = (0.5, 0.5)  # where the digit's box centre sits, as shares of the canvas
    pen: float = 12.0  # stroke width
    slant: float = 0.0  # x shift per unit of height (italics)
    ink: int = 20
    paper: int = 245
    light: float = 0.0  # how much darker the paper gets from left to right (uneven light)
    noise: float = 0.0  # standard deviation of Gaussian noise
    blur: float = 0.0  # Gaussian blur radius (an out-of-focus photo)
    specks: int = 0  # dark dots (dust, pencil marks) scattered over the paper
    colour: bool = False  # RGB instead of grey
    jpeg: int = 0  # JPEG quality; 0 for PNG
    shape: int = 0
    label: str = ""  # what the style imitates, for reports

    @property
    def suffix(self) -> str:
        """Return the file suffix the picture is saved with."""
        return ".jpg" if self.jpeg else ".png"


def draw(digit: int, style: Style, seed: int = 0) -> Image.Image:
    """Draw `digit` in `style`, as a Pillow image (grey or RGB)."""
    width, height = style.canvas
    size = style.height * height
    cx, cy = style.centre[0] * width, style.centre[1] * height
    shapes = SHAPES[digit]
    strokes = shapes[style.shape % len(shapes)]
    pen = Image.new("L", (width, height), 0)
    brush = ImageDraw.Draw(pen)
    radius = style.pen / 2.0
    for stroke in strokes:
        points = [(cx + (x - 0.3 + style.slant * (0.5 - y)) * size, cy + (y - 0.5) * size) for x, y in stroke]
        brush.line(points, fill=255, width=max(1, round(style.pen)), joint="curve")
        for x, y in (points[0], points[-1]):  # round pen ends
            brush.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    rng = np.random.default_rng(seed)
    for _ in range(style.specks):
        x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.5, 1.5) * max(1.0, style.pen / 3)
        brush.ellipse((x - r, y - r, x + r, y + r), fill=int(rng.integers(80, 256)))
    if style.blur:
        pen = pen.filter(ImageFilter.GaussianBlur(style.blur))
    coverage = np.asarray(pen, dtype=np.float64) / 255.0
    # Light falls on paper and ink alike: the paper darkens by `light` from left to right.
    picture = style.paper * (1.0 - coverage) + style.ink * coverage
    if style.light:
        picture = picture * (1.0 - style.light / style.paper * np.linspace(0.0, 1.0, width)[None, :])
    if style.noise:
        picture = picture + rng.normal(0.0, style.noise, picture.shape)
    pixels = np.clip(np.rint(picture), 0, 255).astype(np.uint8)
    if style.colour:
        tint = np.array([1.0, 0.97, 0.9])  # warm paper, bluish ink
        rgb = np.clip(np.rint(pixels[..., None] * tint), 0, 255).astype(np.uint8)
        return Image.fromarray(rgb, "RGB")
    return Image.fromarray(pixels, "L")


def encode(image: Image.Image, style: Style) -> bytes:
    """Return the picture as the PNG or JPEG file `style` asks for."""
    buffer = io.BytesIO()
    if style.jpeg:
        image.save(buffer, format="JPEG", quality=style.jpeg)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Read a saved picture back as uint8 [H,W] or [H,W,3]."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image).copy()


#: Varied ways of drawing, from a tidy drawing to a noisy photo of a page.
STYLES: list[Style] = [
    Style(label="tidy drawing"),
    Style(canvas=(280, 280), pen=28.0, height=0.7, label="fat marker"),
    Style(canvas=(400, 300), pen=3.0, height=0.5, centre=(0.3, 0.4), label="thin pen, off-centre"),
    Style(canvas=(280, 280), ink=235, paper=10, pen=14.0, label="light on dark canvas"),
    Style(
        canvas=(640, 480),
        pen=6.0,
        height=0.35,
        centre=(0.7, 0.35),
        slant=0.2,
        ink=60,
        paper=200,
        noise=8.0,
        label="grey paper, noise",
    ),
    Style(
        canvas=(640, 480),
        pen=10.0,
        height=0.5,
        light=90.0,
        paper=235,
        ink=40,
        noise=5.0,
        jpeg=80,
        colour=True,
        label="colour photo, uneven light",
    ),
    Style(
        canvas=(2000, 1500), pen=4.0, height=0.3, centre=(0.35, 0.6), noise=6.0, jpeg=85, label="2000x1500, thin pen"
    ),
    Style(
        canvas=(2000, 1500),
        pen=60.0,
        height=0.6,
        centre=(0.55, 0.45),
        slant=-0.15,
        paper=215,
        ink=50,
        jpeg=90,
        label="2000x1500, thick pen",
    ),
    Style(
        canvas=(1200, 900),
        pen=2.0,
        height=0.25,
        centre=(0.6, 0.3),
        paper=250,
        ink=90,
        noise=3.0,
        label="small, faint, thin",
    ),
    Style(
        canvas=(300, 500),
        pen=9.0,
        height=0.8,
        ink=250,
        paper=40,
        noise=10.0,
        jpeg=75,
        slant=0.25,
        label="chalk on a board",
    ),
    Style(
        canvas=(1600, 1200),
        pen=5.0,
        height=0.2,
        light=150.0,
        paper=240,
        ink=30,
        noise=6.0,
        jpeg=80,
        colour=True,
        label="strong shadow",
    ),
    Style(
        canvas=(800, 600),
        pen=3.0,
        height=0.4,
        centre=(0.4, 0.55),
        ink=150,
        paper=215,
        noise=4.0,
        jpeg=70,
        label="pencil, low contrast",
    ),
    Style(canvas=(2000, 1500), pen=1.0, height=0.25, centre=(0.75, 0.7), label="2000x1500, hairline"),
    Style(
        canvas=(1024, 768),
        pen=8.0,
        height=0.45,
        blur=4.0,
        specks=12,
        paper=230,
        ink=45,
        noise=5.0,
        jpeg=85,
        label="out of focus, dust",
    ),
    Style(canvas=(120, 160), pen=4.0, height=0.7, ink=0, paper=255, label="small canvas"),
]


def gallery(count: int, seed: int = 0) -> list[tuple[int, Style]]:
    """Return `count` (digit, style) pairs: every digit in turn, every style and shape mixed in."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        digit = i % 10
        base = STYLES[(i // 10 + i) % len(STYLES)]
        pairs.append(
            (
                digit,
                Style(
                    **{
                        **base.__dict__,
                        "shape": int(rng.integers(0, 3)),
                        "slant": base.slant + float(rng.uniform(-0.1, 0.1)),
                        "pen": base.pen * float(rng.uniform(0.8, 1.25)),
                    }
                ),
            )
        )
    return pairs
