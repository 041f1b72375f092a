"""The one error hierarchy of Denarius.

Every error says what was wrong and, where it can, how to fix it. Serving maps these onto
gRPC status codes (see ``serving/status.py``); the CLI prints their message and exits 2.
"""

__all__ = [
    "DenariusError",
    "InputError",
    "ManifestError",
    "BundleError",
    "BackendUnavailable",
    "UnsupportedOpError",
    "Overloaded",
    "DeadlineExceeded",
    "ConfigError",
    "NotFound",
    "AlreadyExists",
]


class DenariusError(Exception):
    """Base class of every error Denarius raises on purpose."""


class InputError(DenariusError, ValueError):
    """A caller-supplied input (an image, a label, a parameter) is unusable.

    ``side`` names the coin side ("obverse"/"reverse") when the input was one of them.
    """

    def __init__(self, message: str, *, side: str | None = None):
        super().__init__(f"{side}: {message}" if side else message)
        self.side = side
        self.reason = message


class ConfigError(DenariusError, ValueError):
    """A configuration value (CLI flag, dataclass field) is out of range."""


class ManifestError(DenariusError):
    """A dataset manifest (CSV) is malformed; the message lists every problem with row numbers."""


class BundleError(DenariusError):
    """A model bundle is missing, tampered with, truncated or of an unknown schema."""


class BackendUnavailable(DenariusError):
    """The requested inference backend cannot run here; the message lists what is available."""


class UnsupportedOpError(DenariusError):
    """An ONNX graph contains an operator the gradient-graph builder cannot differentiate."""


class Overloaded(DenariusError):
    """The batcher queue is full; the caller should back off and retry."""


class DeadlineExceeded(DenariusError):
    """A request's deadline passed: before its work started (no work was done for it), or
    while long work that polls its deadline ran (a landmark search, stopped early)."""


class Cancelled(DenariusError):
    """The caller gave up (cancelled, or its deadline passed) and long work stopped early."""


class BatcherClosed(DenariusError):
    """The batcher was closed before this request ran (or a request came after close)."""


class NotFound(DenariusError, LookupError):
    """A named thing (a watchlist specimen id) does not exist; the message names it."""


class AlreadyExists(DenariusError):
    """A name (a watchlist specimen id) is already taken; remove the old one first."""
