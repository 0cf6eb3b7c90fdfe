"""All Delta reads and writes of the jobs go through here.

Every write is one Delta commit, so a reader sees the table before or after it, never half of it.
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from schemas.registry import TableSpec, table

log = logging.getLogger(__name__)


def lake_root(cfg: Mapping) -> str:
    """The lake root from the configuration; a local relative folder becomes absolute."""
    root = cfg["lake"]["root"]
    if "://" in root or root.startswith("file:"):
        return root
    return os.path.abspath(root)


MODELS_DIR = "_models"
# Intermediate frames written once and read back (:func:`materialized`), under the lake root.
TMP_DIR = "_tmp"


def model_location(kind: str, ds) -> str:
    """Where a fitted model of ``kind`` for ds is saved, relative to the lake root (what the model
    tables store, so that a copied or moved lake loads its own models)."""
    return f"{MODELS_DIR}/{kind}/{ds.isoformat()}"


def in_lake(cfg: Mapping, stored: str) -> str:
    """The absolute location of a path stored relative to the lake root. Rows of older releases
    stored absolute paths: their part from ``_models/`` on is taken relative to this lake too."""
    marker = f"/{MODELS_DIR}/"
    if ("://" in stored or stored.startswith("/")) and marker in stored:
        stored = stored[stored.rindex(marker) + 1:]
    return f"{lake_root(cfg).rstrip('/')}/{stored}"


def table_path(cfg: Mapping, name: str) -> str:
    """Path of a registered table under the configured lake root."""
    return table(name).path(lake_root(cfg))


def conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Select and cast ``df`` to the table's schema, in its column order.

    Raises:
        ValueError: If a column of the schema is missing from ``df``.
    """
    missing = [f.name for f in spec.schema.fields if f.name not in df.columns]
    if missing:
        raise ValueError(f"cannot write {spec.name}: columns {missing} are missing (have {df.columns})")
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in spec.schema.fields])


def _writer(df: DataFrame, spec: TableSpec):
    """A Delta writer of ``df`` conformed to the registered schema.

    ``mergeSchema`` lets a table created by an older release gain the columns and struct fields
    added to the registry since (an upgrade needs no manual ALTER); ``conform`` guarantees that
    nothing but the registered schema is ever written, so no other drift can get through.

    A partitioned table is written rebalanced by its partition columns: every task then writes
    whole partitions (one file per partition for a small night, instead of one per task and
    partition), and adaptive execution splits a partition too large for one task into a few.
    """
    out = conform(df, spec)
    if spec.partition_by:
        out = out.hint("rebalance", *spec.partition_by)
    return out.write.format("delta").option("mergeSchema", "true")


# Tables this process created or found (by path): every read and write ensures its table, and
# Delta's create-if-not-exists reads and checks the table's log each time (about a quarter of a
# second, some 100 times a night); a known table is only checked for its log folder.
_ENSURED: set[str] = set()


def release_logs(spark: SparkSession) -> None:
    """Drop Delta's in-process cache of table logs and snapshots. It keeps every table a
    process has touched, with its snapshots' plans, and grows with each stage: one test-size
    night left 1.1 GB of the driver's heap in it. A stage's tables are read afresh by the next
    stage anyway (each stage reads the lake as the previous one committed it)."""
    try:
        spark.sparkContext._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    except Exception as exc:                      # a session without Delta's classes: nothing cached
        log.debug("Delta log cache not cleared: %s", exc)


def ensure_table(spark: SparkSession, spec: TableSpec, root: str, attempts: int = 5) -> str:
    """Create the table from its schema if it does not exist; return its path.

    Safe when several runs start on an empty lake at once: a creation that loses the race to
    another process (the location filled meanwhile) counts as done once the table is there.
    A table this process already ensured is taken as there while its ``_delta_log`` folder is.
    """
    path = spec.path(root)
    if path in _ENSURED:
        fs, log_dir = hadoop_path(spark, f"{path}/_delta_log")
        if fs.exists(log_dir):
            return path
        _ENSURED.discard(path)            # removed since: create it again
    _create(spark, spec, path, attempts)
    _ENSURED.add(path)
    return path


