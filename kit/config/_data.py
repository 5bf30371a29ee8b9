"""How to load and split the data, and how to build and train the network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kit.config._base import SMOKE, TASKS, _check, _Config


@dataclass(frozen=True)
class DataConfig(_Config):
    """How to load and split a dataset.

    Attributes:
        source: A built-in dataset name (``breast_cancer``, ``wine``, ``digits``, ``diabetes``)
            or the path of a CSV or Parquet file.
        target: The target column; optional for built-ins.
        task: ``"auto"`` to detect, or ``binary`` / ``multiclass`` / ``regression``.
        valid_size: Share of rows held out for validation (early stopping, tuning).
        test_size: Share of rows held out for the final test metrics.
        seed: Seed of the split.
        unknown_category: What predict does with a category never seen in training:
            ``"error"`` (refuse, naming the column) or ``"ignore"`` (all-zero one-hot).
        kind: ``"auto"`` (a folder or ``digits_images`` is an image dataset, anything else a table),
            ``"table"`` or ``"image"``.
        image_size: Images only: ``(height, width)`` every image is resized to; ``None`` keeps the
            files' own size, which must then be the same for every image.
        channels: Images only: 1 (grayscale) or 3 (RGB); ``None`` detects it (1 when every file is
            grayscale, else 3).
        resize: Images only, how an image of another size becomes ``image_size``: ``"stretch"``
            (bilinear, aspect ratio not kept) or ``"pad"`` (scaled to fit, keeping the aspect ratio,
            and centred on black).
        max_image_mb: Images only: the most memory the decoded training images may take (uint8,
            height x width x channels bytes each); a larger folder is refused before decoding, from
            the files' headers. This is the memory limit of an image dataset: besides the pixels,
            loading keeps about 0.8 KB per image (its file name, label and row) and training adds
            at most about 1 KB more, so 50,000 8x8 images peak at 337 MiB to load and 538-558 MiB to
            train one epoch, of which 289 MiB is the imports (``bench/images_folder.py``, two runs;
            12,500 images: 308 and 524-534 MiB). Scoring a folder with ``kit predict`` is flat in
            the number of files (364-371 MiB for 12,500 or 50,000).
    """

    source: str = "breast_cancer"
    target: str | None = None
    task: str = "auto"
    valid_size: float = 0.15
    test_size: float = 0.15
    seed: int = 0
    unknown_category: str = "error"
    kind: str = "auto"
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    resize: str = "stretch"
    max_image_mb: int = 4096

    def __post_init__(self) -> None:
        _check(bool(self.source), f"source must name a dataset or file, but got {self.source=}.", "source")
        _check(self.task in ("auto", *TASKS), f"task must be auto or one of {TASKS}, but got {self.task=}.",
               "task")
        _check(0 < self.valid_size < 0.5, f"valid_size must be in (0, 0.5), but got {self.valid_size=}.",
               "valid_size")
        _check(0 < self.test_size < 0.5, f"test_size must be in (0, 0.5), but got {self.test_size=}.",
               "test_size")
        _check(self.valid_size + self.test_size < 0.8,
               f"valid_size + test_size must leave rows to train on, but got "
               f"{self.valid_size + self.test_size=}.", "test_size")
        _check(self.unknown_category in ("error", "ignore"),
               f"unknown_category must be 'error' or 'ignore', but got {self.unknown_category=}.",
               "unknown_category")
        _check(self.kind in KINDS, f"kind must be one of {KINDS}, but got {self.kind=}.", "kind")
        if self.image_size is not None:
            size = self.image_size
            ok = not isinstance(size, str | int) and len(size) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)
            _check(ok, f"image_size must be (height, width) in pixels, but got {self.image_size=}.", "image_size")
            object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        _check(self.channels in (None, 1, 3), f"channels must be 1, 3 or None (detect), but got {self.channels=}.",
               "channels")
        _check(self.resize in RESIZE, f"resize must be one of {RESIZE}, but got {self.resize=}.", "resize")
        _check(isinstance(self.max_image_mb, int) and self.max_image_mb >= 1,
               f"max_image_mb must be an integer >= 1, but got {self.max_image_mb=}.", "max_image_mb")


KINDS = ("auto", "table", "image")
RESIZE = ("stretch", "pad")
AUGMENT = ("flip", "shift")


ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
NORMS = ("none", "batch", "layer")
SCHEDULERS = ("cosine", "onecycle", "constant")


MLP_FIELDS = ("hidden", "dropout", "activation", "norm")
"""TrainConfig fields that are network parameters when set (see :class:`TrainConfig`)."""


@dataclass(frozen=True)
class TrainConfig(_Config):
    """How to build and train the network.

    The network is ``net`` called with its parameters: ``build(n_in, n_out, **params)`` (see
    :mod:`kit.nets`). Its parameters are ``net_params`` plus the four shorthand fields ``hidden``,
    ``dropout``, ``activation`` and ``norm`` when they are set: ``None`` (the default) leaves the
    builder's own default, so the recipe lives in the builder, and a set field is passed to any
    builder (one without such a parameter is refused, naming the field). A name may be given once,
    as a field or in ``net_params``. ``TrainConfig(hidden=(64,))`` and
    ``TrainConfig(net_params={"hidden": [64]})`` build the same MLP.

    Attributes:
        net: The builder: a built-in (``mlp``, ``resmlp``, ``ft_transformer``), a name given to
            :func:`kit.nets.register`, or an import path ``"module:function"``.
        net_params: The builder's parameters (JSON values), e.g. ``{"width": 64, "blocks": 2}``.
        hidden: Hidden layer widths, e.g. ``(128, 64)`` (a parameter of ``mlp``).
        dropout: Dropout probability (``mlp``, ``resmlp`` and most builders take it).
        activation: One of ``relu``, ``gelu``, ``silu``, ``tanh`` (``mlp``, ``resmlp``).
        norm: ``none``, ``batch`` or ``layer`` normalization (``mlp``, ``resmlp``).
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW (decoupled) weight decay of the weight matrices; biases and norms get none.
        label_smoothing: Share of the target probability spread over the other classes in the
            training loss (classifiers; 0 disables). Validation and test losses are not smoothed.
        batch_size: Rows per optimizer step.
        epochs: Maximum number of epochs.
        patience: Epochs without validation improvement before stopping early (0 disables).
        scheduler: ``cosine`` (warm-up then cosine decay), ``onecycle`` or ``constant``.
        warmup_epochs: Linear warm-up length for ``cosine``.
        monitor: Validation metric that drives early stopping and best-weights restore:
            ``valid_loss`` (the training objective on the validation split), a task metric
            (``log_loss``, ``accuracy``, ``f1``, ``roc_auc``; ``rmse``, ``mae``, ``r2``), or ``auto``:
            ``valid_loss`` for classifiers, RMSE for regression.
        seed: Seed of weights init and batch order: same seed, same metrics.
        device: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``.
        augment: Images only, light augmentation of training batches (off by default): ``"flip"``
            (a random half of the images mirrored left-right) and ``"shift"`` (each image moved by up
            to 1/8 of its size, the edge repeated). Validation, test and serving never augment.
    """

    net: str = "mlp"
    net_params: dict[str, Any] = field(default_factory=dict)
    hidden: tuple[int, ...] | None = None
    dropout: float | None = None
    activation: str | None = None
    norm: str | None = None
    lr: float = 1e-3
    weight_decay: float = 0.1
    label_smoothing: float = 0.05
    batch_size: int = 64
    epochs: int = 200
    patience: int = 20
    scheduler: str = "cosine"
    warmup_epochs: int = 3
    monitor: str = "auto"
    seed: int = 0
    device: str = "auto"
    augment: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(isinstance(self.net, str) and bool(self.net.strip()),
               f"net must name a builder (a built-in, a registered name or 'module:function'), but got {self.net=}.",
               "net")
        _check(isinstance(self.net_params, dict) and all(isinstance(k, str) for k in self.net_params),
               f"net_params must be a mapping of parameter name to value, but got {self.net_params=}.", "net_params")
        object.__setattr__(self, "net_params", dict(self.net_params))
        both = [n for n in MLP_FIELDS if getattr(self, n) is not None and n in self.net_params]
        _check(not both, f"{both[0] if both else ''} is given twice, as a field and in net_params; give it once, but "
               f"got net_params={self.net_params!r}.", both[0] if both else "net_params")
        if self.hidden is not None:
            _check(not isinstance(self.hidden, str | int), f"hidden must be a list of widths, but got {self.hidden=}.",
                   "hidden")
            object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
            _check(len(self.hidden) >= 1 and all(h > 0 for h in self.hidden),
                   f"hidden must be one or more positive widths, but got {self.hidden=}.", "hidden")
        _check(self.dropout is None or 0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), but got "
               f"{self.dropout=}.", "dropout")
        _check(self.activation is None or self.activation in ACTIVATIONS,
               f"activation must be one of {ACTIVATIONS}, but got {self.activation=}.", "activation")
        _check(self.norm is None or self.norm in NORMS, f"norm must be one of {NORMS}, but got {self.norm=}.", "norm")
        _check(self.lr > 0, f"lr must be positive, but got {self.lr=}.", "lr")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, but got {self.weight_decay=}.",
               "weight_decay")
        _check(0.0 <= self.label_smoothing < 1.0,
               f"label_smoothing must be in [0, 1), but got {self.label_smoothing=}.", "label_smoothing")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, but got {self.batch_size=}.", "batch_size")
        _check(self.epochs >= 1, f"epochs must be >= 1, but got {self.epochs=}.", "epochs")
        _check(self.patience >= 0, f"patience must be >= 0, but got {self.patience=}.", "patience")
        _check(self.scheduler in SCHEDULERS,
               f"scheduler must be one of {SCHEDULERS}, but got {self.scheduler=}.", "scheduler")
        _check(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, but got {self.warmup_epochs=}.",
               "warmup_epochs")
        _check(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
               f"device must be auto, cpu or cuda, but got {self.device=}.", "device")
        _check(not isinstance(self.augment, str) and all(a in AUGMENT for a in self.augment),
               f"augment must be a list of {AUGMENT}, but got {self.augment=}.", "augment")
        object.__setattr__(self, "augment", tuple(dict.fromkeys(self.augment)))

    def net_kwargs(self) -> dict[str, Any]:
        """The builder's parameters: ``net_params`` plus the shorthand fields that are set."""
        fields = {n: list(v) if isinstance(v, tuple) else v for n in MLP_FIELDS if (v := getattr(self, n)) is not None}
        return {**self.net_params, **fields}

    def smoke(self) -> TrainConfig:
        """At most :data:`SMOKE` epochs and patience."""
        return self.replace(epochs=min(self.epochs, SMOKE.epochs), patience=min(self.patience, SMOKE.patience),
                            warmup_epochs=min(self.warmup_epochs, 1))
