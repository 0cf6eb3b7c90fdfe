"""The learned blend: fitted from each night's own hold-out, recorded, used, and never below its best
single component; its hold-out never sees what it is labelled with; falling back in order."""
import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.config import with_values
from jobs.evaluation import evaluation_half, split
from jobs.rank_topn import blend_for
from schemas.components import names

SHAPES = ("shop", "ratings", "reviews")


@pytest.fixture(scope="module", params=SHAPES)
def night(request, shape_night):
    return shape_night(request.param)


def _fit(spark, night):
    rows = delta_io.read_table(spark, night.cfg, "ranker_models").where(F.col("ds") == F.lit(night.ds)).collect()
    assert len(rows) == 1
    return rows[0]


def test_the_night_ranks_with_the_blend_it_recorded(spark, night):
    assert night.out["exit_code"] == 0, night.out["error"]
    fit = _fit(spark, night)
    blend = night.out["results"]["rank_topn"]["blend"]
    assert blend["source"] == "learned" and blend["model_ds"] == night.ds.isoformat()
    assert blend["weights"] == pytest.approx(dict(fit["weights"])) and set(fit["weights"]) == set(names())
    versions = {r["model_version"] for r in delta_io.read_table(spark, night.cfg, "recommendations")
                .where(F.col("ds") == F.lit(night.ds)).select("model_version").distinct().collect()}
    assert versions == {f"blend-v1/learned-{night.ds.isoformat()}"}
    # what ranked tonight is what was chosen: the fitted weights, the fixed ones or one component
    if fit["chosen"] == "learned":
        assert dict(fit["weights"]) == pytest.approx(dict(fit["learned_weights"]))
    elif fit["chosen"] == "searched":
        assert dict(fit["weights"]) == pytest.approx(json.loads(fit["details"])["search"]["weights"])
    elif fit["chosen"].startswith("single:"):
        one = fit["chosen"].split(":", 1)[1]
        assert {k for k, v in fit["weights"].items() if v} == {one}
    assert set(fit["half_lives"]) == {"engagement", "popularity"}


def test_the_learned_blend_is_never_below_its_best_single_component(spark, night):
    fit = _fit(spark, night)
    # the fit learns from half of a night's 60 users, and every one of them judges the choice
    # (cross-fitting): at least rank.min_labels of them
    assert fit["validation_users"] >= night.cfg["rank"]["min_labels"] and fit["positives"] >= 5
    assert fit["validation_ndcg"] >= fit["best_single_ndcg"] - 1e-12
    assert fit["validation_ndcg"] >= fit["fixed_ndcg"] - 1e-12


def test_the_hold_out_never_sees_what_it_is_labelled_with(spark, night):
    cfg, ds = night.cfg, night.ds
    events = delta_io.read_table(spark, cfg, "events_clean")
    _, held, _ = split(events, cfg["rank"]["train_protocol"], ds, cfg["eval"]["relevant_types"])
    cut = held.select("user_id", F.col("event_ts").alias("cut_ts"))
    lake = with_values(cfg, {"lake.root": f"{delta_io.lake_root(cfg)}/_holdout/{cfg['rank']['train_protocol']}"})
    train = delta_io.read_table(spark, lake, "events_clean")
    assert train.count() > 0
    assert train.join(cut, "user_id").where(F.col("event_ts") >= F.col("cut_ts")).count() == 0
    seq = (delta_io.read_table(spark, lake, "user_sequences").where(F.col("ds") == F.lit(ds))
           .select("user_id", F.explode("events").alias("e")).select("user_id", "e.event_ts"))
    assert seq.join(cut, "user_id").where(F.col("event_ts") >= F.col("cut_ts")).count() == 0


def test_a_rating_site_gets_no_weight_on_returning_to_what_was_seen(spark, shape_night):
    fit = _fit(spark, shape_night("ratings"))
    fixed = shape_night("ratings").cfg
    from jobs.common.settings import RankSettings

    fixed_engagement = RankSettings.from_config(fixed).weights["engagement"]
    assert fit["weights"]["engagement"] <= 0.1 * fixed_engagement


def test_too_few_labels_fall_back_to_the_newest_fit_then_to_the_fixed_weights(spark, shape_night, tmp_path):
    night = shape_night("shop")
    starved = with_values(night.cfg, {"rank.min_labels": 10**6})
    later = night.ds + dt.timedelta(days=3)
    blend = blend_for(spark, starved, later, "run-fallback")
    assert blend["source"] == "fallback_last" and blend["model_ds"] == night.ds.isoformat()
    assert "rank.min_labels" in blend["why"]
    empty = with_values(starved, {"lake.root": str(tmp_path / "lake")})
    delta_io.overwrite(delta_io.read_table(spark, night.cfg, "events_clean"), empty, "events_clean")
    blend = blend_for(spark, empty, night.ds, "run-fallback")
    assert blend["source"] == "fallback_fixed" and blend["model_ds"] is None
    from jobs.common.settings import RankSettings

    assert blend["weights"] == RankSettings.from_config(night.cfg).weights
    fixed = blend_for(spark, with_values(night.cfg, {"rank.model": "fixed"}), night.ds, "run-fixed")
    assert fixed["source"] == "fixed"


