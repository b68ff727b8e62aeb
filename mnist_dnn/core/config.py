"""The experiment's settings: typed dataclasses whose defaults are the paper's (section 5.1).

Usage::

    cfg = load_config(Path("configs/paper.toml"), {"train.epochs": 1})
    cfg.train.batch_size   # 64

A TOML file (and the CLI's flags) may only name keys that exist here; every value is
checked for type and range where it enters, so a typo fails at once with the key's name
instead of surfacing mid-training.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mnist_dnn.core.errors import UserInputError, read_user_text

Backend = Literal["jax", "tensorflow", "torch"]
BACKENDS: tuple[str, ...] = typing.get_args(Backend)
Engine = Literal["auto", "fused", "fit"]
ENGINES: tuple[str, ...] = typing.get_args(Engine)  # 'auto' is resolved to one of the others (resolve_engine)
MAX_SEED = 2**32 - 1  # NumPy's legacy seeding, which Keras' set_random_seed uses, takes 32 bits
DEFAULT_BACKEND = "jax"  # about 3x faster per epoch than TensorFlow for this model on a 2-core CPU
Activation = Literal["relu", "sigmoid", "tanh", "elu", "selu", "gelu", "softplus", "linear"]
Padding = Literal["valid", "same"]
IMAGE_SIDE = 28  # MNIST digits are 28x28 pixels (section 5.1); convolutions see them as images


def _setting(
    default: Any, doc: str, *, minimum: float | None = None, maximum: float | None = None, saved_if_set: bool = False
) -> Any:
    """A dataclass field that carries its documentation and allowed range.

    `saved_if_set`: a key added after runs were saved; config.toml names it only when it differs
    from its default, so the saved text of every run that does not use it stays what it was
    (that text identifies a run for --resume and a sweep).
    """
    limits = {"doc": doc, "minimum": minimum, "maximum": maximum, "saved_if_set": saved_if_set}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=limits)
    return field(default=default, metadata=limits)


@dataclass(frozen=True)
class DataConfig:
    data_dir: str | None = _setting(
        None, "Directory with the four IDX files (raw or .gz) or an mnist.npz; unset = cache, then fetch."
    )
    train_limit: int | None = _setting(
        None,
        "Train on the first N training images only (small data overfits, section 6); unset = all 60,000.",
        minimum=1,
    )


@dataclass(frozen=True)
class PreprocessConfig:
    method: Literal["scale", "zero_center", "standardize", "log"] = _setting(
        "scale",
        "How pixels become inputs (section 4.1, Table 1): 'scale' x/255 into [0, 1] (section 5.1); "
        "'zero_center' x - <x>; 'standardize' (x - <x>)/sigma; 'log' log(1 + x). <x> and sigma are per pixel, "
        "from the training images only, and saved as preprocess.npz in the run directory.",
    )


@dataclass(frozen=True)
class ModelConfig:
    hidden_units: tuple[int, ...] = _setting(
        (400, 100), "Width of each hidden Dense layer, input side first (section 5.1).", minimum=1
    )
    activation: Activation | tuple[Activation, ...] = _setting(
        "relu",
        "Activation of the hidden layers (section 3.1, figure 3; section 5.1: ReLU): one name for all, "
        "or a list with one per hidden layer.",
    )
    dropout: float = _setting(
        0.5, "Dropout rate; 0 disables it (section 5.1: 0.5; section 6).", minimum=0.0, maximum=0.99
    )
    dropout_after: tuple[int, ...] = _setting(
        (-1,), "Hidden layers (1-based; -1 = the last) followed by a Dropout layer (section 5.1: the last)."
    )
    kernel_initializer: Literal["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "uniform", "normal"] = (
        _setting(
            "glorot_uniform",
            "Initial weights (section 4.3): Keras' default glorot_uniform, which the paper's code uses; "
            "'uniform' draws from [-s, s] and 'normal' from N(0, s^2), s = model.init_scale.",
        )
    )
    init_scale: float = _setting(
        0.05, "s of the 'uniform' [-s, s] and 'normal' N(0, s^2) initialisers (section 4.3).", minimum=0.0
    )
    bias_initializer: Literal["zeros", "ones", "uniform", "normal"] = _setting(
        "zeros", "Initial biases: zeros, Keras' default and section 4.3's; uniform/normal use model.init_scale."
    )
    batch_norm: bool = _setting(
        False,
        "Batch normalisation (section 6's third cure for vanishing gradients; Ioffe & Szegedy 2015) after each "
        "hidden Dense layer, before its activation; off in the paper.",
        saved_if_set=True,
    )
    conv_filters: tuple[int, ...] | None = _setting(
        None,
        "Filters of each convolution layer (beyond the paper), input side first, before the hidden Dense layers; "
        "e.g. [6, 16] for LeNet-5 (LeCun et al. 1998). Unset = the paper's dense network.",
        minimum=1,
        saved_if_set=True,
    )
    conv_kernel: int = _setting(
        5, "Side of every convolution's square kernel, in pixels (LeNet-5: 5).", minimum=1, saved_if_set=True
    )
    conv_padding: Padding | tuple[Padding, ...] = _setting(
        "valid",
        "Convolution padding, one for all or one per convolution: 'same' keeps the image side (LeNet-5's first "
        "layer saw 28x28 digits padded to 32x32), 'valid' shrinks it by conv_kernel - 1.",
        saved_if_set=True,
    )
    conv_activation: Activation = _setting(
        "relu",
        "Activation of the convolution layers (LeNet-5 had a scaled tanh; relu trains faster).",
        saved_if_set=True,
    )
    pool: int = _setting(
        2,
        "Side of the max pooling after each convolution (LeNet-5's subsampling: 2); 1 = no pooling.",
        minimum=1,
        saved_if_set=True,
    )


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["adam", "sgd", "momentum", "rmsprop", "adagrad"] = _setting(
        "adam",
        "Update rule (sections 4.6, 4.8): plain 'sgd', 'momentum' (SGD with momentum), 'adagrad', 'rmsprop' "
        "or 'adam'; the paper uses Adam with Keras' defaults.",
    )
    learning_rate: float = _setting(
        0.001, "Step size (section 4.7); 0.001 is Keras' Adam default, as in the paper.", minimum=0.0
    )
    momentum: float = _setting(
        0.9, "Momentum of the 'momentum' optimizer (fraction of the last step kept).", minimum=0.0, maximum=0.999
    )
    nesterov: bool = _setting(False, "Nesterov's look-ahead variant of the 'momentum' optimizer.")
    schedule: Literal["constant", "step", "exponential", "cosine", "plateau"] = _setting(
        "constant",
        "Learning-rate schedule (section 4.8): 'constant' (the paper); 'step' x decay_rate every decay_epochs; "
        "'exponential' x decay_rate^(epoch/decay_epochs), smoothly; 'cosine' to 0 over all epochs; "
        "'plateau' x decay_rate when val_loss has not improved for plateau_patience epochs.",
    )
    decay_rate: float = _setting(
        0.5, "Factor of the step, exponential and plateau schedules.", minimum=0.0, maximum=1.0
    )
    decay_epochs: float = _setting(2.0, "Epochs per decay of the step and exponential schedules.", minimum=0.01)
    plateau_patience: int = _setting(2, "Epochs without a better val_loss before 'plateau' decays.", minimum=1)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _setting(10, "Passes over the 60,000 training images (section 5.1).", minimum=1)
    batch_size: int = _setting(64, "Images per gradient step (section 5.1).", minimum=1)
    seed: int = _setting(
        0, "Seeds Python, NumPy and the backend (the paper's seed=0); 0 to 2**32 - 1.", minimum=0, maximum=MAX_SEED
    )
    loss: Literal["categorical_crossentropy", "mse"] = _setting(
        "categorical_crossentropy",
        "Cost function (section 4.4) on one-hot labels: cross-entropy as in the paper, or 'mse' (equation 1).",
    )
    backend: Backend | None = _setting(
        None, "Keras backend; unset = $KERAS_BACKEND, else jax. The paper ran on tensorflow."
    )
    engine: Engine = _setting(
        "auto",
        "Training loop: 'fit' is Keras' own; 'fused' (jax only) runs each epoch as one compiled call; "
        "'auto' picks fused on jax, fit elsewhere.",
    )
    shuffle: bool = _setting(True, "Reshuffle the training images every epoch (Keras fit's default, as in the paper).")


@dataclass(frozen=True)
class RegularizationConfig:
    l1: float = _setting(
        0.0, "L1 penalty: l1 * sum|W| over every Dense kernel is added to the loss (section 6).", minimum=0.0
    )
    l2: float = _setting(
        0.0, "L2 penalty: l2 * sum W^2 over every Dense kernel is added to the loss (section 6).", minimum=0.0
    )
    early_stopping: bool = _setting(False, "Stop when early_stopping_monitor stops improving (section 6).")
    early_stopping_monitor: Literal["val_loss", "val_accuracy", "loss", "accuracy"] = _setting(
        "val_loss", "Epoch metric early stopping watches (losses should fall, accuracies rise)."
    )
    early_stopping_patience: int = _setting(2, "Epochs without improvement before stopping.", minimum=1)
    early_stopping_restore_best: bool = _setting(True, "Keep the weights of the best epoch, not the last.")
    augment_shift: int = _setting(
        0,
        "Data augmentation (section 6): random shift of each training image by up to N pixels, new every "
        "epoch; 0 = off.",
        minimum=0,
        maximum=8,
    )
    augment_rotation: float = _setting(
        0.0,
        "Data augmentation: random rotation by up to this many degrees, new every epoch; 0 = off.",
        minimum=0.0,
        maximum=180.0,
    )
    augment_scale: float = _setting(
        0.0,
        "Data augmentation: random scaling by a factor in [1 - s, 1 + s] (other hands write larger or smaller); "
        "0 = off.",
        minimum=0.0,
        maximum=0.5,
        saved_if_set=True,
    )
    augment_stroke: float = _setting(
        0.0,
        "Data augmentation: strokes thicker or thinner by up to this many pixels (grey dilation/erosion: a felt "
        "pen, a fine pen); 0 = off.",
        minimum=0.0,
        maximum=2.0,
        saved_if_set=True,
    )
    augment_blur: float = _setting(
        0.0,
        "Data augmentation: Gaussian blur with sigma up to this many pixels (a soft brush, an unsharp photo); 0 = off.",
        minimum=0.0,
        maximum=1.5,
        saved_if_set=True,
    )
    augment_elastic: float = _setting(
        0.0,
        "Data augmentation: elastic distortion (Simard et al. 2003), the strength alpha in pixels of a random "
        "displacement field smoothed with sigma 4 px (they used 34); 0 = off.",
        minimum=0.0,
        maximum=60.0,
        saved_if_set=True,
    )


@dataclass(frozen=True)
class ValidationConfig:
    source: Literal["test", "holdout", "fold"] = _setting(
        "test",
        "What each epoch is scored on: the test set (the paper's choice), a 'holdout' fraction of the training "
        "set, or 'fold' of a k-fold split of it; the test set is then untouched until the final evaluation.",
    )
    fraction: float = _setting(
        0.1, "Share of the training images held out when source = 'holdout'.", minimum=0.01, maximum=0.9
    )
    folds: int = _setting(5, "k of the k-fold split when source = 'fold' (sweep --folds sets it).", minimum=2)
    fold: int = _setting(1, "Which fold (1..folds) is scored when source = 'fold'.", minimum=1)
    split_seed: int | None = _setting(
        None,
        "Seed of the holdout/fold draw; unset = train.seed. A sweep sets it to its first seed, so that all its "
        "seeds validate on the same images and can train together.",
        minimum=0,
    )


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)


def resolve_config(
    path: Path | Config | None,
    flags: typing.Mapping[str, Any] | None = None,
    assignments: typing.Sequence[str] = (),
) -> Config:
    """File (or a Config) + --set + flags + defaults, with the backend and engine made concrete (as config.toml
    records them).

    `flags` are the named options by dotted key ("train.epochs"; None = not given); they
    win over `assignments`, --set's 'section.key=value' texts, which win over the file.
    """
    overrides = dict(parse_assignment(text) for text in assignments)
    overrides.update({key: value for key, value in (flags or {}).items() if value is not None})
    if isinstance(path, Config):
        cfg = apply_overrides(path, overrides) if overrides else path
    else:
        cfg = load_config(path, overrides)
    train_cfg = dataclasses.replace(cfg.train, backend=resolve_backend(cfg.train.backend))
    return dataclasses.replace(cfg, train=dataclasses.replace(train_cfg, engine=resolve_engine(train_cfg)))


def resolve_backend(requested: str | None) -> str:
    """The backend to use: the flag or config value, else $KERAS_BACKEND, else jax."""
    source = "--backend" if requested else "KERAS_BACKEND"
    name = requested or os.environ.get("KERAS_BACKEND") or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise UserInputError(f"{source}: expected one of {', '.join(BACKENDS)}, got {name!r}")
    if not _installed(name):
        extra = " (pip install 'mnist-dnn[torch]')" if name == "torch" else ""
        raise UserInputError(f"backend {name!r} is not installed in this environment{extra}")
    return name


def _installed(module: str) -> bool:
    if module in sys.modules:  # imported, or hidden by backend._hide_tensorflow (None): either way it is installed
        return True
    return importlib.util.find_spec(module) is not None


def resolve_engine(cfg: TrainConfig) -> str:
    """The concrete engine for a resolved backend: fused where it can run, else Keras fit."""
    if cfg.engine == "auto":
        return "fused" if cfg.backend == "jax" else "fit"
    if cfg.engine == "fused" and cfg.backend != "jax":
        raise UserInputError(
            f"train.engine: 'fused' needs the jax backend, got backend {cfg.backend!r} "
            "(use --engine fit, or --backend jax)"
        )
    return cfg.engine


def _sections() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(Config)}


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}
    return f"{value!r} ({kind.get(type(value), type(value).__name__)})"


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check one value against its field's type hint; return it in canonical form."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, value, inner[0] if len(inner) == 1 else typing.Union[tuple(inner)])  # noqa: UP007
    if origin in (typing.Union, types.UnionType):  # a name or a list of names (model.activation)
        listed = [a for a in args if typing.get_origin(a) is tuple]
        single = [a for a in args if typing.get_origin(a) is not tuple]
        return _coerce(key, value, listed[0] if isinstance(value, (list, tuple)) and listed else single[0])
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise UserInputError(f"{key}: expected one of {choices}, got {_describe(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) == 0:
            raise UserInputError(f"{key}: expected a non-empty list, got {_describe(value)}")
        return tuple(_coerce(f"{key}[{i}]", item, args[0]) for i, item in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise UserInputError(f"{key}: expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserInputError(f"{key}: expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserInputError(f"{key}: expected a number, got {_describe(value)}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise UserInputError(f"{key}: expected a finite number, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise UserInputError(f"{key}: expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"config field {key} has unsupported type {hint!r}")


def _check_range(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            continue
        if meta.get("minimum") is not None and item < meta["minimum"]:
            raise UserInputError(f"{key}: must be at least {meta['minimum']}, got {item!r}")
        if meta.get("maximum") is not None and item > meta["maximum"]:
            raise UserInputError(f"{key}: must be at most {meta['maximum']}, got {item!r}")


def _build_section(section: str, cls: type, values: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise UserInputError(f"{where}unknown key '{section}.{key}' (known in [{section}]: {', '.join(known)})")
    kwargs = {}
    for name, value in values.items():
        key = f"{section}.{name}"
        try:
            coerced = _coerce(key, value, hints[name])
            _check_range(key, coerced, known[name].metadata)
        except UserInputError as exc:
            raise UserInputError(f"{where}{exc}") from None
        kwargs[name] = coerced
    return cls(**kwargs)


def config_from_dict(raw: dict[str, Any], where: str = "") -> Config:
    """Validate a nested {section: {key: value}} mapping; `where` prefixes messages (a file name)."""
    sections = _sections()
    for name, value in raw.items():
        if name not in sections:
            raise UserInputError(f"{where}unknown section '[{name}]' (known: {', '.join(sections)})")
        if not isinstance(value, dict):
            raise UserInputError(f"{where}'{name}' must be a table [{name}], got {_describe(value)}")
    config = Config(**{name: _build_section(name, cls, raw.get(name, {}), where) for name, cls in sections.items()})
    try:
        check_combinations(config)
    except UserInputError as exc:
        raise UserInputError(f"{where}{exc}") from None
    return config


def check_combinations(cfg: Config) -> None:
    """Rules between keys that no single field's type can express; each message names the key to change."""
    layers = len(cfg.model.hidden_units)
    if isinstance(cfg.model.activation, tuple) and len(cfg.model.activation) != layers:
        raise UserInputError(
            f"model.activation: {len(cfg.model.activation)} activations for {layers} hidden layers "
            "(give one name, or one per hidden layer)"
        )
    for position in cfg.model.dropout_after:
        if position == 0 or not -layers <= position <= layers:
            raise UserInputError(
                f"model.dropout_after: {position} is not a hidden layer (1..{layers}, or -1 for the last)"
            )
    check_convolutions(cfg.model)
    if cfg.validation.fold > cfg.validation.folds:
        raise UserInputError(
            f"validation.fold: {cfg.validation.fold} exceeds validation.folds = {cfg.validation.folds}"
        )


