import numpy as np
import pytest

from mnist_dnn.preprocess import flatten, one_hot, prepare, scale_pixels


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
