"""The nightly run report: one JSON document and one self-contained HTML page per run date.

What it holds: each stage's status, timing and row counts (from ``runs``), the reconciliation
identity of the clean stage (raw = clean + quarantined + duplicates, by reason), the
data-quality summary (from ``dq_results``: per table, expectations and failures by level, and
where the Data Docs are), statistics of the day's recommendations with three plots (score
distribution, recommendations per category, catalogue coverage) and, when the evaluate stage
ran, its metrics. Every figure is an aggregate computed in Spark; only aggregates reach the
driver (bins, categories, coverage points).

Written to ``<report.dir>/<ds>/report.{json,html}``, and the JSON also to
``<lake>/_reports/<ds>/report.json`` next to the tables.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
from pathlib import Path
from typing import Mapping

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.metrics import ALL_METRICS, gap_text
from jobs.common.runlog import newest_per_stage
from jobs.common.settings import RankSettings
from jobs.evaluation import MODELS, PRODUCT
from jobs.ranking import store
from schemas import columns as c

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ gathering
def stage_rows(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, skipped: list[str] = ()) -> list[dict]:
    """The newest ``runs`` row of each stage of this run (for stages a resumed run skipped: their
    newest successful row for ds), in stage order."""
    from jobs.stages import STAGES

    mine = F.col(c.RUN_ID) == run_id
    if skipped:
        mine = mine | (F.col(c.STAGE).isin(list(skipped)) & (F.col("status") == "succeeded"))
    runs = delta_io.read_table(spark, cfg, "runs").where(mine & (F.col(c.DS) == F.lit(ds)))
    rows = newest_per_stage(runs).collect()  # <= stages
    order = {name: i for i, name in enumerate(STAGES)}
    out = []
    for r in sorted(rows, key=lambda r: order.get(r[c.STAGE], len(order))):
        out.append({"stage": r[c.STAGE], "status": r["status"], "started_at": r["started_at"].isoformat(),
                    "duration_s": round(r["duration_s"], 2), "rows_in": r["rows_in"], "rows_out": r["rows_out"],
                    "details": json.loads(r["details"] or "{}")})
    return out


def dq_summary(spark: SparkSession, cfg: Mapping, ds: dt.date) -> dict:
    """Newest validation of each table for ds: expectation counts and failures by level."""
    res = delta_io.read_table(spark, cfg, "dq_results").where(F.col(c.DS) == F.lit(ds))
    latest = (res.withColumn("_last", F.max("validated_at").over(Window.partitionBy("table_name")))
              .where(F.col("validated_at") == F.col("_last")))
    rows = latest.collect()  # one row per expectation of each table: bounded by the suites
    tables: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: (r["table_name"], r["expectation"], r["column_name"] or "")):
        t = tables.setdefault(r["table_name"], {"version": r["table_version"], "expectations": 0,
                                                "failed_error": 0, "failed_warn": 0, "failures": [],
                                                "validated_at": r["validated_at"].isoformat()})
        t["expectations"] += 1
        if not r["success"]:
            t["failed_error" if r["level"] == "error" else "failed_warn"] += 1
            t["failures"].append({"level": r["level"], "expectation": r["expectation"], "column": r["column_name"],
                                  "description": r["description"], "unexpected": r["unexpected_count"],
                                  "of": r["element_count"], "observed": r["observed"]})
    return {"tables": tables, "expectations": sum(t["expectations"] for t in tables.values()),
            "failed_error": sum(t["failed_error"] for t in tables.values()),
            "failed_warn": sum(t["failed_warn"] for t in tables.values()),
            "data_docs": str(Path(cfg["dq"]["docs_dir"]).resolve() / "gx/uncommitted/data_docs/local_site/index.html"),
            "results_dir": f"{delta_io.lake_root(cfg)}/_dq/{ds.isoformat()}"}


def score_histogram(recs: DataFrame, bins: int) -> dict:
    """Equal-width histogram of scores computed in Spark: ``edges`` (bins + 1) and ``counts``."""
    lo, hi = recs.agg(F.min("score"), F.max("score")).first()
    if lo is None:
        return {"edges": [], "counts": []}
    width = (hi - lo) / bins if hi > lo else 1.0
    idx = F.least(F.floor((F.col("score") - F.lit(lo)) / F.lit(width)).cast("int"), F.lit(bins - 1))
    counts = dict(recs.groupBy(idx.alias("b")).count().collect())  # <= bins rows
    return {"edges": [lo + i * width for i in range(bins + 1)], "counts": [counts.get(i, 0) for i in range(bins)]}


def per_category(recs: DataFrame, items: DataFrame, top: int) -> list[tuple[str, int]]:
    """Recommendations per category, the ``top`` largest and the rest as "other"."""
    counts = (recs.join(items.select(c.ITEM_ID, c.CATEGORY), c.ITEM_ID, "left")
              .groupBy(F.coalesce(F.col(c.CATEGORY), F.lit("(none)")).alias("category")).count()
              .collect())  # one row per category
    ranked = sorted(((r["category"], int(r["count"])) for r in counts), key=lambda kv: (-kv[1], kv[0]))
    rest = sum(n for _, n in ranked[top:])
    return ranked[:top] + ([("other", rest)] if rest else [])


def coverage_curve(recs: DataFrame, catalogue: int, points: int) -> dict:
    """Share of all recommendations taken by the most recommended x% of the catalogue, at
    ``points`` values of x (items never recommended count as zeros), and the coverage.

    Only the frequency of frequencies reaches the driver: (times recommended, number of items),
    at most as many rows as there are distinct per-item counts."""
    freq = (recs.groupBy(c.ITEM_ID).count().groupBy("count").agg(F.count("*").alias("items"))
            .collect())
    levels = sorted(((int(r["count"]), int(r["items"])) for r in freq), reverse=True)
    total = sum(k * n for k, n in levels)
    distinct = sum(n for _, n in levels)
    if not total:
        return {"x": [], "share": [], "coverage": 0.0, "distinct_items": 0}
    shares = []
    for i in range(points):
        budget, taken = max(1, round(catalogue * (i + 1) / points)), 0
        for k, n in levels:
            step = min(n, budget)
            taken += k * step
            budget -= step
            if budget == 0:
                break
        shares.append(taken / total)
    return {"x": [(i + 1) / points for i in range(points)], "share": shares,
            "coverage": distinct / catalogue if catalogue else 0.0, "distinct_items": distinct}


def recommendation_stats(spark: SparkSession, cfg: Mapping, ds: dt.date, table: str) -> dict:
    """Counts and plot data of the ds partition of a recommendations table."""
    rp = cfg["report"]
    recs = delta_io.read_table(spark, cfg, table).where(F.col(c.DS) == F.lit(ds)).select(
        c.USER_ID, c.ITEM_ID, "score", "reason_kind").cache()
    try:
        rows, users = recs.agg(F.count("*"), F.countDistinct(c.USER_ID)).first()
        items = delta_io.read_table(spark, cfg, "items_clean")
        catalogue = items.count()
        # one row per component (rows of releases before reason_kind count as "unrecorded")
        reasons = dict(recs.groupBy(F.coalesce("reason_kind", F.lit("unrecorded")).alias("k")).count().collect())
        return {"table": table, "rows": rows, "users": users, "catalogue_items": catalogue,
                "score_histogram": score_histogram(recs, int(rp["score_bins"])),
                "per_category": per_category(recs, items, int(rp["max_categories"])),
                "coverage": coverage_curve(recs, catalogue, int(rp["coverage_points"])),
                "reasons": reasons}
    finally:
        recs.unpersist()


def evaluation(spark: SparkSession, cfg: Mapping, ds: dt.date) -> list[dict]:
    """The evaluate stage's metrics for ds, if it ran (bounded: protocols x models x metrics x K)."""
    from schemas.registry import TABLES

    if "metrics" not in TABLES:
        return []
    rows = delta_io.read_table(spark, cfg, "metrics").where(F.col(c.DS) == F.lit(ds)).collect()
    return [{k: r.asDict().get(k) for k in ("protocol", "model", "metric", "k", "value", "users", "ci_low", "ci_high")}
            for r in rows]


