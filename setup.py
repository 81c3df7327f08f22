"""dann_ros: an ament_python package that also installs with plain pip (`pip install -e .`).

torch/torchvision are deliberately not in install_requires: they must stay pinned to the
releases on local disk (requirements.txt), and pip must never pull a newer one.
"""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'dann_ros'


def requirements(name):
    """Requirement lines of a requirements file (comments and blank lines dropped)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), name)) as f:
        return [ln.split('#')[0].strip() for ln in f if ln.split('#')[0].strip()]


def files(pattern):
    """Files only (sorted): data_files entries cannot be directories."""
    return sorted(f for f in glob(pattern) if os.path.isfile(f))


setup(
    name=PACKAGE,
    version='0.1.0',
    description='Domain-adversarial training from Isaac Sim renders to real robot camera bags',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(exclude=['test*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', files('launch/*.py')),
        ('share/' + PACKAGE + '/config', files('config/*')),
        # vision_msgs definitions: result bags written by eval-bag/replay embed them
        ('share/' + PACKAGE + '/msg/vision_msgs/msg', files('msg/vision_msgs/msg/*.msg')),
    ],
    install_requires=['setuptools', 'numpy', 'pyyaml'],
    # `pip install .[runtime]`: the robot side (node, eval-bag, replay, build-engine) without torch
    extras_require={'runtime': requirements('requirements-runtime.txt')},
    zip_safe=False,
    entry_points={
        'console_scripts': [
            'dann-ros = dann_ros.cli:main',
            'dann_node = dann_ros.ros.node:main',
        ],
    },
)
