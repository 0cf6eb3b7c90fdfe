"""The whole nightly on every sample shape (shop, ratings, reviews), run as a user would run it:
with the settings the shape suggests (``recjobs.yaml`` of ``recjobs sample-data``)."""
import json
from collections import Counter

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from jobs.common import delta_io
from schemas import columns as c

SHAPES = ("shop", "ratings", "reviews")


@pytest.fixture(scope="module", params=SHAPES)
def night(request, shape_night):
    return shape_night(request.param)


def _recs(spark, cfg, ds):
    return delta_io.read_table(spark, cfg, "recommendations").where(F.col("ds") == F.lit(ds))


def test_the_nightly_succeeds_and_publishes(night):
    assert night.out["exit_code"] == 0, night.out["error"]
    assert night.out["results"]["publish"]["rows"] > 0


def test_every_user_gets_a_list_and_every_user_with_history_a_personal_one(spark, night):
    cfg, ds = night.cfg, night.ds
    recs = _recs(spark, cfg, ds)
    known = delta_io.read_table(spark, cfg, "events_clean").where(F.col("event_date") <= F.lit(ds)) \
        .select("user_id").distinct()
    listed = recs.select("user_id").distinct()
    assert known.count() > 20
    assert known.join(listed, "user_id", "left_anti").count() == 0            # nobody without a list
    # a user nobody knows gets the default list: the most popular items
    default = [r["item_id"] for r in recs.where(F.col("user_id") == c.DEFAULT_USER).orderBy("rank").collect()]
    assert len(default) == cfg["rank"]["top_n"]
    # everyone with history gets a list of their own, not the default one
    lists = recs.where(F.col("user_id") != c.DEFAULT_USER).groupBy("user_id") \
        .agg(F.sort_array(F.collect_list("item_id")).alias("items"))
    assert lists.where(F.col("items") == F.array_sort(F.array(*[F.lit(i) for i in default]))).count() == 0
    kinds = Counter(r["reason_kind"] for r in recs.where(F.col("user_id") != c.DEFAULT_USER).collect())
    assert sum(n for k, n in kinds.items() if k != "popularity") > 0, kinds


def test_users_quiet_for_longer_than_the_window_keep_their_profile(spark, night):
    cfg, ds = night.cfg, night.ds
    summary = night.out["results"]["build_sequences"]
    users = delta_io.read_table(spark, cfg, "events_clean").where(F.col("event_date") <= F.lit(ds)) \
        .select("user_id").distinct().count()
    assert summary["users"] == users            # the long window (and carrying forward) keeps everyone


def test_no_excluded_item_is_recommended(spark, night):
    cfg, ds = night.cfg, night.ds
    consumed = delta_io.read_table(spark, cfg, "events_clean").where(
        (F.col("event_date") <= F.lit(ds)) & F.col("event_type").isin(cfg["rank"]["exclude_types"]))
    assert consumed.count() > 0                 # the check has something to find
    assert _recs(spark, cfg, ds).join(consumed.select("user_id", "item_id"), ["user_id", "item_id"]).count() == 0
    negative = delta_io.read_table(spark, cfg, "user_item_sentiment").where(
        (F.col("ds") == F.lit(ds)) & (F.col("score") <= cfg["sentiment"]["negative_threshold"]))
    assert _recs(spark, cfg, ds).join(negative.select("user_id", "item_id"), ["user_id", "item_id"]).count() == 0


def test_planted_bots_are_quarantined_and_no_real_user_is(spark, night):
    cfg, truth = night.cfg, night.lake.truth
    rows = delta_io.read_table(spark, cfg, "quarantine").where("reason = 'bot_user'").select("raw_record").collect()
    users = {json.loads(r["raw_record"])["user_id"] for r in rows}
    assert users == set(truth["fault_ids"]["bot_users"])
    bots = night.out["results"]["clean"]["bots"]
    assert bots["users"] == len(users) and bots["events"] == len(rows) == truth["faults"]["events"]["bot_user"]


def _files(path):
    """The table's live data files, one row each, with their partition values."""
    return pa.table(DeltaTable(path).get_add_actions(flatten=True)).to_pandas()


def test_one_night_writes_at_most_two_files_per_partition(spark, night):
    cfg = night.cfg
    actions = _files(delta_io.table_path(cfg, "events_clean"))
    per_partition = actions.groupby("partition.event_date").size()
    assert len(per_partition) >= min(night.lake.truth["days"], 5)
    assert per_partition.max() <= 2, per_partition.sort_values().tail()
    recs = _files(delta_io.table_path(cfg, "recommendations"))
    assert recs.groupby("partition.ds").size().max() <= 2


def test_the_evaluation_covers_leave_last_out(spark, night):
    cfg, ds = night.cfg, night.ds
    ndcg = {r["model"]: r["value"] for r in delta_io.read_table(spark, cfg, "metrics")
            .where((F.col("ds") == F.lit(ds)) & (F.col("protocol") == "leave_last_out") & (F.col("metric") == "ndcg")
                   & (F.col("k") == 10)).collect()}
    assert set(ndcg) == {"blend", "blend_fixed", "popularity", "ease", "seqrec"}


def test_the_sequence_model_is_trained_and_scores_every_user_with_history(spark, night):
    cfg, ds = night.cfg, night.ds
    on = F.col("ds") == F.lit(ds)
    model = delta_io.read_table(spark, cfg, "sequence_models").where(on).collect()
    assert len(model) == 1 and model[0]["mode"] == "full" and model[0]["epochs"] >= 1
    assert 0.0 <= model[0]["validation_ndcg"] <= 1.0 and model[0]["training_positions"] > 0
    assert (night.lake.root / "lake" / model[0]["path"] / "model.pt").exists()
    users = delta_io.read_table(spark, cfg, "sequence_user_vectors").where(on)
    items = delta_io.read_table(spark, cfg, "sequence_item_vectors").where(on)
    sequences = delta_io.read_table(spark, cfg, "user_sequences").where(on)
    # every user with an event in the window has a vector (carried-forward users fall back)
    fresh = sequences.where(F.col("profile_ds") == F.lit(ds)).select(c.USER_ID)
    assert fresh.join(users, c.USER_ID, "left_anti").count() == 0
    assert users.where(F.col("anchor_item").isNull()).count() == 0
    assert items.count() == model[0]["items"]
    recs = _recs(spark, cfg, ds).where(F.col(c.USER_ID) != c.DEFAULT_USER)
    scored = recs.where(F.col("components.sequence").isNotNull()).select(c.USER_ID).distinct()
    assert scored.count() == recs.select(c.USER_ID).distinct().join(users, c.USER_ID).count() > 0
    # its reasons name an item of the user's own history
    because = recs.where(F.col("reason_kind") == "sequence").join(users, c.USER_ID).collect()
    for row in because:
        assert row["reason"].startswith("because you ")