def blend_summary(spark: SparkSession, cfg: Mapping, ds: dt.date, blend: Mapping | None, table: str) -> dict | None:
    """What the night ranked with: the blend's source and weights next to the fixed ones, the
    learned weights of the last nights, and the share of already-seen items in each list."""
    if not blend:
        return None
    fixed = RankSettings.from_config(cfg).weights
    weights = dict(blend.get("weights") or {})
    out = {k: v for k, v in blend.items() if k != "weights"}
    out.update({"weights": weights, "fixed_weights": fixed, "history": store.history(spark, cfg, ds)})
    recs = delta_io.read_table(spark, cfg, table).where(
        (F.col(c.DS) == F.lit(ds)) & (F.col(c.USER_ID) != c.DEFAULT_USER))
    per_user = recs.groupBy(c.USER_ID).agg(F.avg((F.col("components.engagement") > 0).cast("double")).alias("_s"))
    out["seen_share"] = float(per_user.agg(F.avg("_s")).first()[0] or 0.0)          # one number
    largest = max(weights, key=lambda k: abs(weights[k])) if weights else None
    out["engagement_leads"] = largest == "engagement" and weights.get("engagement", 0) > 0
    return out


def build_report(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, status: str,
                 error: str | None = None, skipped: list[str] = ()) -> dict:
    """Gather the whole report as a JSON-able dict."""
    stages = stage_rows(spark, cfg, ds, run_id, skipped)
    clean = next((s["details"] for s in stages if s["stage"] == "clean"), {})
    ranked = next((s["details"] for s in stages if s["stage"] == "rank_topn"), {})
    sequence = next((s["details"] for s in stages if s["stage"] == "train_seqrec"), None)
    published = any(s["stage"] == "publish" and s["status"] == "succeeded" for s in stages)
    table = "recommendations" if published else "recommendations_staging"
    return {
        "ds": ds.isoformat(), "run_id": run_id, "status": status, "error": error,
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "stages": [{k: v for k, v in s.items() if k != "details"} for s in stages],
        "total_duration_s": round(sum(s["duration_s"] for s in stages), 2),
        "reconciliation": {part: clean[part] for part in ("events", "items") if part in clean},
        "bots": clean.get("bots"),
        "dq": dq_summary(spark, cfg, ds),
        "recommendations": recommendation_stats(spark, cfg, ds, table),
        "sequence_model": sequence,
        "blend": blend_summary(spark, cfg, ds, ranked.get("blend"), table),
        "evaluation": evaluation(spark, cfg, ds),
    }


