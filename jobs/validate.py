"""validate: great-expectations on every table of the run; an error-level failure blocks publish.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 \\
        jobs/validate.py --date 2026-06-30 --conf conf/cluster.yaml

For each suite in ``schemas/expectations.py`` the stage reads the rows of the run (the date's
partition, the clean window, or the whole table), adds the suite's helper columns and runs the
suite through a GX Checkpoint. Per table it writes the JSON result to ``<lake>/_dq/<ds>/`` and
appends one row per expectation to ``dq_results`` (with the Delta version validated); the Data
Docs HTML site (``dq.docs_dir``) is rebuilt once with every table's result. When an ``error`` expectation
fails the stage records everything and then exits 3; publish refuses a date whose staged
recommendations have not passed at their current version, so the published partition stays as
it was.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
import sys
from collections import namedtuple
from pathlib import Path
from typing import Iterable, Mapping

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.encoding import model_ref
from jobs.common.errors import DataQualityError
from jobs.common.raw_io import parse_timestamp, read_raw, resolve_path
from jobs.common.runlog import StageRecord
from jobs.common.settings import CleanSettings, DqSettings, RankSettings, SequenceSettings, TopicSettings
from jobs.ranking import excluded_pairs
from schemas import columns as c
from schemas import tables as t
from schemas.expectations import ERROR, SUITES, Suite, SuiteContext

log = logging.getLogger(__name__)

STAGE = "validate"
DATASOURCE = "recjobs"
# BASIC: counts, observed values and up to dq.partial_unexpected example values per expectation;
# SUMMARY would add the counts of each example value, one more Spark query per expectation
RESULT_FORMAT = "BASIC"


def gx_context(docs_dir: str):
    """A file-backed GX 1.x context in ``docs_dir`` (suites, checkpoints, Data Docs site)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    Path(docs_dir).mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=os.path.abspath(docs_dir))
    context.variables.progress_bars = {"globally": False}
    context.variables.save()
    return context


def _asset(context, name: str):
    try:
        source = context.data_sources.get(DATASOURCE)
    except (KeyError, ValueError):
        source = context.data_sources.add_spark(name=DATASOURCE)
    try:
        return source.get_asset(name)
    except (LookupError, ValueError):
        return source.add_dataframe_asset(name=name)


def _batch_definition(asset):
    try:
        return asset.get_batch_definition("whole")
    except (KeyError, LookupError, ValueError):
        return asset.add_batch_definition_whole_dataframe("whole")


