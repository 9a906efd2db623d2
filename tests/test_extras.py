"""The pip command in 'needs an extra' errors installs from where this digitvae came from."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from digitvae.runtime import extras


@pytest.mark.parametrize(
    "origin, expected",
    [
        (None, ["digitvae[prior]"]),
        ({"url": "file:///src/digitvae", "dir_info": {}}, ["/src/digitvae[prior]"]),
        ({"url": "file:///src/digitvae", "dir_info": {"editable": True}}, ["-e", "/src/digitvae[prior]"]),
        (
            {"url": "file:///tmp/a%20b/digitvae-0.1.0-py3-none-any.whl", "archive_info": {}},
            ["/tmp/a b/digitvae-0.1.0-py3-none-any.whl[prior]"],
        ),
        (
            {"url": "https://example.org/digitvae-0.1.0.tar.gz", "archive_info": {}},
            ["digitvae[prior] @ https://example.org/digitvae-0.1.0.tar.gz"],
        ),
        (
            {"url": "https://example.org/digitvae.git", "vcs_info": {"vcs": "git", "commit_id": "abc123"}},
            ["digitvae[prior] @ git+https://example.org/digitvae.git@abc123"],
        ),
    ],
    ids=["index", "checkout", "editable", "wheel", "archive-url", "git"],
)
def test_the_requirement_names_the_install_origin(origin: dict[str, Any] | None, expected: list[str]) -> None:
    assert list(extras.requirement("prior", origin)) == expected


def test_the_command_quotes_for_the_shell_and_installs_cpu_torch_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extras, "direct_url", lambda: {"url": "file:///my%20src/digitvae", "dir_info": {}})
    command = extras.install_command("train", need_torch=True)
    first, second = command.split(" && ")
    assert first == "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert shlex.split(second) == ["pip", "install", "/my src/digitvae[train]"]
    assert " && " not in extras.install_command("serve")


def test_this_install_is_named_by_a_path_that_exists() -> None:
    """Whatever installed the tests' digitvae (a checkout, a wheel), the hint points at something real."""
    origin = extras.direct_url()
    if origin is None:
        pytest.skip("digitvae was installed from a package index (or not at all)")
    args = extras.requirement("serve", origin)
    if origin["url"].startswith("file:"):
        assert Path(args[-1].removesuffix("[serve]")).exists(), args