# ------------------------------------------------------------------------------- rendering
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(report: dict) -> dict[str, str]:
    """The three plots as base64 PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = report["recommendations"]
    out = {}
    hist = recs["score_histogram"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if hist["counts"]:
        edges = hist["edges"]
        ax.bar(edges[:-1], hist["counts"], width=edges[1] - edges[0], align="edge", color="#4c72b0",
               edgecolor="white")
    ax.set(title="Score distribution", xlabel="blended score", ylabel="recommendations")
    out["score_distribution"] = _png(fig)

    cats = recs["per_category"]
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.28 * len(cats) + 1)))
    ax.barh([k for k, _ in cats][::-1], [v for _, v in cats][::-1], color="#55a868")
    ax.set(title="Recommendations per category", xlabel="recommendations")
    out["per_category"] = _png(fig)

    cov = recs["coverage"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot([0] + [100 * x for x in cov["x"]], [0] + [100 * s for s in cov["share"]], marker="o", ms=3,
            color="#c44e52", label="recommendations")
    ax.plot([0, 100], [0, 100], ls="--", color="grey", lw=1, label="uniform")
    ax.set(title=f"Catalogue coverage: {100 * cov['coverage']:.1f}% of items recommended",
           xlabel="most recommended items (% of catalogue)", ylabel="share of recommendations (%)")
    ax.legend(loc="lower right")
    out["coverage"] = _png(fig)

    history = (report.get("blend") or {}).get("history") or []
    if history:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        nights = [h["ds"] for h in history]
        for name in sorted({k for h in history for k in h["weights"]}):
            ax.plot(nights, [h["weights"].get(name, 0.0) for h in history], marker="o", ms=3, label=name)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(title="Blend weights by night", xlabel="night", ylabel="weight (standardised input)")
        ax.tick_params(axis="x", rotation=45)
        ax.legend(fontsize=7, ncol=2)
        out["blend_weights"] = _png(fig)
    return out


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
.warn{color:#9a6700;font-weight:600}.plots img{margin:6px 12px 6px 0;border:1px solid #eee}
code{background:#f4f4f4;padding:1px 4px}"""


