"""The demo's data makers: the simulator that renders the Replicator-layout source scenes (``synth``), the
real handwritten digits recorded as camera bags (``real_digits``) and painted on real camera frames
(``compose``). Readers and general bag tools stay in :mod:`dann_ros.data`, which never imports this package."""

# Before any module of this package imports cv2: OpenCV reads its pixel limit when it loads.
from dann_ros.data import decoder_limit as _decoder_limit  # noqa: F401
