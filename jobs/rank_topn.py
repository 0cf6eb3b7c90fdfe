"""rank_topn: candidates -> blended score -> exclusions, diversity -> per-user top-N with reasons.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/rank_topn.py --date 2026-06-30 --conf conf/cluster.yaml

The ranking itself is the library ``jobs/ranking`` (also what the evaluation ranks with).
Candidates: (a) blocked top-K of user vectors against the item matrix (``udfs/topk.py``; the
matrix goes to executors whole up to ``rank.broadcast_max_items`` rows, in shards beyond that,
merged with a second top-K), (b) association rules fired by the user's newest items, (c) decayed
popularity (all a cold user gets), (d) the items of the user's sequence. The components (declared
in ``schemas/components.py``) are standardised over all candidates and blended with
``rank.weights``. Purchased items and items the user reviewed negatively are excluded, near
neighbours of the latter demoted; at most ``rank.max_per_category`` items per category and, when
set, ``rank.max_engaged`` items the user already engaged with. Ties break on item id. Each row
carries a reason from its strongest component and that component's name (``reason_kind``).
Writes the ds partition of ``recommendations_staging``; the publish stage copies it into
``recommendations``.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Mapping

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.runlog import StageRecord
from jobs.common.settings import RankSettings
from jobs.ranking import blend_rank, candidate_features, default_list, reason_context, reasons
from schemas import columns as c
from schemas.components import names

log = logging.getLogger(__name__)

STAGE = "rank_topn"


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Write the ds partition of ``recommendations_staging``."""
    rec = rec or StageRecord()
    s = RankSettings.from_config(cfg)
    read = delta_io.reader(spark, cfg)
    on_ds = F.col(c.DS) == F.lit(ds)
    terms = read("topic_terms").where(on_ds)
    with candidate_features(read, ds, s) as data:
        ranked = reason_context(blend_rank(data.features, s), data.sequences, data.item_vectors, data.items,
                                terms, s.recent_items, s.verbs)
        default = default_list(data.popularity, data.items, read("item_topics").where(on_ds), terms, s)
        out = (reasons(ranked, s.weights).unionByName(default, allowMissingColumns=True).select(
            F.lit(ds).alias(c.DS), c.USER_ID, F.col("rank").cast("int"), c.ITEM_ID, "score",
            F.struct(*[F.col(n).cast("double").alias(n) for n in names()]).alias("components"), "reason",
            "reason_kind", F.lit(s.model_version).alias("model_version"), F.lit(run_id).alias(c.RUN_ID)))
        delta_io.replace_where(out, cfg, "recommendations_staging", f"ds = DATE'{ds.isoformat()}'")
        n_users = data.users.count()
    written = read("recommendations_staging").where(on_ds)
    n_default = written.where(F.col(c.USER_ID) == c.DEFAULT_USER).count()
    per_user = written.where(F.col(c.USER_ID) != c.DEFAULT_USER).groupBy(c.USER_ID).count()
    stats = per_user.agg(F.count("*").alias("users"), F.sum("count").alias("rows"),
                         F.sum((F.col("count") < s.top_n).cast("int")).alias("short")).first()
    summary = {"users": n_users, "users_with_recs": stats["users"], "rows": int(stats["rows"] or 0),
               "users_short_of_n": int(stats["short"] or 0) + (n_users - stats["users"]),
               "default_list": n_default, "top_n": s.top_n,
               "path": delta_io.table_path(cfg, "recommendations_staging")}
    line = (f"ranked: {summary['rows']} recommendations for {summary['users_with_recs']} users "
            f"({summary['users_short_of_n']} short of {s.top_n}), and a default list of {n_default} for users "
            f"without history ({c.DEFAULT_USER})")
    return rec.finish(STAGE, summary, rows_in=n_users, rows_out=summary["rows"], line=line)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