def run_suite(context, suite: Suite, sctx: SuiteContext, df: DataFrame, run_name: str,
              partial_unexpected: int) -> tuple[dict, object]:
    """Run one suite on ``df`` through a Checkpoint; the result as a JSON-able dict, and the key
    of the stored (HTML-escaped) result, for :func:`build_docs`."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    batch = _batch_definition(_asset(context, suite.name))
    gx_suite = context.suites.add_or_update(
        gx.ExpectationSuite(name=suite.name, expectations=[ch.build() for ch in suite.checks(sctx)],
                            meta={"table": suite.source, "scope": suite.scope}))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite.name, data=batch, suite=gx_suite))
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=f"recjobs-{suite.name}", validation_definitions=[definition], actions=[],
        result_format={"result_format": RESULT_FORMAT, "partial_unexpected_count": partial_unexpected}))
    result = checkpoint.run(batch_parameters={"dataframe": df}, run_id=RunIdentifier(run_name=run_name))
    ((key, only),) = result.run_results.items()
    out = only.to_json_dict()
    # The Data Docs show example values as they are, markup included (a raw field holding
    # <script> ran in the page): they are built from a copy whose values are HTML-escaped.
    escape_values(only)
    context.validation_results_store.set(key, only)
    return out, key


def build_docs(context, keys: list) -> None:
    """Update the Data Docs site with the run's results, all in one build (the index page is
    rendered once per run, not once per table)."""
    if keys:
        context.build_data_docs(resource_identifiers=keys)


def _escaped(value):
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value


def escape_values(validation) -> None:
    """HTML-escape, in place, every value a GX validation result reports (examples, counts, observed)."""
    for r in validation.results:
        if r.result:
            r.result = _escaped(r.result)


# One dq_results row; the fields are the table's columns, in its order.
DqRow = namedtuple("DqRow", t.DQ_RESULTS.fieldNames())


def result_rows(result: dict, ds: dt.date, run_id: str, table_name: str, version: int | None,
                at: dt.datetime) -> list[tuple]:
    """One ``dq_results`` row per expectation of a GX suite result."""
    rows = []
    for r in result["results"]:
        conf = r["expectation_config"]
        res = r.get("result") or {}
        exc = r.get("exception_info") or {}
        level = (conf.get("meta") or {}).get("level", ERROR)
        if exc.get("raised_exception"):
            observed = f"exception: {exc.get('exception_message')}"
        elif "observed_value" in res:
            observed = json.dumps(res["observed_value"], default=str)
        else:
            observed = json.dumps(res.get("partial_unexpected_list", []), default=str)
        rows.append(DqRow(ds, run_id, table_name, version, conf["type"], conf["kwargs"].get("column"), level,
                          bool(r["success"]) and not exc.get("raised_exception"),
                          res.get("element_count"), res.get("unexpected_count"), res.get("unexpected_percent"),
                          observed[:2000], conf.get("description"), at))
    return rows


def suite_frame(spark: SparkSession, cfg: Mapping, suite: Suite, sctx: SuiteContext,
                cs: CleanSettings) -> tuple[DataFrame, int | None]:
    """The rows a suite checks, and the Delta version they come from (None for raw files)."""
    if suite.scope == "raw":
        kind = suite.source.split("_", 1)[1]           # raw_events -> events
        schema = t.RAW_EVENTS if kind == "events" else t.RAW_ITEMS
        path = cs.events_path if kind == "events" else cs.items_path
        df = read_raw(spark, resolve_path(path, sctx.ds), fmt=cs.input_format, schema=schema,
                      conf_key=f"input.{kind}_path", csv_separator=cs.csv_separator, csv_header=cs.csv_header)
        if c.TS in df.columns:
            df = df.withColumn("_ts", parse_timestamp(F.col(c.TS)))   # what the clean stage will read it as
        return df, None
    version = delta_io.current_version(spark, cfg, suite.source)
    df = delta_io.read_table(spark, cfg, suite.source, version=version)
    if suite.scope == "run":
        return clean_run_frame(df, sctx.ds), version
    if suite.scope == "ds":
        df = df.where(F.col(c.DS) == F.lit(sctx.ds))
    elif suite.scope == "window":
        df = df.where(F.col(c.EVENT_DATE).between(F.lit(sctx.window_start), F.lit(sctx.ds)))
    return df, version


def clean_run_frame(runs: DataFrame, ds: dt.date) -> DataFrame:
    """One row from the newest succeeded clean record of ds: the reconciliation identities and the
    share of raw events the bot rules took (none when clean has not run for ds)."""
    clean = (runs.where((F.col(c.DS) == F.lit(ds)) & (F.col(c.STAGE) == "clean") & (F.col("status") == "succeeded"))
             .orderBy(F.col("finished_at").desc()).limit(1))
    details = F.col("details")
    return clean.select(
        F.get_json_object(details, "$.events.identity_holds").cast("boolean").alias("events_identity_holds"),
        F.get_json_object(details, "$.items.identity_holds").cast("boolean").alias("items_identity_holds"),
        F.coalesce(F.get_json_object(details, "$.bots.share_of_events").cast("double"), F.lit(0.0))
        .alias("bot_event_share"))


def suite_context(spark: SparkSession, cfg: Mapping, ds: dt.date, cs: CleanSettings, dq: DqSettings) -> SuiteContext:
    """The run's facts the suites check against (window, limits, model, excluded pairs)."""
    read = delta_io.reader(spark, cfg)
    ref = model_ref(cfg)
    rs = RankSettings.from_config(cfg)
    return SuiteContext(
        ds=ds, window_start=ds - dt.timedelta(days=cs.window_days - 1), read=read,
        event_types=tuple(cs.event_types), rating_min=float(cs.rating_min), rating_max=float(cs.rating_max),
        max_len=SequenceSettings.from_config(cfg).max_len, topics_k=TopicSettings.from_config(cfg).k,
        top_n=rs.top_n, norm_tolerance=dq.norm_tolerance, distribution_tolerance=dq.distribution_tolerance,
        full_list_share=dq.full_list_share, max_bot_share=dq.max_bot_share, model_dim=ref.dim, model_id=ref.model_id,
        excluded=lambda: excluded_pairs(read("events_clean"), read("user_item_sentiment"), ds,
                                        rs.exclude_types, rs.negative_threshold))


