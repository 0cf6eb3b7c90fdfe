"""The ``runs`` table: one row per stage run with status, timings, row counts and details."""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from contextlib import contextmanager
from typing import Iterator, Mapping

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.common import delta_io
from schemas import columns as c
from schemas import tables as t

log = logging.getLogger(__name__)


def new_run_id(ds: dt.date) -> str:
    """A run id that sorts by time: ``<ds>T<utc clock>-<random>``."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{ds.isoformat()}-{now}-{uuid.uuid4().hex[:6]}"


def newest_per_stage(runs: DataFrame) -> DataFrame:
    """The newest (by ``finished_at``) row of each stage among ``runs`` rows."""
    newest = Window.partitionBy(c.STAGE).orderBy(F.col("finished_at").desc())
    return runs.withColumn("_r", F.row_number().over(newest)).where("_r = 1").drop("_r")


class StageRecord:
    """What a stage reports about itself; filled in by the stage, written on exit."""

    def __init__(self) -> None:
        self.rows_in: int | None = None
        self.rows_out: int | None = None
        self.details: dict = {}

    def finish(self, stage: str, summary: dict, rows_in: int | None = None, rows_out: int | None = None,
               line: str | None = None) -> dict:
        """Log a stage's summary, keep it (and the row counts) for ``runs``, and return it.

        ``line``: the stage's one-line account for people (``summary["line"]``; the demo and the
        nightly print it)."""
        if line is not None:
            summary["line"] = line
        log.info("%s: %s", stage, summary)
        if rows_in is not None:
            self.rows_in = rows_in
        if rows_out is not None:
            self.rows_out = rows_out
        self.details.update(summary)
        return summary


@contextmanager
def record_stage(spark: SparkSession, cfg: Mapping, run_id: str, ds: dt.date, stage: str) -> Iterator[StageRecord]:
    """Time a stage and append its outcome to ``runs``, also when it fails (then re-raise)."""
    rec = StageRecord()
    started = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    t0 = time.monotonic()
    status = "failed"
    try:
        yield rec
        status = "succeeded"
    except BaseException as exc:
        rec.details.setdefault("error", f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        duration = time.monotonic() - t0
        finished = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        row = (run_id, ds, stage, status, started, finished, float(duration),
               rec.rows_in, rec.rows_out, json.dumps(rec.details, sort_keys=True, default=str))
        try:
            delta_io.append(spark.createDataFrame([row], t.RUNS), cfg, "runs")
        except Exception:  # never hide the stage's own error behind a logging failure
            log.exception("could not record stage %s in runs", stage)
            if status == "succeeded":
                raise
        log.info("stage %s %s in %.1fs (rows in %s, out %s)", stage, status, duration, rec.rows_in, rec.rows_out)