def conv_paddings(model: ModelConfig) -> tuple[str, ...]:
    """One padding per convolution layer (the config allows a single name for all)."""
    filters = model.conv_filters or ()
    return (model.conv_padding,) * len(filters) if isinstance(model.conv_padding, str) else model.conv_padding


def conv_sides(model: ModelConfig, side: int = IMAGE_SIDE) -> list[tuple[int, int]]:
    """(image side a convolution sees, side after it and its pooling) per convolution layer, input side first."""
    sides = []
    for padding in conv_paddings(model):
        after_conv = side if padding == "same" else side - model.conv_kernel + 1
        sides.append((side, after_conv // model.pool if after_conv >= 1 else 0))
        side = sides[-1][1]
    return sides


def check_convolutions(model: ModelConfig) -> None:
    """Every convolution must get an image at least as large as its kernel, and pooling must leave a pixel."""
    filters = model.conv_filters or ()
    if isinstance(model.conv_padding, tuple) and len(model.conv_padding) != len(filters):
        raise UserInputError(
            f"model.conv_padding: {len(model.conv_padding)} paddings for {len(filters)} convolution layers "
            "(give one name, or one per convolution)"
        )
    for index, (side, after) in enumerate(conv_sides(model), start=1):
        if model.conv_kernel > side:
            after = " after the layers before it" if index > 1 else ""
            raise UserInputError(
                f"model.conv_kernel: {model.conv_kernel} is larger than the {side}x{side} image convolution {index} "
                f"gets{after} (at most {side}, or fewer convolutions in model.conv_filters)"
            )
        if after < 1:
            raise UserInputError(
                f"model.pool: pooling by {model.pool} leaves no pixel after convolution {index} "
                f"(its output is smaller than {model.pool}x{model.pool})"
            )


def parse_assignment(text: str) -> tuple[str, Any]:
    """'section.key=value' (the CLI's --set) -> (dotted key, value); the value is read as TOML, else a string.

    So `model.hidden_units=[64,32]`, `optimizer.learning_rate=1e-3` and `train.shuffle=false` keep their
    types, and `optimizer.name=sgd` needs no quotes.
    """
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or "." not in key or not value:
        raise UserInputError(f"--set: expected section.key=value, got {text!r}")
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """A validated copy of `config` with dotted-key overrides applied (what load_config does to a file)."""
    return config_from_dict(_with_overrides(config_to_dict(config), overrides))


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a TOML file (or start from the paper's defaults) and apply dotted-key overrides.

    Overrides come from CLI flags; their keys are dotted ("train.epochs") and they win
    over the file, so a flag can change one knob of a saved config.
    """
    raw: dict[str, Any] = {}
    where = ""
    if path is not None:
        where = f"{path}: "
        raw = read_toml(path, missing="config file not found")
    return config_from_dict(_with_overrides(raw, overrides or {}), where)


def read_toml(path: Path, missing: str = "file not found") -> dict[str, Any]:
    """A TOML file as a dict; anything unreadable is the user's to fix, in one line naming the file."""
    try:
        return tomllib.loads(read_user_text(path, "a TOML file", missing=missing))
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{path}: invalid TOML: {exc}") from None


def _with_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a {section: {key: value}} mapping with dotted-key overrides ("train.epochs") set in it."""
    raw = {section: dict(values) if isinstance(values, dict) else values for section, values in raw.items()}
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        table = raw.setdefault(section, {})
        if isinstance(table, dict):  # a non-table is reported by config_from_dict
            table[key] = value
    return raw


def config_to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """The config as plain TOML-ready data; unset (None) values are left out, as TOML has no null, and so
    are keys marked `saved_if_set` at their default."""
    out: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(config):
        table = getattr(config, section.name)
        quiet = {f.name for f in dataclasses.fields(table) if f.metadata.get("saved_if_set")}
        defaults = type(table)()
        values = {
            k: v
            for k, v in dataclasses.asdict(table).items()
            if v is not None and not (k in quiet and v == getattr(defaults, k))
        }
        out[section.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def config_to_toml(config: Config) -> str:
    """TOML text that load_config reads back into an equal Config (saved in every run directory)."""
    lines: list[str] = []
    for section, values in config_to_dict(config).items():
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def format_value(value: Any, separator: str = ", ") -> str:
    """A config value as labels show it: true/false, [a, b] (items joined by `separator`), 'unset' for None."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + separator.join(format_value(v, separator) for v in value) + "]"
    return str(value)


def shown_toml(config: Config, explain: bool = False) -> str:
    """What `config show` prints: `config_to_toml`'s keys plus each unset key as a comment (TOML has no null),
    and with `explain` each key's meaning above it. A run's saved config.toml stays `config_to_toml`'s text,
    which identifies the run for --resume and a sweep."""
    docs = field_docs()
    lines: list[str] = []
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        lines.extend([""] if lines else [])
        lines.append(f"[{section.name}]")
        for key in dataclasses.fields(values):
            value = getattr(values, key.name)
            if explain:
                lines.append(f"# {docs[f'{section.name}.{key.name}']}")
            if value is None:
                lines.append(f"# {key.name} = (unset)")
            else:
                lines.append(f"{key.name} = {_toml_value(list(value) if isinstance(value, tuple) else value)}")
    return "\n".join(lines) + "\n"


def field_docs() -> dict[str, str]:
    """Dotted key -> one-line description, for `config show --explain` and the README."""
    docs = {}
    for section, cls in _sections().items():
        for f in dataclasses.fields(cls):
            docs[f"{section}.{f.name}"] = f.metadata["doc"]
    return docs
