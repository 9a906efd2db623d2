"""The page's layout at a desktop (1280x800) and a phone size (390x844), in headless Chromium.

On load the drawing pad lies wholly inside the viewport at both sizes (no scrolling needed to
draw), and nothing is wider than the screen. web/test/layout-check.mjs also leaves the
screenshots that `npm run pictures` writes to docs/pictures/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from web_page import ROOT, missing, run_script, served

pytestmark = pytest.mark.heavy  # starts node and a headless browser

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("layout")
    with served() as url:
        result: dict[str, Any] = run_script("layout-check.mjs", url, out, result=out / "layout.json")
    result["out"] = out
    yield result


@pytest.mark.parametrize("size", SIZES)
def test_the_pad_is_above_the_fold_on_load(layout: dict[str, Any], size: str) -> None:
    shown = layout[size]
    width, height = SIZES[size]
    assert shown["viewport"] == {"width": width, "height": height}
    assert shown["scrollY"] == 0
    pad = shown["pad"]
    assert 0 <= pad["left"] < pad["right"] <= width, pad
    assert 0 <= pad["top"] < pad["bottom"] <= height, pad
    assert pad["right"] - pad["left"] >= 200, "a pad too small to draw on"


@pytest.mark.parametrize("size", SIZES)
def test_nothing_is_wider_than_the_screen(layout: dict[str, Any], size: str) -> None:
    assert layout[size]["scrollWidth"] <= SIZES[size][0]
    assert not [line for line in layout[size]["console"] if line.startswith(("error", "pageerror"))]


@pytest.mark.parametrize("size", SIZES)
def test_screenshots_are_taken_at_each_size(layout: dict[str, Any], size: str) -> None:
    for shot in (layout["out"] / f"web-{size}.png", ROOT / "docs" / "pictures" / f"web-{size}.png"):
        with Image.open(shot) as image:
            assert image.size == SIZES[size], shot
