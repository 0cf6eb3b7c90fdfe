"""keywords: per user, the top decay-weighted TF-IDF terms of the items they engaged with.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/user_keywords.py --date 2026-06-30 --conf conf/cluster.yaml

A term's score for a user is ``sum over the user's sequence events of weight * tf(term, item) *
idf(term)`` with ``idf = ln((N + 1) / (df + 1)) + 1`` over the catalogue. Writes the ds partition
of ``user_keywords`` (used in explanations).
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Mapping

from pyspark.ml import Pipeline
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.pooling import sequence_weights
from jobs.common.runlog import StageRecord
from jobs.common.settings import KeywordSettings
from jobs.common.text import DOC_TEMPLATE, item_text, token_stages
from schemas import columns as c

log = logging.getLogger(__name__)

STAGE = "keywords"


def item_term_tfidf(items: DataFrame) -> DataFrame:
    """``(item_id, term, tfidf)`` over the catalogue's item texts."""
    docs = items.select(c.ITEM_ID, item_text(DOC_TEMPLATE).alias("doc"))
    terms = Pipeline(stages=token_stages("doc", "_terms")).fit(docs).transform(docs)
    exploded = terms.select(c.ITEM_ID, F.explode("_terms").alias("term"))
    tf = (exploded.groupBy(c.ITEM_ID, "term").count()
          .withColumn("tf", F.col("count") / F.sum("count").over(Window.partitionBy(c.ITEM_ID))))
    n_docs = docs.count()
    idf = (exploded.distinct().groupBy("term").count()
           .select("term", (F.log((F.lit(n_docs) + 1) / (F.col("count") + 1)) + 1).alias("idf")))
    return tf.join(idf, "term").select(c.ITEM_ID, "term", (F.col("tf") * F.col("idf")).alias("tfidf"))


def top_user_terms(weighted_items: DataFrame, tfidf: DataFrame, top_n: int) -> DataFrame:
    """``(user_id, keywords, weights)``: the ``top_n`` terms by summed weight * tf-idf."""
    scores = (weighted_items.join(tfidf, c.ITEM_ID)
              .groupBy(c.USER_ID, "term").agg(F.sum(F.col("weight") * F.col("tfidf")).alias("score")))
    ranked = scores.withColumn("_r", F.row_number().over(
        Window.partitionBy(c.USER_ID).orderBy(F.col("score").desc(), F.col("term"))))
    top = (ranked.where(F.col("_r") <= top_n).groupBy(c.USER_ID)
           .agg(F.array_sort(F.collect_list(F.struct("_r", "term", "score"))).alias("_k")))
    return top.select(c.USER_ID, F.transform("_k", lambda x: x["term"]).alias("keywords"),
                      F.transform("_k", lambda x: x["score"]).alias("weights"))


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Write the ds partition of ``user_keywords``."""
    rec = rec or StageRecord()
    s = KeywordSettings.from_config(cfg)
    tfidf = item_term_tfidf(delta_io.read_table(spark, cfg, "items_clean"))
    seqs = delta_io.read_table(spark, cfg, "user_sequences").where(F.col(c.DS) == F.lit(ds))
    users = top_user_terms(sequence_weights(seqs), tfidf, s.top_n)
    delta_io.replace_where(users.select(F.lit(ds).alias(c.DS), "*", F.lit(run_id).alias(c.RUN_ID)),
                           cfg, "user_keywords", f"ds = DATE'{ds.isoformat()}'")
    n = delta_io.read_table(spark, cfg, "user_keywords").where(F.col(c.DS) == F.lit(ds)).count()
    summary = {"users": n, "top_n": s.top_n}
    return rec.finish(STAGE, summary, rows_out=n, line=f"keywords: {n} users")


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
