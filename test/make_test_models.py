"""Writes the test models as ONNX files (with their parity frames) into a folder, using torch.

The torch-free test leg runs this first, then the tests with torch blocked and
DANN_ROS_TEST_MODELS pointing at the folder: the same small random-weight models
as the ``tiny_onnx`` / ``tiny_detector_onnx`` fixtures, made before blocking.

    python -m test.make_test_models .cache/test-models
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

MODELS = {"classifier.onnx": "make_classifier_checkpoint", "detector.onnx": "make_detector_checkpoint",
          # a detector that detects (replay and eval-bag score real Detection2DArrays with it)
          "trained_detector.onnx": "test.evaluation.conftest:make_trained_detector_checkpoint",
          # the detector with the post-hoc feature monitor (feature_shift output)
          "monitored_detector.onnx": "make_detector_checkpoint"}
WITH_FEATURE_MONITOR = {"monitored_detector.onnx"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    from dann_ros.export.onnx_export import export_onnx
    from test import conftest

    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, maker in MODELS.items():
            module, _, function = maker.rpartition(":")
            make = getattr(importlib.import_module(module) if module else conftest, function)
            checkpoint = make(Path(tmp) / (Path(name).stem + ".pt"))
            if name in WITH_FEATURE_MONITOR:
                info, parity = conftest.export_with_feature_monitor(checkpoint, out / name)
            else:
                info, parity = export_onnx(checkpoint, out / name)
            print(f"{out / name}: {info.task}, parity {parity.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
