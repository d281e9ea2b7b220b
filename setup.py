"""Packaging for keras_vae."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="keras_vae",
    version="0.1.0",
    description=(
        "Keras 3 layers, likelihood losses and a VAEModel for variational "
        "autoencoders on TensorFlow Probability."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_vae", "keras_vae.*"]),
    install_requires=[
        # TF 2.16 is the first release whose `tf.keras` is Keras 3.
        "tensorflow>=2.16,<2.22",
        "keras>=3.3,<4",
        # TFP's import needs tf-keras; the [tf] extra pulls the matching one.
        "tensorflow-probability[tf]>=0.24,<0.26",
        "numpy>=1.26",
    ],
    extras_require={
        # The test suite also smoke-runs the examples.
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "matplotlib>=3.8",
            "scikit-learn>=1.4",
        ],
        "examples": ["matplotlib>=3.8", "scikit-learn>=1.4"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
