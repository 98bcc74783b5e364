"""Command line: ``m3dgan data|train|translate|evaluate|tasks``.

Expected errors (bad input, missing data, bad config, damaged checkpoint) print one line
``error: ...`` and exit with status 2; anything else is a bug and shows its traceback. Warnings
print as one line ``warning: ...``.

Each subcommand imports the modules it uses when it runs (not at the top of this file), so
``m3dgan --help``, ``--version`` and ``tasks`` answer without loading torch and the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from m3dgan.errors import M3DGANError


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default: argparse's ``(default: X)`` where the option has a
    value, nothing for on/off flags (off unless given) and for options whose help already says
    its default (those whose default is decided later, e.g. by the task, say by what)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False:
            return text
        if action.default == []:  # repeatable options that start empty
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """The CLI's parser; its subcommand parsers are of the same class (argparse's default), so
    every ``--help`` uses :class:`_HelpFormatter`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="build, fetch or list data sets")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    b = dsub.add_parser("build", help="build a built-in data set offline from installed material")
    b.add_argument(
        "name",
        help="digits | edges2emoji | text2emoji | text2emoji-seen | emoji2text | en2fr | speech",
    )
    b.add_argument(
        "--force", action="store_true", help="rebuild even if a valid cached build exists"
    )
    b.add_argument(
        "--limit",
        type=int,
        default=None,
        help="cap source items, for quick small builds (default: no cap)",
    )
    b.add_argument(
        "--seed", type=int, default=0, help="seed of the builder's random choices (splits, styles)"
    )
    f = dsub.add_parser("fetch", help="download a published data set (needs internet)")
    f.add_argument(
        "name",
        help="edges2shoes | night2day | cub | coco-captions | wmt14-en-fr | ljspeech | "
        "librispeech-clean-100",
    )
    f.add_argument(
        "--url",
        action="append",
        metavar="[KEY=]URL",
        help="mirror URL of the archive; KEY=URL per archive where a data set has several "
        "(cub: images, text; coco-captions: annotations, train, val; wmt14-en-fr: train, test; "
        "librispeech-clean-100: train, test). "
        "M3DGAN_FETCH_MIRROR=BASE_URL serves every archive from one mirror "
        "(default: the data set's published address)",
    )
    f.add_argument(
        "--sha256",
        action="append",
        metavar="[KEY=]HEX",
        help="expected sha256 of the archive, KEY=HEX per archive (default: the digest the "
        "project pins, else the one recorded at the first download)",
    )
    f.add_argument("--image-size", type=int, default=None, help="default: the data set's own")
    f.add_argument(
        "--limit",
        type=int,
        default=None,
        help="cap photos per split (wmt14-en-fr: training pairs; speech: utterances), for quick "
        "trials (default: no cap)",
    )
    f.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="converter option, e.g. texts_per_image=1, crop=bbox, lowercase=true, vocab_size=8000; "
        "speech: max_seconds=10, test_fraction=2e-2, skip_bad=true, style_column=4 (ljspeech); "
        "repeatable (default: the converter's own settings)",
    )
    f.add_argument(
        "--force", action="store_true", help="download and convert again even if already there"
    )
    dsub.add_parser("list", help="list data sets and where they are")
    e = dsub.add_parser(
        "export",
        help="write a task's test rows as files to translate: inputs/ (sources), references/ "
        "(targets: samples of their domain) and index.tsv",
    )
    e.add_argument("task", help="task whose data set to read (asr reads the speech corpus as asr)")
    e.add_argument("--out", required=True, type=Path, help="output folder")
    e.add_argument("--split", default="test", help="split to read (default: test)")
    e.add_argument("--count", type=int, default=8, help="rows to write (default 8)")
    e.add_argument(
        "--data", type=Path, default=None, help="data set folder (default: the task's built-in one)"
    )


def _add_train(sub) -> None:
    from m3dgan.core.objectives import OBJECTIVES
    from m3dgan.tasks import TASKS

    p = sub.add_parser("train", help="train (or resume) a run")
    p.add_argument(
        "--task", choices=list(TASKS), help="task to train (default: from --config, else digits)"
    )
    p.add_argument(
        "--out",
        type=Path,
        help="run folder (config, logs, checkpoints); required, except with --print-config alone "
        "(default: none)",
    )
    p.add_argument(
        "--objective", choices=list(OBJECTIVES), help="training objective (default: full)"
    )
    p.add_argument(
        "--steps",
        type=int,
        help="total training steps; with --resume, a total beyond the run's step extends it "
        "(default: from --config, else the task's)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help="global batch size (default: from --config, else the task's)",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="YAML config file, e.g. a copy of RUN_DIR/config.yaml of any run "
        "(default: the task's defaults)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=1e-4 (repeatable; applied after "
        "--config and the flags; default: none)",
    )
    p.add_argument(
        "--data",
        type=Path,
        help="data folder to use instead of the task's default (default: the task's data set, "
        "built on first use)",
    )
    p.add_argument(
        "--device",
        help="auto | cpu | cuda | cuda:N: where to train. With --resume it applies to this "
        "session only; the run's config.yaml keeps the device it was started with "
        "(default: from --config, else auto; with --resume: the run's)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the full resolved config as YAML (task defaults, --config, --set and the "
        "flags applied; with --resume: the run's) and exit without training",
    )


def _add_translate(sub) -> None:
    p = sub.add_parser("translate", help="translate an input file with a trained run")
    p.add_argument("--checkpoint", required=True, type=Path, help="run folder or checkpoint file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--input",
        type=Path,
        nargs="+",
        help="source file(s): images, UTF-8 text files, or audio (WAV/FLAC/OGG, any rate). "
        "Outputs are named <file name without folder and suffix>_<ref|tok|z><k>, so two inputs "
        "with the same name (a/digit.png, b/digit.png) are refused before anything is written. "
        "A non-square image is centre-cropped to a square (with a warning)",
    )
    src.add_argument("--text", nargs="+", help="source sentence(s), for tasks with a text source")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--reference",
        type=Path,
        nargs="+",
        help="reference file(s) that set the domain, one output per reference "
        "(default: none, random codes: see --samples)",
    )
    g.add_argument(
        "--samples", type=int, default=None, help="number of random-z outputs per input (default 4)"
    )
    g.add_argument(
        "--tokens",
        metavar="K:W,...",
        help="explicit token weights instead of a reference, e.g. 3:0.7,5:0.3 (objectives with "
        "a token layer; default: none)",
    )
    p.add_argument(
        "--style-scale",
        type=float,
        default=1.0,
        help="multiply the domain embedding: >1 exaggerates the style, <1 tones it down",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed for random z, for repeatable outputs (default: a fresh random draw)",
    )
    p.add_argument(
        "--beam", type=int, default=1, help="beam size for text outputs (1 = greedy decoding)"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    _add_no_ema(p)


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="compute the task's metrics on its test split (tts also writes WAVs, mel "
        "thumbnails and an index.html of every output with its ground truth and transcript, in "
        "<out>_audio/; image targets a page in <out>_page/)",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="run folder or checkpoint file")
    p.add_argument("--out", required=True, type=Path, help="metrics JSON file to write")
    p.add_argument(
        "--inputs",
        type=int,
        default=None,
        help="test inputs (default: images 100 for diversity (BicycleGAN); text tasks: all "
        "distinct sources; tts: 50 sentences (× every style); asr: all sentences (× every style))",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="random z per input (default: diversity 20 (BicycleGAN); text→image 4)",
    )
    p.add_argument("--beam", type=int, default=1, help="beam size for text outputs (1 = greedy)")
    p.add_argument(
        "--data",
        type=Path,
        help="data folder to use instead of the task's default (default: the checkpoint's "
        "task's data set)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the random codes and of any sampling"
    )
    _add_no_ema(p)


def _add_no_ema(p) -> None:
    p.add_argument(
        "--no-ema",
        action="store_true",
        help="use the trained (live) weights of the generator side even where the checkpoint "
        "holds their moving average (runs with train.ema_decay > 0), which is used otherwise",
    )


def build_parser() -> argparse.ArgumentParser:
    from m3dgan import __version__

    parser = _Parser(prog="m3dgan", description="M3D-GAN: multi-modal multi-domain translation")
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {__version__}",
        help="print the version and exit",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_data(sub)
    _add_train(sub)
    _add_translate(sub)
    _add_evaluate(sub)
    sub.add_parser("tasks", help="list tasks and objectives")
    return parser


