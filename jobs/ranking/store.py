"""Where learned blends are kept: ``ranker_models`` (one row per fit) and ``_models/ranker/<ds>``."""
from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Mapping

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from schemas import columns as c
from schemas import tables as t

log = logging.getLogger(__name__)

# Rows whose weights a later night may fall back to.
GOOD = ("learned", "searched", "fixed", "single")


def record(spark: SparkSession, cfg: Mapping, ds: dt.date, learned, run_id: str, seconds: float) -> dict:
    """Save a fit (its MLlib model under ``_models/ranker/<ds>``) and append its row to
    ``ranker_models``; returns the row as a dict."""
    fitted = learned.fitted
    stored = delta_io.model_location("ranker", ds)
    keep = fitted.chosen == "learned" and fitted.model is not None
    if keep:
        fitted.model.write().overwrite().save(delta_io.in_lake(cfg, stored))
    m = fitted.metrics
    status = fitted.chosen.split(":", 1)[0]
    row = {"ds": ds, "path": stored if keep else None, "learner": fitted.learner,
           "protocol": learned.protocol, "cut_off": learned.cut_off, "status": status, "chosen": fitted.chosen,
           "weights": {k: float(v) for k, v in fitted.weights.items()},
           "learned_weights": {k: float(v) for k, v in m["learned_weights"].items()},
           "half_lives": {k: float(v) for k, v in fitted.half_lives.items()},
           "training_rows": int(m["training_rows"]), "positives": int(m["positives"]), "users": int(m["users"]),
           "validation_users": int(m["validation_users"]), "validation_auc": float(m["validation_auc"]),
           "validation_ndcg": float(m["validation_ndcg"]), "fixed_ndcg": float(m["fixed_ndcg"]),
           "best_single": m["best_single"], "best_single_ndcg": float(m["best_single_ndcg"]),
           "details": json.dumps({**{k: m[k] for k in m if k.startswith(("ndcg", "half_life", "search"))},
                                  # what the hold-out was a split of, and which users it left out
                                  "split": learned.info.get("split"), "reserved": learned.info.get("reserved")},
                                 default=str),
           "seconds": float(seconds), c.RUN_ID: run_id}
    delta_io.replace_where(spark.createDataFrame([row], t.RANKER_MODELS), cfg, "ranker_models",
                           f"ds = DATE'{ds.isoformat()}'")
    return row


def scorer_of(cfg: Mapping, learner: str | None, chosen: str | None, path: str | None):
    """The saved tree ensemble's scorer when a fit ranks with the model itself (``gbt`` chosen as
    ``learned``, its model saved at the lake-relative ``path``), else None (the weights score)."""
    from jobs.ranking.learn import saved_scorer

    if learner == "gbt" and chosen == "learned" and path:
        return saved_scorer(delta_io.in_lake(cfg, path))
    return None


def fit_of(spark: SparkSession, cfg: Mapping, ds: dt.date):
    """The ``ranker_models`` row fitted for ds itself, or None."""
    rows = delta_io.read_table(spark, cfg, "ranker_models").where(F.col(c.DS) == F.lit(ds)).limit(1).collect()
    return rows[0] if rows else None


def newest(spark: SparkSession, cfg: Mapping, before: dt.date, inclusive: bool = False):
    """The newest good ``ranker_models`` row for a date before (or at) ``before``, or None."""
    when = F.col(c.DS) <= F.lit(before) if inclusive else F.col(c.DS) < F.lit(before)
    rows = (delta_io.read_table(spark, cfg, "ranker_models").where(when & F.col("status").isin(list(GOOD)))
            .orderBy(F.col(c.DS).desc()).limit(1).collect())
    return rows[0] if rows else None


def history(spark: SparkSession, cfg: Mapping, ds: dt.date, nights: int = 30) -> list[dict]:
    """The weights of the last ``nights`` fits up to ds, oldest first (bounded: a row a night)."""
    rows = (delta_io.read_table(spark, cfg, "ranker_models").where(F.col(c.DS) <= F.lit(ds))
            .orderBy(F.col(c.DS).desc()).limit(nights).collect())
    return [{"ds": r[c.DS].isoformat(), "status": r["status"], "chosen": r["chosen"],
             "weights": dict(r["weights"] or {}), "learned_weights": dict(r["learned_weights"] or {}),
             "half_lives": dict(r["half_lives"] or {}), "validation_ndcg": r["validation_ndcg"],
             "fixed_ndcg": r["fixed_ndcg"], "best_single": r["best_single"],
             "best_single_ndcg": r["best_single_ndcg"]} for r in reversed(rows)]
