"""What test-time flips (--flip-average) cost per prediction: one photo through `Predictor`, per engine.

    python benchmarks/flip_cost.py [--weights ../shared/weights/inception_v3_no_top_to_mixed8.h5] [--calls 40]
        [--engines litert tensorflow]

Builds two model folders from the same InceptionV3 cut at mixed7, 150 px (the default recipe; the head untrained:
only time is measured), one plain and one wrapped by model/flips.py, and times `Predictor.predict` on one photo,
the two models' calls interleaved so that they share the machine's noise. Prints the median and the best call of
each, per engine, and the load. Both models share one LiteRT conversion (converted once, about 20 s, when the
cache lacks it).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine, uptime_load

from classifier.config import TrainConfig
from classifier.inference.predictor import Predictor
from classifier.model.artifacts import save_model_dir
from classifier.model.backbones import resolve
from classifier.model.flips import with_flips
from classifier.model.metadata import ModelMetadata
from classifier.model.network import build_model

SHARED = ROOT.parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(SHARED / "weights" / "inception_v3_no_top_to_mixed8.h5"))
    parser.add_argument("--photo", default=None, help="default: the first cats_dogs validation photo")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--engines", nargs="+", default=["litert", "tensorflow"])
    args = parser.parse_args()
    photo = args.photo or sorted((SHARED / "data" / "cats_dogs" / "validation").glob("*/*"))[0]
    config = resolve(TrainConfig(data="unused", weights=args.weights), log=lambda *_: None)
    work = Path(tempfile.mkdtemp(prefix="flip-cost-"))
    flat = build_model(config, 2)
    for name, model in (("plain", flat), ("flips", with_flips(flat, config.image_shape))):
        meta = ModelMetadata(class_names=["a", "b"], image_size=config.image_shape, config=config.to_dict())
        save_model_dir(work / name, model, meta)
    print(f"{machine()}; {config.backbone} to {config.cut_layer} at {config.image_size} px, one photo per call")
    for engine in args.engines:
        predictors = {name: Predictor(work / name, engine=engine, log=lambda *_: None) for name in ("plain", "flips")}
        times: dict[str, list[float]] = {name: [] for name in predictors}
        for _ in range(3):  # warm up
            for predictor in predictors.values():
                predictor.predict(photo)
        for _ in range(args.calls):
            for name, predictor in predictors.items():
                started = time.perf_counter()
                predictor.predict(photo)
                times[name].append(time.perf_counter() - started)
        for name, kept in times.items():
            print(
                f"{engine:10} {name:6} median {statistics.median(kept) * 1000:6.1f} ms, best {min(kept) * 1000:6.1f} "
                f"ms over {len(kept)} calls"
            )
    print(uptime_load())


if __name__ == "__main__":
    main()