def cmd_data(args) -> int:
    from m3dgan import paths
    from m3dgan.data import build
    from m3dgan.data.formats import fetch

    if args.data_cmd == "export":
        from m3dgan.data.export import export_rows
        from m3dgan.tasks import get_task

        task = get_task(args.task)
        root = _data_root(args.data) or build.task_dataset_root(args.task)
        done = export_rows(root, args.out, split=args.split, count=args.count, swap=task.swap_sides)
        print(
            f"wrote {len(done.inputs)} inputs to {args.out / 'inputs'}, a target of each (the "
            f"same item, each domain in turn) to {args.out / 'references'}, and {done.index}"
        )
        print(
            f"next: m3dgan translate --checkpoint RUN --input {done.inputs[0]} --reference "
            f"{done.references[-1]} --out {args.out / 'translated'}"
        )
    elif args.data_cmd == "build":
        root = build.build_dataset(args.name, limit=args.limit, force=args.force, seed=args.seed)
        print(f"data set {args.name!r} ready at {root}")
    elif args.data_cmd == "fetch":
        root = fetch.fetch(
            args.name,
            url=fetch.parse_keyed(args.url),
            expected_sha256=fetch.parse_keyed(args.sha256),
            image_size=args.image_size,
            limit=args.limit,
            force=args.force,
            **fetch.parse_options(args.option),
        )
        print(f"data set {args.name!r} ready at {root}")
    else:
        from m3dgan.data.store import read_manifest

        folder = paths.datasets_dir()
        names = (
            sorted(p.name for p in folder.iterdir() if (p / "manifest.json").is_file())
            if folder.is_dir()
            else []
        )
        print(f"built-in: {', '.join(build.BUILDERS)}   fetchable: {', '.join(build.FETCHABLE)}")
        for name in names:
            m = read_manifest(folder / name)
            size = f" {m.image_size}px" if m.image_size else ""
            kinds = f"{m.source_kind}->{m.target_kind}{size}"
            print(f"  {name:14s} {kinds:18s} splits {m.splits}  at {folder / name}")
        if not names:
            print(f"  nothing built yet in {folder}")
    return 0


def cmd_train(args) -> int:
    from m3dgan.config import config_from_dict, layered_config, load_config
    from m3dgan.train import check_run_config, train

    if args.out is None and (args.resume or not args.print_config):
        raise M3DGANError(
            "train needs --out RUN_DIR (the run folder); only --print-config runs without it"
        )
    if args.resume:
        changed = [
            flag
            for flag, value in (
                ("--config", args.config),
                ("--objective", args.objective),
                ("--set", args.overrides),
                ("--batch-size", args.batch_size),
                ("--task", args.task),
            )
            if value
        ]
        if changed:
            raise M3DGANError(
                f"--resume continues a run with its saved config; {', '.join(changed)} "
                "cannot change it (only --steps can extend it). Start a new --out instead."
            )
        cfg = None
        if args.steps is not None:
            cfg = load_config(args.out / "config.yaml")
            cfg.train.steps = args.steps
            cfg = config_from_dict(cfg.to_dict())  # --steps 0: a clean error
    else:
        flags = {
            "train.steps": args.steps,
            "train.batch_size": args.batch_size,
            "train.device": args.device or None,
        }
        cfg = layered_config(args.task, args.objective, args.config, flags, args.overrides)
    if args.print_config:
        shown = cfg or load_config(args.out / "config.yaml")
        check_run_config(shown)  # what a run would refuse is refused here too
        print(_config_yaml(shown, args), end="")
        return 0
    last = train(
        cfg,
        args.out,
        resume=args.resume,
        progress=not args.no_progress,
        data_root=_data_root(args.data),
        device=args.device,
    )
    print(f"checkpoint: {last}")
    print(f"next: m3dgan evaluate --checkpoint {args.out} --out {args.out / 'metrics.json'}")
    return 0


def _config_yaml(cfg, args) -> str:
    """``train --print-config``: the config as config.yaml holds it (on resume, --device is
    this session's only and is noted in a comment, not written into the config)."""
    import yaml

    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    if args.resume and args.device and args.device != cfg.train.device:
        text += f"# --device {args.device}: this session trains there (config.yaml keeps it)\n"
    return text


def _data_root(path: Path | None) -> Path | None:
    if path is None:
        return None
    from m3dgan.data.build import ensure_dataset

    return ensure_dataset(path)


