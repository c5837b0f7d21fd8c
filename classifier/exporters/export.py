"""Export a model folder for serving: a TF Serving SavedModel or a TFLite model, checked before it lands.

`export(model_dir, ExportOptions(...))` (or `export_model(model_dir, format, quantize, **options)`); the command:

    python -m classifier.export MODEL_DIR --format savedmodel|tflite [--quantize none|float16|dynamic|int8] [--out DIR]

Each export is a folder, written atomically (built beside `--out`, renamed into place when complete):

    savedmodel:  saved_model.pb, variables/, labels.txt, export.json   (savedmodel.py)
    tflite:      model.tflite, labels.txt, export.json                  (tflite.py)

Each format is an entry of `registry.EXPORTERS`.

`model.tflite` carries its labels (labels.txt, as the output's TENSOR_AXIS_LABELS file) and input
normalisation (mean 0, std 1: it takes pixels 0..255 and normalises inside) as TFLite metadata,
written by MediaPipe's metadata writer, which MediaPipe's ImageClassifier and the Android task
libraries read. MediaPipe is optional (`pip install -e ".[tflite-metadata]"`); without it the file
has no metadata and `export.json` says why and how to get it.

Right after writing, the export is loaded back the way its users load it (`tf.saved_model.load`,
the LiteRT interpreter), run on sample images and compared with the Keras model (see
`check` for what each format may change). The figures are printed and saved in
`export.json`; a failed check is an error (exit 1) and leaves nothing at `--out`. `export.json`
also records the model's "not sure" threshold (`min_confidence`) and the rule that applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import staged_dir, write_json
from ..config import option
from ..console import Log, say, silent
from ..data.datasets import resolve_data
from ..errors import UsageError
from ..model.artifacts import (
    check_output_dir,
    load_model,
    read_metadata,
    versions,
    write_labels,
)
from ..model.confidence import RULE
from ..model.metadata import ModelMetadata
from . import check
from .registry import ALLOWANCES, EXPORTERS, FORMATS, QUANTIZE, allowance

EXPORT_FILE = "export.json"
CHECK_IMAGES = 200  # real images the check runs on: enough for an agreement rate to mean something


def _defaults(field: str, name) -> str:
    """The allowance table's `field` per export kind, for --help: e.g. "1e-05 savedmodel, 0.0001 tflite"."""
    rules = ALLOWANCES.items()
    return ", ".join(f"{getattr(rule, field)} {name(key)}" for key, rule in rules if getattr(rule, field) is not None)


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how strictly to check it: the command's flags (its parser is generated from these fields),
    the library's keywords."""

    format: str = option("savedmodel", "savedmodel (TF Serving) or tflite", choices=FORMATS)
    quantize: str = option(
        "none", "tflite only: none, float16 weights, dynamic (int8 weights), int8 (full integer)", choices=QUANTIZE
    )
    out: str | Path | None = option(
        None, "export folder to write (default: MODEL_DIR/export/savedmodel or MODEL_DIR/export/tflite_<quantize>)"
    )
    data: str | None = option(
        None,
        "image folder (or built-in dataset name) to check and calibrate on (default: the training folder in the "
        "model's metadata)",
    )
    tolerance: float | None = option(
        None,
        "float exports (savedmodel, --quantize none): largest accepted |p_export - p_keras| (default: "
        + _defaults("max_difference", lambda key: key[0])
        + ")",
        type=float,
    )
    min_agreement: float | None = option(
        None,
        "quantized exports: share of the check images whose top-1 answer must match the Keras model's, near-ties "
        f"aside (default: {_defaults('min_agreement', lambda key: key[1])}, and a few disagreements always allowed)",
        type=float,
    )
    overwrite: bool = option(False, "replace an existing export folder", action="store_true")
    trust_hub_handle: bool = False  # its flag is model.artifacts.add_trust_flag, shared by every command
    # No flag: the TFLite converter runs in a child process (a server's choice: it holds the GIL for seconds,
    # model/tflite.py).
    convert_in_subprocess: bool = False

    def validate(self) -> "ExportOptions":
        """Refuse options no export could use, naming the option."""
        for flag, value, choices in (("format", self.format, FORMATS), ("quantize", self.quantize, QUANTIZE)):
            if value not in choices:
                raise UsageError(f"--{flag} {value}: choose one of {', '.join(choices)}")
        exporter, tolerance, agreement = EXPORTERS[self.format], self.tolerance, self.min_agreement
        quantized = self.quantize != "none"
        checks = [
            (self.quantize in exporter.allowances, exporter.refuse_quantize(self.quantize)),
            (tolerance is None or tolerance > 0, f"--tolerance {tolerance}: must be positive"),
            (
                tolerance is None or not quantized,
                f"--tolerance: only for float exports; --quantize {self.quantize} is judged by top-1 agreement, see "
                "--min-agreement",
            ),
            (agreement is None or 0 <= agreement <= 1, f"--min-agreement {agreement}: must be between 0 and 1"),
            (
                agreement is None or quantized,
                "--min-agreement: only for quantized exports (--quantize float16, dynamic or int8); see --tolerance",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        return self

    @classmethod
    def from_args(cls, namespace) -> "ExportOptions":
        """The options parsed by a parser `add_arguments(ExportOptions, ...)` + `add_trust_flag` built; a field
        without a flag keeps its default."""
        fields = cls.__dataclass_fields__
        return cls(**{name: getattr(namespace, name) for name in fields if hasattr(namespace, name)})


@dataclass
class ExportResult:
    path: Path
    metadata: dict  # what export.json holds, check figures included


def default_out(model_dir: Path, format: str, quantize: str) -> Path:
    return model_dir / "export" / ("savedmodel" if format == "savedmodel" else f"tflite_{quantize}")


def export(model_dir: str | Path, options: ExportOptions, log: Log = say) -> ExportResult:
    """Write, check and move into place one export of `model_dir`; raises check.ExportCheckError on a failed check.

    `options.tolerance` replaces a float export's largest accepted |p_export - p_keras|, `options.min_agreement` a
    quantized export's share of top-1 answers that must agree (see check.py).
    """
    options = options.validate()
    model_dir = Path(model_dir)
    metadata = read_metadata(model_dir)
    kind = options.format, options.quantize
    out = check_output_dir(
        options.out or default_out(model_dir, *kind), options.overwrite, is_export_dir, "export folder"
    )
    job = _job(model_dir, metadata, options, log)
    exporter = EXPORTERS[options.format]
    with staged_dir(out) as folder:
        extras = exporter.write(job, folder)
        results = exporter.check(job, folder)
        for name, figures in results.items():
            log(f"check {check.describe(name, figures)}")
        verdict = check.check(results, job.samples.source, job.rule)
        record = export_metadata(model_dir, metadata, *kind, verdict, extras)
        write_json(folder / EXPORT_FILE, record)
        write_labels(folder, metadata.class_names)
    quantized = "" if options.quantize == "none" else f" ({options.quantize})"
    log(f"exported {options.format}{quantized} to {out}, checked on {job.samples.source}")
    return ExportResult(out, record)


def _job(model_dir: Path, metadata: ModelMetadata, options: ExportOptions, log: Log) -> check.ExportJob:
    """The model, its check images and the Keras model's answers on them: what every exporter's hooks read."""
    train_folder, check_folder, why_none = model_data_folders(metadata, options.data)
    if options.quantize == "int8" and train_folder is None:
        raise UsageError(
            f"--quantize int8 needs real images to calibrate on, and {why_none}; pass --data FOLDER with images like "
            "the training ones"
        )
    model = load_model(model_dir, options.trust_hub_handle)
    samples = check.image_samples(check_folder, metadata.image_size, CHECK_IMAGES, why_none)
    reference = check.predict_batches(lambda batch: model(batch, training=False), samples.pixels)
    rule = allowance(options.format, options.quantize, options.tolerance, options.min_agreement)
    targets = samples.targets(metadata.class_names)
    return check.ExportJob(model, metadata, options, samples, reference, targets, rule, train_folder, log)


def export_model(
    model_dir: str | Path, format: str = "savedmodel", quantize: str = "none", *, log: Log = say, **options
) -> ExportResult:
    """`export` with the options as keywords (ExportOptions' fields): every caller's way in."""
    return export(model_dir, ExportOptions(format=format, quantize=quantize, **options), log)


def is_export_dir(path: Path) -> bool:
    return (path / EXPORT_FILE).is_file()


def model_data_folders(metadata: ModelMetadata, data: str | None) -> tuple[Path | None, Path | None, str]:
    """(training folder, check folder, why there are none) from --data or the metadata's data.root."""
    if data is not None:
        return (*check.data_folders(resolve_data(data, log=silent)), "")
    root = metadata.data.root
    if root and Path(root).is_dir():
        return (*check.data_folders(Path(root)), "")
    return None, None, f"the training folder {root or '(none recorded)'} in the model's metadata is not on this machine"


def export_metadata(
    model_dir: Path, metadata: ModelMetadata, format: str, quantize: str, check: dict, extras: dict | None = None
) -> dict:
    """export.json: what the export takes and answers, the check's figures, and the format's own `extras`."""
    size = list(metadata.image_size)
    return {
        "format": format,
        "quantize": quantize,
        "class_names": metadata.class_names,
        "image_size": size,
        "inputs": EXPORTERS[format].inputs(size, quantize),
        "outputs": {"probabilities": "(N, classes), in class_names / labels.txt order"},
        # The model's "not sure" threshold, so a deployment answers as the app and the predict command do.
        "min_confidence": metadata.min_confidence,
        "min_confidence_rule": RULE,
        "check": check,
        **(extras or {}),
        "source_model": str(model_dir.resolve()),
        "trained_at": metadata.trained_at,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }
