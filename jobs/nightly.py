"""The nightly driver: every stage in order for one date, resumable, with a run report.

    recjobs nightly --date 2026-06-30 --conf conf/cluster.yaml
    spark-submit --properties-file conf/spark-defaults.conf \\
        jobs/nightly.py --date 2026-06-30 --conf conf/cluster.yaml      (deploy/spark-submit.sh)

Each stage is recorded in ``runs``. Started again for a date, the driver resumes after the last
stage that succeeded in the newest run of the date (same run id) unless ``--force`` (all stages,
new run id) or ``--from-stage S`` (S and the stages after it, new run id). The run holds the
date's lock throughout (``jobs/common/lock.py``). At the end, succeeded or not, it writes the run
report (HTML and JSON, see ``jobs/report.py``). Exit codes: 0 done, 2 bad config or input,
3 data-quality gate failed (nothing published), 4 the date is locked by another run, 1 anything else.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Mapping

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.errors import ConfigError, RecjobsError, RunLocked
from jobs.common.lock import run_lock
from jobs.common.runlog import new_run_id, newest_per_stage
from schemas import columns as c
from schemas import tables as t

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """Which stages to run, under which run id, and which are skipped as already done."""

    run_id: str
    stages: list[str]
    skipped: list[str] = field(default_factory=list)
    resumed: bool = False


DONE = ("succeeded", "inherited")


def latest_statuses(spark: SparkSession, cfg: Mapping, ds: dt.date,
                    first_stage: str = "clean") -> tuple[dict[str, str], str | None]:
    """The run id of the newest nightly run of ds, and the newest status of each stage *in that run*.

    Only that run's records count: after a ``--force`` or ``--from-stage`` run (a new run id) was
    killed, the older run's successes say nothing about what the new run left behind. A nightly
    run is one with a record of ``first_stage`` (run, or inherited by ``--from-stage``); a single
    stage run by hand (``recjobs run publish``) is not one to resume.
    """
    runs = delta_io.read_table(spark, cfg, "runs").where(F.col(c.DS) == F.lit(ds))
    nightly = runs.where(F.col(c.STAGE) == first_stage).select(c.RUN_ID).distinct()
    last = (runs.join(nightly, c.RUN_ID).orderBy(F.col("finished_at").desc()).select(c.RUN_ID).first())
    if last is None:
        return {}, None
    mine = runs.where(F.col(c.RUN_ID) == last[c.RUN_ID])
    rows = newest_per_stage(mine).select(c.STAGE, "status").collect()  # one row per stage
    return {r[c.STAGE]: r["status"] for r in rows}, last[c.RUN_ID]


def plan_stages(stages: list[str], statuses: Mapping[str, str], last_run_id: str | None, ds: dt.date,
                force: bool = False, from_stage: str | None = None, run_id: str | None = None) -> Plan:
    """Decide what to run.

    Default: resume the newest run after its last stage done, in order (a stage counts as done when
    its newest record in that run succeeded, or was inherited by a ``--from-stage`` run, and every
    stage before it is done), under that run's id. ``force``: every stage under a new run id.
    ``from_stage``: that stage and the ones after it under a new run id (the stages before it are
    recorded as inherited, so that the new run resumes as a whole).
    """
    if from_stage is not None and from_stage not in stages:
        raise ConfigError(f"--from-stage {from_stage!r} is not a stage; stages: {', '.join(stages)}")
    if force:
        return Plan(run_id or new_run_id(ds), list(stages))
    if from_stage is not None:
        start = stages.index(from_stage)
        return Plan(run_id or new_run_id(ds), stages[start:], stages[:start], resumed=False)
    start = 0
    while start < len(stages) and statuses.get(stages[start]) in DONE:
        start += 1
    resumed = start > 0 and last_run_id is not None
    return Plan(run_id or (last_run_id if resumed else None) or new_run_id(ds), stages[start:], stages[:start],
                resumed)


def run_nightly(spark: SparkSession, cfg: Mapping, ds: dt.date, force: bool = False,
                from_stage: str | None = None, run_id: str | None = None, report: bool = True,
                echo=print) -> dict:
    """Run (or resume) the nightly for ds. Returns ``{"plan", "results", "exit_code", "report", "error"}``;
    project errors are caught, reported and turned into the exit code."""
    from jobs.stages import STAGES

    statuses, last = latest_statuses(spark, cfg, ds, next(iter(STAGES)))
    plan = plan_stages(list(STAGES), statuses, last, ds, force, from_stage, run_id)
    results, code, error = {}, 0, None
    try:
        with run_lock(spark, cfg, ds, plan.run_id) as lock:
            if plan.skipped and plan.resumed:
                echo(f"resuming run {plan.run_id} for {ds}: skipping {', '.join(plan.skipped)} (done before)")
            elif plan.skipped:
                echo(f"run {plan.run_id} for {ds} from {from_stage}: taking {', '.join(plan.skipped)} as done")
                inherit(spark, cfg, ds, plan.run_id, plan.skipped, last)
            if not plan.stages:
                echo(f"every stage already succeeded for {ds} (run {plan.run_id}); use --force to run again")
            code, error = _run_stages(spark, cfg, ds, plan, results, lock, echo)
    except RunLocked as exc:
        return {"plan": plan, "results": results, "exit_code": exc.exit_code, "status": "locked",
                "error": str(exc), "report": None}
    status = "succeeded" if code == 0 else ("dq_gate_failed" if code == 3 else "failed")
    written = None
    if report:
        from jobs.report import write_report

        written = write_report(spark, cfg, ds, plan.run_id, status, error, plan.skipped)
        echo(f"run report: {written['html']} (JSON: {written['json']})")
    return {"plan": plan, "results": results, "exit_code": code, "status": status, "error": error,
            "report": written}


def inherit(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, stages: list[str],
            from_run: str | None) -> None:
    """Record ``stages`` as done by ``run_id`` on the outputs an earlier run left (``inherited``)."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    rows = [(run_id, ds, stage, "inherited", now, now, 0.0, None, None, json.dumps({"inherited_from": from_run}))
            for stage in stages]
    delta_io.append(spark.createDataFrame(rows, t.RUNS), cfg, "runs")


