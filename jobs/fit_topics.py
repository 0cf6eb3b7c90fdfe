"""fit_topics: LDA topics of items (MLlib), and users' decay-weighted topic profiles.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/fit_topics.py --date 2026-06-30 --conf conf/cluster.yaml

Pipeline: RegexTokenizer -> StopWordsRemover -> term counts over a vocabulary (the
``topics.vocab_size`` most frequent terms found in at least ``topics.min_df`` item texts, ties by
term) -> LDA (online optimizer, ``topics.k``, ``topics.seed``; the same data gives the same fit).
The fitted pipeline is saved under ``<lake>/_models/lda/<ds>`` and recorded in ``topic_models``;
later runs load it until it is ``topics.refit_every_days`` old. Writes the ds partitions of
``topic_terms``, ``item_topics`` and ``user_topics`` (the decay-weighted mean of the item
distributions in each user's sequence, with the weights of ``user_sequences``).
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Mapping

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import LDA
from pyspark.ml.feature import CountVectorizerModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.pooling import sequence_weights, weighted_mean
from jobs.common.runlog import StageRecord
from jobs.common.settings import TopicSettings
from jobs.common.text import DOC_TEMPLATE, item_text, token_stages
from schemas import columns as c

log = logging.getLogger(__name__)

STAGE = "fit_topics"
def vocabulary(docs: DataFrame, vocab_size: int, min_df: float) -> list[str]:
    """The ``vocab_size`` most frequent terms of the ``doc`` column that occur in at least
    ``min_df`` documents (a share of them when below 1), CountVectorizer's rule, with ties broken by
    the term: CountVectorizer breaks them by the order in which shuffled counts arrive, so two runs
    on the same data could index different vocabularies and fit different models."""
    terms = Pipeline(stages=token_stages("doc", "_terms")).fit(docs).transform(docs)
    counts = (terms.select(c.ITEM_ID, F.explode("_terms").alias("term")).groupBy("term")
              .agg(F.count("*").alias("tf"), F.countDistinct(c.ITEM_ID).alias("df")))
    min_docs = min_df if min_df >= 1 else min_df * docs.count()
    kept = counts.where(F.col("df") >= F.lit(min_docs)).orderBy(F.col("tf").desc(), F.col("term")).limit(vocab_size)
    return [r["term"] for r in kept.collect()]   # at most vocab_size terms


def topic_pipeline(vocab: list[str], k: int, max_iter: int, seed: int) -> Pipeline:
    """The LDA pipeline over a ``doc`` column: tokens, counts over ``vocab``, online LDA."""
    return Pipeline(stages=[
        *token_stages("doc", "_terms"),
        CountVectorizerModel.from_vocabulary(vocab, inputCol="_terms", outputCol="_counts"),
        LDA(k=k, maxIter=max_iter, optimizer="online", seed=seed, featuresCol="_counts",
            topicDistributionCol="_topics"),
    ])


def item_documents(items: DataFrame, reviews: DataFrame | None = None) -> DataFrame:
    """``(item_id, doc)``: the item's text, plus its review texts when given."""
    docs = items.select(c.ITEM_ID, item_text(DOC_TEMPLATE).alias("doc"))
    if reviews is None:
        return docs
    per_item = reviews.groupBy(c.ITEM_ID).agg(F.concat_ws(" ", F.collect_list(c.REVIEW_TEXT)).alias("_rev"))
    return (docs.join(per_item, c.ITEM_ID, "left")
            .select(c.ITEM_ID, F.concat_ws(" ", "doc", F.coalesce("_rev", F.lit(""))).alias("doc")))


def describe_topics(model: PipelineModel, top_terms: int) -> DataFrame:
    """``(topic, terms, weights)`` from the fitted pipeline."""
    vocab = model.stages[-2].vocabulary  # bounded by topics.vocab_size
    spark = SparkSession.getActiveSession()
    vocab_df = spark.createDataFrame(list(enumerate(vocab)), "term_index int, term string")
    topics = model.stages[-1].describeTopics(top_terms)
    exploded = topics.select("topic", F.posexplode(F.arrays_zip("termIndices", "termWeights")).alias("pos", "tw"))
    named = exploded.join(vocab_df, F.col("tw.termIndices") == F.col("term_index"))
    packed = named.groupBy("topic").agg(F.array_sort(F.collect_list(F.struct("pos", "term", F.col("tw.termWeights")
                                                                              .alias("weight")))).alias("_t"))
    return packed.select(F.col("topic").cast("int"), F.transform("_t", lambda x: x["term"]).alias("terms"),
                         F.transform("_t", lambda x: x["weight"]).alias("weights"))


def item_distributions(model: PipelineModel, docs: DataFrame) -> DataFrame:
    """``(item_id, distribution, top_topic, top_weight)`` for every document."""
    dist = model.transform(docs).select(c.ITEM_ID, vector_to_array("_topics", "float64").alias("distribution"))
    return with_top_topic(dist).withColumn("top_weight", F.array_max("distribution"))


