"""Optional dependencies: the ``speech`` and ``text`` extras of pyproject.toml.

An image-only install (``pip install m3dgan``) has none of their packages. Every module that needs
one imports it through :func:`require` inside the function that uses it, never at module import
time, so that ``import m3dgan.train``, ``m3dgan tasks`` and the image tasks work without them, and
a speech or text feature used without its extra stops with one clear line naming what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from m3dgan.errors import M3DGANError

# top-level module -> (pip package, extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "soundfile": ("soundfile", "speech"),
    "soxr": ("soxr", "speech"),
    "librosa": ("librosa", "speech"),
    "jiwer": ("jiwer", "speech"),
    "pocketsphinx": ("pocketsphinx", "speech"),
    "num2words": ("num2words", "speech"),
    "phonemizer": ("phonemizer", "speech"),
    "sentencepiece": ("sentencepiece", "text"),
    "babel": ("babel", "text"),
    "polib": ("polib", "text"),
    "sacrebleu": ("sacrebleu", "text"),
}


class MissingExtraError(M3DGANError, ImportError):
    """An optional dependency is not installed (also an ImportError, for code that probes)."""


def require(module: str, purpose: str = "") -> ModuleType:
    """``importlib.import_module(module)``, or a :class:`MissingExtraError` that names the
    extra to install (``purpose``, e.g. "reading audio files", says what needed it)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package, extra = EXTRAS.get(module.split(".")[0], (module.split(".")[0], None))
        need = f"{purpose} needs" if purpose else "this needs"
        how = (
            f"install the extra: pip install 'm3dgan[{extra}]' (in a checkout: "
            f"pip install -e '.[{extra}]', or bash scripts/setup.sh, which installs every extra)"
            if extra
            else f"pip install {package}"
        )
        raise MissingExtraError(
            f"{need} the Python package {package!r}, which is not installed ({exc}); {how}"
        ) from exc
