"""Faults an operator or an attacker brings: concurrent runs, bad input, SQL that writes or reads
outside the lake, markup in the data (kills and resumes: tests/test_nightly.py, on a copy of the
shop night's lake). One test per probe of the reliability and security review; each failed on the
release before it."""
import datetime as dt
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from jobs.cli import main as cli_main
from jobs.common import delta_io
from jobs.common.config import load_config, with_values
from jobs.common.errors import InputError, RunLocked
from jobs.common.lock import RunLock
from jobs.common.runner import run_stage
from jobs.sample_data import FaultRates, SampleSpec
from jobs.validate import run as validate
from schemas.registry import table
from tests.conftest import cli_args, cli_env

DS = dt.date(2026, 6, 30)
SMALL = dict(users=30, items=30, days=3, seed=8)
# Lakes about the run's reliability, cut to what they test: no evaluation, and no sequence model
# (its stage still runs and records that it is off; tests/test_seqrec*.py and the shape nights train it)
QUICK = {"topics": {"k": 3, "max_iter": 10}, "eval": {"protocols": []}, "dq": {"validate_raw": False},
         "seqrec": {"enabled": False}}


def _events_file(folder: Path, lines: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / "part-00000.jsonl"
    f.write_bytes(b"\n".join(line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines) + b"\n")
    return folder


def _items(folder: Path, ids=("i1", "i2")) -> Path:
    return _events_file(folder, [{"item_id": i, "title": f"Title {i}"} for i in ids])


def _clean_cfg(lake_cfg, tmp_path, events: Path, items: Path, fmt="jsonl", **clean):
    return load_config(values={**lake_cfg, "input": {"format": fmt, "events_path": str(events), "items_path": str(items)},
                               "clean": {"window_days": 3, **clean}})


def _event(eid, user, item, ts="2026-06-30T10:00:00Z", etype="view", **extra):
    return {"event_id": eid, "user_id": user, "item_id": item, "event_type": etype, "ts": ts, **extra}


def _quarantine(spark, cfg):
    return {r["reason"]: r["n"] for r in delta_io.read_table(spark, cfg, "quarantine")
            .groupBy("reason").agg(F.count("*").alias("n")).collect()}


# ------------------------------------------------------------------------------ 1. recjobs sql
PROBES = [
    "DELETE FROM recommendations WHERE rank > 5",
    "UPDATE recommendations SET reason = 'x'",
    "DELETE FROM delta.`{lake}/items_clean`",
    "ALTER TABLE delta.`{lake}/runs` SET TBLPROPERTIES ('delta.appendOnly' = 'false')",
    "CREATE TABLE t USING delta LOCATION '{elsewhere}'",
    "INSERT OVERWRITE DIRECTORY '{elsewhere}' SELECT 1",
    "SELECT * FROM text.`/etc/hostname`",
    "SELECT java_method('java.lang.System', 'getenv', 'SECRET')",
    "SELECT reflect('java.lang.System', 'getenv', 'SECRET') FROM runs",
    "SELECT * FROM items_clean WHERE item_id IN (SELECT java_method('java.lang.System', 'getenv', 'SECRET'))",
    "SELECT * FROM read_files('/etc')",
    "SELECT * FROM spark_catalog.default.somewhere",
]


def test_sql_is_read_only_and_stays_inside_the_lake(spark, lake_cfg, tmp_path, capsys, monkeypatch):
    items = spark.createDataFrame([("i1", "T", None, None, 1.0, "d", ["a"], dt.datetime(2026, 6, 1), False, "f", "r", DS)],
                                  table("items_clean").schema)
    delta_io.overwrite(items, lake_cfg, "items_clean")
    delta_io.read_table(spark, lake_cfg, "runs")
    lake = lake_cfg["lake"]["root"]
    monkeypatch.setenv("SECRET", "s3cr3t-value")
    args = ["--set", f"lake.root={lake}"]
    for probe in PROBES:
        query = probe.format(lake=lake, elsewhere=tmp_path / "elsewhere")
        assert cli_main(["sql", query, *args]) == 2, query
        err = capsys.readouterr()
        assert "refused" in err.err and "s3cr3t-value" not in err.out + err.err, query
    assert delta_io.read_table(spark, lake_cfg, "items_clean").count() == 1
    props = spark.sql(f"SHOW TBLPROPERTIES delta.`{lake}/runs`").where("key = 'delta.appendOnly'").first()
    assert props["value"] == "true"
    assert not (tmp_path / "elsewhere").exists()
    # what it is for still works: a query over the views, with a CTE and a subquery
    good = ("WITH t AS (SELECT item_id, title FROM items_clean) "
            "SELECT title FROM t WHERE item_id IN (SELECT item_id FROM items_clean)")
    assert cli_main(["sql", good, *args]) == 0
    assert "T" in capsys.readouterr().out


# 2. resume after a killed --force, and 6. the gate, date by date: tests/test_nightly.py (on a copy
# of the shop night's lake)


# A small lake with its configuration file, and the nightly command over it (8. concurrent runs)
def _small_lake(make_lake, name, tiny_model_dir, **extra):
    made = make_lake(name, SampleSpec(**SMALL), {"encoder": {"model": tiny_model_dir}, **QUICK, **extra})
    conf = made.root / "conf.yaml"
    conf.write_text(yaml.safe_dump(made.values))
    return made, conf


# ---------------------------------------------------------------------- 3. an empty events folder
def test_an_empty_events_input_exits_2_unless_allowed(spark, lake_cfg, tmp_path):
    items = _items(tmp_path / "items")
    full = _events_file(tmp_path / "full", [_event("e1", "u1", "i1")])
    cfg = _clean_cfg(lake_cfg, tmp_path, full, items)
    run_stage(spark, cfg, "clean", DS, "run-1")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "part-00000.jsonl").write_text("\n")
    with pytest.raises(InputError, match=f"{empty}.*holds no events.*clean.allow_empty_input"):
        run_stage(spark, _clean_cfg(lake_cfg, tmp_path, empty, items), "clean", DS, "run-2")
    assert delta_io.read_table(spark, cfg, "events_clean").count() == 1          # the window is intact
    run_stage(spark, _clean_cfg(lake_cfg, tmp_path, empty, items, allow_empty_input=True), "clean", DS, "run-3")
    assert delta_io.read_table(spark, cfg, "events_clean").count() == 0          # a day without events


