"""The page ``m3dgan evaluate`` writes for an image target: the metrics, and outputs to look at.

Numbers alone do not show whether the reference sets the domain. Beside the metrics JSON,
``evaluate`` writes ``<out>_page/index.html``: the metrics as a table, then the first test
inputs (as the model read them) in rows, one column per random code and one per reference —
a test target of each domain where the data set has domains, else the first test targets —
with the reference at the head of its column. It is made after the metrics, from its own
seeded generator, so it never changes a metric's draws.
"""

from __future__ import annotations

from pathlib import Path

import torch

from m3dgan.atomic import make_folder
from m3dgan.data.tensors import batch_to_model
from m3dgan.evaluate.context import Evaluation
from m3dgan.report.output_page import OutputPage

PAGE_INPUTS = 8  # test inputs shown
PAGE_CODES = 4  # random codes per input
PAGE_REFERENCES = 4  # references when the data set has no domains


def page_references(test: dict, max_refs: int = PAGE_REFERENCES) -> list[int]:
    """Rows of the test split to use as references: the first target of each domain (in domain
    order) where targets carry domains, else the first ``max_refs`` rows."""
    domains = test["domain"].tolist()
    seen: dict[int, int] = {}
    for row, d in enumerate(domains):
        if d >= 0 and d not in seen:
            seen[d] = row
    if len(seen) >= 2:
        return [seen[d] for d in sorted(seen)]
    return list(range(min(max_refs, len(domains))))


@torch.no_grad()
def write_output_page(ev: Evaluation, metrics: dict, folder: Path) -> Path | None:
    """Write the page into ``folder`` (created) and return it; None where the target modality
    makes no such page (text, speech: those have their own outputs in the metrics)."""
    tr = ev.outputs.tr
    if not tr.target.page_shows_samples:
        return None
    folder = make_folder(folder)
    test, model = ev.test, tr.model
    n = min(PAGE_INPUTS, len(test["label"]))
    sources = batch_to_model(test["source"][:n], tr.device)
    shown = tr.source.panel_image(sources.cpu())
    gen = torch.Generator(device=tr.device).manual_seed(ev.outputs.seed + 1)
    columns: list[tuple[str, torch.Tensor]] = []  # (label, outputs)
    tags: list[str] = []  # file names: input<i>_<tag>
    references = None
    if model.attention is None:
        columns.append(("output", model.translate(sources)))
        tags.append("out")
    else:
        e = torch.randn(PAGE_CODES, model.cfg.nz, generator=gen, device=tr.device)
        for k in range(PAGE_CODES):
            columns.append((f"z{k}", model.translate(sources, e=e[k : k + 1])))
            tags.append(f"z{k}")
        ref_rows = page_references(test)
        references = batch_to_model(test["target"][ref_rows], tr.device)
        names = ev.manifest.domains
        for k, row in enumerate(ref_rows):
            d = int(test["domain"][row])
            label = f"reference: {names[d]}" if 0 <= d < len(names) else f"reference {k}"
            columns.append((label, model.translate(sources, reference=references[k : k + 1])))
            tags.append(f"ref{k}")
    files: list[list[Path]] = [[] for _ in range(n)]
    for c, (_, outs) in enumerate(columns):
        stems = [folder / f"input{i}_{tags[c]}" for i in range(n)]
        for i, path in enumerate(tr.target.write(outs.cpu(), stems)):
            files[i].append(path)
    rows = [f"test input {i}" for i in range(n)]
    refs = 0 if references is None else len(references)  # the last ``refs`` columns
    notes = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
    if metrics.get("diversity_real"):  # the goals' form: random-code spread over real spread
        for key in ("diversity_z", "diversity_ref"):
            if key in metrics:
                notes[f"{key} / diversity_real"] = metrics[key] / metrics["diversity_real"]
    notes["this page shows"] = (
        f"the first {n} of {len(test['label'])} test inputs, {len(columns) - refs} "
        f"output column(s) without a reference and {refs} reference(s): a view only, the "
        f"metrics above come from evaluate's --inputs and --samples"
    )
    labels = [name for name, _ in columns]
    headers = [None] * (len(columns) - refs)
    headers += list(references.cpu()) if references is not None else []
    spec = OutputPage(
        f"m3dgan evaluate: {metrics.get('task')} / {metrics.get('objective')}",
        rows,
        labels,
        files,
        sources=None if shown is None else list(shown),
        headers=headers,
        notes=notes,
    )
    return tr.target.output_page(folder, spec)
