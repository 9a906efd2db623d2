"""Exception classes: every failure the package reports on purpose is a DigitVAEError."""

from __future__ import annotations


class DigitVAEError(Exception):
    """Base class of every error digitvae raises on purpose."""


class InputError(DigitVAEError, ValueError):
    """An array, image or argument given to the runtime is not acceptable."""


class DataFormatError(DigitVAEError):
    """A data file (IDX, PNG, npy) is malformed, truncated or of the wrong kind."""


class PictureError(DataFormatError):
    """A file holds a picture of a digit, not an MNIST-style digit: it needs preparing first."""

    def __init__(self, reason: str, hint: str = "pass prepare=True to make a picture of a digit MNIST-style first"):
        super().__init__(f"{reason}; {hint}")
        #: What was wrong, without the hint on what to do (a caller may give its own).
        self.reason = reason


class ModelError(DigitVAEError):
    """A model directory, manifest or ONNX file is missing, malformed or inconsistent."""


class ModelNotFoundError(ModelError):
    """No shipped model has that name and no directory exists at that path."""


class IntegrityError(ModelError):
    """An ONNX file does not match the sha256 recorded in its manifest."""


class ProviderError(DigitVAEError):
    """An execution provider name is unknown, or a requested provider is not active."""


class OutputError(DigitVAEError):
    """An output file cannot be written where it was asked for."""


class DownloadError(DigitVAEError):
    """A dataset file could not be fetched or failed its checksum."""


class CheckpointError(DigitVAEError):
    """A training checkpoint is missing, malformed or incompatible."""


class ExportError(DigitVAEError):
    """An ONNX export failed its checks; nothing was written."""


class MissingDependencyError(DigitVAEError):
    """An optional dependency (torch, onnx) needed for this command is not installed."""