def with_top_topic(df: DataFrame) -> DataFrame:
    """Add ``top_topic``: the index of the largest entry of ``distribution``."""
    return df.withColumn("top_topic", (F.array_position("distribution", F.array_max("distribution")) - 1).cast("int"))


def latest_model(spark: SparkSession, cfg: Mapping, ds: dt.date):
    """The newest ``topic_models`` row fitted for a date <= ds (one row or None)."""
    rows = (delta_io.read_table(spark, cfg, "topic_models").where(F.col(c.DS) <= F.lit(ds))
            .orderBy(F.col(c.DS).desc()).limit(1).collect())
    return rows[0] if rows else None


def needs_refit(latest, ds: dt.date, refit_every_days: int, k: int) -> bool:
    """Refit when there is no model, it is too old, or it has another k."""
    return latest is None or (ds - latest[c.DS]).days >= refit_every_days or latest["k"] != k


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Fit or reuse the LDA pipeline; write topic_terms, item_topics and user_topics for ds."""
    rec = rec or StageRecord()
    s = TopicSettings.from_config(cfg)
    items = delta_io.read_table(spark, cfg, "items_clean")
    reviews = None
    if s.use_reviews:
        reviews = (delta_io.read_table(spark, cfg, "events_clean")
                   .where((F.col(c.EVENT_DATE) <= F.lit(ds)) & F.col(c.REVIEW_TEXT).isNotNull()))
    # A fixed layout: the online optimiser samples mini-batches partition by partition, so the rows'
    # order must not depend on how the Delta files happen to be listed (two lakes with the same
    # data fitted different models before). Hash partitions by item id, sorted inside: with the
    # deterministic vocabulary the same data gives the same fit for a fixed seed and parallelism.
    slots = max(1, spark.sparkContext.defaultParallelism)
    docs = (item_documents(items, reviews).repartition(slots, c.ITEM_ID).sortWithinPartitions(c.ITEM_ID)
            .cache())
    n_docs = docs.count()
    latest = latest_model(spark, cfg, ds)
    refit = needs_refit(latest, ds, s.refit_every_days, s.k)
    if refit:
        stored = delta_io.model_location("lda", ds)
        path = delta_io.in_lake(cfg, stored)
        vocab = vocabulary(docs, s.vocab_size, float(s.min_df))
        model = topic_pipeline(vocab, s.k, s.max_iter, s.seed).fit(docs)
        model.write().overwrite().save(path)
        model_ds = ds
        record = spark.createDataFrame(
            [(ds, stored, s.k, len(model.stages[-2].vocabulary), n_docs, None, run_id)],
            "ds date, path string, k int, vocab_size int, documents long, log_perplexity double, run_id string")
        delta_io.replace_where(record, cfg, "topic_models", f"ds = DATE'{ds.isoformat()}'")
        log.info("fitted LDA (k=%d) on %d items, saved to %s", s.k, n_docs, path)
    else:
        path, model_ds = delta_io.in_lake(cfg, latest["path"]), latest[c.DS]
        model = PipelineModel.load(path)
        log.info("reusing LDA fitted for %s (%s)", model_ds, path)
    stamp = [F.lit(ds).alias(c.DS), F.lit(model_ds).alias("model_ds"), F.lit(run_id).alias(c.RUN_ID)]
    part = f"ds = DATE'{ds.isoformat()}'"
    delta_io.replace_where(describe_topics(model, s.top_terms).select("*", *stamp), cfg, "topic_terms", part)
    delta_io.replace_where(item_distributions(model, docs).select("*", *stamp), cfg, "item_topics", part)
    item_topics = delta_io.read_table(spark, cfg, "item_topics").where(F.col(c.DS) == F.lit(ds))
    seqs = delta_io.read_table(spark, cfg, "user_sequences").where(F.col(c.DS) == F.lit(ds))
    users = with_top_topic(weighted_mean(sequence_weights(seqs), item_topics, "distribution", "distribution",
                                         dtype="float64"))
    delta_io.replace_where(users.select(F.lit(ds).alias(c.DS), c.USER_ID, "distribution", "top_topic",
                                        F.lit(run_id).alias(c.RUN_ID)), cfg, "user_topics", part)
    docs.unpersist()
    n_users = delta_io.read_table(spark, cfg, "user_topics").where(F.col(c.DS) == F.lit(ds)).count()
    summary = {"refit": refit, "model_ds": model_ds.isoformat(), "model_path": path, "k": s.k,
               "items": n_docs, "users": n_users}
    line = (f"topics: k={s.k} ({'fitted' if refit else 'reused model of ' + summary['model_ds']}), "
            f"{n_docs} items, {n_users} user profiles; model at {path}")
    return rec.finish(STAGE, summary, rows_in=n_docs, rows_out=n_docs + n_users, line=line)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
