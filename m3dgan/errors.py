"""Errors a user can cause and fix; the CLI prints them without a traceback and exits with 2."""


class M3DGANError(Exception):
    """Base class for expected, user-facing errors (bad input, missing material, bad config)."""


class DataError(M3DGANError):
    """A data set, data file or source package is missing, corrupt or of the wrong shape."""


class CheckpointError(M3DGANError):
    """A checkpoint is missing, damaged, or not a safe (safetensors + JSON) checkpoint."""


class ConfigError(M3DGANError):
    """A configuration file or option has an unknown key or an invalid value."""


class InputError(M3DGANError, ValueError):
    """An input handed to a trained model (text, image, audio) cannot be translated as given."""


class AudioError(InputError):
    """An audio file or waveform is missing, unreadable, empty, silent or otherwise unusable."""


class OutputError(M3DGANError):
    """A file could not be written (disk full, read-only, permission); names the path and cause.

    Raised by :mod:`m3dgan.atomic`, which leaves no partial file behind when it is raised.
    """