def evaluation_table(rows: list[dict]) -> str:
    """Metrics pivoted: one row per (protocol, model), one column per metric@K."""
    values = {(r["protocol"], r["model"], r["metric"], r["k"]): r for r in rows}
    ks = sorted({r["k"] for r in rows})
    cols = [(m, k) for k in ks for m in ALL_METRICS]
    keys = sorted({(r["protocol"], r["model"]) for r in rows},
                  key=lambda pm: (pm[0], MODELS.index(pm[1]) if pm[1] in MODELS else 99, pm[1]))
    first = ks[0] if ks else 0

    def interval(p, m):
        r = values.get((p, m, "ndcg", first))
        return f"{r['ci_low']:.4f} to {r['ci_high']:.4f}" if r and r.get("ci_low") is not None else ""

    def gap(p, m):
        r = values.get((p, m, "ndcg_gap", first))
        return gap_text(r["value"], r.get("ci_low"), r.get("ci_high")) if r else ""

    users = {(r["protocol"], r["model"]): r.get("users") for r in rows}
    return _table(["protocol", "model", "users", *[f"{m}@{k}" for m, k in cols], f"ndcg@{first} interval",
                   f"{PRODUCT} minus model, ndcg@{first} (paired interval)"],
                  [[p, m, users.get((p, m)) or "",
                    *[f"{values[(p, m, met, k)]['value']:.4f}" if (p, m, met, k) in values else "" for met, k in cols],
                    interval(p, m), gap(p, m)] for p, m in keys])