def _create(spark: SparkSession, spec: TableSpec, path: str, attempts: int) -> str:
    from delta.tables import DeltaTable

    for attempt in range(attempts):
        builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(spec.schema)
        if spec.partition_by:
            builder = builder.partitionedBy(*spec.partition_by)
        for key, value in spec.properties.items():
            builder = builder.property(key, value)
        if spec.description:
            builder = builder.comment(spec.description)
        try:
            builder.execute()
            return path
        except Exception:
            if DeltaTable.isDeltaTable(spark, path):
                return path                   # someone else created it: the table is there
            if attempt + 1 == attempts:
                raise
            time.sleep(0.5 * (attempt + 1))   # the other creation may not have committed yet
    return path


def read_table(spark: SparkSession, cfg: Mapping, name: str, version: int | None = None) -> DataFrame:
    """Read a registered table (optionally at a version), creating it empty if it is new."""
    spec = table(name)
    path = ensure_table(spark, spec, lake_root(cfg))
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(path)


def reader(spark: SparkSession, cfg: Mapping) -> Callable[[str], DataFrame]:
    """``name -> DataFrame`` of the configured lake (what the library functions take to read it)."""
    return lambda name: read_table(spark, cfg, name)


def replace_where(df: DataFrame, cfg: Mapping, name: str, predicate: str) -> None:
    """Atomically replace the rows matching ``predicate`` with ``df`` (one commit).

    Delta checks that every written row matches the predicate, so a bug cannot spill into
    partitions this write does not own.
    """
    spec = table(name)
    path = ensure_table(df.sparkSession, spec, lake_root(cfg))
    _writer(df, spec).mode("overwrite").option("replaceWhere", predicate).save(path)
    log.info("replaced %s where %s", path, predicate)


def overwrite(df: DataFrame, cfg: Mapping, name: str) -> None:
    """Replace the whole table with ``df`` in one commit."""
    spec = table(name)
    path = ensure_table(df.sparkSession, spec, lake_root(cfg))
    _writer(df, spec).mode("overwrite").save(path)


def append(df: DataFrame, cfg: Mapping, name: str) -> None:
    """Append rows to a table in one commit."""
    spec = table(name)
    path = ensure_table(df.sparkSession, spec, lake_root(cfg))
    _writer(df, spec).mode("append").save(path)


def merge_latest(df: DataFrame, cfg: Mapping, name: str, key: str, version_col: str) -> None:
    """Upsert ``df`` on ``key``: a source row replaces the target row when it is at least as new.

    ``df`` must hold at most one row per key (the caller keeps the latest version). Like the
    other writes, the merge evolves a table created by an older release to the registered schema
    (without it Delta would drop the new columns of ``df`` silently); rows it does not touch read
    NULL there.
    """
    from delta.tables import DeltaTable

    spec = table(name)
    path = ensure_table(df.sparkSession, spec, lake_root(cfg))
    target = DeltaTable.forPath(df.sparkSession, path)
    (target.alias("t")
     .merge(conform(df, spec).alias("s"), f"t.`{key}` = s.`{key}`")
     .withSchemaEvolution()
     .whenMatchedUpdateAll(condition=f"s.`{version_col}` >= t.`{version_col}`")
     .whenNotMatchedInsertAll()
     .execute())
    log.info("merged into %s on %s", path, key)


def history(spark: SparkSession, cfg: Mapping, name: str) -> DataFrame:
    """The Delta history (one row per commit) of a table."""
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, table_path(cfg, name)).history()


def maintain(spark: SparkSession, cfg: Mapping) -> list[dict]:
    """OPTIMIZE (Z-ordered by user_id where configured) and VACUUM every existing table."""
    hours = float(cfg["maintain"]["vacuum_retention_hours"])
    # VACUUM lists files with spark.sql.sources.parallelPartitionDiscovery.parallelism tasks
    # (10000 by default): minutes of empty tasks per table on a small cluster. Size it to the cluster.
    listing = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
    previous = spark.conf.get(listing, None)
    spark.conf.set(listing, str(max(8, 4 * spark.sparkContext.defaultParallelism)))
    try:
        return _maintain_tables(spark, cfg, hours)
    finally:
        if previous is None:
            spark.conf.unset(listing)
        else:
            spark.conf.set(listing, previous)