# --------------------------------------------------------------------------- 4. the CSV header
def test_csv_columns_are_mapped_by_header_name(spark, lake_cfg, tmp_path):
    items = tmp_path / "items"
    items.mkdir()
    (items / "items.csv").write_text("title,item_id\nTitle 1,i1\nTitle 2,i2\n")
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "a.csv").write_text("user_id,event_id,item_id,event_type,ts\n"
                                  "u1,e1,i1,view,2026-06-30T10:00:00Z\nu2,e2,i2,click,2026-06-30T11:00:00Z\n")
    # another file with the columns in yet another order
    (folder / "b.csv").write_text("ts,item_id,event_type,user_id,event_id,rating\n2026-06-30T12:00:00Z,i1,rate,u3,e3,4\n")
    cfg = _clean_cfg(lake_cfg, tmp_path, folder, items, fmt="csv")
    summary = run_stage(spark, cfg, "clean", DS, "run-csv")
    assert summary["events"]["clean"] == 3 and summary["events"]["identity_holds"]
    got = {r["event_id"]: (r["user_id"], r["item_id"], r["rating"])
           for r in delta_io.read_table(spark, cfg, "events_clean").collect()}
    assert got == {"e1": ("u1", "i1", None), "e2": ("u2", "i2", None), "e3": ("u3", "i1", 4.0)}
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "c.csv").write_text("user,item_id,event_type,ts\nu1,i1,view,2026-06-30T10:00:00Z\n")
    with pytest.raises(InputError, match=r"c\.csv.*lacks the required column\(s\) user_id"):
        run_stage(spark, _clean_cfg(lake_cfg, tmp_path, bad, items, fmt="csv"), "clean", DS, "run-bad")


# ------------------------------------------------------------------------------ 5. JSON id types
def test_json_ids_must_be_strings_or_integers(spark, lake_cfg, tmp_path):
    items = _items(tmp_path / "items", ("i1", "7"))
    events = _events_file(tmp_path / "events", [
        _event("e1", "u1", "i1"), _event(2, 42, 7), _event("e3", True, "i1"), _event("e4", {"a": 1}, "i1"),
        _event("e5", ["u"], "i1"), _event("e6", 1.5, "i1"), _event("e7", "u7", False)])
    cfg = _clean_cfg(lake_cfg, tmp_path, events, items)
    summary = run_stage(spark, cfg, "clean", DS, "run-ids")
    kept = {r["event_id"]: (r["user_id"], r["item_id"]) for r in delta_io.read_table(spark, cfg, "events_clean").collect()}
    assert kept == {"e1": ("u1", "i1"), "2": ("42", "7")}          # integers become their decimal strings
    assert summary["events"]["by_reason"] == {"invalid_id_type": 5} and summary["events"]["identity_holds"]