def render_html(report: dict) -> str:
    """A self-contained HTML page (plots embedded)."""
    status_cls = "ok" if report["status"] == "succeeded" else "bad"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>recjobs run {report['ds']}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>recjobs nightly run for {report['ds']}: <span class='{status_cls}'>{report['status']}</span></h1>",
             f"<p>run id <code>{html.escape(report['run_id'])}</code>, generated {report['generated_at']}, "
             f"stage time {report['total_duration_s']} s</p>"]
    if report.get("error"):
        parts.append(f"<p class='bad'>{html.escape(report['error'])}</p>")
    parts.append("<h2>Stages</h2>" + _table(
        ["stage", "status", "started (UTC)", "seconds", "rows in", "rows out"],
        [[s["stage"], s["status"], s["started_at"], s["duration_s"], s["rows_in"], s["rows_out"]]
         for s in report["stages"]]))
    rec = report["reconciliation"]
    if rec:
        parts.append("<h2>Reconciliation: raw = clean + quarantined + duplicates removed</h2>" + _table(
            ["input", "raw", "clean", "quarantined", "duplicates removed", "identity", "quarantined by reason"],
            [[k, v["raw"], v["clean"], v["quarantined"], v["duplicates_removed"],
              "holds" if v["identity_holds"] else "BROKEN",
              ", ".join(f"{r}: {n}" for r, n in v["by_reason"].items())] for k, v in rec.items()]))
    bots = report.get("bots")
    if bots:
        rules = ", ".join(f"{rule}: {bots['users_by_rule'].get(rule, 0)} users, {bots['events_by_rule'].get(rule, 0)} "
                          f"events" for rule in bots["users_by_rule"])
        limit = (f"; relative limit {bots['relative_limit']:.0f} events an hour (median busiest hour "
                 f"{bots['median_busiest_hour']})" if bots.get("relative_limit") is not None else "")
        parts.append(f"<p>Bot rules took {bots['users']} users and {bots['events']} events "
                     f"({100 * bots['share_of_events']:.2f}% of raw events): {html.escape(rules)}; browsing limit "
                     f"{bots['browsing_limit']} events an hour of {html.escape(', '.join(bots['browsing_types']) or 'no type')}"
                     f"{html.escape(limit)}.</p>")
    dq = report["dq"]
    gate = "passed" if dq["failed_error"] == 0 else "FAILED"
    parts.append(f"<h2>Data quality: gate <span class='{'ok' if gate == 'passed' else 'bad'}'>{gate}</span></h2>"
                 f"<p>{dq['expectations']} expectations, {dq['failed_error']} error-level and "
                 f"{dq['failed_warn']} warn-level failures. Data Docs: <code>{html.escape(dq['data_docs'])}</code>; "
                 f"JSON results: <code>{html.escape(dq['results_dir'])}</code></p>")
    parts.append(_table(["table", "version", "expectations", "error failures", "warn failures", "failed checks"],
                        [[name, t["version"], t["expectations"], t["failed_error"], t["failed_warn"],
                          "; ".join(f"{f['level']}: {f['description']} ({f['unexpected']} of {f['of']})"
                                    for f in t["failures"])] for name, t in dq["tables"].items()]))
    r = report["recommendations"]
    cov = r["coverage"]
    parts.append(f"<h2>Recommendations ({html.escape(r['table'])})</h2><p>{r['rows']} rows for {r['users']} users; "
                 f"{cov['distinct_items']} of {r['catalogue_items']} catalogue items recommended "
                 f"({100 * cov['coverage']:.1f}% coverage). Reasons: "
                 + ", ".join(f"{html.escape(str(k))} {v}" for k, v in sorted(r["reasons"].items(), key=lambda kv: -kv[1]))
                 + "</p><div class='plots'>"
                 + "".join(f"<img alt='{k}' src='data:image/png;base64,{v}'>" for k, v in plots(report).items())
                 + "</div>")
    sm = report.get("sequence_model")
    if sm:
        if sm.get("trained"):
            ndcg = "n/a" if sm.get("validation_ndcg") is None else f"{sm['validation_ndcg']:.4f}"
            recall = "n/a" if sm.get("validation_recall") is None else f"{sm['validation_recall']:.4f}"
            epochs = [[h["epoch"], h["loss"], f"{h['val_ndcg']:.4f}" if "val_ndcg" in h else ""]
                      for h in sm.get("history") or []]
            parts.append(f"<h2>Sequence model: {html.escape(sm['mode'])} training</h2><p>{sm['epochs']} epochs (best "
                         f"{sm['best_epoch']}), validation NDCG@10 {ndcg}, Recall@10 {recall} on "
                         f"{sm['validation_users']} users; {sm['parameters']} parameters, {sm['items']} items, "
                         f"{sm['training_positions']} training targets, {sm['processes']} process(es) on "
                         f"{html.escape(sm['device'])}, {sm['seconds']:.1f} s; {sm['users_scored']} users scored.</p>"
                         + _table(["epoch", "loss", "validation NDCG@10"], epochs))
        else:
            parts.append(f"<h2>Sequence model: none tonight</h2><p>{html.escape(str(sm.get('why', 'seqrec.enabled is false')))}</p>")
    b = report.get("blend")
    if b:
        source = {"learned": "learned tonight", "reused": "reused", "fallback_last": "fallback to the newest earlier fit",
                  "fallback_fixed": "fallback to the fixed weights", "fixed": "fixed (rank.model: fixed)"}[b["source"]]
        head = (f"<h2>Blend: {html.escape(source)}</h2><p>chosen: {html.escape(str(b.get('chosen', 'fixed')))}"
                + (f", model of {html.escape(b['model_ds'])}" if b.get("model_ds") else "")
                + (f"; validation NDCG@10 {b['validation_ndcg']:.4f} (fixed weights {b['fixed_ndcg']:.4f}, best single "
                   f"component {html.escape(b['best_single'])} {b['best_single_ndcg']:.4f})" if "validation_ndcg" in b else "")
                + (f"; why: {html.escape(b['why'])}" if b.get("why") else "") + "</p>")
        learned = (b["history"][-1]["learned_weights"] if b.get("history") else {}) or {}
        rows = [[name, f"{b['fixed_weights'].get(name, 0.0):.3f}", f"{b['weights'].get(name, 0.0):.3f}",
                 f"{learned[name]:.3f}" if name in learned else ""] for name in b["fixed_weights"]]
        seen = (f"<p>Items the user already touched make up {100 * b['seen_share']:.1f}% of a list on average"
                + ("; the engagement component has the largest weight: set rank.max_engaged to keep room for "
                   "items new to the user" if b["engagement_leads"] else "") + ".</p>")
        halves = ", ".join(f"{k} {v:g} days" for k, v in (b.get("half_lives") or {}).items())
        parts.append(head + _table(["component", "fixed weight", "weight ranked with", "fitted tonight"], rows)
                     + (f"<p>Half-lives chosen: {html.escape(halves)}.</p>" if halves else "") + seen)
    if report["evaluation"]:
        parts.append("<h2>Evaluation</h2>" + evaluation_table(report["evaluation"]))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, status: str,
                 error: str | None = None, skipped: list[str] = ()) -> dict:
    """Build the report and write it; returns the paths and the report."""
    report = build_report(spark, cfg, ds, run_id, status, error, skipped)
    folder = Path(cfg["report"]["dir"]) / ds.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, default=str)
    (folder / "report.json").write_text(text)
    (folder / "report.html").write_text(render_html(report))
    delta_io.write_text(spark, f"{delta_io.lake_root(cfg)}/_reports/{ds.isoformat()}/report.json", text)
    log.info("run report written to %s", folder)
    return {"json": str((folder / "report.json").resolve()), "html": str((folder / "report.html").resolve()),
            "report": report}