def _maintain_tables(spark: SparkSession, cfg: Mapping, hours: float) -> list[dict]:
    from delta.tables import DeltaTable

    from schemas.registry import TABLES

    out = []
    for name, spec in TABLES.items():
        path = spec.path(lake_root(cfg))
        if not DeltaTable.isDeltaTable(spark, path):
            continue
        table = DeltaTable.forPath(spark, path)
        optimizer = table.optimize()
        if name in cfg["maintain"]["zorder_by_user"] and "user_id" in spec.schema.fieldNames():
            metrics = optimizer.executeZOrderBy("user_id")
        else:
            metrics = optimizer.executeCompaction()
        table.vacuum(hours)
        m = metrics.first()["metrics"]
        out.append({"table": name, "files_added": m["numFilesAdded"], "files_removed": m["numFilesRemoved"]})
        log.info("maintained %s: %s", path, out[-1])
    return out


def current_version(spark: SparkSession, cfg: Mapping, name: str) -> int:
    """The newest Delta version of a registered table (creating it empty if it is new)."""
    from delta.tables import DeltaTable

    path = ensure_table(spark, table(name), lake_root(cfg))
    return int(DeltaTable.forPath(spark, path).history(1).first()["version"])


def hadoop_path(spark: SparkSession, path: str):
    """``(file system, Path)`` of ``path`` through Hadoop (a local folder, s3a://, abfss://, ...)."""
    target = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)
    return target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), target


def copy_tree(spark: SparkSession, source: str, target: str) -> None:
    """Copy a folder (a saved model) through Hadoop's file system, replacing ``target``."""
    (src_fs, src), (dst_fs, dst) = hadoop_path(spark, source), hadoop_path(spark, target)
    delete_path(spark, target)
    spark.sparkContext._jvm.org.apache.hadoop.fs.FileUtil.copy(
        src_fs, src, dst_fs, dst, False, spark.sparkContext._jsc.hadoopConfiguration())


def read_text(spark: SparkSession, path: str) -> str | None:
    """A small text file written by :func:`write_text`, or None when there is none."""
    fs, source = hadoop_path(spark, path)
    if not fs.exists(source):
        return None
    stream = fs.open(source)
    try:
        return spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


@contextmanager
def materialized(df: DataFrame, cfg: Mapping, name: str) -> Iterator[DataFrame]:
    """``df`` written once as Parquet to ``<lake>/_tmp/<name>`` and read back, persisted; the
    folder is removed on exit (and overwritten by the next use after a run that was killed).

    For a frame many queries start from (a hold-out's candidate features: the blend's fit, its
    search and the evaluation's models all rank the same rows). Persisting ``df`` itself keeps its
    plan: every later query carries the whole lineage of joins and windows (a task binary of
    10 MB per job on the demo's hold-out) and the queries on it ran twice as long as on the same
    rows read back from files, whose plan is one scan.
    """
    spark = df.sparkSession
    path = in_lake(cfg, f"{TMP_DIR}/{name}")
    df.write.mode("overwrite").parquet(path)
    out = spark.read.parquet(path).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        yield out
    finally:
        out.unpersist()
        delete_path(spark, path)


def delete_path(spark: SparkSession, path: str) -> None:
    """Remove a file or folder through Hadoop's file system (nothing when it is not there)."""
    fs, target = hadoop_path(spark, path)
    if fs.exists(target):
        fs.delete(target, True)


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write a small text file (a report, a JSON result) through Hadoop's file system, so that
    it lands next to the tables wherever the lake lives (local folder, s3a://, abfss://)."""
    fs, target = hadoop_path(spark, path)
    out = fs.create(target, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()
