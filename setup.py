"""Packaging for keras_vae."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

DOCS = [
    "mkdocs>=1.6,<2",
    "mkdocs-material>=9.8,<10",
    "mkdocstrings[python]>=1.0.8,<2",
    "mkdocstrings-python>=2.0,<3",
    "black>=24",  # lays out long signatures in the API reference
]

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
        # The versions CI runs (models/_keras_graph.py reads Keras' private
        # graph state, pinned by tests/models/test_keras_graph.py on these).
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<3.16",
        # TFP's import needs tf-keras; the [tf] extra pulls the matching one.
        "tensorflow-probability[tf]>=0.25,<0.26",
        "numpy>=1.26",
    ],
    extras_require={
        # The test suite also smoke-runs the examples.
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "matplotlib>=3.8",
            "scikit-learn>=1.4",
            # examples/latent_autoencoder.py: keras-hub's VAEBackbone.
            "keras-hub>=0.32,<0.33",
            # keras.callbacks.TensorBoard beside TensorBoardImages
            # (tests/callbacks/test_tensorboard_images.py reads the logs).
            "tensorboard>=2.21,<2.22",
        ] + DOCS,  # tests/test_docs.py builds the site with --strict
        "examples": ["matplotlib>=3.8", "scikit-learn>=1.4",
                     "keras-hub>=0.32,<0.33"],
        # `mkdocs build --strict` builds the documentation site (docs/).
        "docs": DOCS,
        # keras_vae.disentanglement's metrics (imported when called).
        "disentanglement": ["scikit-learn>=1.4"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
