"""illustration-tl: transfer learning from ImageNet CNNs to illustrations."""

from setuptools import setup

setup(
    name="illustration-tl",
    version="0.1.0",
    description="Illustration classification by transfer learning from ImageNet CNNs "
                "(Lagunas & Garces, CEIG 2017), in Keras 3 on TensorFlow.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=["illustration_tl", "datasets", "datasets.illustrations", "trainers"],
    package_data={
        "illustration_tl": ["data/*.txt"],
        "datasets.illustrations": ["*.bib", "*.md", "*.txt", "dummy_data/**/*"],
    },
    include_package_data=True,
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.5,<3.16",
        "tensorflow-datasets==4.9.10",
        # `tfds build` imports these at start-up (see the pitfalls in README).
        "mlcroissant>=1.0",
        "dill",
        "importlib_resources",
        # tfds 4.9.10's CLI imports apache_beam; beam 2.77 needs protobuf < 7, TF 2.21 >= 6.31.
        "apache-beam>=2.77,<3",
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
        # jax: the JAX-backend checks of layer surgery and the LR multipliers.
        "test": ["pytest>=7", "hypothesis>=6", "ruff>=0.5", "jax>=0.4.30"],
        "and-cuda": ["tensorflow[and-cuda]>=2.16,<2.22"],
        "svg": ["resvg-py"],
    },
    entry_points={"console_scripts": ["illustration-tl=illustration_tl.cli:main"]},
)
