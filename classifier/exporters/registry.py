"""The export formats: one `Exporter` entry per format, which the export, its check, the command's `--format` /
`--quantize` choices and help, and the web page's Download list all read. A new format is one module (write, check,
inputs, allowances) and one entry in `EXPORTERS`.

Imports only TensorFlow, model and data modules (no mediapipe, matplotlib, tensorflow_hub or apache_beam): the web
app imports it at start, also in a Space that has none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from . import savedmodel, tflite
from .check import Allowance, ExportJob


@dataclass(frozen=True)
class Exporter:
    """One export format and its hooks (each takes the `ExportJob`)."""

    format: str  # --format value, export.json "format"
    allowances: dict[str, Allowance]  # --quantize value -> what the check allows (its keys ARE the choices)
    write: Callable[[ExportJob, Path], dict]  # files into the staged folder -> export.json extras
    check: Callable[[ExportJob, Path], dict[str, dict]]  # load back as users do -> figures per signature
    inputs: Callable[[tuple[int, int], str], dict]  # export.json "inputs" for (size, quantize)
    page_label: str | None = None  # the Train tab's Download choice; None: not offered on the page
    page_file: str | None = None  # the one file the page hands out; None: the folder, zipped
    unquantized: str | None = None  # why --quantize (other than none) is refused, when it is

    def refuse_quantize(self, quantize: str) -> str:
        """The message for a --quantize this format does not take."""
        takers = [entry.format for entry in EXPORTERS.values() if quantize in entry.allowances]
        why = f" ({self.unquantized})" if self.unquantized else ""
        return f"--quantize {quantize}: only for --format {' or '.join(takers)}{why}"


EXPORTERS = {
    entry.format: entry
    for entry in (
        Exporter(
            "savedmodel",
            savedmodel.ALLOWANCES,
            savedmodel.write,
            savedmodel.check,
            savedmodel.inputs,
            page_label="SavedModel (zip)",
            unquantized="a SavedModel keeps the float32 model",
        ),
        Exporter(
            "tflite",
            tflite.ALLOWANCES,
            tflite.write,
            tflite.check,
            tflite.inputs,
            page_label="TFLite file",
            page_file=tflite.TFLITE_FILE,
        ),
    )
}
FORMATS = tuple(EXPORTERS)
QUANTIZE = tuple(dict.fromkeys(quantize for entry in EXPORTERS.values() for quantize in entry.allowances))
# (format, quantize) -> what its export may change; see check.py's docstring for why, the docs for the figures.
ALLOWANCES = {(name, q): rule for name, entry in EXPORTERS.items() for q, rule in entry.allowances.items()}
assert QUANTIZE == ("none", "float16", "dynamic", "int8"), QUANTIZE  # --quantize's choices, in --help's order


def allowance(format: str, quantize: str, tolerance: float | None = None, min_agreement: float | None = None):
    """The table's allowance, with --tolerance (float exports) or --min-agreement (quantized: the share alone,
    without the small-sample floor) in place of its own figure."""
    rule = ALLOWANCES[format, quantize]
    if tolerance is not None:
        rule = replace(rule, max_difference=tolerance)
    if min_agreement is not None:
        rule = replace(rule, min_agreement=min_agreement, min_flips=0)
    return rule


def page_downloads() -> dict[str, str]:
    """The Train tab's Download choices of an export: label -> format, in registry order."""
    return {entry.page_label: entry.format for entry in EXPORTERS.values() if entry.page_label}