def docs_index(context) -> str:
    """Path of the Data Docs index page."""
    sites = context.get_docs_sites_urls()
    url = sites[0]["site_url"] if sites else ""
    return url[len("file://"):] if url.startswith("file://") else url


def run(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, rec: StageRecord | None = None,
        suites: Iterable[str] | None = None) -> dict:
    """Validate the run's tables. Raises DataQualityError (exit 3) when an error-level check fails."""
    rec = rec or StageRecord()
    dq, cs = DqSettings.from_config(cfg), CleanSettings.from_config(cfg)
    names = list(suites) if suites is not None else [
        n for n, s in SUITES.items() if s.scope != "raw" or dq.validate_raw]
    context = gx_context(dq.docs_dir)
    sctx = suite_context(spark, cfg, ds, cs, dq)
    out_dir = f"{delta_io.lake_root(cfg)}/_dq/{ds.isoformat()}"
    rows, per_table, keys = [], {}, []
    for name in names:
        suite = SUITES[name]
        df, version = suite_frame(spark, cfg, suite, sctx, cs)
        checked = suite.derive(df, sctx).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            n_rows = checked.count()
            result, key = run_suite(context, suite, sctx, checked, f"{ds.isoformat()}-{run_id}",
                                    dq.partial_unexpected)
            keys.append(key)
        finally:
            checked.unpersist()
        at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        table_rows = result_rows(result, ds, run_id, suite.source, version, at)
        rows.extend(table_rows)
        json_path = f"{out_dir}/{name}.json"
        delta_io.write_text(spark, json_path, json.dumps(
            {"ds": ds.isoformat(), "run_id": run_id, "suite": name, "table": suite.source, "version": version,
             "rows": n_rows, "result": result}, indent=1, default=str))
        failed = [r for r in table_rows if not r.success]
        per_table[name] = {
            "table": suite.source, "version": version, "rows": n_rows, "expectations": len(table_rows),
            "failed_error": sum(1 for r in failed if r.level == ERROR),
            "failed_warn": sum(1 for r in failed if r.level != ERROR),
            "failures": [f"{r.level}: {r.description} ({r.unexpected_count} unexpected of {r.element_count})"
                         if r.unexpected_count is not None
                         else f"{r.level}: {r.description} (observed {r.observed})" for r in failed],
            "json": json_path}
        log.info("validated %s (%d rows, version %s): %d expectations, %d error and %d warn failures",
                 name, n_rows, version, len(table_rows), per_table[name]["failed_error"],
                 per_table[name]["failed_warn"])
    build_docs(context, keys)
    if rows:
        delta_io.append(spark.createDataFrame(rows, t.DQ_RESULTS), cfg, "dq_results")
    failed_error = sum(v["failed_error"] for v in per_table.values())
    summary = {"tables": per_table, "expectations": len(rows), "failed_error": failed_error,
               "failed_warn": sum(v["failed_warn"] for v in per_table.values()),
               "passed": failed_error == 0, "data_docs": docs_index(context), "results_dir": out_dir}
    summary["line"] = (f"data quality: {summary['expectations']} expectations on {len(per_table)} tables, "
                       f"{failed_error} error-level and {summary['failed_warn']} warn-level failures "
                       f"(gate {'passed' if failed_error == 0 else 'FAILED'}); Data Docs: {summary['data_docs']}")
    rec.finish(STAGE, {k: v for k, v in summary.items() if k != "tables"} | {
        "tables": {k: {kk: vv for kk, vv in v.items() if kk != "json"} for k, v in per_table.items()}},
        rows_in=sum(v["rows"] for v in per_table.values()), rows_out=len(rows))
    if failed_error:
        bad = {k: v["failures"] for k, v in per_table.items() if v["failed_error"]}
        first = next(iter(bad.items()))
        raise DataQualityError(
            f"data-quality gate failed for {ds}: {failed_error} error-level expectation(s) failed in "
            f"{', '.join(bad)} (first: {first[0]}: {first[1][0]}); nothing was published. "
            f"Results: {out_dir}/, Data Docs: {summary['data_docs']}")
    return summary


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point."""
    from jobs.common.runner import stage_main

    return stage_main(STAGE, argv)


if __name__ == "__main__":
    sys.exit(main())
