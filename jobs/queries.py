"""What users ask of the lake: one user's recommendations (explained), SQL over the tables, the
stored evaluation. Every read goes through ``jobs/common/delta_io``; only bounded results reach
the driver (one user's list, a printed page of rows, the metrics table)."""
from __future__ import annotations

import datetime as dt
import json
from typing import Mapping

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.errors import InputError
from jobs.common.metrics import ALL_METRICS, gap_text
from jobs.common.settings import PROTOCOLS
from jobs.evaluation import MODELS, PRODUCT
from schemas import columns as c
from schemas.registry import TABLES


def user_recommendations(spark: SparkSession, cfg: Mapping, user: str, date: dt.date | None = None,
                         explain: bool = False) -> dict:
    """One user's recommendations of ``date`` (the newest date when None), with the components,
    recent history, keywords and topic profile when ``explain``."""
    read = delta_io.reader(spark, cfg)
    table = read("recommendations")
    ds = date or table.agg(F.max(c.DS)).first()[0]
    if ds is None:
        raise InputError(f"no recommendations in {delta_io.table_path(cfg, 'recommendations')}; run the nightly first")
    items = read("items_clean").select(c.ITEM_ID, c.TITLE, c.CATEGORY)
    on_ds = table.where(F.col(c.DS) == F.lit(ds))
    rows = on_ds.where(F.col(c.USER_ID) == user).join(items, c.ITEM_ID, "left").orderBy("rank").collect()  # <= top_n
    default = not rows
    if default:      # a user nobody knows gets the default list, as a service would serve it
        rows = on_ds.where(F.col(c.USER_ID) == c.DEFAULT_USER).join(items, c.ITEM_ID, "left").orderBy("rank").collect()
        if not rows:
            raise InputError(f"no recommendations for user {user!r} on {ds} and no default list "
                             f"in {delta_io.table_path(cfg, 'recommendations')}")
    out = {"user_id": user, "ds": str(ds), "default_list": default, "recommendations": [
        {"rank": r["rank"], "item_id": r[c.ITEM_ID], "title": r[c.TITLE], "category": r[c.CATEGORY],
         "score": round(r["score"], 4), "reason": r["reason"], "reason_kind": r["reason_kind"],
         **({"components": r["components"].asDict()} if explain else {})} for r in rows]}
    if explain and not default:
        mine = (F.col(c.DS) == F.lit(ds)) & (F.col(c.USER_ID) == user)
        seq = read("user_sequences").where(mine).first()
        recent = seq["events"][:10] if seq else []
        titles = {r[c.ITEM_ID]: r[c.TITLE] for r in items.where(F.col(c.ITEM_ID).isin(
            [e[c.ITEM_ID] for e in recent])).collect()}                                      # <= 10 rows
        out["recent_history"] = [{"event_type": e[c.EVENT_TYPE], "item_id": e[c.ITEM_ID],
                                  "title": titles.get(e[c.ITEM_ID]), "weight": round(e["weight"], 4)} for e in recent]
        kw = read("user_keywords").where(mine).first()
        out["keywords"] = kw["keywords"] if kw else []
        tp = read("user_topics").where(mine).first()
        out["topics"] = [round(x, 3) for x in tp["distribution"]] if tp else []
    return out


def format_recommendations(out: dict, explain: bool) -> str:
    """The text ``recjobs recs`` prints."""
    lines = [f"recommendations for {out['user_id']} on {out['ds']}" +
             (" (no history: the default list)" if out.get("default_list") else "") + ":"]
    for r in out["recommendations"]:
        lines.append(f"  {r['rank']:2d}. {r['title'] or r['item_id']} [{r['category']}]  score {r['score']:.3f}"
                     f"  — {r['reason']}")
        if explain:
            lines.append(f"      components: {r['components']}")
    if explain and "recent_history" in out:
        lines.append("recent history: " + "; ".join(f"{h['event_type']} {h['title'] or h['item_id']}"
                                                    for h in out["recent_history"]))
        lines.append(f"keywords: {', '.join(out['keywords'])}")
        lines.append(f"topic profile: {out['topics']}")
    return "\n".join(lines)


def show_recs(spark: SparkSession, cfg: Mapping, user: str, date: dt.date | None, explain: bool,
              as_json: bool) -> int:
    """Print one user's recommendations (``recjobs recs``)."""
    out = user_recommendations(spark, cfg, user, date, explain)
    print(json.dumps(out, indent=1, default=str) if as_json else format_recommendations(out, explain))
    return 0


def register_views(spark: SparkSession, cfg: Mapping) -> None:
    """Every registered table of the lake as a temporary view of its name."""
    for name in TABLES:
        delta_io.read_table(spark, cfg, name).createOrReplaceTempView(name)


# Logical plan nodes a read-only query parses into (Spark's own parser, before analysis).
READ_ONLY_NODES = frozenset({
    "Project", "Filter", "Aggregate", "Sort", "GlobalLimit", "LocalLimit", "Offset", "Tail", "Join", "LateralJoin",
    "SubqueryAlias", "UnresolvedRelation", "Union", "Distinct", "Deduplicate", "Intersect", "Except",
    "UnresolvedWith", "Window", "WithWindowDefinition", "Generate", "OneRowRelation", "Sample",
    "UnresolvedSubqueryColumnAliases", "UnresolvedHint", "Pivot", "Unpivot", "UnresolvedInlineTable",
    "UnresolvedHaving", "RepartitionByExpression", "Repartition",
})
# Expressions that hold a query of their own (checked like the outer one).
SUBQUERIES = frozenset({"ScalarSubquery", "ListQuery", "Exists", "LateralSubquery"})
# Functions that reach outside the data: Java reflection (environment, files, processes) and the
# XML functions (a document's external entities can name local files).
DENIED_FUNCTIONS = frozenset({"java_method", "reflect", "try_reflect", "from_xml", "schema_of_xml", "xpath",
                              "xpath_boolean", "xpath_double", "xpath_float", "xpath_int", "xpath_long",
                              "xpath_number", "xpath_short", "xpath_string"})


