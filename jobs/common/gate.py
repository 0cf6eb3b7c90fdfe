"""The publish gate: only a staged version that passed validation may be published."""
from __future__ import annotations

import datetime as dt
from typing import Mapping

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.errors import DataQualityError
from schemas import columns as c
from schemas.expectations import ERROR


def publish_gate(spark: SparkSession, cfg: Mapping, ds: dt.date, table_name: str = "recommendations_staging") -> int:
    """The Delta version of ``table_name`` that passed validation for ds; raises DataQualityError
    when the newest validation failed, is missing, or checked an older version than the current one."""
    current = delta_io.current_version(spark, cfg, table_name)
    results = delta_io.read_table(spark, cfg, "dq_results").where(
        (F.col(c.DS) == F.lit(ds)) & (F.col("table_name") == table_name))
    latest = results.agg(F.max("validated_at")).first()[0]
    hint = f"run 'recjobs run validate --date {ds}' (or the nightly) first"
    if latest is None:
        raise DataQualityError(f"publish refused: {table_name} has not been validated for {ds}; {hint}")
    last = (results.where(F.col("validated_at") == F.lit(latest))
            .agg(F.max("table_version").alias("version"),
                 F.sum(((F.col("level") == ERROR) & ~F.col("success")).cast("int")).alias("failed")).first())
    if last["failed"]:
        raise DataQualityError(f"publish refused: the last validation of {table_name} for {ds} failed "
                               f"{last['failed']} error-level expectation(s); fix the data and re-run")
    if last["version"] != current:
        raise DataQualityError(f"publish refused: {table_name} is at version {current} but version "
                               f"{last['version']} was validated for {ds}; {hint}")
    return current
