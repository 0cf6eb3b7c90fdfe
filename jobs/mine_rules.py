"""mine_rules: association rules "users who X then Y" with MLlib FPGrowth.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/mine_rules.py --date 2026-06-30 --conf conf/cluster.yaml

Baskets are the distinct items of ``rules.event_types`` events per session (the gap rule of
``sequences.session_gap_minutes``) or per user and day (``rules.basket``), over the
``rules.lookback_days`` days ending with ds. Writes the ds partition of ``item_rules``.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Mapping, Sequence

from pyspark.ml.fpm import FPGrowth
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.errors import ConfigError
from jobs.common.events import sessionize
from jobs.common.runlog import StageRecord
from jobs.common.settings import RuleSettings
from schemas import columns as c

log = logging.getLogger(__name__)

STAGE = "mine_rules"


def baskets(events: DataFrame, basket: str, event_types: Sequence[str], gap_minutes: float) -> DataFrame:
    """``(basket_id, items)``: distinct items of the chosen event types per session or user-day."""
    if basket == "session":
        keyed = sessionize(events, gap_minutes).withColumn("basket_id", F.col(c.SESSION_ID))
    elif basket == "daily":
        keyed = events.withColumn("basket_id", F.concat_ws("@", c.USER_ID, F.col(c.EVENT_DATE).cast("string")))
    else:
        raise ConfigError(f"rules.basket must be session or daily, got {basket!r}")
    return (keyed.where(F.col(c.EVENT_TYPE).isin(list(event_types)))
            .groupBy("basket_id").agg(F.array_sort(F.collect_set(c.ITEM_ID)).alias("items")))


def mine(baskets_df: DataFrame, min_support: float, min_confidence: float, max_antecedent: int) -> DataFrame:
    """``(antecedent, consequent, confidence, lift, support)`` with short antecedents."""
    model = FPGrowth(itemsCol="items", minSupport=min_support, minConfidence=min_confidence).fit(baskets_df)
    return (model.associationRules.where(F.size("antecedent") <= max_antecedent)
            .select(F.array_sort("antecedent").alias("antecedent"), F.col("consequent")[0].alias("consequent"),
                    "confidence", "lift", "support"))


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Write the ds partition of ``item_rules``."""
    rec = rec or StageRecord()
    s = RuleSettings.from_config(cfg)
    first = ds - dt.timedelta(days=s.lookback_days - 1)
    events = delta_io.read_table(spark, cfg, "events_clean").where(F.col(c.EVENT_DATE).between(F.lit(first), F.lit(ds)))
    b = baskets(events, s.basket, s.event_types, s.session_gap_minutes).cache()
    n_baskets = b.count()
    rules = mine(b, s.min_support, s.min_confidence, s.max_antecedent)
    delta_io.replace_where(rules.select(F.lit(ds).alias(c.DS), "*", F.lit(run_id).alias(c.RUN_ID)),
                           cfg, "item_rules", f"ds = DATE'{ds.isoformat()}'")
    b.unpersist()
    n_rules = delta_io.read_table(spark, cfg, "item_rules").where(F.col(c.DS) == F.lit(ds)).count()
    summary = {"baskets": n_baskets, "rules": n_rules, "basket": s.basket}
    line = f"rules: {n_rules} rules from {n_baskets} {s.basket} baskets"
    return rec.finish(STAGE, summary, rows_in=n_baskets, rows_out=n_rules, line=line)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
