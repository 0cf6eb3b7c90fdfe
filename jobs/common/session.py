"""SparkSession factory: Delta on, UTC, master and settings from the configuration.

Nothing here runs at import time. Jobs call :func:`get_spark` inside ``main()``; tests build
their own session and pass it to the jobs.

Set-up helper: ``python -m jobs.common.session --resolve`` starts a session once so that Ivy
resolves the Delta jars (from ``~/.m2/repository`` first, then Maven Central). If that fails,
it fills ``~/.m2`` with ``mvn dependency:get`` and tries again.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
from typing import Mapping

from jobs.common.errors import EnvironmentProblem

log = logging.getLogger(__name__)

MIN_JAVA = 17
# Delta's own modules that pull in kernel, Unity Catalog and Hadoop client jars which Spark
# already ships or a path-based lake does not use; excluding them keeps Spark's versions alone
# on the classpath.
DELTA_EXCLUDES = (
    "io.delta:delta-kernel-api",
    "io.delta:delta-kernel-defaults",
    "io.delta:delta-kernel-unitycatalog",
    "io.unitycatalog:unitycatalog-client",
    "io.unitycatalog:unitycatalog-hadoop",
)


def java_version(java: str | None = None) -> int:
    """Return the major version of the Java that Spark will start.

    Raises:
        EnvironmentProblem: No Java found, or it does not report a version.
    """
    if java is None:
        home = os.environ.get("JAVA_HOME")
        java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise EnvironmentProblem(
            "Java was not found (JAVA_HOME unset and no 'java' on PATH); install Java 17 or newer "
            "(e.g. apt-get install openjdk-17-jre-headless) and set JAVA_HOME"
        )
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot run {java} -version: {exc}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise EnvironmentProblem(f"{java} -version printed no version; install Java 17 or newer")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_392" style
        major = int(match.group(2))
    return major


def check_java() -> None:
    """Fail with a clear message when Java is missing or older than 17."""
    major = java_version()
    if major < MIN_JAVA:
        raise EnvironmentProblem(
            f"Java {major} found, but Spark 4 needs Java {MIN_JAVA} or newer; "
            "install it and point JAVA_HOME at it"
        )


def delta_packages(spark_cfg: Mapping) -> list[str]:
    """Maven coordinates for ``spark.jars.packages``: the Delta jars plus configured extras."""
    import pyspark

    major_minor = ".".join(pyspark.__version__.split(".")[:2])
    version = spark_cfg["delta_version"]
    return [f"io.delta:delta-spark_{major_minor}_2.13:{version}", *spark_cfg.get("extra_packages", [])]


def runs_locally(master: str | None) -> bool:
    """Whether Python workers run on this machine: a ``local`` master, or none at all (Spark then
    defaults to ``local[*]``)."""
    return not master or master.startswith("local")


def get_spark(cfg: Mapping, app_name: str | None = None):
    """Build (or return the running) SparkSession for a configuration.

    Args:
        cfg: The full configuration (``spark`` section used).
        app_name: Overrides ``spark.app_name``.

    Returns:
        A SparkSession with the Delta extension and catalog, session time zone UTC.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    check_java()
    # pandas-on-Spark and Arrow transfers expect this on driver and executors
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
    spark_cfg = cfg["spark"]
    builder = SparkSession.builder.appName(app_name or spark_cfg["app_name"])
    # Under spark-submit the JVM is already up: its --master and --packages (or the properties
    # file) decide; setting them here would override the command line or come too late.
    submitted = bool(os.environ.get("PYSPARK_GATEWAY_PORT"))
    master = "" if submitted else (spark_cfg.get("master") or "")
    if master:
        builder = builder.master(master)
    settings = {} if submitted else {
        "spark.jars.packages": ",".join(delta_packages(spark_cfg)),
        "spark.jars.excludes": ",".join(DELTA_EXCLUDES),
    }
    settings |= {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": "UTC",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
    }
    own_python = not os.environ.get("PYSPARK_PYTHON")
    if own_python and not submitted and runs_locally(master):
        # local workers run on this machine: give them this interpreter (and its packages), not
        # whatever python3 comes first on PATH; on a cluster PYSPARK_PYTHON / spark.pyspark.python
        # say which Python executors use
        os.environ["PYSPARK_PYTHON"] = sys.executable
    settings.update({k: str(v) for k, v in (spark_cfg.get("conf") or {}).items()})
    settings.setdefault("spark.executorEnv.PYARROW_IGNORE_TIMEZONE", "1")
    for key, value in settings.items():
        builder = builder.config(key, value)
    log.info("starting Spark (master=%s, packages=%s)", master or "from spark-submit / environment",
             settings.get("spark.jars.packages", "from spark-submit"))
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM failed to start: most often unresolved jars
        raise EnvironmentProblem(
            f"Spark did not start ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"if the Delta jars could not be resolved, run 'python -m jobs.common.session --resolve' "
            f"or 'make jars' to fill ~/.m2/repository"
        ) from exc
    if own_python and submitted and runs_locally(spark.sparkContext.master):
        # spark-submit --master local[...]: the workers are on this machine too (the master is only
        # known once the context exists; functions made from now on carry this interpreter)
        spark.sparkContext.pythonExec = sys.executable
    size_partitions(spark)
    spark.sparkContext.setLogLevel(os.environ.get("RECJOBS_SPARK_LOG_LEVEL", "WARN"))
    return spark


