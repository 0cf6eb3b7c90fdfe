"""The clean stage end to end on generated data with planted faults."""
import json
from collections import Counter

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.common import delta_io
from jobs.common.config import load_config
from jobs.common.runner import run_stage
from jobs.sample_data import SampleSpec, generate

SPEC = SampleSpec(users=150, items=120, days=5, seed=11)


def _cfg(lake_cfg, sample, fmt="jsonl"):
    return load_config(values={**lake_cfg, "input": {"format": fmt, "events_path": str(sample / "events"),
                                                     "items_path": str(sample / "items")},
                               "clean": {"window_days": SPEC.days}})


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    truth = generate(out, SPEC)
    return out, truth


def _expected_reasons(truth, source):
    expected = Counter()
    for kind, n in truth["faults"][source].items():
        reason = truth["expected_reason"].get(kind)
        if reason:
            expected[reason] += n
    return dict(expected)


def test_clean_reconciles_and_quarantines_every_planted_fault(spark, lake_cfg, sample):
    out, truth = sample
    cfg = _cfg(lake_cfg, out)
    summary = run_stage(spark, cfg, "clean", SPEC.end_date, "run-1")

    raw_lines = [l for l in (out / "events" / "part-00000.jsonl").read_bytes().split(b"\n") if l.strip()]
    ev = summary["events"]
    assert ev["raw"] == len(raw_lines) == truth["raw_event_rows"]
    assert ev["identity_holds"] and summary["items"]["identity_holds"]

    clean = delta_io.read_table(spark, cfg, "events_clean")
    quarantine = delta_io.read_table(spark, cfg, "quarantine")
    # the identity from the tables themselves, not from the stage's own counters
    q_events = quarantine.where("source = 'events'").count()
    assert clean.count() + q_events + ev["duplicates_removed"] == len(raw_lines)
    assert ev["duplicates_removed"] == (truth["faults"]["events"]["duplicate_event"]
                                        + truth["faults"]["events"]["duplicate_no_event_id"])
    # each planted fault lands in quarantine under its own reason, exactly as often as planted
    got = {r["reason"]: r["count"] for r in
           quarantine.where("source = 'events'").groupBy("reason").count().collect()}
    assert got == _expected_reasons(truth, "events")
    got_items = {r["reason"]: r["count"] for r in
                 quarantine.where("source = 'items'").groupBy("reason").count().collect()}
    assert got_items == _expected_reasons(truth, "items")
    assert quarantine.where("raw_record IS NULL OR source_file IS NULL").count() == 0

    assert clean.groupBy("event_id").count().where("count > 1").count() == 0
    bots = truth["fault_ids"]["bot_users"]
    assert clean.where(F.col("user_id").isin(bots)).count() == 0
    # valid-but-awkward text survives: emoji kept, long text cut and flagged
    assert clean.where(F.col("review_text").rlike("[\\x{1F300}-\\x{1FAFF}]")).count() > 0
    long_ids = truth["fault_ids"]["events.long_text"]
    cut = clean.where(F.col("event_id").isin(long_ids))
    assert cut.count() == len(long_ids)
    assert cut.where("text_truncated AND length(review_text) = 2000").count() == len(long_ids)
    # the newest version of an updated item wins the MERGE
    items = delta_io.read_table(spark, cfg, "items_clean")
    updated = truth["fault_ids"]["items.item_update"]
    assert items.where(F.col("item_id").isin(updated) & F.col("title").endswith("(2nd edition)")).count() == len(updated)
    assert items.groupBy("item_id").count().where("count > 1").count() == 0

    runs = delta_io.read_table(spark, cfg, "runs").where("stage = 'clean'").collect()
    assert [r["status"] for r in runs] == ["succeeded"]
    details = json.loads(runs[0]["details"])
    assert details["events"]["identity_holds"] is True and details["events"]["raw"] == len(raw_lines)


def test_clean_twice_leaves_identical_tables(spark, lake_cfg, sample):
    out, _ = sample
    cfg = _cfg(lake_cfg, out)
    volatile = ["run_id", "quarantined_at"]
    run_stage(spark, cfg, "clean", SPEC.end_date, "run-a")
    first = {n: delta_io.read_table(spark, cfg, n).drop(*volatile).localCheckpoint()
             for n in ("events_clean", "items_clean", "quarantine")}
    run_stage(spark, cfg, "clean", SPEC.end_date, "run-b")
    for name, before in first.items():
        after = delta_io.read_table(spark, cfg, name).drop(*volatile)
        assert after.count() == before.count() > 0, name
        assertDataFrameEqual(after, before, checkRowOrder=False)
    hist = delta_io.history(spark, cfg, "events_clean").orderBy("version").collect()
    writes = [h for h in hist if h["operation"] == "WRITE"]
    assert len(writes) == 2
    assert all(h["operationParameters"]["mode"] == "Overwrite" for h in writes)
    assert "event_date" in writes[-1]["operationParameters"].get("predicate", "")
    assert delta_io.read_table(spark, cfg, "events_clean", version=writes[0]["version"]).count() == \
        first["events_clean"].count()


def test_clean_reads_csv_with_the_same_outcome(spark, lake_cfg, tmp_path):
    spec = SampleSpec(users=40, items=36, days=2, seed=5, fmt="csv")
    truth = generate(tmp_path / "csv", spec)
    cfg = load_config(values={**lake_cfg, "input": {"format": "csv", "events_path": str(tmp_path / "csv" / "events"),
                                                    "items_path": str(tmp_path / "csv" / "items")},
                              "clean": {"window_days": spec.days}})
    summary = run_stage(spark, cfg, "clean", spec.end_date, "run-csv")
    assert summary["events"]["raw"] == truth["raw_event_rows"]
    assert summary["events"]["identity_holds"]
    assert summary["events"]["by_reason"] == _expected_reasons(truth, "events")
