"""score_sentiment: review sentiment, item sentiment (Bayesian-smoothed), users' own sentiment.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/score_sentiment.py --date 2026-06-30 --conf conf/cluster.yaml

Scores the review texts of the dates the clean stage owns for ds (``clean.window_days``) into
``review_sentiment`` (replacing those dates), then derives from all reviews up to ds:
``item_sentiment`` = ``(sum of scores + prior_mean * prior_weight) / (n + prior_weight)`` and
``user_item_sentiment`` (the mean of a user's own reviews of an item).
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Mapping

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.errors import ConfigError
from jobs.common.runlog import StageRecord
from jobs.common.settings import SentimentStageSettings
from schemas import columns as c
from udfs.sentiment import BACKENDS, SentimentSettings, sentiment_udf
from udfs.models import ModelNotFound, resolve_model

log = logging.getLogger(__name__)

STAGE = "score_sentiment"


def smoothed_item_sentiment(scores: DataFrame, prior_mean: float, prior_weight: float) -> DataFrame:
    """``(item_id, n_reviews, mean_score, smoothed_score, prior_mean)`` from per-review scores."""
    return (scores.groupBy(c.ITEM_ID)
            .agg(F.count("*").alias("n_reviews"), F.sum("score").alias("_sum"), F.avg("score").alias("mean_score"))
            .select(c.ITEM_ID, "n_reviews", "mean_score",
                    ((F.col("_sum") + F.lit(prior_mean * prior_weight)) / (F.col("n_reviews") + F.lit(prior_weight)))
                    .alias("smoothed_score"),
                    F.lit(float(prior_mean)).alias("prior_mean")))


def user_item_sentiment(scores: DataFrame) -> DataFrame:
    """``(user_id, item_id, score, n_reviews, last_review_ts)``: a user's own view of an item."""
    return (scores.groupBy(c.USER_ID, c.ITEM_ID)
            .agg(F.avg("score").alias("score"), F.count("*").alias("n_reviews"),
                 F.max(c.EVENT_TS).alias("last_review_ts")))


def settings_from_config(cfg: Mapping) -> SentimentSettings:
    """Validated sentiment settings (a missing model exits 2 naming sentiment.model)."""
    sc = cfg["sentiment"]
    if sc["backend"] not in BACKENDS:
        raise ConfigError(f"sentiment.backend must be one of {', '.join(BACKENDS)}, got {sc['backend']!r}")
    settings = SentimentSettings.from_config(sc)
    if settings.backend == "transformers":
        if not settings.model:
            raise ConfigError("sentiment.backend is transformers but sentiment.model is empty; set it to a "
                              "sequence-classification model folder or cached Hugging Face id")
        try:
            resolve_model(settings.model, settings.conf_key)
        except ModelNotFound as exc:
            raise ConfigError(str(exc)) from None
    return settings


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Score the window's reviews; rebuild item and user-item sentiment for ds."""
    rec = rec or StageRecord()
    settings = settings_from_config(cfg)
    s = SentimentStageSettings.from_config(cfg)
    first = ds - dt.timedelta(days=s.window_days - 1)
    reviews = (delta_io.read_table(spark, cfg, "events_clean")
               .where(F.col(c.EVENT_DATE).between(F.lit(first), F.lit(ds))
                      & F.col(c.REVIEW_TEXT).isNotNull() & (F.length(F.trim(c.REVIEW_TEXT)) > 0)))
    slots = max(1, spark.sparkContext.defaultParallelism)
    scored = (reviews.repartition(slots)
              .select(c.EVENT_ID, c.USER_ID, c.ITEM_ID, c.EVENT_TS, c.RATING,
                      sentiment_udf(settings)(F.col(c.REVIEW_TEXT)).alias("score"),
                      F.lit(settings.backend).alias("backend"), F.lit(run_id).alias(c.RUN_ID), c.EVENT_DATE)
              .persist(StorageLevel.MEMORY_AND_DISK))
    n_scored = scored.count()
    delta_io.replace_where(scored, cfg, "review_sentiment",
                           f"event_date >= DATE'{first.isoformat()}' AND event_date <= DATE'{ds.isoformat()}'")
    scored.unpersist()
    all_scores = delta_io.read_table(spark, cfg, "review_sentiment").where(F.col(c.EVENT_DATE) <= F.lit(ds))
    prior = s.prior_mean
    if prior is None:
        prior = all_scores.agg(F.avg("score")).first()[0] or 0.0   # one number
    stamp = [F.lit(ds).alias(c.DS), F.lit(run_id).alias(c.RUN_ID)]
    part = f"ds = DATE'{ds.isoformat()}'"
    delta_io.replace_where(
        smoothed_item_sentiment(all_scores, float(prior), float(s.prior_weight)).select("*", *stamp),
        cfg, "item_sentiment", part)
    delta_io.replace_where(user_item_sentiment(all_scores).select("*", *stamp), cfg, "user_item_sentiment", part)
    stats = all_scores.agg(F.count("*").alias("n"), F.avg("score").alias("mean"),
                           F.sum((F.col("score") <= s.negative_threshold).cast("int"))
                           .alias("neg")).first()
    summary = {"backend": settings.backend, "scored_in_window": n_scored, "reviews_total": stats["n"],
               "mean_score": round(float(stats["mean"] or 0.0), 4), "negative_reviews": int(stats["neg"] or 0),
               "prior_mean": round(float(prior), 4)}
    line = (f"sentiment ({settings.backend}): {summary['reviews_total']} reviews, mean {summary['mean_score']}, "
            f"{summary['negative_reviews']} negative")
    return rec.finish(STAGE, summary, rows_in=n_scored, rows_out=n_scored, line=line)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
