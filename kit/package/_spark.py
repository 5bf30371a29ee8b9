"""Batch scoring on Apache Spark: the same bundle and the same ``bundle.infer``, in ``mapInPandas`` on the executors.

The driver resolves the model, turns a torch-runtime bundle into its ONNX export (executors never
need torch), saves it into a staging directory named after its manifest's sha256 and registers
that directory with ``SparkContext.addFile``; executors check every file against the hashes the
driver pinned and load it once per Python worker (:mod:`kit.package._spark_worker`). Scoring is
``DataFrame.mapInPandas`` over Arrow batches (``spark.sql.execution.arrow.maxRecordsPerBatch``
rows each). :func:`predict_spark` returns the lazy scored DataFrame; :func:`kit.package.predict_spark_file`
writes it in resumable parts. pyspark is imported only inside these functions.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit.errors import ConfigError, DependencyError, KitError, require
from kit.package._scoring import (
    ERROR_COLUMNS,
    ORIGIN_COLUMNS,
    TAG_COLUMN,
    check_columns,
    check_on_error,
    output_columns,
    parse_keep,
    resolve_model,
)
from kit.package._spark_fs import HadoopFS
from kit.package._spark_worker import FILE_COLUMN, MARK, ROW_COLUMN, Scorer, Shipped

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from kit.bundle import ModelBundle

ONNX_EXPORTS = ("model.onnx", "model.ort-fp32.onnx")
"""Artifacts holding an fp32 ONNX export of the network, in the order they are looked for."""

_STAGING: list[Path] = []
_ADDED: set[tuple[str, str]] = set()


def spark_session(master: str | None = None, *, app_name: str = "kit predict",
                  config: dict[str, str] | None = None) -> SparkSession:
    """The active Spark session, or a new one on ``master`` (``local[*]`` unless spark-submit set one).

    A local master runs its Python workers on this interpreter (it sets ``PYSPARK_PYTHON`` to
    ``sys.executable`` unless it is set) and binds the driver and its web UI to 127.0.0.1
    (``SPARK_LOCAL_IP``, unless set).

    Args:
        master: ``local[N]``, ``spark://host:7077``, ``yarn``, ``k8s://https://host:443``, ...
        app_name: The application name.
        config: Extra Spark settings.

    Raises:
        DependencyError: pyspark or Java is missing, or Spark does not start.
    """
    require("pyspark", "spark")
    from pyspark.sql import SparkSession

    submitted = bool(os.environ.get("PYSPARK_GATEWAY_PORT"))  # spark-submit started the JVM and set the master
    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    if not submitted:
        _check_java()
    master = master or (None if submitted else "local[*]")
    builder: Any = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    if master and master.startswith("local"):
        # PySpark starts local Python workers with $PYSPARK_PYTHON (default "python3", which may be
        # another interpreter without kit); the spark.pyspark.python setting is read by spark-submit only.
        python = os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the JVM's servers, web UI included, on loopback
        builder = (builder.config("spark.pyspark.python", python).config("spark.pyspark.driver.python", python)
                   .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1"))
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    try:
        session: SparkSession = builder.getOrCreate()
    except Exception as exc:  # py4j and pyspark raise many types; what Spark said is what helps
        raise DependencyError(f"Spark did not start on master {master!r}: {_first_line(exc)}", field="master") from exc
    return session


def _check_java() -> None:
    home = os.environ.get("JAVA_HOME")
    if (home and os.access(Path(home) / "bin" / "java", os.X_OK)) or shutil.which("java"):
        return
    raise DependencyError("Spark needs a Java 17+ runtime: install one (Debian: apt-get install "
                          "default-jre-headless) or set JAVA_HOME", field="java")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:400] if text else type(exc).__name__


def input_format(fs: HadoopFS, src: str, fmt: str | None) -> str:
    """``fmt``, else ``csv`` for a ``.csv`` name or a directory of CSV files, else ``parquet`` (any URI)."""
    if fmt is not None:
        if fmt not in ("csv", "parquet"):
            raise ConfigError(f"format must be csv or parquet, but got {fmt=}", field="format")
        return fmt
    name = src.rstrip("/").lower()
    if name.endswith((".csv", ".csv.gz", ".csv.bz2")):
        return "csv"
    if not name.endswith((".parquet", ".pq")) and fs.is_dir(src):
        names = [n.lower() for n in fs.names(src) if not n.startswith(("_", "."))]
        if names and all(n.endswith((".csv", ".csv.gz", ".csv.bz2")) for n in names):
            return "csv"
    return "parquet"


def read_input(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    """A Parquet or CSV input as a Spark DataFrame (CSV: header row, every column read as text).

    CSV columns stay text: the bundle's preprocessor parses numbers exactly as the in-process
    scorer does, and a value it cannot parse is a row error instead of a silent null.
    """
    try:
        if fmt == "csv":
            return spark.read.option("header", True).option("inferSchema", False).csv(path)
        return spark.read.parquet(path)
    except Exception as exc:  # AnalysisException: path missing, no files, unreadable
        raise KitError(f"Spark cannot read {fmt.upper()} input {path}: {_first_line(exc)}", file=path) from None


IMAGE_REFUSAL = ("image bundles are scored with `kit predict FOLDER_OR_ZIP out.csv` (one process; in Python "
                 "kit.package.predict_images), not on Spark: Spark scores table rows (CSV or Parquet) and this model "
                 "takes images")


def spark_model(model: str | os.PathLike[str] | ModelBundle | None) -> tuple[ModelBundle, str]:
    """The bundle and tag to score with on Spark, resolved before any session, JVM or job starts.

    Raises:
        ConfigError: For an image bundle (:data:`IMAGE_REFUSAL`), naming ``model``.
    """
    bundle, tag = resolve_model(model)
    if bundle.kind == "image":
        raise ConfigError(f"{tag}: {IMAGE_REFUSAL}", field="model")
    return bundle, tag


def onnx_bundle(bundle: ModelBundle, export: bool = True) -> ModelBundle:
    """``bundle`` on ONNX Runtime: as is, or a torch-runtime bundle through its fp32 ONNX export.

    The export stored in the bundle is used when there is one; otherwise it is made now with
    :func:`kit.quantize.export_onnx` (checked against torch) when ``export`` is true and torch is
    installed. One intra-op thread per Python worker: Spark runs one worker per task slot.

    Raises:
        ConfigError: A torch bundle without an ONNX export and ``export`` false or torch missing.
    """
    if bundle.runtime_info.get("name") == "onnxruntime":
        return bundle
    clone = bundle.copy()
    name = next((n for n in ONNX_EXPORTS if n in bundle.artifacts), None)
    if name is None:
        refusal = ("this bundle runs on torch and carries no ONNX export, and Spark executors score ONNX only; "
                   "add one with `kit quantize --bundle DIR --variants ort-fp32`")
        if not export:
            raise ConfigError(refusal, field="runtime")
        try:
            from kit.quantize import export_onnx

            data, _ = export_onnx(bundle)
        except DependencyError:
            raise ConfigError(refusal + " (or install torch where the driver runs, so kit exports it)",
                              field="runtime") from None
        name = "model.ort-fp32.onnx"
        clone.artifacts[name] = data
    data = clone.artifacts[name]
    clone.runtime_info = {"name": "onnxruntime", "variant": "ort-fp32", "artifact": name,
                          "sha256": hashlib.sha256(data).hexdigest(), "options": {"threads": 1, "inter_threads": 1}}
    return clone


def ship(spark: SparkSession, bundle: ModelBundle, staging: str | os.PathLike[str] | None = None) -> Shipped:
    """Save ``bundle`` into ``staging/kit-bundle-<sha256 of bundle.json>`` and register it with ``addFile``.

    Args:
        spark: The session whose executors get it.
        bundle: An ONNX-runtime bundle (:func:`onnx_bundle`).
        staging: Where the driver keeps the directory it serves (default: a temporary directory
            removed when this process exits); it must outlive the job.

    Returns:
        The directory name and the hashes executors check.
    """
    root = Path(staging) if staging is not None else _staging_root()
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".stage-{uuid.uuid4().hex}"
    bundle.save(tmp)
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tmp.iterdir()) if p.is_file()}
    key = files["bundle.json"]
    name = f"kit-bundle-{key[:16]}"
    final = root / name
    if final.is_dir():
        shutil.rmtree(tmp)
    else:
        tmp.rename(final)
    sc = spark.sparkContext
    if (sc.applicationId, name) not in _ADDED:
        sc.addFile(str(final), recursive=True)
        _ADDED.add((sc.applicationId, name))
    return Shipped(name=name, files=tuple(sorted(files.items())), key=key)


def _staging_root() -> Path:
    if not _STAGING:
        _STAGING.append(Path(tempfile.mkdtemp(prefix="kit-spark-")))
        atexit.register(shutil.rmtree, _STAGING[0], True)
    return _STAGING[0]


def prediction_type(bundle: ModelBundle) -> str:
    """Spark type of the ``prediction`` column: ``double`` (regression) or the labels' type."""
    labels = bundle.label_names or []
    if bundle.task == "regression":
        return "double"
    if labels and all(isinstance(v, bool) for v in labels):
        return "boolean"
    if labels and all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        return "long"
    if labels and all(isinstance(v, float) for v in labels):
        return "double"
    return "string"