def cmd_translate(args) -> int:
    from m3dgan.infer import DEFAULT_SAMPLES, Translator, check_output_names, parse_token_weights

    if args.out.exists() and not args.out.is_dir():
        raise M3DGANError(f"{args.out}: --out must be a folder for the outputs, and this is a file")
    if args.input:
        check_output_names(args.input)  # before anything is read or written
    _check_inputs_before_loading(args)
    _note_earlier_outputs(args)
    tr = Translator.from_checkpoint(args.checkpoint, device=args.device, use_ema=not args.no_ema)
    print(f"weights: {tr.weights} ({_WEIGHTS[tr.weights]}), step {tr.step}")
    samples = args.samples if args.samples is not None else DEFAULT_SAMPLES
    if not tr.has_code:
        if args.samples is not None or args.reference:  # said only to who asked for them
            print(
                f"note: objective {tr.cfg.objective!r} has no latent code; --reference and "
                "--samples do not apply, writing one output per input",
                file=sys.stderr,
            )
        samples, args.reference = 1, None
    if samples < 1:
        raise M3DGANError("--samples must be at least 1")
    tr.check_beam_size(args.beam)
    token_weights = None
    if args.tokens is not None:
        tr.check_token_layer()
        token_weights = parse_token_weights(args.tokens, tr.cfg.model.num_tokens)
    opts = dict(
        references=args.reference,
        samples=samples,
        seed=args.seed,
        beam_size=args.beam,
        token_weights=token_weights,
        style_scale=args.style_scale,
    )
    random_codes = not args.reference and token_weights is None
    # every input is read once before anything is written: a bad one (an empty sentence, a
    # corrupt file) stops the command with nothing half done, and the error names it
    if args.text:
        for i, text in enumerate(args.text):
            _read_input(f"--text #{i + 1} (text{i}, {text!r})", lambda t=text: tr.encode_text(t))
    else:
        sources = [_read_input(str(p), lambda p=p: tr.read_source(p)) for p in args.input]
    if args.text:
        rows = []
        for i, text in enumerate(args.text):
            written = tr.translate_text(text, args.out, name=f"text{i}", **opts)
            _report(tr, repr(text), written, random_codes)
            rows.append((text, written))
        _output_page(tr, args, rows)
        return 0
    rows = []
    for path, source in zip(args.input, sources, strict=True):
        written = tr.translate_file(path, args.out, source=source, **opts)
        _report(tr, str(path), written, random_codes)
        rows.append((Path(path).name, written))
    _output_page(tr, args, rows)
    return 0


def _check_inputs_before_loading(args) -> None:
    """What can be told wrong about the inputs without the model, told before it loads (a
    large checkpoint takes seconds): a missing file or a folder, an empty (0-byte) file, an
    empty --text. InputError naming it; the reading after the load checks the rest."""
    from m3dgan.errors import InputError

    for flag, paths in (("--input", args.input or []), ("--reference", args.reference or [])):
        for path in map(Path, paths):
            if path.is_dir():
                raise InputError(f"{path}: is a directory, not a file ({flag} takes files)")
            if not path.is_file():
                raise InputError(f"{path}: no such file ({flag})")
            if path.stat().st_size == 0:
                raise InputError(f"{path}: the file is empty (0 bytes)")
    for i, text in enumerate(args.text or []):
        if not text.strip():
            raise InputError(
                f"--text #{i + 1} (text{i}, {text!r}): empty text: nothing to translate"
            )


def _read_input(name: str, read):
    """``read()`` (one input's reader) and its result; an InputError that does not name the
    input gets ``name`` in front."""
    from m3dgan.errors import InputError

    try:
        return read()
    except InputError as exc:
        if name in str(exc):
            raise
        raise InputError(f"{name}: {exc}") from exc


# what ``Translator.weights`` means, for the line translate prints
_WEIGHTS = {
    "ema": "the moving average of the generator side; --no-ema for the trained weights",
    "live": "the trained weights",
}


def _note_earlier_outputs(args) -> None:
    """Say so when --out already holds outputs of these inputs: files of the same name are
    replaced, others (e.g. more samples than this run makes) stay beside the new ones."""
    from m3dgan.infer import earlier_outputs, output_stem

    stems = (
        [output_stem(p) for p in args.input]
        if args.input
        else [f"text{i}" for i in range(len(args.text))]
    )
    earlier = earlier_outputs(args.out, stems)
    if earlier:
        print(
            f"note: {args.out} already holds {len(earlier)} output file(s) of these inputs "
            f"(e.g. {earlier[0]}); files of the same name are replaced, the others stay",
            file=sys.stderr,
        )


def _output_page(tr, args, rows: list[tuple[str, list[Path]]]) -> None:
    """An index page in --out where the target modality makes one (images: the input, the
    references and the outputs; speech: a player per output and per reference): the run, its
    step, the seed and the objective at the top, then one row per input, one column per
    reference, token setting or random code."""
    from m3dgan.report.output_page import OutputPage

    if not rows:
        return
    if args.reference:
        columns = [f"reference: {Path(r).name}" for r in args.reference]
    elif args.tokens:
        columns = [f"tokens {args.tokens}"]
    else:
        columns = [f"z{k}" for k in range(max(len(w) for _, w in rows))]
    if args.style_scale != 1.0:
        columns = [f"{c}, style scale {args.style_scale:g}" for c in columns]
    sources = headers = None
    if tr.target.page_shows_samples:  # read again as the model saw them, to show beside outputs
        if args.input:
            sources = [tr.source.panel_image(tr.read_source(p).cpu()) for p in args.input]
            sources = [None if s is None else s[0] for s in sources]
        if args.reference:
            headers = list(tr.read_references(args.reference).cpu())
    spec = OutputPage(
        "m3dgan translate",
        [label for label, _ in rows],
        columns,
        [w for _, w in rows],
        sources,
        headers,
        notes=_translate_notes(tr, args),
        reference_files=list(args.reference) if args.reference else None,
    )
    page = tr.target.output_page(args.out, spec)
    if page is not None:
        print(f"page: {page}")


