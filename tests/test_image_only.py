"""An image-only install (``pip install m3dgan``, no ``[speech]`` or ``[text]`` extra) works: the
package imports, ``m3dgan tasks`` runs, an image task trains and translates, and a speech or
text feature stops with one line naming the extra to install.

Runs in a subprocess in which the extras' modules (and what librosa pulls: numba, scikit-learn)
cannot be imported, as on a machine that never installed them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).parent

SCRIPT = textwrap.dedent(
    """
    import sys

    BLOCKED = ["librosa", "pocketsphinx", "soxr", "soundfile", "jiwer", "sklearn", "numba",
               "sentencepiece", "babel", "polib", "sacrebleu"]
    for name in BLOCKED:
        sys.modules[name] = None  # import raises ImportError, as if not installed

    import io
    from contextlib import redirect_stdout
    from pathlib import Path

    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, sys.argv[1])
    from conftest import TINY_OVERRIDES, set_args, write_synthetic_dataset

    import m3dgan.evaluate, m3dgan.infer, m3dgan.train  # noqa: E401, F401
    import m3dgan.data.build, m3dgan.data.formats.fetch  # noqa: E401, F401
    from m3dgan.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["tasks"]) == 0
    assert "digits" in out.getvalue() and "tts" in out.getvalue()

    work = Path(sys.argv[2])
    data = write_synthetic_dataset(work / "data")
    run = work / "run"
    argv = ["train", "--task", "digits", "--data", str(data), "--out", str(run)]
    assert main([*argv, "--steps", "2", "--no-progress", *set_args(TINY_OVERRIDES)]) == 0
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 200, 200)).save(work / "in.png")
    argv = ["translate", "--checkpoint", str(run), "--input", str(work / "in.png")]
    assert main([*argv, "--out", str(work / "out"), "--samples", "2", "--device", "cpu"]) == 0
    assert len(list((work / "out").glob("in_z*.png"))) == 2  # + overview.png, index.html

    from m3dgan.extras import MissingExtraError
    from m3dgan.audio import load_audio
    from m3dgan.metrics.bleu import corpus_bleu

    (work / "a.wav").write_bytes(b"RIFF")
    for call, extra in ((lambda: load_audio(work / "a.wav"), "speech"),
                        (lambda: corpus_bleu(["a"], [["a"]]), "text")):
        try:
            call()
        except MissingExtraError as exc:
            assert f"m3dgan[{extra}]" in str(exc), exc
        else:
            raise AssertionError(f"no MissingExtraError for the {extra} extra")
    print("IMAGE-ONLY OK")
    """
)


@pytest.mark.timeout(300)
def test_image_tasks_work_without_the_speech_and_text_extras(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(TESTS), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
        env={
            "PATH": "/usr/bin:/bin",
            "M3DGAN_HOME": str(tmp_path / "home"),
            "OMP_NUM_THREADS": "1",
            "HOME": str(tmp_path),
        },
    )
    assert done.returncode == 0 and "IMAGE-ONLY OK" in done.stdout, done.stdout + done.stderr