def predict_spark(data: DataFrame | str | os.PathLike[str], model: str | os.PathLike[str] | ModelBundle | None = None,
                  *, keep: str | Sequence[str] | None = None, on_error: str = "fail", fmt: str | None = None,
                  spark: SparkSession | None = None, export_onnx: bool = True,
                  staging: str | os.PathLike[str] | None = None) -> DataFrame:
    """Score a Spark DataFrame (or a Parquet/CSV path) with a bundle; returns the lazy scored DataFrame.

    Columns: the kept columns, ``prediction``, ``proba_<label>`` per class (or none for a
    regression), ``model_tag``; with ``on_error="skip"`` also ``input_file``, ``input_row``
    (Parquet only), ``error_field`` and ``error``, set on the rows the schema refused (their
    prediction is null). Nothing runs until an action; a KitError raised on an executor reaches
    the caller inside Spark's exception; ``with kit.package.raising_kit_errors(): scored.write...``
    turns it back into that KitError.

    Args:
        data: A DataFrame, or a path/URI Spark reads (``.csv`` or Parquet; ``fmt`` otherwise).
        model: A store tag (``None``: the latest promoted), a bundle directory or a bundle; an image
            bundle is refused before Spark starts (:func:`spark_model`).
        keep: Input columns passed through, e.g. ``"id,region"``.
        on_error: ``fail`` (a bad row fails the job, naming it) or ``skip``.
        fmt: ``parquet`` or ``csv`` when a path's name does not say.
        spark: The session (default: the DataFrame's, else :func:`spark_session`).
        export_onnx: Export a torch bundle's network to ONNX on the driver when it carries none.
        staging: Where the driver keeps the bundle it ships (see :func:`ship`).
    """
    check_on_error(on_error)
    keep_cols = parse_keep(keep)
    bundle, tag = spark_model(model)
    source = None
    if isinstance(data, str | os.PathLike):
        source = str(data)
        spark = spark or spark_session()
        frame = read_input(spark, source, input_format(HadoopFS(spark), source, fmt))
    else:
        frame = data
        spark = spark or frame.sparkSession
    bundle = onnx_bundle(bundle, export_onnx)
    check_columns(bundle, frame.columns, keep_cols, source)
    return scored_frame(frame, bundle, ship(spark, bundle, staging), keep_cols, tag, on_error)


