"""MNIST in, arrays out: acquire and parse (mnist), preprocess, augment, split.

`from mnist_dnn.data import load_mnist` (what the README shows) reads mnist.py's public names from here.
"""

from mnist_dnn.data.mnist import (
    DEFAULT_SOURCES,
    KERAS_SOURCE,
    MAX_IDX_BYTES,
    MNIST_FILES,
    NPM_PACKAGE,
    NPM_SOURCE,
    NUM_CLASSES,
    Dataset,
    Source,
    default_cache_dir,
    describe,
    load_configured,
    load_mnist,
    read_idx,
    write_idx,
)

__all__ = [
    "DEFAULT_SOURCES",
    "KERAS_SOURCE",
    "MAX_IDX_BYTES",
    "MNIST_FILES",
    "NPM_PACKAGE",
    "NPM_SOURCE",
    "NUM_CLASSES",
    "Dataset",
    "Source",
    "default_cache_dir",
    "describe",
    "load_configured",
    "load_mnist",
    "read_idx",
    "write_idx",
]