# -------------------------------------------------------------------- 7. markup in the Data Docs
def test_data_docs_escape_field_values(spark, lake_cfg, tmp_path):
    planted = "<script>alert('dq')</script>"
    items = _items(tmp_path / "items")
    events = _events_file(tmp_path / "events", [_event("e1", "u1", "i1"), _event("e2", "u2", "i1", etype=planted),
                                                _event("e2", "u2", "i2")])
    cfg = load_config(values={**_clean_cfg(lake_cfg, tmp_path, events, items), "dq": {"docs_dir": str(tmp_path / "dq")}})
    run_stage(spark, cfg, "clean", DS, "run-xss")
    validate(spark, cfg, DS, "run-xss", suites=["raw_events", "events_clean"])
    pages = [p for p in (tmp_path / "dq").rglob("*.html")]
    assert pages
    text = "\n".join(p.read_text(errors="replace") for p in pages)
    assert "alert(" in text                          # the value is shown ...
    assert planted not in text                       # ... but never as markup


# ----------------------------------------------------------------- 8. concurrent runs of one date
def test_tables_are_created_once_when_runs_race(spark, lake_cfg):
    errors = []

    def create():
        try:
            delta_io.ensure_table(spark, table("runs"), delta_io.lake_root(lake_cfg))
        except Exception as exc:  # noqa: BLE001 - the test collects what a racing creation raises
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert delta_io.read_table(spark, lake_cfg, "runs").count() == 0


