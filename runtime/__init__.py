"""Generate and reconstruct handwritten digits with an exported VAE, on onnxruntime only.

>>> from digitvae.runtime import DigitVAE
>>> vae = DigitVAE.load()            # the shipped "mnist-vae"
>>> digits = vae.generate(16, seed=0)  # float32 [16, 28, 28] in [0, 1]
"""

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
    ProviderError,
)
from .manifest import Manifest, list_shipped_models
from .model import DigitVAE
from .detector import OutlierDetector

__all__ = [
    "CheckpointError",
    "DataFormatError",
    "DigitVAE",
    "DigitVAEError",
    "DownloadError",
    "ExportError",
    "InputError",
    "IntegrityError",
    "Manifest",
    "MissingDependencyError",
    "ModelError",
    "ModelNotFoundError",
    "OutlierDetector",
    "OutputError",
    "ProviderError",
    "__version__",
    "list_shipped_models",
]
