"""The ``recjobs`` command line.

    recjobs demo                              sample data + the nightly run on the embedded default
    recjobs sample-data --out DIR ...         seeded synthetic raw data with planted faults
    recjobs run STAGE --date D [--conf F] [--set k=v]
    recjobs nightly --date D [--conf F] [--set k=v] [--force | --from-stage S]
    recjobs dq --date D [--json]              data-quality summary, Data Docs path
    recjobs eval --date D [--show]            metrics of the blend, ablations and baselines
    recjobs import movielens|amazon SRC --out DIR [--meta FILE]
    recjobs recs --user U [--date D] [--explain] [--json]
    recjobs sql "SELECT ..." [--limit N]      SQL over the lake's tables (one view per table)
    recjobs maintain                          OPTIMIZE (ZORDER BY user_id) and VACUUM every table
    recjobs stages                            the stages, in order

Queries live in ``jobs/queries.py``, the nightly in ``jobs/nightly.py``; this module parses
arguments and dispatches.

Exit codes: 0 done, 2 bad configuration or input (one-line reason), 3 data-quality gate failed,
4 another run of the date is in progress (try later), 1 anything else.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jobs.common.runner import (add_config_args, add_run_args, config_from_args, guarded, parse_date, preflight,
                                run_stage, setup_logging)


def _cmd_sample_data(args: argparse.Namespace) -> int:
    from jobs.sample_data import generate, spec_from_args

    try:
        spec = spec_from_args(args)
    except ValueError as exc:
        from jobs.common.errors import InputError

        raise InputError(str(exc)) from None
    truth = generate(args.out, spec)
    print(f"{spec.shape} sample written to {args.out}: {truth['raw_event_rows']} raw events, "
          f"{truth['raw_item_rows']} raw items, ground truth in {Path(args.out) / 'ground_truth.json'}")
    print(f"settings for it: {truth['conf']}")
    print(f"run the nightly on it with:\n  {truth['command']}")
    return 0


def _session_and_run_id(cfg, args):
    from jobs.common.runlog import new_run_id
    from jobs.common.session import get_spark

    spark = get_spark(cfg)
    return spark, args.run_id or cfg["run"]["id"] or new_run_id(args.date)


def _cmd_run(args: argparse.Namespace) -> int:
    from jobs.common.errors import ConfigError
    from jobs.common.lock import run_lock
    from jobs.stages import STAGES

    if args.stage not in STAGES:
        raise ConfigError(f"unknown stage {args.stage!r}; stages: {', '.join(STAGES)}")
    if args.full:
        args.overrides.append("encoder.full_refresh=true")
    cfg = config_from_args(args)
    preflight(args.stage, cfg, args.date)   # a missing input or model path exits 2 before Spark starts
    spark, run_id = _session_and_run_id(cfg, args)
    with run_lock(spark, cfg, args.date, run_id):
        summary = run_stage(spark, cfg, args.stage, args.date, run_id)
    print(json.dumps({"stage": args.stage, "ds": args.date.isoformat(), "run_id": run_id, **summary},
                     indent=1, default=str))
    return 0


def _cmd_nightly(args: argparse.Namespace) -> int:
    from jobs.nightly import run_from_args

    return run_from_args(args)


def _cmd_dq(args: argparse.Namespace) -> int:
    from jobs.common.session import get_spark
    from jobs.report import dq_summary

    cfg = config_from_args(args)
    dq = dq_summary(get_spark(cfg, app_name="recjobs-dq"), cfg, args.date)
    if args.json:
        print(json.dumps(dq, indent=1, default=str))
        return 0
    if not dq["tables"]:
        print(f"no validation recorded for {args.date}; run 'recjobs run validate --date {args.date}'")
        return 0
    print(f"data quality for {args.date}: {dq['expectations']} expectations, {dq['failed_error']} error-level and "
          f"{dq['failed_warn']} warn-level failures -> gate {'passed' if dq['failed_error'] == 0 else 'FAILED'}")
    for name, t in dq["tables"].items():
        print(f"  {name:24s} v{t['version'] if t['version'] is not None else '-':<4} {t['expectations']:3d} checks  "
              f"{t['failed_error']} error  {t['failed_warn']} warn")
        for f in t["failures"]:
            print(f"      {f['level']:5s} {f['description']} ({f['unexpected']} of {f['of']})")
    print(f"Data Docs: {dq['data_docs']}")
    print(f"JSON results: {dq['results_dir']}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from jobs.common.runlog import new_run_id
    from jobs.common.session import get_spark
    from jobs.queries import metrics_table

    cfg = config_from_args(args)
    spark = get_spark(cfg, app_name="recjobs-eval")
    if not args.show:
        run_stage(spark, cfg, "evaluate", args.date, args.run_id or cfg["run"]["id"] or new_run_id(args.date))
    print(metrics_table(spark, cfg, args.date))
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from jobs.importers import run_import, suggested_command

    manifest = run_import(args)
    print(f"{manifest['source']}: {manifest['events_written']} events and {manifest['items_written']} items "
          f"written to {args.out} ({manifest['first_date']} .. {manifest['last_date']}); "
          f"counts {manifest['counts']}; manifest {args.out / 'import.json'}")
    print(f"settings for it: {manifest['conf']}")
    print("run the nightly on it with:\n  " + suggested_command(manifest))
    return 0


def _cmd_stages(args: argparse.Namespace) -> int:
    from jobs.stages import STAGES

    for name, target in STAGES.items():
        print(f"{name:12s} {target}")
    return 0


def demo_config(out: Path, sample_conf: Path, conf_files=(), overrides=()):
    """The demo's configuration: the local set-up (``conf/local.yaml``), the demo's own Spark
    settings for a small sample (``conf/demo.yaml``), the sample's suggested settings, the demo's
    folders under ``out``, then the user's ``--conf`` files and ``--set`` overrides."""
    from conf import CONF_DIR
    from jobs.common.config import load_config

    return load_config([CONF_DIR / "local.yaml", CONF_DIR / "demo.yaml", sample_conf, *conf_files], [
        f"lake.root={out / 'lake'}",
        f"dq.docs_dir={out / 'reports' / 'dq'}",
        f"report.dir={out / 'reports'}",
        *overrides,
    ])


