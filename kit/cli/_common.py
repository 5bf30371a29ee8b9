"""What several subcommands share: the data options, config fields from options, reading a YAML/JSON file."""

from __future__ import annotations

import argparse
from typing import Any

from kit.config import DataConfig
from kit.errors import ConfigError


def add_data_args(p: argparse.ArgumentParser) -> None:
    """Options shared by commands that load a dataset (the fields of :class:`~kit.config.DataConfig`)."""
    p.add_argument("--data", default="breast_cancer",
                   help="built-in name (breast_cancer, wine, digits, diabetes) or a CSV/Parquet path")
    p.add_argument("--target", default=None, help="target column (required for files)")
    p.add_argument("--task", default="auto", choices=["auto", "binary", "multiclass", "regression"])
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/valid/test split")
    p.add_argument("--valid-size", type=float, default=DataConfig.valid_size, help="share of rows for validation")
    p.add_argument("--test-size", type=float, default=DataConfig.test_size, help="share of rows for the test split")
    p.add_argument("--unknown-category", default="error", choices=["error", "ignore"],
                   help="what predict does with a category unseen in training")


def data_config(args: argparse.Namespace) -> DataConfig:
    """The DataConfig the data options describe."""
    return DataConfig(source=args.data, target=args.target, task=args.task, seed=args.split_seed,
                      valid_size=args.valid_size, test_size=args.test_size, unknown_category=args.unknown_category)


def given(args: argparse.Namespace, **names: str) -> dict[str, Any]:
    """Config fields from the options the user gave: ``given(args, lr="lr")`` maps option dest to field.

    Options left at ``None`` are left out, so the config's own defaults apply.
    """
    return {field: getattr(args, dest) for field, dest in names.items() if getattr(args, dest) is not None}


def read_mapping(path: str | None, what: str) -> dict[str, Any] | None:
    """A YAML or JSON file holding a mapping (``None`` when no path is given).

    Raises:
        ConfigError: If the file cannot be read or holds no mapping, naming the file.
    """
    if path is None:
        return None
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            value = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc}", file=path) from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} file {path} must hold a mapping of name to value", file=path)
    return value


def add_net_args(p: argparse.ArgumentParser) -> None:
    """``--net`` and ``--net-params``: the network builder and its parameters."""
    p.add_argument("--net", help="network: mlp (default), resmlp, ft_transformer or an import path module:function "
                                 "(the module must be importable: on sys.path or PYTHONPATH)")
    p.add_argument("--net-params", help='builder parameters as JSON, e.g. \'{"width": 64, "blocks": 2}\'')


def net_fields(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig fields from ``--net`` and ``--net-params``.

    Raises:
        ConfigError: If ``--net-params`` is not a JSON object.
    """
    import json

    fields: dict[str, Any] = {}
    if args.net:
        fields["net"] = args.net
    if args.net_params:
        try:
            params = json.loads(args.net_params)
        except ValueError as exc:
            raise ConfigError(f"--net-params must be a JSON object, e.g. '{{\"width\": 64}}': {exc}",
                              field="net_params") from None
        if not isinstance(params, dict):
            raise ConfigError(f"--net-params must be a JSON object, but got {args.net_params!r}", field="net_params")
        fields["net_params"] = params
    return fields
