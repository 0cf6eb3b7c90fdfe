"""Topics, sentiment, keywords and association rules on generated data with planted structure."""
import datetime as dt
from collections import Counter

import numpy as np
import pytest
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.config import load_config
from jobs.common.runner import run_stage
from jobs.sample_data import NEGATIVE_REVIEWS, POSITIVE_REVIEWS, TOPICS, SampleSpec
from jobs.score_sentiment import smoothed_item_sentiment
from udfs.sentiment import SentimentSettings, label_values, score_texts

SPEC = SampleSpec(users=200, items=180, days=7, seed=31)
STAGES = ("clean", "build_sequences", "fit_topics", "score_sentiment", "keywords", "mine_rules")


@pytest.fixture(scope="module")
def lake(spark, make_lake):
    made = make_lake("features", SPEC, {"topics": {"k": len(TOPICS), "refit_every_days": 7}})
    cfg, truth = made.cfg, made.truth
    results = {s: run_stage(spark, cfg, s, SPEC.end_date, "run-1") for s in STAGES}
    return cfg, truth, results


def test_lda_recovers_planted_topics(spark, lake):
    cfg, truth, results = lake
    assert results["fit_topics"]["refit"] is True
    rows = delta_io.read_table(spark, cfg, "item_topics").where(F.col("ds") == SPEC.end_date).collect()
    by_fitted: dict[int, Counter] = {}
    for r in rows:
        by_fitted.setdefault(r["top_topic"], Counter())[truth["item_topics"][r["item_id"]]] += 1
    purity = sum(max(cnt.values()) for cnt in by_fitted.values()) / len(rows)
    assert purity >= 0.8, (purity, by_fitted)
    for r in rows[:20]:
        assert abs(sum(r["distribution"]) - 1.0) < 1e-6
    terms = delta_io.read_table(spark, cfg, "topic_terms").where(F.col("ds") == SPEC.end_date)
    assert terms.count() == len(TOPICS)
    users = delta_io.read_table(spark, cfg, "user_topics").where(F.col("ds") == SPEC.end_date)
    assert users.count() > 0
    assert users.where(F.abs(F.aggregate("distribution", F.lit(0.0), lambda a, x: a + x) - 1) > 1e-6).count() == 0


def test_saved_model_is_reused_until_the_cadence_says_refit(spark, lake):
    cfg, _, _ = lake
    next_day = SPEC.end_date + dt.timedelta(days=1)
    again = run_stage(spark, cfg, "fit_topics", next_day, "run-2")
    assert again["refit"] is False and again["model_ds"] == SPEC.end_date.isoformat()
    assert delta_io.read_table(spark, cfg, "topic_models").count() == 1          # no new fit recorded
    nightly = load_config(values={**cfg, "topics": {**cfg["topics"], "refit_every_days": 1}})
    refit = run_stage(spark, nightly, "fit_topics", next_day, "run-3")
    assert refit["refit"] is True and delta_io.read_table(spark, cfg, "topic_models").count() == 2


def test_vader_scores_planted_reviews_by_their_wording(spark, lake):
    pos = [t.format(noun="tent") for t in POSITIVE_REVIEWS]
    neg = [t.format(noun="tent") for t in NEGATIVE_REVIEWS]
    scores = score_texts(pos + neg + [None, ""], SentimentSettings())
    assert all(s > 0 for s in scores[:len(pos)]) and all(s < 0 for s in scores[len(pos):len(pos) + len(neg)])
    assert list(scores[-2:]) == [0.0, 0.0]
    cfg, _, _ = lake
    by_rating = {r["good"]: r["m"] for r in delta_io.read_table(spark, cfg, "review_sentiment")
                 .where("rating IS NOT NULL AND rating <> 3").groupBy((F.col("rating") >= 4).alias("good"))
                 .agg(F.avg("score").alias("m")).collect()}
    assert by_rating[True] > 0.3 and by_rating[False] < -0.3


