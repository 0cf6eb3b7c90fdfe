"""publish: copy the date's staged recommendations into ``recommendations`` in one commit.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/publish.py --date 2026-06-30 --conf conf/cluster.yaml

Only a staged version that passed the validate stage is published (``dq.require_for_publish``);
otherwise the stage exits 3 and the published partition stays as it was. One
``replaceWhere ds = D`` commit: readers see the previous partition or the new one, never a
mix, and re-publishing a date leaves exactly one copy. Earlier versions stay readable by
version (time travel) until VACUUM.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Mapping

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.errors import InputError
from jobs.common.gate import publish_gate
from jobs.common.runlog import StageRecord
from jobs.common.settings import DqSettings
from schemas import columns as c

log = logging.getLogger(__name__)

STAGE = "publish"


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None) -> dict:
    """Publish the ds partition of ``recommendations_staging``."""
    rec = rec or StageRecord()
    version = None
    if DqSettings.from_config(cfg).require_for_publish:
        version = publish_gate(spark, cfg, ds)   # exit 3 unless this version passed validate
    staged = (delta_io.read_table(spark, cfg, "recommendations_staging", version=version)
              .where(F.col(c.DS) == F.lit(ds)))
    n = staged.count()
    if n == 0:
        raise InputError(f"no staged recommendations for {ds} in {delta_io.table_path(cfg, 'recommendations_staging')}; "
                         f"run 'recjobs run rank_topn --date {ds}' first")
    delta_io.replace_where(staged, cfg, "recommendations", f"ds = DATE'{ds.isoformat()}'")
    summary = {"rows": n, "version": delta_io.current_version(spark, cfg, "recommendations"),
               "staging_version": version, "path": delta_io.table_path(cfg, "recommendations")}
    return rec.finish(STAGE, summary, rows_in=n, rows_out=n,
                      line=f"published: version {summary['version']} of {summary['path']}")


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
