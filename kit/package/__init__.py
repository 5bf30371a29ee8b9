"""Packaging: the BentoML model store, promotions and rollback, bento builds, servers, batch scoring.

A store entry (``name:version``) holds a saved :class:`~kit.bundle.ModelBundle` directory, so
loading goes through ``ModelBundle.load`` (sha256-verified, no pickle). Labels say what the
model is (task, dataset, runtime, variant, gate status); metadata says how it was made
(metrics, configs, quantization summary, lineage).

Promotions live in the release store (:mod:`kit.release`: SQLite beside the model store, or
``KIT_LOG_URL``), changed atomically: who promoted which version, when and why; which version is
the champion and which one is on trial (a canary share of requests, or in shadow).
:func:`rollback` ends a trial, else re-promotes the champion before the current one.
:func:`served` is the one answer to "which model does a server load". Python::

    tag = kit.package.save(bundle, "bc")        # -> "bc:<version>"
    kit.package.promote(tag, "passed review")
    kit.package.promote(new_tag, "try it", canary=10)   # 10 % of requests; shadow=True mirrors instead
    kit.package.rollback("bc")                   # ends the trial
    bento = kit.package.build(tag)               # -> "kit:<version>"
    kit.package.serve(tag, port=3000)            # blocks; bentoml serve on 127.0.0.1

Batch scoring streams a file in one process (:func:`predict_file`) or runs on Apache Spark
(:func:`predict_spark` returns the scored DataFrame; :func:`predict_spark_file` writes it in
resumable parts), both through ``bundle.infer`` with the same output columns. An image model scores
a folder or ZIP of images (:func:`predict_images`; :func:`predict_file` hands image models to it).

Modules: ``_store`` (save, load, default_name), ``_promotions`` (promote, rollback, history), ``_resolve`` (served,
resolve, models), ``_bento`` (build), ``_server`` (start, stop, serve, free_port), ``_scoring`` (what both batch
engines share), ``_batch`` (predict_file), ``_image_batch`` (predict_images, score_images: folders, ZIPs,
uploads), ``_spark`` (spark_session, predict_spark), ``_spark_worker`` (the executor side), ``_spark_parts``
(predict_spark_file), ``_spark_fs`` (Hadoop filesystem calls).
"""

from __future__ import annotations

from kit._home import bentoml_home
from kit.package._batch import predict_file
from kit.package._bento import BENTOS_DIR, build
from kit.package._image_batch import predict_images, score_images
from kit.package._promotions import PROMOTIONS, history, promote, promoted, promotions_path, rollback
from kit.package._resolve import ServedRef, models, resolve, served
from kit.package._scoring import BatchSummary
from kit.package._server import free_port, serve, serve_command, start, stop, wait_ready
from kit.package._spark import predict_spark, raising_kit_errors, spark_session
from kit.package._spark_parts import predict_spark_file
from kit.package._store import GateFailedError, default_name, gate_line, load, save

__all__ = ["BENTOS_DIR", "PROMOTIONS", "BatchSummary", "GateFailedError", "ServedRef", "bentoml_home", "build",
           "default_name", "free_port", "gate_line", "history", "load", "models", "predict_file", "predict_images",
           "predict_spark",
           "predict_spark_file", "promote", "promoted", "promotions_path", "raising_kit_errors", "resolve",
           "rollback", "save", "score_images", "serve", "serve_command", "served", "spark_session", "start", "stop",
           "wait_ready"]