def test_the_evaluation_puts_the_learned_blend_next_to_the_fixed_one(spark, night):
    ndcg = {r["model"]: r["value"] for r in delta_io.read_table(spark, night.cfg, "metrics")
            .where((F.col("ds") == F.lit(night.ds)) & (F.col("protocol") == "leave_last_out")
                   & (F.col("metric") == "ndcg") & (F.col("k") == 10)).collect()}
    assert {"blend", "blend_fixed"} <= set(ndcg)
    llo = night.out["results"]["evaluate"]["protocols"]["leave_last_out"]
    # the night's own blend, learned without the evaluation half's held-out events, scores that half
    assert llo["blend"]["source"] == "night"
    fit = _fit(spark, night)
    assert json.loads(fit["details"])["reserved"] == {"evaluation_half_seed": night.cfg["eval"]["seed"]}
    assert llo["blend"]["weights"] == pytest.approx(dict(fit["weights"]))
    events = delta_io.read_table(spark, night.cfg, "events_clean")
    _, held, _ = split(events, "leave_last_out", night.ds, night.cfg["eval"]["relevant_types"])
    half = held.where(evaluation_half(night.cfg["eval"]["seed"])).select("user_id").distinct().count()
    assert llo["held_out_users"] == held.select("user_id").distinct().count() and llo["users"] == half
    assert 0.35 < half / llo["held_out_users"] < 0.65


def test_a_rerun_of_the_date_gives_the_same_recommendations(spark, shape_night):
    from pyspark.testing import assertDataFrameEqual

    from jobs.common.runner import run_stage

    night = shape_night("shop")
    cols = ["user_id", "rank", "item_id", "score", "reason", "model_version"]

    def staged():
        return (delta_io.read_table(spark, night.cfg, "recommendations_staging")
                .where(F.col("ds") == F.lit(night.ds)).select(*cols).localCheckpoint())

    before = staged()
    fit = _fit(spark, night)
    summary = run_stage(spark, night.cfg, "rank_topn", night.ds, "run-rerun")
    assert summary["blend"]["source"] == "learned"                 # fitted again, not reused
    again = _fit(spark, night)
    assert dict(again["weights"]) == pytest.approx(dict(fit["weights"]), abs=1e-9)
    assert again["validation_ndcg"] == pytest.approx(fit["validation_ndcg"], abs=1e-12)
    assertDataFrameEqual(staged(), before)



def test_the_sequence_model_warm_starts_between_full_retrains(spark, shape_night, tmp_path):
    """Within seqrec.refit_every_days of the newest checkpoint, the night resumes from it and
    trains on the targets of the days since; otherwise it trains from scratch."""
    import shutil

    from jobs.train_seqrec import run as train_seqrec

    night = shape_night("shop")
    shutil.copytree(night.lake.root / "lake", tmp_path / "lake",
                    ignore=shutil.ignore_patterns("_holdout", "_dq", "_reports"))
    # a few epochs make the point (which checkpoint a night starts from, what it trains on)
    cfg = with_values(night.cfg, {"lake.root": str(tmp_path / "lake"), "seqrec.refit_every_days": 7,
                                  "seqrec.epochs": 3, "seqrec.warm_epochs": 2})
    early = night.ds - dt.timedelta(days=2)
    first = train_seqrec(spark, cfg, early, "test-full")
    second = train_seqrec(spark, cfg, night.ds, "test-warm")
    assert first["mode"] == "full" and first["base_ds"] is None
    assert second["mode"] == "warm" and second["base_ds"] == early.isoformat()
    full_row = delta_io.read_table(spark, night.cfg, "sequence_models").where(F.col("ds") == F.lit(night.ds)).first()
    # only the targets of the two days since the checkpoint count
    assert 0 < second["training_positions"] < full_row["training_positions"]
    assert second["epochs"] <= cfg["seqrec"]["warm_epochs"]
    vectors = delta_io.read_table(spark, cfg, "sequence_user_vectors").where(F.col("ds") == F.lit(night.ds))
    assert vectors.where(F.col("run_id") == "test-warm").count() == vectors.count() > 0
    # a night past the cadence trains from scratch again
    later = train_seqrec(spark, with_values(cfg, {"seqrec.refit_every_days": 1}), night.ds + dt.timedelta(days=1), "t")
    assert later["mode"] == "full"
