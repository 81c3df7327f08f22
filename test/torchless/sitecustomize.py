"""Makes torch unimportable in every Python process started with this folder on PYTHONPATH and
DANN_ROS_BLOCK_TORCH=1: the torch-free test leg (``make test-torchless``) proves that the node,
eval-bag and replay run on a robot install without torch, subprocesses included.
"""

import os

if os.environ.get("DANN_ROS_BLOCK_TORCH") == "1":
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_blocker import install

    install()
