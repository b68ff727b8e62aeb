"""Augmentation for other pens and hands: stroke width, blur, scale, elastic distortion; old runs unchanged."""

import numpy as np
import pytest

from mnist_dnn.core.config import config_to_toml, load_config
from mnist_dnn.data.augment import _restroke, augment_images, configured
from tests.conftest import REPO


def _bar(width: int) -> np.ndarray:
    """A vertical stroke `width` px wide in a 28x28 field, 255 = ink."""
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 6:22, 14 - width // 2 : 14 - width // 2 + width] = 255
    return image


def _ink_width(image: np.ndarray) -> float:
    """Mean ink per row over the stroke's rows, in pixels of full ink."""
    return float(image[0, 10:18].sum(axis=1).mean() / 255)


def test_stroke_width_grows_and_shrinks_by_the_amount():
    bar = _bar(3)
    assert _ink_width(_restroke(bar, np.array([1.0], np.float32))) == pytest.approx(5.0)  # one px each side
    assert _ink_width(_restroke(bar, np.array([-1.0], np.float32))) == pytest.approx(1.0)
    assert _ink_width(_restroke(bar, np.array([0.5], np.float32))) == pytest.approx(4.0)  # halfway
    assert _ink_width(_restroke(bar, np.array([2.0], np.float32))) == pytest.approx(7.0)
    assert np.array_equal(_restroke(bar, np.array([0.0], np.float32)), bar)


def test_blur_spreads_the_ink_and_keeps_its_total():
    bar = _bar(3)
    blurred = augment_images(bar, np.random.default_rng(0), 0, 0.0, blur=1.5)
    assert blurred.sum() == pytest.approx(bar.sum(), rel=1e-5)
    assert blurred[0, 14, 14] < 255 and blurred[0, 14, 11] > 0  # the edge softened, ink beside the stroke


def test_scaling_changes_the_digit_size_about_the_centre():
    square = np.zeros((200, 28, 28), np.float32)
    square[:, 9:19, 9:19] = 255  # 10 x 10 px
    scaled = augment_images(square, np.random.default_rng(0), 0, 0.0, max_scale=0.3)
    areas = (scaled > 127).sum(axis=(1, 2))
    assert areas.min() < 0.8 * 100 < 100 < 1.2 * 100 < areas.max()  # both smaller and larger, about the centre
    columns = scaled.sum(axis=(0, 1))
    assert (columns * np.arange(28)).sum() / columns.sum() == pytest.approx(13.5, abs=0.05)  # the centre stays


@pytest.mark.slow
@pytest.mark.mnist
def test_elastic_distortion_moves_strokes_smoothly_and_keeps_the_digit(mnist):
    digits = mnist.x_train[:64]
    distorted = augment_images(digits, np.random.default_rng(0), 0, 0.0, elastic=20.0)
    assert not np.array_equal(distorted, digits.astype(np.float32))
    assert distorted.sum() == pytest.approx(digits.sum(), rel=0.05)  # moved, not erased
    correlation = np.corrcoef(distorted.reshape(64, -1).ravel(), digits.reshape(64, -1).ravel())[0, 1]
    assert 0.5 < correlation < 0.99  # still the same digits, visibly changed


def test_options_left_off_augment_exactly_as_before():
    """A run with shifts and rotations only draws the same random numbers and gives the same images."""
    images = np.random.default_rng(1).integers(0, 256, (50, 28, 28)).astype(np.uint8)
    plain = augment_images(images, np.random.default_rng(7), 2, 10.0)
    explicit = augment_images(images, np.random.default_rng(7), 2, 10.0, max_scale=0, stroke=0, blur=0, elastic=0)
    assert np.array_equal(plain, explicit)
    assert configured(load_config(None).regularization) is None
    assert configured(load_config(REPO / "configs" / "handwriting.toml").regularization) == {
        "max_shift": 2,
        "max_rotation": 10.0,
        "max_scale": 0.15,
        "stroke": 1.0,
        "blur": 1.0,
        "elastic": 0.0,
    }


def test_new_augmentation_keys_leave_the_saved_config_text_of_existing_runs_unchanged():
    """config.toml identifies a run for --resume and a sweep: without the new keys it reads as it always did."""
    text = config_to_toml(load_config(REPO / "configs" / "overfit_augment.toml"))
    assert "augment_rotation = 10.0" in text and "augment_scale" not in text and "augment_elastic" not in text
    handwriting = config_to_toml(load_config(REPO / "configs" / "handwriting.toml"))
    assert "augment_stroke = 1.0" in handwriting and "augment_elastic" not in handwriting
    assert load_config(None, {"regularization.augment_blur": 0.5}).regularization.augment_blur == 0.5
    reloaded = config_to_toml(load_config(None, {"regularization.augment_blur": 0.5}))
    assert "augment_blur = 0.5" in reloaded


def test_an_old_run_with_augmentation_resumes_with_its_saved_config(tmp_path):
    """The text saved before the new keys existed reads back to itself (what the checkpoint's hash needs)."""
    saved = config_to_toml(load_config(REPO / "configs" / "overfit_augment.toml"))
    (tmp_path / "config.toml").write_text(saved)
    assert config_to_toml(load_config(tmp_path / "config.toml")) == saved


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("augment_stroke", 3, "regularization.augment_stroke: must be at most 2.0"),
        ("augment_blur", -1, "regularization.augment_blur: must be at least 0.0"),
        ("augment_scale", "big", "regularization.augment_scale: expected a number"),
    ],
)
def test_bad_augmentation_values_are_named(key, value, message):
    from mnist_dnn.core.errors import UserInputError

    with pytest.raises(UserInputError, match=message):
        load_config(None, {f"regularization.{key}": value})
