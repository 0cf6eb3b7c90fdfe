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


def partition_files(spark: SparkSession, cfg: Mapping, table_name: str, ds: dt.date, version: int) -> set[str]:
    """The data files of the ds partition of ``table_name`` at ``version`` (partition pruning on the
    driver: one listing of the snapshot, no data read)."""
    df = delta_io.read_table(spark, cfg, table_name, version=version).where(F.col(c.DS) == F.lit(ds))
    return set(df.inputFiles())


def publish_gate(spark: SparkSession, cfg: Mapping, ds: dt.date, table_name: str = "recommendations_staging") -> int:
    """The Delta version of ``table_name`` whose ds partition passed validation, to publish from.

    Only the ds partition matters: commits for other dates after the validation (another date's
    nightly) do not hold ds back, while any change to ds's own rows since then does.

    Raises:
        DataQualityError: The newest validation of ds failed or is missing, or ds's partition
            changed after it was validated.
    """
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
    validated = int(last["version"])
    if validated != current and partition_files(spark, cfg, table_name, ds, validated) != \
            partition_files(spark, cfg, table_name, ds, current):
        raise DataQualityError(f"publish refused: the {ds} partition of {table_name} changed after version "
                               f"{validated} was validated (now version {current}); {hint}")
    return validated
