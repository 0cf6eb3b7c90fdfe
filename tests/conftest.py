"""One SparkSession for the whole test run: local[2], few partitions, UTC, Delta on."""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from jobs.common.config import load_config


def _test_values(warehouse: str) -> dict:
    return {
        "spark": {
            "master": "local[2]",
            "app_name": "recjobs-tests",
            "conf": {
                "spark.sql.shuffle.partitions": "2",
                "spark.default.parallelism": "2",
                "spark.ui.enabled": "false",
                "spark.ui.showConsoleProgress": "false",
                "spark.databricks.delta.snapshotPartitions": "1",
                "spark.sql.warehouse.dir": warehouse,
                "spark.driver.memory": "3g",
                "spark.sql.execution.arrow.pyspark.enabled": "true",
            },
        },
    }


@pytest.fixture(scope="session")
def spark():
    from jobs.common.session import get_spark

    warehouse = tempfile.mkdtemp(prefix="recjobs-warehouse-")
    session = get_spark(load_config(values=_test_values(warehouse)))
    yield session
    session.stop()
    shutil.rmtree(warehouse, ignore_errors=True)


@pytest.fixture
def lake_cfg(tmp_path):
    """A configuration whose lake lives in a fresh temporary folder."""
    return load_config(values={**_test_values(str(tmp_path / "wh")), "lake": {"root": str(tmp_path / "lake")}})