def _cmd_demo(args: argparse.Namespace) -> int:
    from pyspark.sql import functions as F

    from jobs.common import delta_io
    from jobs.common.config import log_config
    from jobs.common.session import get_spark
    from jobs.nightly import run_nightly
    from jobs.queries import metrics_table, show_recs
    from jobs.sample_data import DEFAULT_DAYS, SampleSpec, generate
    from schemas.registry import TABLES

    out = Path(args.out)
    sample = out / "sample"
    days = args.days if args.days is not None else DEFAULT_DAYS[args.shape]
    spec = SampleSpec(users=args.users, items=args.items, days=days, seed=args.seed, shape=args.shape)
    print(f"generating a {spec.shape} sample into {sample} ...", flush=True)
    truth = generate(sample, spec)
    cfg = demo_config(out, truth["conf"], args.conf, args.overrides)
    setup_logging(cfg["logging"]["level"])
    log_config(cfg)
    ds = spec.end_date
    spark = get_spark(cfg, app_name="recjobs-demo")
    out_run = run_nightly(spark, cfg, ds, force=True)
    if out_run["exit_code"]:
        print(f"recjobs: error: {out_run['error']}", file=sys.stderr)
        return out_run["exit_code"]
    results, run_id = out_run["results"], out_run["plan"].run_id
    print("\n=== recjobs demo ===")
    print(f"run date {ds}, run id {run_id}")
    for stage, summary in results.items():
        if isinstance(summary, dict) and summary.get("line"):
            print(summary["line"])
    print("tables:")
    for name in TABLES:
        print(f"  {name:16s} {delta_io.table_path(cfg, name)}")
    if "publish" in results:
        first_user = (delta_io.read_table(spark, cfg, "recommendations").where(F.col("ds") == F.lit(ds))
                      .agg(F.min("user_id")).first()[0])
        if first_user:
            print()
            show_recs(spark, cfg, first_user, ds, explain=False, as_json=False)
            print(f"(more: recjobs recs --user {first_user} --explain --conf conf/local.yaml)")
    if "evaluate" in results:
        print(f"\nevaluation ({', '.join(results['evaluate']['protocols'])}; blend vs ablations and baselines):")
        print(metrics_table(spark, cfg, ds, [int(k) for k in cfg["eval"]["ks"]][:1]))
    if out_run["report"]:
        print(f"run report: {out_run['report']['html']}")
    print(f"ground truth of the sample: {sample / 'ground_truth.json'} "
          f"({truth['raw_event_rows']} raw events)")
    return 0


