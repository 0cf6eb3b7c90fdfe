"""Delta writes across releases: a table created by an older release of the registry gains the
columns and struct fields added since on its next write, whichever way it is written."""
import datetime as dt

from pyspark.sql.types import StructField, StructType

from jobs.common import delta_io
from schemas.registry import table


def test_a_table_written_by_an_older_release_gains_the_new_fields_on_the_next_write(spark, lake_cfg):
    schema = table("recommendations_staging").schema
    old_parts = StructType([f for f in schema["components"].dataType.fields if f.name not in ("engagement", "category_affinity")])
    old = StructType([StructField(f.name, old_parts, f.nullable) if f.name == "components" else f
                      for f in schema.fields if f.name != "reason_kind"])     # as if both came later
    day1, day2 = dt.date(2026, 6, 1), dt.date(2026, 6, 2)
    parts = {"semantic": 0.9, "topic": 0.1, "sentiment": 0.0, "rule": None, "popularity": 1.0}
    spark.createDataFrame([(d, "u1", 1, "i1", 1.0, parts, "r", "v0", "run-0") for d in (day1, day2)], old) \
        .write.format("delta").partitionBy("ds").save(delta_io.table_path(lake_cfg, "recommendations_staging"))
    new = spark.createDataFrame([(day2, "u1", 1, "i2", 2.0, {**parts, "engagement": 0.5, "category_affinity": 0.25},
                                  "r", "engagement", "v1", "run-1")], schema)
    delta_io.replace_where(new, lake_cfg, "recommendations_staging", f"ds = DATE'{day2}'")
    rows = {r["ds"]: r for r in delta_io.read_table(spark, lake_cfg, "recommendations_staging").collect()}
    assert rows[day2]["item_id"] == "i2" and rows[day2]["components"]["engagement"] == 0.5
    assert rows[day2]["reason_kind"] == "engagement"
    assert rows[day1]["item_id"] == "i1" and rows[day1]["components"]["engagement"] is None   # older rows: NULL
    assert rows[day1]["reason_kind"] is None


def test_an_upsert_into_a_table_of_an_older_release_adds_the_new_column(spark, lake_cfg):
    schema = table("items_clean").schema
    old = StructType([f for f in schema.fields if f.name != "brand"])     # as if brand came later
    t0, t1 = dt.datetime(2026, 6, 1, 8), dt.datetime(2026, 6, 2, 8)
    day1, day2 = dt.date(2026, 6, 1), dt.date(2026, 6, 2)
    row = lambda iid, title, ts, ds, run, **extra: {  # noqa: E731
        "item_id": iid, "title": title, "category": "Books", "price": 9.5, "description": "d", "tags": ["a"],
        "updated_at": ts, "text_truncated": False, "source_file": "f", "run_id": run, "ds": ds, **extra}
    spark.createDataFrame([row("i0", "kept", t0, day1, "run-0"), row("i1", "old title", t0, day1, "run-0")], old) \
        .write.format("delta").save(delta_io.table_path(lake_cfg, "items_clean"))
    new = spark.createDataFrame([row("i1", "new title", t1, day2, "run-1", brand="Quill"),
                                 row("i2", "added", t1, day2, "run-1", brand="Penrose")], schema)
    delta_io.merge_latest(new, lake_cfg, "items_clean", "item_id", "updated_at")
    got = delta_io.read_table(spark, lake_cfg, "items_clean")
    assert "brand" in got.columns
    rows = {r["item_id"]: (r["title"], r["brand"]) for r in got.collect()}
    assert rows == {"i0": ("kept", None), "i1": ("new title", "Quill"), "i2": ("added", "Penrose")}


def test_a_table_removed_after_it_was_ensured_is_created_again(spark, lake_cfg):
    import shutil

    path = delta_io.ensure_table(spark, table("runs"), delta_io.lake_root(lake_cfg))
    assert path in delta_io._ENSURED and delta_io.read_table(spark, lake_cfg, "runs").count() == 0
    shutil.rmtree(path)                  # the process still remembers it
    assert delta_io.read_table(spark, lake_cfg, "runs").count() == 0
    assert delta_io.current_version(spark, lake_cfg, "runs") == 0


def test_releasing_the_logs_drops_the_cached_log_and_reads_the_table_afresh(spark, lake_cfg):
    delta_io.read_table(spark, lake_cfg, "runs")
    path = delta_io.table_path(lake_cfg, "runs")
    delta_log = spark.sparkContext._jvm.org.apache.spark.sql.delta.DeltaLog

    def log():
        return delta_log.forTable(spark._jsparkSession, path)

    cached = log()
    assert cached.equals(log())                       # Delta keeps the table's log in-process
    delta_io.release_logs(spark)
    assert not cached.equals(log())                   # released: a new log, read from the files
    assert delta_io.read_table(spark, lake_cfg, "runs").count() == 0


def _read_runs(spark, cfg, *args):
    return delta_io.read_table(spark, cfg, "runs").count()


def test_a_stage_releases_the_logs_it_cached_when_it_ends(spark, lake_cfg, monkeypatch):
    from jobs import stages

    monkeypatch.setitem(stages.STAGES, "read_runs", f"{__name__}:_read_runs")
    assert stages.stage_function("read_runs")(spark, lake_cfg) == 0
    delta_log = spark.sparkContext._jvm.org.apache.spark.sql.delta.DeltaLog
    path = delta_io.table_path(lake_cfg, "runs")
    first = delta_log.forTable(spark._jsparkSession, path)
    assert first.equals(delta_log.forTable(spark._jsparkSession, path))
    assert stages.stage_function("read_runs")(spark, lake_cfg) == 0
    assert not first.equals(delta_log.forTable(spark._jsparkSession, path))   # released at the stage's end


def test_a_materialized_frame_holds_the_same_rows_on_a_plan_of_one_scan_and_leaves_no_files(spark, lake_cfg):
    from pathlib import Path

    from pyspark.sql import functions as F
    from pyspark.testing import assertDataFrameEqual

    users = spark.createDataFrame([(f"u{i}", i % 3) for i in range(30)], "user_id string, g int")
    items = spark.createDataFrame([(g, f"i{g}{j}", float(j)) for g in range(3) for j in range(4)],
                                  "g int, item_id string, score double")
    deep = users.join(items, "g").groupBy("user_id").agg(F.sum("score").alias("total"),
                                                         F.map_from_entries(F.collect_list(F.struct("item_id", "score")))
                                                         .alias("scores"))
    folder = Path(delta_io.lake_root(lake_cfg)) / delta_io.TMP_DIR / "deep"
    folder.mkdir(parents=True)
    (folder / "part-left-by-a-killed-run.parquet").write_text("not parquet")     # overwritten, not read
    with delta_io.materialized(deep, lake_cfg, "deep") as written:
        assertDataFrameEqual(written, deep, checkRowOrder=False)
        plan = written._jdf.queryExecution().optimizedPlan().toString()
        assert "Join" not in plan and "Aggregate" not in plan
        assert written.where(F.col("total") > 0).count() == 30
    assert not folder.exists()