def _translate_notes(tr, args) -> dict[str, object]:
    """What made the outputs, for the top of translate's page: the run, its step, the seed
    and the objective (and which weights)."""
    seed = args.seed if args.seed is not None else "none (a fresh random draw)"
    return {
        "run": str(args.checkpoint),
        "task": tr.cfg.task,
        "objective": tr.cfg.objective,
        "step": tr.step,
        "weights": tr.weights,
        "seed": seed,
    }


def _report(tr, source: str, written: list[Path], random_codes: bool = False) -> None:
    """One line per input; outputs the target modality can show as a line (text) follow, one
    per line. With ``random_codes``: a note when every code gave the same line (a model whose
    outputs ignore the code; ``evaluate`` reports that share as ``code_dependence``)."""
    print(f"{source} -> {', '.join(str(p) for p in written)}")
    lines = [tr.target.describe_output(path) for path in written]
    for line in lines:
        if line is not None:
            print(f"  {line}")
    if random_codes and len(lines) > 1 and None not in lines and len(set(lines)) == 1:
        print(
            f"  note: the {len(lines)} random codes gave the same output: this run's outputs "
            "do not depend on the code (evaluate reports it as code_dependence); --samples 1 "
            "gives one"
        )


def cmd_evaluate(args) -> int:
    from m3dgan import checkpoint
    from m3dgan.atomic import make_folder, write_text
    from m3dgan.evaluate import evaluate

    # checked before an evaluation that may take a while, not after it
    if args.out.is_dir():
        raise M3DGANError(
            f"{args.out}: --out must be a file path for the metrics JSON, not a folder"
        )
    for flag, value in (("--inputs", args.inputs), ("--samples", args.samples)):
        if value is not None and value < 1:
            raise M3DGANError(f"{flag} must be at least 1, got {value}")
    checkpoint.resolve(args.checkpoint)  # a missing run fails before --out's folder is made
    make_folder(args.out.parent)
    metrics = evaluate(
        args.checkpoint,
        inputs=args.inputs,
        samples=args.samples,
        beam=args.beam,
        device=args.device,
        data_root=_data_root(args.data),
        seed=args.seed,
        audio_dir=args.out.with_name(args.out.stem + "_audio"),
        page_dir=args.out.with_name(args.out.stem + "_page"),
        use_ema=not args.no_ema,
    )
    write_text(args.out, json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    print(f"metrics: {args.out}")
    page = metrics.get("listening_page") or metrics.get("page")
    if page:
        print(f"page: {page}  (open it in a browser)")
    return 0


def cmd_tasks(args) -> int:
    from m3dgan.core.objectives import OBJECTIVES
    from m3dgan.tasks import TASKS

    for task in TASKS.values():
        print(
            f"{task.name:12s} {task.source}->{task.target}  metrics: {', '.join(task.metrics)}\n    {task.description}"
        )
    print(f"objectives: {', '.join(OBJECTIVES)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {
        "data": cmd_data,
        "train": cmd_train,
        "translate": cmd_translate,
        "evaluate": cmd_evaluate,
        "tasks": cmd_tasks,
    }[args.cmd]
    show = warnings.formatwarning
    warnings.formatwarning = _warning_line
    try:
        return handler(args)
    except M3DGANError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # files go through m3dgan.atomic (OutputError above); this is the net for what cannot:
        # creating a folder, extracting an archive, a library's own cache
        from m3dgan.atomic import FULL_DISK_ERRNOS, output_error

        if exc.errno not in FULL_DISK_ERRNOS:
            raise
        print(f"error: {output_error(exc.filename or 'output', exc)}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = show


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """Warnings (a cropped image, a repaired stereo file, <unk> characters...) as one
    ``warning: ...`` line on stderr, like errors; Python shows each distinct one once."""
    return f"warning: {message}\n"


if __name__ == "__main__":
    sys.exit(main())
