"""fit_neighbours: item-item weights learned from behaviour, every night (EASE or item-KNN).

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/fit_neighbours.py --date 2026-06-30 --conf conf/cluster.yaml

The binary user x item matrix holds each user's ``neighbours.max_user_items`` most recently touched
distinct items over the ``neighbours.lookback_days`` days ending with ds. Catalogues of at most
``neighbours.max_items`` items with events get EASE (Steck 2019: closed form, ``neighbours.reg``);
larger ones item-KNN cosine. Writes each item's ``neighbours.per_item`` largest weights (EASE: in
magnitude, negative ones included; cosine: the largest) to the ds partition of ``item_neighbours``, in one commit.
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
from jobs.common.settings import NeighbourSettings
from jobs.ranking.neighbours import fit_neighbours
from schemas import columns as c

log = logging.getLogger(__name__)

STAGE = "fit_neighbours"


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Write the ds partition of ``item_neighbours``."""
    rec = rec or StageRecord()
    s = NeighbourSettings.from_config(cfg)
    first = ds - dt.timedelta(days=s.lookback_days - 1)
    events = (delta_io.read_table(spark, cfg, "events_clean")
              .where(F.col(c.EVENT_DATE).between(F.lit(first), F.lit(ds))))
    neighbours, method = fit_neighbours(events, s.reg, s.per_item, s.max_items, s.max_user_items)
    delta_io.replace_where(neighbours.select(F.lit(ds).alias(c.DS), c.ITEM_ID, "neighbour_id", "weight",
                                             F.lit(method).alias("method"), F.lit(run_id).alias(c.RUN_ID)),
                           cfg, "item_neighbours", f"ds = DATE'{ds.isoformat()}'")
    written = delta_io.read_table(spark, cfg, "item_neighbours").where(F.col(c.DS) == F.lit(ds))
    row = written.agg(F.count("*").alias("n"), F.countDistinct(c.ITEM_ID).alias("items")).first()
    summary = {"method": method, "pairs": int(row["n"]), "items": int(row["items"]), "per_item": s.per_item}
    line = f"neighbours: {row['n']} pairs over {row['items']} items ({method})"
    return rec.finish(STAGE, summary, rows_out=int(row["n"]), line=line)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
