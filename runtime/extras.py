"""The pip command that adds one of digitvae's extras, from wherever this digitvae was installed from.

digitvae installed from a checkout or a wheel file is not on any package index, so
`pip install 'digitvae[train]'` would not find it (or would find something else): the command
names the same folder, file or URL, which pip records in the install (PEP 610's direct_url.json).
"""

from __future__ import annotations

import json
import shlex
from importlib import metadata
from typing import Any
from urllib.parse import unquote, urlparse

#: PyTorch's CPU build: plain `pip install torch` takes a CUDA build of several GB.
TORCH_CPU = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
#: Extras that bring torch.
TORCH_EXTRAS = frozenset({"train"})


def direct_url() -> dict[str, Any] | None:
    """Return how pip recorded this install's origin (a folder, file or URL), or None for an index."""
    # A checkout's own digitvae.egg-info (found first when running from the checkout) records no origin.
    texts = (d.read_text("direct_url.json") for d in metadata.distributions(name="digitvae"))
    text = next((t for t in texts if t), None)
    if text is None:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, dict) and isinstance(found.get("url"), str) else None


def requirement(extra: str, origin: dict[str, Any] | None) -> tuple[str, ...]:
    """Return pip's arguments that install digitvae with `extra` from `origin` (see direct_url)."""
    if origin is None:
        return (f"digitvae[{extra}]",)
    url: str = origin["url"]
    parsed = urlparse(url)
    vcs = origin.get("vcs_info")
    if isinstance(vcs, dict):
        commit = vcs.get("commit_id")
        return (f"digitvae[{extra}] @ {vcs.get('vcs', 'git')}+{url}" + (f"@{commit}" if commit else ""),)
    if parsed.scheme != "file":
        return (f"digitvae[{extra}] @ {url}",)
    path = unquote(parsed.path)
    dir_info = origin.get("dir_info")
    if isinstance(dir_info, dict) and dir_info.get("editable"):
        return ("-e", f"{path}[{extra}]")
    return (f"{path}[{extra}]",)


def install_command(extra: str, *, need_torch: bool | None = None) -> str:
    """Return the shell command that adds `extra` to this install; PyTorch's CPU build first where it brings torch.

    `need_torch` defaults to whether the extra brings torch and torch is not installed yet.
    """
    if need_torch is None:
        from importlib.util import find_spec

        need_torch = extra in TORCH_EXTRAS and find_spec("torch") is None
    command = "pip install " + " ".join(shlex.quote(arg) for arg in requirement(extra, direct_url()))
    return f"{TORCH_CPU} && {command}" if need_torch else command
