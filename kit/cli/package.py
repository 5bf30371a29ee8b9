"""``kit package``, ``build``, ``serve``, ``models``, ``promote``, ``rollback`` and ``predict``."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _cmd_package(args: argparse.Namespace) -> int:
    from kit.bundle import ModelBundle
    from kit.package import gate_line, save

    bundle = ModelBundle.load(args.bundle)
    tag = save(bundle, args.name, force=args.force, reason=args.reason, by="cli")
    print(tag)  # stdout holds the tag alone: TAG=$(kit package ...)
    print(f"{tag} {gate_line(bundle)}", file=sys.stderr)
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from kit.package import build

    print(build(args.tag, version=args.version))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from kit.package import serve

    env = {"KIT_BATCHING": "0"} if args.no_batching else {}
    return serve(args.tag, port=args.port, host=args.host, bento=args.bento, env=env)


def _cmd_models(args: argparse.Namespace) -> int:
    import pandas as pd

    from kit.package import bentoml_home, models

    rows = models(args.name)
    if not rows:
        print("no kit models in the store at", bentoml_home())
        return 0
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    from kit.package import promote

    entry = promote(args.tag, args.reason, canary=args.canary, shadow=args.shadow)
    if entry["event"] == "promote":
        print(f"promoted {entry['tag']} (previous: {entry['previous'] or 'none'})")
    else:
        share = f"{entry['percent']:g}% of requests" if entry["event"] == "canary" else "every request, in shadow"
        print(f"{entry['tag']} on trial beside {entry['champion']}: {share}")
    print(f"revision {entry['revision']}: running servers switch within {_poll_bound()}")
    return 0


def _poll_bound() -> str:
    from kit.release._settings import RELEASE_POLL_S

    return f"{RELEASE_POLL_S:g} s (KIT_RELEASE_POLL_S) plus the time to load the version"


def _cmd_rollback(args: argparse.Namespace) -> int:
    from kit.package import rollback

    entry = rollback(args.name, args.reason)
    if entry["what"] == "challenger":
        print(f"ended the trial of {entry['from']}: {args.name} serves {entry['tag']} only")
    else:
        print(f"rolled back {args.name}: now serving {entry['tag']} (was {entry['from']})")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import sys

    from kit.errors import ConfigError

    model = args.bundle if args.bundle is not None else args.tag
    common = {"keep": args.keep, "on_error": args.on_error, "errors": args.errors, "fmt": args.format,
              "progress": not args.quiet}
    if args.engine == "spark":
        from kit.package import predict_spark_file

        config = dict(_key_value(item) for item in args.conf or [])
        summary = predict_spark_file(args.input, args.output, model, master=args.master, partitions=args.partitions,
                                     overwrite=args.overwrite, part_bytes=int(args.part_mb * 2**20), config=config,
                                     **common)
    else:
        spark_only = [o for o, v in (("--master", args.master), ("--partitions", args.partitions),
                                     ("--overwrite", args.overwrite), ("--conf", args.conf)) if v]
        if spark_only:
            raise ConfigError(f"{spark_only[0]} is an option of --engine spark", field=spark_only[0].lstrip("-"))
        from kit.package import predict_file

        summary = predict_file(model, args.input, args.output, chunk_size=args.chunk_size, **common)
    parts = (f" in {summary.parts} parts ({summary.skipped_parts} finished before, skipped)"
             if summary.engine == "spark" else "")
    print(f"scored {summary.scored} rows -> {summary.output}{parts} with {summary.tag} "
          f"[{summary.engine}, {summary.seconds:.1f}s]")
    if summary.failed:
        print(f"{summary.failed} rows failed the schema -> {summary.errors}", file=sys.stderr)
    return 0


def _key_value(item: str) -> tuple[str, str]:
    from kit.errors import ConfigError

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--conf takes KEY=VALUE, but got {item!r}", field="conf")
    return key.strip(), value


def register(sub: Any) -> None:
    """Add package, build, serve, models, promote, rollback and predict to ``kit``."""
    p = sub.add_parser("package", help="put a bundle into the BentoML model store")
    p.add_argument("--bundle", required=True, help="bundle directory")
    p.add_argument("--name", required=True, help="store name, e.g. bc")
    p.add_argument("--force", action="store_true", help="package even if the release gate failed (recorded)")
    p.add_argument("--reason", help="why --force was needed (recorded)")
    p.set_defaults(func=_cmd_package)

    p = sub.add_parser("build", help="build a bento from bentos/ with a stored model")
    p.add_argument("tag", nargs="?", help="NAME:VERSION or NAME (default: latest promoted)")
    p.add_argument("--version", help="bento version (default: generated)")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("serve", help="run bentoml serve on the kit service")
    p.add_argument("tag", nargs="?", help="model NAME:VERSION or NAME (default: latest promoted)")
    p.add_argument("--bento", help="serve a built bento tag instead of the bentos/ directory")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--no-batching", action="store_true", help="one model call per request (KIT_BATCHING=0)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("models", help="list stored versions with labels and promotion state")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("promote", help="make NAME:VERSION the champion of NAME, or put it on trial beside it")
    p.add_argument("tag")
    p.add_argument("--reason", required=True, help="why (recorded in the promotion log)")
    trial = p.add_mutually_exclusive_group()
    trial.add_argument("--canary", type=float, metavar="PERCENT",
                       help="send this share of requests to it (sticky by X-Request-Key); the champion answers rest")
    trial.add_argument("--shadow", action="store_true",
                       help="score every request with it in the background; the champion answers all")
    p.set_defaults(func=_cmd_promote)

    p = sub.add_parser("rollback", help="end the trial of NAME's challenger, else re-promote its previous champion")
    p.add_argument("name")
    p.add_argument("--reason", default="rollback")
    p.set_defaults(func=_cmd_rollback)

    p = sub.add_parser("predict", help="score a CSV or Parquet file, or a folder or ZIP of images, offline",
                       description="Offline batch scoring through the same predict path as the service. "
                                   "Output columns: the --keep columns, prediction, proba_<label> per class "
                                   "(or the value), model_tag. An image model scores a folder or ZIP of "
                                   "images: file, prediction, proba_<label>, model_tag.")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--tag", help="model NAME:VERSION or NAME (default: latest promoted)")
    which.add_argument("--bundle", help="a bundle directory instead of a stored model")
    p.add_argument("input", help=".csv or .parquet file (spark: any path, directory or URI Spark reads); an image "
                                 "model: a folder of images or a .zip")
    p.add_argument("output", help="local: a .csv or .parquet file; spark: a directory (.csv in its name: CSV)")
    p.add_argument("--engine", choices=["local", "spark"], default="local",
                   help="local: stream in this process (default); spark: Apache Spark, resumable parts (tables "
                        "only: an image model is scored locally)")
    p.add_argument("--keep", help="input columns copied beside each prediction, e.g. id,region")
    p.add_argument("--on-error", choices=["fail", "skip"], default="fail",
                   help="a row that fails the schema stops the run (fail) or goes to the errors output (skip)")
    p.add_argument("--errors", help="errors output (default: OUTPUT stem + .errors.EXT; spark: OUTPUT/_errors)")
    p.add_argument("--format", choices=["csv", "parquet"], help="input format when the name does not say")
    p.add_argument("--chunk-size", type=int, default=10_000, help="local: rows per chunk (memory is flat in rows)")
    p.add_argument("--master", help="spark: master URL (default local[*]; spark://, yarn, k8s://...)")
    p.add_argument("--partitions", type=int, help="spark: partitions per part (default: the input's splits)")
    p.add_argument("--overwrite", action="store_true", help="spark: replace an output that holds another run")
    p.add_argument("--part-mb", type=float, default=128.0,
                   help="spark: input megabytes per resumable part (files are not split; default 128)")
    p.add_argument("--conf", action="append", metavar="KEY=VALUE", help="spark: a Spark setting (repeatable)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_predict)