def test_one_date_has_one_run_at_a_time(spark, lake_cfg, make_lake, tiny_model_dir):
    outcomes = []

    def take(run_id):
        try:
            outcomes.append(RunLock(spark, lake_cfg, DS, run_id, 120).acquire().run_id)
        except RunLocked:
            outcomes.append("locked")

    threads = [threading.Thread(target=take, args=(f"run-{i}",)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(outcomes).count("locked") == 2 and len(outcomes) == 3
    # a nightly of the same date in another process waits for its turn: exit 4, one line, no traceback
    made, conf = _small_lake(make_lake, "locked", tiny_model_dir)
    holder = RunLock(spark, made.cfg, DS, "run-holder", 120).acquire()
    out = subprocess.run(cli_args("nightly", "--date", DS, "--conf", conf), capture_output=True, text=True,
                         timeout=600, env=cli_env())
    assert out.returncode == 4, out.stderr[-2000:]
    assert "run-holder" in out.stderr and "try again later" in out.stderr and "Traceback" not in out.stderr
    holder.release()
    assert RunLock(spark, made.cfg, DS, "run-next", 120).acquire().run_id == "run-next"


def test_the_heartbeat_is_renewed_once_a_tenth_of_the_timeout_has_passed(spark, lake_cfg):
    day = dt.date(2026, 5, 1)
    lock = RunLock(spark, lake_cfg, day, "run-beat", 120).acquire()

    def written():
        return delta_io.read_table(spark, lake_cfg, "run_locks").where(F.col("ds") == F.lit(day)).first()["heartbeat_at"]

    taken = written()
    assert lock.heartbeat() is False and written() == taken        # 12 minutes have not passed
    assert lock.heartbeat(force=True) is True and written() > taken
    lock.timeout_minutes = 0.001                                   # a tenth: 6 ms
    time.sleep(0.05)
    before = written()
    assert lock.heartbeat() is True and written() > before
    lock.release()


# ----------------------------------------------------------------- 9. wrong-typed Parquet input
def test_a_wrong_typed_parquet_column_exits_2_before_anything_is_written(spark, lake_cfg, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "items").mkdir()
    pq.write_table(pa.table({"item_id": ["i1"], "title": ["T"]}), tmp_path / "items" / "items.parquet")
    (tmp_path / "events").mkdir()
    pq.write_table(pa.table({"user_id": ["u1"], "item_id": ["i1"], "event_type": ["rate"],
                             "ts": ["2026-06-30T10:00:00Z"], "rating": ["five"]}), tmp_path / "events" / "bad.parquet")
    cfg = _clean_cfg(lake_cfg, tmp_path, tmp_path / "events", tmp_path / "items", fmt="parquet")
    with pytest.raises(InputError, match=r"bad\.parquet: column rating is string"):
        run_stage(spark, cfg, "clean", DS, "run-pq")
    assert not (Path(delta_io.table_path(cfg, "items_clean")) / "_delta_log").exists()   # nothing merged
    # integer ids and timestamps convert
    pq.write_table(pa.table({"user_id": pa.array([5], pa.int64()), "item_id": ["i1"], "event_type": ["view"],
                             "ts": pa.array([dt.datetime(2026, 6, 30, 10)], pa.timestamp("us"))}),
                   tmp_path / "events" / "bad.parquet")
    summary = run_stage(spark, cfg, "clean", DS, "run-pq2")
    assert summary["events"]["clean"] == 1
    assert delta_io.read_table(spark, cfg, "events_clean").first()["user_id"] == "5"


# ------------------------------------------------------------------------- 10. very long texts
def test_a_text_of_any_length_is_cut_and_flagged(spark, lake_cfg, tmp_path):
    items = _items(tmp_path / "items")
    events = _events_file(tmp_path / "events", [_event("e1", "u1", "i1", etype="review", rating=4.0,
                                                       review_text="good " * 4_200_000)])   # 21M characters
    cfg = _clean_cfg(lake_cfg, tmp_path, events, items)
    summary = run_stage(spark, cfg, "clean", DS, "run-long")
    assert summary["events"]["by_reason"] == {}
    row = delta_io.read_table(spark, cfg, "events_clean").first()
    assert row["text_truncated"] and len(row["review_text"]) == cfg["clean"]["max_text_length"]


# ------------------------------------------------------------- 11. quarantine readable everywhere
def test_the_quarantine_opens_without_spark_and_keeps_the_original_bytes(spark, lake_cfg, tmp_path):
    from deltalake import DeltaTable

    items = _items(tmp_path / "items")
    broken = b'{"event_id": "e2", "user_id": "u\xff\xfe2", "item_id": "i1", "event_type": "view", "ts": "2026-06-30T10:00:00Z"}'
    events = _events_file(tmp_path / "events", [_event("e1", "u1", "i1"), broken])
    cfg = _clean_cfg(lake_cfg, tmp_path, events, items)
    run_stage(spark, cfg, "clean", DS, "run-utf8")
    rows = DeltaTable(delta_io.table_path(cfg, "quarantine")).to_pandas()
    (row,) = rows.to_dict("records")
    assert row["reason"] == "invalid_utf8" and "u\\xff\\xfe2" in row["raw_record"]
    assert bytes(row["raw_bytes"]) == broken


# ----------------------------------------------------------------------- 12. large epoch numbers
def test_epoch_numbers_are_told_apart_by_magnitude(spark, lake_cfg, tmp_path):
    items = _items(tmp_path / "items")
    ten = dt.datetime(2026, 6, 30, 10, tzinfo=dt.timezone.utc)
    events = _events_file(tmp_path / "events", [
        _event("s", "u1", "i1", ts=int(ten.timestamp())), _event("ms", "u1", "i1", ts=int(ten.timestamp() * 1e3)),
        _event("us", "u1", "i1", ts=int(ten.timestamp() * 1e6)), _event("ns", "u1", "i1", ts=str(int(ten.timestamp()) * 10**9)),
        _event("far", "u1", "i1", ts=100_000_000_000)])                 # 1e11 seconds: the year 5138
    cfg = _clean_cfg(lake_cfg, tmp_path, events, items)
    summary = run_stage(spark, cfg, "clean", DS, "run-epoch")
    assert summary["events"]["by_reason"] == {"future_timestamp": 1}
    got = {r["event_id"]: r["event_ts"] for r in delta_io.read_table(spark, cfg, "events_clean").collect()}
    assert set(got.values()) == {ten.replace(tzinfo=None)} and set(got) == {"s", "ms", "us", "ns"}


# ------------------------------------------------------------------------ 13. a moved lake's models
@pytest.fixture(scope="module")
def lda_lakes(spark, make_lake):
    """Two lakes cleaned and fitted (LDA) from the same sample."""
    spec = SampleSpec(**SMALL, faults=FaultRates.none())
    lakes = [make_lake(f"lda{i}", spec, QUICK) for i in range(2)]
    for made in lakes:
        for stage in ("clean", "build_sequences", "fit_topics"):
            run_stage(spark, made.cfg, stage, DS, "run-1")
    return lakes


def test_a_copied_lake_loads_its_own_topic_model(spark, lda_lakes, tmp_path):
    made = lda_lakes[0]
    stored = delta_io.read_table(spark, made.cfg, "topic_models").first()["path"]
    assert stored == f"_models/lda/{DS.isoformat()}"                  # relative to the lake root
    original, copy = Path(made.cfg["lake"]["root"]), tmp_path / "copy"
    shutil.copytree(original, copy)
    # the original's model is gone while the copy fits (put back after: the lake is shared)
    shutil.move(original / "_models", tmp_path / "models-aside")
    try:
        moved = with_values(made.cfg, {"lake.root": str(copy)})
        summary = run_stage(spark, moved, "fit_topics", DS + dt.timedelta(days=1), "run-2")
    finally:
        shutil.move(tmp_path / "models-aside", original / "_models")
    assert summary["refit"] is False and summary["model_path"].startswith(str(copy))


def test_two_lakes_with_the_same_input_fit_the_same_topics(spark, lda_lakes):
    topics = [{r["item_id"]: r["distribution"] for r in delta_io.read_table(spark, made.cfg, "item_topics").collect()}
              for made in lda_lakes]
    assert topics[0] == topics[1] and len(topics[0]) > 10
