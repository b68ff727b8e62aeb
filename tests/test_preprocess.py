import numpy as np
import pytest

from mnist_dnn.core.errors import UserInputError
from mnist_dnn.data.preprocess import (
    fit,
    flatten,
    load_statistics,
    one_hot,
    prepare,
    save_statistics,
    scale_pixels,
    transform,
)


def test_scale_maps_0_and_255_to_the_unit_interval_as_float32():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    scaled = scale_pixels(images)
    assert scaled.dtype == np.float32
    assert scaled.shape == (1, 4)
    np.testing.assert_array_equal(scaled, np.array([[0.0, 1.0, 0.2, 0.4]], dtype=np.float32))


def test_scale_matches_the_papers_in_place_division():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    paper = images.reshape(5, 784).astype("float32")
    paper /= 255
    np.testing.assert_array_equal(scale_pixels(images), paper)


def test_flatten_keeps_row_major_pixel_order():
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.testing.assert_array_equal(flatten(images)[1], np.arange(9, 18))


def test_one_hot_matches_keras_to_categorical():
    from keras.utils import to_categorical

    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    np.testing.assert_array_equal(one_hot(labels, 10), to_categorical(labels, 10))


def test_one_hot_refuses_labels_outside_the_classes():
    with pytest.raises(ValueError, match="0..9"):
        one_hot(np.array([3, 10]), 10)


def test_prepare_returns_inputs_and_one_hot_targets():
    x, y = prepare(np.zeros((3, 28, 28), np.uint8), np.array([1, 2, 3], np.uint8), "scale", 10)
    assert x.shape == (3, 784) and y.shape == (3, 10)
    assert y.argmax(axis=1).tolist() == [1, 2, 3]


def _training_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (500, 28, 28)).astype(np.uint8)
    images[:, 0, 0] = 0  # a blank corner, as MNIST's
    return images


def test_standardize_gives_each_pixel_mean_0_and_std_1_on_the_training_images():
    images = _training_images()
    stats = fit("standardize", images)
    x = transform(images, "standardize", stats)
    varying = np.ones(784, dtype=bool)
    varying[0] = False
    np.testing.assert_allclose(x[:, varying].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(x[:, varying].std(axis=0), 1, atol=1e-4)
    assert np.isfinite(x).all() and not x[:, 0].any()  # the constant pixel: floored sigma, no 0/0


def test_zero_center_and_log_follow_table_1():
    images = _training_images()
    stats = fit("zero_center", images)
    np.testing.assert_allclose(transform(images, "zero_center", stats).mean(axis=0), 0, atol=1e-3)
    assert fit("log", images) is None and fit("scale", images) is None
    np.testing.assert_allclose(transform(images[:2], "log"), np.log1p(images[:2].reshape(2, 784).astype(np.float32)))


def test_statistics_come_from_the_training_set_and_are_reused_on_other_data(tmp_path):
    images = _training_images()
    stats = fit("standardize", images)
    save_statistics(stats, tmp_path / "preprocess.npz")
    loaded = load_statistics(tmp_path / "preprocess.npz")
    other = np.full((3, 28, 28), 128, dtype=np.uint8)
    np.testing.assert_array_equal(transform(other, "standardize", loaded), transform(other, "standardize", stats))
    with pytest.raises(ValueError, match="needs the per-pixel statistics"):
        transform(other, "standardize")


def test_damaged_statistics_are_a_user_error(tmp_path):
    (tmp_path / "preprocess.npz").write_bytes(b"not an npz")
    with pytest.raises(UserInputError, match="preprocess.npz: not a preprocessing statistics file"):
        load_statistics(tmp_path / "preprocess.npz")
    with pytest.raises(UserInputError, match="missing"):
        load_statistics(tmp_path / "nope.npz")