def _cmd_recs(args: argparse.Namespace) -> int:
    from jobs.common.session import get_spark
    from jobs.queries import show_recs

    cfg = config_from_args(args)
    spark = get_spark(cfg, app_name="recjobs-recs")
    return show_recs(spark, cfg, args.user, args.date, args.explain, args.json)


def _cmd_maintain(args: argparse.Namespace) -> int:
    from jobs.common.delta_io import maintain
    from jobs.common.session import get_spark

    cfg = config_from_args(args)
    for row in maintain(get_spark(cfg, app_name="recjobs-maintain"), cfg):
        print(f"{row['table']:20s} files +{row['files_added']} -{row['files_removed']}")
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    from jobs.common.session import get_spark
    from jobs.queries import run_sql

    cfg = config_from_args(args)
    run_sql(get_spark(cfg, app_name="recjobs-sql"), cfg, args.query, args.limit)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``recjobs``."""
    from jobs.importers import add_arguments as add_import_args
    from jobs.nightly import add_nightly_args
    from jobs.sample_data import add_arguments as add_sample_args

    parser = argparse.ArgumentParser(
        prog="recjobs", description="Nightly recommendation batch jobs on Apache Spark and Delta Lake.",
        epilog="Exit codes: 0 done, 2 bad config or input, 3 data-quality gate failed, 4 the date is locked by "
               "another run (try later), 1 other errors.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="generate sample data and run the nightly stages on local Spark")
    p.add_argument("--out", default="demo-output", help="folder for the sample and the lake (default demo-output)")
    p.add_argument("--shape", choices=["shop", "ratings", "reviews"], default="shop",
                   help="the sample's shape (default shop; see recjobs sample-data)")
    p.add_argument("--users", type=int, default=400)
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--days", type=int, default=None, help="days of history (default: the shape's, shop 14)")
    p.add_argument("--seed", type=int, default=42)
    add_config_args(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("sample-data", help="write seeded synthetic raw events and items with planted faults")
    add_sample_args(p)
    p.set_defaults(func=_cmd_sample_data)

    p = sub.add_parser("run", help="run one stage for a date")
    p.add_argument("stage", help="stage name (see 'recjobs stages')")
    p.add_argument("--full", action="store_true",
                   help="encode_items: re-encode every item (same as --set encoder.full_refresh=true)")
    add_run_args(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("nightly", help="run every stage in order for a date (resumes; writes the run report)")
    add_run_args(p)
    add_nightly_args(p)
    p.set_defaults(func=_cmd_nightly)

    p = sub.add_parser("dq", help="the data-quality summary of a date and where the Data Docs are")
    p.add_argument("--date", required=True, type=parse_date)
    p.add_argument("--json", action="store_true", help="print JSON")
    add_config_args(p)
    p.set_defaults(func=_cmd_dq)

    p = sub.add_parser("recs", help="show a user's recommendations (latest date by default)")
    p.add_argument("--user", required=True)
    p.add_argument("--date", type=parse_date, default=None)
    p.add_argument("--explain", action="store_true", help="components, recent history, keywords, topics")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_config_args(p)
    p.set_defaults(func=_cmd_recs)

    p = sub.add_parser("sql", help="run Spark SQL with every lake table registered as a view")
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=50, help="rows to print (default 50)")
    add_config_args(p)
    p.set_defaults(func=_cmd_sql)

    p = sub.add_parser("maintain", help="OPTIMIZE (ZORDER BY user_id) and VACUUM the lake's tables")
    add_config_args(p)
    p.set_defaults(func=_cmd_maintain)

    p = sub.add_parser("eval", help="offline evaluation: the blend, ablations and baselines on held-out events")
    add_run_args(p)
    p.add_argument("--show", action="store_true", help="print the stored metrics of the date without evaluating")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("import", help="convert MovieLens or Amazon review data to the raw input contract")
    add_import_args(p)
    p.set_defaults(func=_cmd_import)

    p = sub.add_parser("stages", help="list the stages in run order")
    p.set_defaults(func=_cmd_stages)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``recjobs`` console script."""
    args = build_parser().parse_args(argv)
    setup_logging()
    return guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