# Delta's default number of partitions for building a table's snapshot from its log
DELTA_SNAPSHOT_PARTITIONS = 50


def size_partitions(spark) -> None:
    """Shuffle partitions from the cores the session has, unless the configuration (or
    spark-submit) set them: Spark's fixed default of 200 makes 200 tasks of a few rows each on a
    small machine and, times the date partitions of a write, thousands of tiny files. Adaptive
    execution coalesces small shuffle partitions further. On a local master, Delta's snapshot
    partitions too: one per core, up to Delta's 50 (every read and commit of a table rebuilds its
    snapshot with that many tasks; ``recjobs run encode_items`` of 5 items on 2 cores took 59 s
    with 50, 37 to 43 s with 2). A cluster keeps Delta's 50, as its cores may not have joined yet."""
    conf = spark.sparkContext.getConf()
    cores = spark.sparkContext.defaultParallelism
    if not conf.contains("spark.sql.shuffle.partitions"):
        spark.conf.set("spark.sql.shuffle.partitions", str(max(2, 2 * cores)))
    if runs_locally(spark.sparkContext.master) and not conf.contains("spark.databricks.delta.snapshotPartitions"):
        spark.conf.set("spark.databricks.delta.snapshotPartitions", str(max(1, min(DELTA_SNAPSHOT_PARTITIONS, cores))))
    for key in ("spark.sql.adaptive.enabled", "spark.sql.adaptive.coalescePartitions.enabled"):
        if not conf.contains(key):
            spark.conf.set(key, "true")


def mvn_fill(packages: list[str]) -> None:
    """Download each coordinate (jar and pom, no transitive deps) into ``~/.m2/repository``."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise EnvironmentProblem("Maven ('mvn') is not installed, so ~/.m2 cannot be filled; install maven")
    coords = list(packages)
    coords.append(coords[0].replace(coords[0].split(":")[1], "delta-storage"))
    for coord in coords:
        log.info("mvn dependency:get %s", coord)
        subprocess.run([mvn, "-q", "dependency:get", f"-Dartifact={coord}", "-Dtransitive=false"], check=True)


def _resolve_main(argv: list[str] | None = None) -> int:
    from jobs.common.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolve", action="store_true", help="resolve the Delta jars now")
    parser.add_argument("--conf", action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.conf, ["spark.master=local[1]", "spark.conf.spark.ui.enabled=false"])
    if not args.resolve:
        parser.print_help()
        return 0
    check_java()
    code = _probe(cfg)
    if code != 0:
        log.warning("direct resolution failed; filling ~/.m2 with mvn dependency:get and trying again")
        mvn_fill(delta_packages(cfg["spark"]))
        code = _probe(cfg)
    print("Delta jars resolved" if code == 0 else "Delta jars could NOT be resolved")
    return code


def _probe(cfg: Mapping) -> int:
    """Start Spark in a child process (a failed JVM start cannot be retried in-process)."""
    code = (
        "import sys, tempfile\n"
        "from jobs.common.session import get_spark\n"
        f"spark = get_spark({dict(cfg)!r})\n"
        "d = tempfile.mkdtemp()\n"
        "spark.range(1).write.format('delta').save(d + '/t')\n"
        "assert spark.read.format('delta').load(d + '/t').count() == 1\n"
        "spark.stop()\n"
    )
    return subprocess.run([sys.executable, "-c", code]).returncode


if __name__ == "__main__":
    sys.exit(_resolve_main())