def _seq(scala_seq) -> list:
    return [scala_seq.apply(i) for i in range(scala_seq.size())]


def read_only_problem(spark: SparkSession, query: str, views: set[str]) -> str | None:
    """Why ``query`` is not a read-only query over ``views`` (None when it is).

    The statement is parsed with Spark's own parser and its logical plan walked: every node must be
    a read-only one (no command, DDL, DML, file writer or table-valued function), every relation
    one of ``views`` or of the query's own CTEs (no path-based ``delta.`/x``` or ``text.`/x``` and no
    catalog table), and no function in :data:`DENIED_FUNCTIONS`.
    """
    parser = spark._jsparkSession.sessionState().sqlParser()
    try:
        plan = parser.parsePlan(query)
    except Exception as exc:  # a syntax error: Spark's own message, first line
        return f"it does not parse ({str(exc).strip().splitlines()[0][:300]})"
    allowed = {v.lower() for v in views}
    todo, exprs = [plan], []
    while todo or exprs:
        if exprs:
            expr = exprs.pop()
            kind = expr.getClass().getSimpleName()
            if kind == "UnresolvedFunction":
                name = _seq(expr.nameParts())[-1].lower()
                if name in DENIED_FUNCTIONS:
                    return f"it calls {name}(), which reaches outside the lake's data"
            if kind in SUBQUERIES:
                todo.append(expr.plan())
            exprs.extend(_seq(expr.children()))
            continue
        node = todo.pop()
        kind = node.getClass().getSimpleName()
        if kind not in READ_ONLY_NODES:
            return f"it is not a read-only query ({kind})"
        if kind == "UnresolvedWith":
            for pair in _seq(node.cteRelations()):
                allowed.add(pair._1().lower())
                todo.append(pair._2())
        if kind == "UnresolvedRelation":
            parts = _seq(node.multipartIdentifier())
            name = ".".join(parts)
            if len(parts) != 1 or parts[0].lower() not in allowed:
                return f"it reads {name}, which is not one of the lake's tables"
        todo.extend(_seq(node.children()))
        exprs.extend(_seq(node.expressions()))
    return None


def run_sql(spark: SparkSession, cfg: Mapping, query: str, limit: int) -> None:
    """Run ``query`` over the lake's views and print up to ``limit`` rows (``recjobs sql``).

    Read-only: a statement that is not a query over the lake's tables exits 2 before it runs.

    Raises:
        InputError: The statement writes, reads outside the lake, or calls a denied function.
    """
    problem = read_only_problem(spark, query, set(TABLES))
    if problem is not None:
        raise InputError(f"recjobs sql runs read-only queries over the lake's tables ({', '.join(TABLES)}); "
                         f"this statement was refused: {problem}. Maintenance that writes is 'recjobs maintain'")
    register_views(spark, cfg)
    spark.sql(query).show(n=limit, truncate=False)


def metrics_table(spark: SparkSession, cfg: Mapping, ds: dt.date, ks: list[int] | None = None) -> str:
    """The metrics of ds as a text table per protocol (models as rows)."""
    rows = delta_io.read_table(spark, cfg, "metrics").where(F.col(c.DS) == F.lit(ds)).collect()  # bounded
    if not rows:
        return f"no metrics for {ds}; run 'recjobs eval --date {ds}'"
    ks = ks or sorted({r["k"] for r in rows})
    out = []
    for protocol in [p for p in PROTOCOLS if any(r["protocol"] == p for r in rows)]:
        mine = {(r["model"], r["metric"], r["k"]): r.asDict() for r in rows if r["protocol"] == protocol}
        sub = {key: r["value"] for key, r in mine.items()}
        users = next(r["users"] for r in rows if r["protocol"] == protocol)
        cols = [f"{m}@{k}" for k in ks for m in ALL_METRICS]
        models = [m for m in MODELS if any(key[0] == m for key in sub)]
        out.append(f"{protocol} ({users} users)")
        out.append(f"  {'model':20s}" + "".join(f"{col:>13s}" for col in cols) + f"  ndcg@{ks[0]} interval")

        def interval(m):
            r = mine.get((m, "ndcg", ks[0])) or {}
            return f"  {r['ci_low']:.4f}-{r['ci_high']:.4f}" if r.get("ci_low") is not None else ""

        def gap(m):
            r = mine.get((m, "ndcg_gap", ks[0]))
            return f"  {PRODUCT} minus it: {gap_text(r['value'], r.get('ci_low'), r.get('ci_high'))}" if r else ""

        for m in models:
            out.append(f"  {m:20s}" + "".join(
                f"{sub.get((m, metric, k), float('nan')):13.4f}" for k in ks for metric in ALL_METRICS)
                + interval(m) + gap(m))
    return "\n".join(out)