def test_single_review_is_pulled_towards_the_prior(spark):
    scores = spark.createDataFrame([("a", 0.9), ("b", 0.9), ("b", 0.9), ("b", 0.9), ("b", 0.9), ("b", 0.9),
                                    ("b", 0.9), ("b", 0.9), ("b", 0.9), ("b", 0.9), ("b", 0.9)],
                                   "item_id string, score double")
    got = {r["item_id"]: r for r in smoothed_item_sentiment(scores, prior_mean=0.1, prior_weight=5.0).collect()}
    assert got["a"]["smoothed_score"] == pytest.approx((0.9 + 0.1 * 5) / 6)
    assert got["a"]["smoothed_score"] < got["b"]["smoothed_score"] < 0.9      # more reviews, less pull
    assert got["a"]["n_reviews"] == 1 and got["a"]["mean_score"] == pytest.approx(0.9)


def test_item_sentiment_tables_cover_reviewed_items(spark, lake):
    cfg, _, results = lake
    items = delta_io.read_table(spark, cfg, "item_sentiment").where(F.col("ds") == SPEC.end_date)
    assert items.count() > 0
    assert items.where("smoothed_score < -1 OR smoothed_score > 1").count() == 0
    reviews = delta_io.read_table(spark, cfg, "review_sentiment")
    assert reviews.count() == results["score_sentiment"]["reviews_total"] > 0
    assert delta_io.read_table(spark, cfg, "user_item_sentiment").where(F.col("ds") == SPEC.end_date).count() > 0


def test_planted_co_purchase_pairs_become_rules_with_lift(spark, lake):
    cfg, truth, _ = lake
    purchases = Counter(r["item_id"] for r in delta_io.read_table(spark, cfg, "events_clean")
                        .where("event_type = 'purchase'").select("item_id").collect())
    rules = {(tuple(r["antecedent"]), r["consequent"]): r["lift"]
             for r in delta_io.read_table(spark, cfg, "item_rules").where(F.col("ds") == SPEC.end_date).collect()}
    checked = [(a, b) for a, b in truth["co_purchase_pairs"] if purchases[a] >= 3]
    assert len(checked) >= 5
    found = [(a, b) for a, b in checked if rules.get(((a,), b), 0) > 1]
    assert len(found) >= 0.8 * len(checked), (len(found), len(checked))


def test_user_keywords_come_from_planted_vocabulary(spark, lake):
    cfg, _, _ = lake
    vocab = {w.lower() for t in TOPICS for field in ("words", "nouns", "adjectives", "brands", "categories")
             for phrase in t[field] for w in phrase.split()}
    rows = delta_io.read_table(spark, cfg, "user_keywords").where(F.col("ds") == SPEC.end_date).collect()
    assert rows and all(len(r["keywords"]) <= 10 for r in rows)
    assert all(r["weights"] == sorted(r["weights"], reverse=True) for r in rows)
    top = [r["keywords"][0] for r in rows]
    assert sum(k in vocab for k in top) / len(top) >= 0.9


def test_label_values_map_classes_onto_minus_one_to_one():
    np.testing.assert_allclose(label_values({0: "NEGATIVE", 1: "POSITIVE"}), [-1, 1])
    np.testing.assert_allclose(label_values({i: f"{i + 1} stars" for i in range(5)}), [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_allclose(label_values({0: "negative", 1: "neutral", 2: "positive"}), [-1, 0, 1])
    np.testing.assert_allclose(label_values({0: "LABEL_0", 1: "LABEL_1"}), [-1, 1])


def test_transformers_backend_runs_on_a_tiny_classifier(spark, lake, tiny_classifier_dir):
    cfg, _, results = lake
    tcfg = load_config(values={**cfg, "sentiment": {**cfg["sentiment"], "backend": "transformers",
                                                    "model": tiny_classifier_dir}})
    summary = run_stage(spark, tcfg, "score_sentiment", SPEC.end_date, "run-tf")
    assert summary["backend"] == "transformers"
    assert summary["scored_in_window"] == results["score_sentiment"]["scored_in_window"]
    scores = delta_io.read_table(spark, cfg, "review_sentiment")
    assert scores.where("backend <> 'transformers' OR score < -1 OR score > 1").count() == 0
    direct = score_texts(["great tent", "awful knife"], SentimentSettings(backend="transformers",
                                                                          model=tiny_classifier_dir))
    assert direct.shape == (2,) and np.all(np.abs(direct) <= 1)
