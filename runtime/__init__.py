"""Generate and reconstruct handwritten digits with an exported VAE, on onnxruntime only.

>>> from digitvae.runtime import DigitVAE
>>> vae = DigitVAE.load()            # the shipped "mnist-vae"
>>> digits = vae.generate(16, seed=0)  # float32 [16, 28, 28] in [0, 1]
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    CheckpointError,
    DataFormatError,
    DigitVAEError,
    DownloadError,
    ExportError,
    InputError,
    IntegrityError,
    MissingDependencyError,
    ModelError,
    ModelNotFoundError,
    OutputError,
    PictureError,
    ProviderError,
)
from .folders.locate import list_shipped_models
from .folders.manifest import Manifest
from .inference.model import DigitVAE
from .options import LoadOptions

if TYPE_CHECKING:
    from .digits.prepare import prepare_digit
    from .outliers.detector import OutlierDetector

__all__ = [
    "CheckpointError",
    "DataFormatError",
    "DigitVAE",
    "DigitVAEError",
    "DownloadError",
    "ExportError",
    "InputError",
    "IntegrityError",
    "LoadOptions",
    "Manifest",
    "MissingDependencyError",
    "ModelError",
    "ModelNotFoundError",
    "OutlierDetector",
    "OutputError",
    "PictureError",
    "ProviderError",
    "__version__",
    "list_shipped_models",
    "prepare_digit",
]


def __getattr__(name: str) -> Any:
    # Generating digits needs neither outlier scoring nor picture preparation: each is imported
    # on first use, which keeps a start that only generates short.
    if name == "OutlierDetector":
        from .outliers.detector import OutlierDetector

        return OutlierDetector
    if name == "prepare_digit":
        from .digits.prepare import prepare_digit

        return prepare_digit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
