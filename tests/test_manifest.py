"""model.json: duplicate keys, huge integers, a BOM, its size limit, metrics of the wrong types, concurrent writers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import copy_2d_model as _model_copy
from helpers import invoke, ok
from mnist_files import VALID_IMAGES

from digitvae.runtime import DigitVAE, ModelError


def test_a_manifest_with_a_key_given_twice_is_a_model_error(tmp_path: Path) -> None:
    def twice(model: Path) -> None:
        text = (model / "model.json").read_text()
        (model / "model.json").write_text(text.replace('"latent_dim": 2', '"latent_dim": 2, "latent_dim": 3', 1))

    with pytest.raises(ModelError, match="'latent_dim' appears twice"):
        DigitVAE.load(_model_copy(tmp_path, twice))


def test_a_manifest_with_an_integer_of_thousands_of_digits_is_a_model_error(tmp_path: Path) -> None:
    def huge(model: Path) -> None:
        text = (model / "model.json").read_text()
        (model / "model.json").write_text(text.replace('"latent_dim": 2', '"latent_dim": ' + "9" * 5000, 1))

    # json.loads raises a plain ValueError beyond Python's 4,300-digit conversion limit.
    with pytest.raises(ModelError, match="not a usable manifest"):
        DigitVAE.load(_model_copy(tmp_path, huge))


def test_a_manifest_with_a_byte_order_mark_is_read_and_updated(tmp_path: Path) -> None:
    def bom(model: Path) -> None:
        (model / "model.json").write_bytes(b"\xef\xbb\xbf" + (model / "model.json").read_bytes())

    model = _model_copy(tmp_path, bom)
    assert DigitVAE.load(model).latent_dim == 2
    ok(invoke("evaluate", VALID_IMAGES, "--limit", 3, "-k", 2, "--write", "--model", model))
    data = json.loads((model / "model.json").read_text(encoding="utf-8"))
    assert data["metrics"]["likelihood"]["fp32"]["digits"] == 3


@pytest.mark.heavy
def test_concurrent_writers_of_model_json_lose_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import shutil
    import subprocess
    import sys

    from digitvae.runtime.folders.locate import shipped_models_dir

    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae-2d", model)
    code = (
        "import sys\n"
        "from digitvae.runtime.folders.writing import update_metrics\n"
        "for i in range(25):\n"
        "    update_metrics(sys.argv[1], {'likelihood': {f'{sys.argv[2]}-{i}': {'iw_nll': i}}}, merge='likelihood')\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", code, str(model), name]) for name in ("a", "b", "c")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    figures = json.loads((model / "model.json").read_text())["metrics"]["likelihood"]
    for name in ("a", "b", "c"):
        assert all(f"{name}-{i}" in figures for i in range(25)), name
    assert "fp32" in figures  # what was there before is kept too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no lock or temporary file left behind


def test_an_oversized_model_json_is_refused_before_it_is_parsed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from digitvae.runtime import ModelError
    from digitvae.runtime.folders.reading import MAX_MANIFEST_BYTES

    model = _model_copy(tmp_path)
    (model / "model.json").write_text("[" + "{}," * (MAX_MANIFEST_BYTES // 3) + "{}]")
    with pytest.raises(ModelError, match="more than the"):
        DigitVAE.load(model)


def test_info_and_manifold_survive_metrics_of_the_wrong_types(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import shutil

    from helpers import assert_clean_failure, invoke, ok

    from digitvae.runtime.folders.locate import shipped_models_dir

    model = tmp_path / "m"
    shutil.copytree(shipped_models_dir() / "mnist-vae", model)
    data = json.loads((model / "model.json").read_text())
    data["metrics"]["likelihood"] = {"fp32": "ninety", "int8": {"iw_nll": "x"}}
    data["metrics"]["valid_neg_elbo"] = "low"
    data["metrics"]["latent_plane"] = {"centre": "middle", "directions": [], "spread": None}
    (model / "model.json").write_text(json.dumps(data))
    text = ok(invoke("info", "--model", model)).stdout
    assert "likelihood   fp32: unreadable in model.json" in text and "valid -ELBO" not in text
    assert_clean_failure(invoke("manifold", "--model", model, "-o", tmp_path / "b.png"), "principal plane")
    assert not (tmp_path / "b.png").exists()