def _run_stages(spark: SparkSession, cfg: Mapping, ds: dt.date, plan: Plan, results: dict, lock, echo) -> tuple:
    """Run the plan's stages in order until one fails; (exit code, error text)."""
    from jobs.common.runner import run_stage
    from jobs.stages import STAGES

    total = len(STAGES)
    for stage in plan.stages:
        i = list(STAGES).index(stage) + 1
        echo(f"[{i:2d}/{total}] {stage:16s} ...", flush=True)
        t0 = time.monotonic()
        try:
            results[stage] = run_stage(spark, cfg, stage, ds, plan.run_id)
        except RecjobsError as exc:
            echo(f"[{i:2d}/{total}] {stage:16s} FAILED after {time.monotonic() - t0:.1f}s: {exc}", flush=True)
            return exc.exit_code, f"{stage}: {exc}"
        except Exception as exc:
            echo(f"[{i:2d}/{total}] {stage:16s} FAILED after {time.monotonic() - t0:.1f}s: {type(exc).__name__}",
                 flush=True)
            log.exception("stage %s failed", stage)
            return 1, f"{stage}: {type(exc).__name__}: {exc}"
        echo(f"[{i:2d}/{total}] {stage:16s} done in {time.monotonic() - t0:.1f}s", flush=True)
        lock.heartbeat()
    return 0, None


def add_nightly_args(parser: argparse.ArgumentParser) -> None:
    """``--force`` and ``--from-stage`` (besides the run arguments)."""
    parser.add_argument("--force", action="store_true", help="run every stage again under a new run id")
    parser.add_argument("--from-stage", default=None, metavar="STAGE",
                        help="start at this stage (and run the ones after it)")


def run_from_args(args: argparse.Namespace) -> int:
    """The nightly for parsed arguments (``recjobs nightly`` and this module's ``main``): the exit code."""
    from jobs.common.runner import config_from_args
    from jobs.common.session import get_spark

    cfg = config_from_args(args)
    spark = get_spark(cfg, app_name="recjobs-nightly")
    out = run_nightly(spark, cfg, args.date, args.force, args.from_stage, args.run_id or cfg["run"]["id"])
    if out["error"]:
        print(f"recjobs: error: {out['error']}", file=sys.stderr)
    return out["exit_code"]


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``spark-submit jobs/nightly.py``."""
    from jobs.common.runner import add_run_args, guarded, setup_logging

    parser = argparse.ArgumentParser(prog="nightly", description="Run every stage of the nightly for one date.")
    add_run_args(parser)
    add_nightly_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    return guarded(lambda: run_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
