"""Shared entry-point plumbing: arguments, configuration, logging, session, exit codes."""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from typing import Callable, Mapping

from jobs.common.config import Config, load_config, log_config
from jobs.common.errors import ConfigError, RecjobsError
from jobs.common.runlog import new_run_id, record_stage

log = logging.getLogger(__name__)


def parse_date(text: str) -> dt.date:
    """``YYYY-MM-DD`` -> date, with an argparse-friendly error."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--date {text!r} must be YYYY-MM-DD") from None


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--conf FILE`` and ``--set key.path=value`` (both repeatable)."""
    parser.add_argument("--conf", action="append", default=[], metavar="FILE",
                        help="YAML file layered over conf/default.yaml (repeatable)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key, e.g. --set clean.window_days=3 (repeatable)")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of every stage run: date, configuration, run id."""
    parser.add_argument("--date", required=True, type=parse_date, help="run date ds (YYYY-MM-DD)")
    parser.add_argument("--run-id", default=None, help="run id (default: from the date and the clock)")
    add_config_args(parser)


def setup_logging(level: str = "INFO") -> None:
    """Plain, timestamped logs on stderr."""
    logging.basicConfig(level=getattr(logging, str(level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("py4j", "urllib3", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def config_from_args(args: argparse.Namespace) -> Config:
    """Load and log the configuration named by ``--conf`` / ``--set``."""
    cfg = load_config(args.conf, args.overrides)
    setup_logging(cfg["logging"]["level"])
    log_config(cfg)
    return cfg


def run_stage(spark, cfg: Mapping, stage: str, ds: dt.date, run_id: str) -> dict:
    """Run one registered stage and record it in ``runs``."""
    from jobs.stages import STAGES, stage_function

    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    with record_stage(spark, cfg, run_id, ds, stage) as rec:
        return stage_function(stage)(spark, cfg, ds, run_id, rec)


def preflight(stage: str, cfg: Mapping, ds: dt.date) -> None:
    """What a stage can check before Spark starts: clean, that its local input paths exist; the
    encoding stages, that the encoder's model is there. Each raises the error (exit code 2) the
    stage would raise after Spark started."""
    if stage == "clean":
        from jobs.common.raw_io import check_local_inputs

        check_local_inputs(cfg, ds)
    elif stage in ("encode_items", "encode_users"):
        from jobs.common.encoding import model_ref

        model_ref(cfg)


def _active_session():
    """The active SparkSession, or None (without importing Spark when nothing has)."""
    if "pyspark" not in sys.modules:
        return None
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def guarded(fn: Callable[[], int]) -> int:
    """Run ``fn``; turn project errors into a one-line message and their exit code, and stop
    the SparkSession ``fn`` started (so executors shut down cleanly; a session that was
    already running, e.g. a caller's, is left alone)."""
    had_session = _active_session() is not None
    try:
        return fn()
    except RecjobsError as exc:
        print(f"recjobs: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("recjobs: interrupted", file=sys.stderr)
        return 130
    finally:
        session = _active_session()
        if session is not None and not had_session:
            session.stop()


def stage_main(stage: str, argv: list[str] | None = None) -> int:
    """``main()`` of a stage module, for spark-submit."""
    parser = argparse.ArgumentParser(prog=f"{stage}", description=f"Run the {stage} stage for one date.")
    add_run_args(parser)
    args = parser.parse_args(argv)
    setup_logging()

    def go() -> int:
        from jobs.common.session import get_spark

        cfg = config_from_args(args)
        preflight(stage, cfg, args.date)
        spark = get_spark(cfg, app_name=f"recjobs-{stage}")
        run_id = args.run_id or cfg["run"]["id"] or new_run_id(args.date)
        from jobs.common.lock import run_lock

        with run_lock(spark, cfg, args.date, run_id):
            run_stage(spark, cfg, stage, args.date, run_id)
        return 0

    return guarded(go)
