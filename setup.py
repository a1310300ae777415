"""illustration-tl: transfer learning from ImageNet CNNs to illustrations.

Installs one importable namespace, ``illustration_tl``: the TFDS builder lives in
``illustration_tl.datasets`` and the command line in ``illustration_tl.commands``, so
nothing shadows Hugging Face's ``datasets`` (README, "Packaging").
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"',
                    (HERE / "illustration_tl" / "__init__.py").read_text()).group(1)

setup(
    name="illustration-tl",
    version=VERSION,
    description="Illustration classification by transfer learning from ImageNet CNNs "
                "(Lagunas & Garces, CEIG 2017), in Keras 3 on TensorFlow.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["illustration_tl", "illustration_tl.*"]),
    package_data={
        "illustration_tl": ["data/*.txt", "presets/*.flags", "demo/*.md", "demo/*.tsv",
                            "demo/curated/**/*", "demo/noisy/**/*"],
        "illustration_tl.datasets.illustrations": ["*.bib", "*.md", "dummy_data/**/*"],
    },
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.5,<3.16",
        "tensorflow-datasets==4.9.10",
        "importlib_resources",
        # TF 2.21 needs protobuf >= 6.31; apache-beam (the tfds-cli extra) needs < 7.
        "protobuf>=6.31.1,<7",
        # SVG and Iconify icons are rasterized with resvg (noisy dataset).
        "resvg-py>=0.5",
        "scikit-learn>=1.3",
        "numpy",
        "pillow>=10",
        "absl-py",
        "matplotlib",
    ],
    extras_require={
        # The raw `tfds build` command line imports these at start-up (tfds 4.9.10);
        # `illustration-tl build` does not need them.
        "tfds-cli": ["apache-beam>=2.77,<3", "mlcroissant>=1.0", "dill"],
        # KerasHub vision towers for `fit --backbone=keras_hub:<preset>` (CLIP, SigLIP,
        # DINOv2). keras-hub 0.32 needs keras >= 3.15 and tensorflow-text (TF >= 2.20).
        "hub": ["keras-hub>=0.32"],
        # TensorBoard's server, to read the logs `optimize` writes (writing them needs
        # only TensorFlow).
        "tensorboard": ["tensorboard"],
        # jax: the JAX-backend checks of layer surgery and the LR multipliers;
        # keras-hub: the KerasHub backbone tests (tiny random towers, offline);
        # selenium: `serve`'s page in headless Chromium (Debian's chromium-driver).
        "test": ["pytest>=7", "hypothesis>=6", "ruff>=0.5", "jax>=0.4.30",
                 "apache-beam>=2.77,<3", "mlcroissant>=1.0", "dill", "keras-hub>=0.32",
                 "selenium>=4.10"],
        "and-cuda": ["tensorflow[and-cuda]>=2.16,<2.22"],
    },
    entry_points={"console_scripts": ["illustration-tl=illustration_tl.cli:main"]},
)