def scored_frame(frame: DataFrame, bundle: ModelBundle, shipped: Shipped, keep: tuple[str, ...], tag: str,
                 on_error: str, stats: Any = None) -> DataFrame:
    """``frame`` through :class:`~kit.package._spark_worker.Scorer` (the columns checked already)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    frame = _with_origin(frame)
    needed = list(dict.fromkeys([*keep, *bundle.feature_names]))
    origin = [c for c in (FILE_COLUMN, ROW_COLUMN) if c in frame.columns]
    frame = frame.select(*[frame[f"`{c}`"] for c in needed], *[F.col(c) for c in origin])
    types = {f.name: f.dataType for f in frame.schema.fields}
    pred = prediction_type(bundle)
    columns = output_columns(bundle, keep)
    fields = [StructField(c, types[c] if c in keep else _parse_datatype_string(
        pred if c == "prediction" else "string" if c == TAG_COLUMN else "double"), True) for c in columns]
    with_errors = on_error == "skip"
    if with_errors:
        fields += [StructField(ORIGIN_COLUMNS[0], _parse_datatype_string("string"), True),
                   StructField(ORIGIN_COLUMNS[1], _parse_datatype_string("long"), True),
                   *[StructField(c, _parse_datatype_string("string"), True) for c in ERROR_COLUMNS]]
    schema = StructType(fields)
    scorer = Scorer(shipped=shipped, keep=keep, tag=tag, on_error=on_error, columns=tuple(schema.names),
                    prediction=pred, with_errors=with_errors, stats=stats)
    return frame.mapInPandas(scorer, schema)


def _with_origin(frame: DataFrame) -> DataFrame:
    """``frame`` with the input file (and Parquet row index) of each row, where the source is a file scan."""
    from pyspark.sql import functions as F

    try:
        if not frame.inputFiles():
            return frame
        fields = frame.select("_metadata").schema[0].dataType.fieldNames()  # type: ignore[attr-defined]
    except Exception:  # a plan that hides the file source's metadata: rows are named without it
        return frame
    origin = [F.col("_metadata.file_path").alias(FILE_COLUMN)]
    if "row_index" in fields:  # Parquet
        origin.append(F.col("_metadata.row_index").alias(ROW_COLUMN))
    return frame.select("*", *origin)


@contextlib.contextmanager
def raising_kit_errors() -> Iterator[None]:
    """Turn a KitError raised on an executor (inside Spark's exception) back into that KitError."""
    try:
        yield
    except KitError:
        raise
    except Exception as exc:
        error = kit_error_from(exc)
        if error is None:
            raise
        raise error from None


def kit_error_from(exc: BaseException) -> KitError | None:
    """The KitError an executor raised, rebuilt from the JSON line in Spark's exception text, or ``None``."""
    import kit.errors

    text = str(exc)
    at = text.find(MARK)
    if at < 0:
        return None
    try:
        payload, _ = json.JSONDecoder().raw_decode(text[at + len(MARK):])
    except ValueError:
        return None
    cls = getattr(kit.errors, str(payload.get("type")), KitError)
    cls = cls if isinstance(cls, type) and issubclass(cls, KitError) else KitError
    return cls(str(payload.get("message")), field=payload.get("field"), row=payload.get("row"),
               file=payload.get("file"))
