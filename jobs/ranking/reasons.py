"""Reasons: each recommended row is explained by its strongest weighted component.

The templates are the component table's (``schemas/components.py``); this module builds the
context columns they name (the anchor item of "similar to X", the rule's antecedent, topic terms,
the verb of the user's engagement, the category) and renders the reason and ``reason_kind``.
"""
from __future__ import annotations

import string
from typing import Mapping, Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.common.events import lookup
from jobs.ranking.candidates import dot
from schemas import columns as c
from schemas.components import COMPONENTS, FALLBACK, Component, by_name

# The fallback reason renders even where its context is missing.
_MISSING = "the catalogue"


def render(template: str, missing: str | None = None) -> tuple[Column, Column]:
    """``(present, text)``: whether every field the ``{field}`` template names is set, and the
    ``format_string`` over the context columns (``missing`` stands in for NULL fields if given)."""
    fmt, cols, present = [], [], F.lit(True)
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        fmt.append(literal.replace("%", "%%"))
        if field:
            fmt.append("%s")
            present = present & F.col(field).isNotNull()
            cols.append(F.col(field) if missing is None else F.coalesce(F.col(field), F.lit(missing)))
    return present, F.format_string("".join(fmt), *cols)


def reasons(ranked: DataFrame, weights: Mapping[str, float], components: Sequence[Component] = COMPONENTS,
            fallback: str = FALLBACK) -> DataFrame:
    """Add ``reason_kind`` (the strongest weighted component among those of a positive weight, ties
    by name) and ``reason`` (its template over the context columns); a row whose strongest template
    lacks a value, or whose strongest contribution is not above 0, gets the ``fallback``
    component's reason and kind. A component weighted at or below 0 never explains: being low on
    it is not what its reason says."""
    explaining = [comp for comp in components if float(weights[comp.name]) > 0]
    contrib = F.array(*[F.struct((F.lit(float(weights[comp.name])) * F.col(f"z_{comp.name}")).alias("v"),
                                 F.lit(comp.name).alias("n")) for comp in explaining])
    top = F.array_max(contrib)
    strongest = F.when(top["v"] > 0, top["n"]) if explaining else F.lit(None).cast("string")
    kind = F.lit(fallback)
    text = render(by_name(fallback, components).reason, _MISSING)[1]
    for comp in [comp for comp in components if comp.name != fallback]:
        present, rendered = render(comp.reason)
        own = (strongest == comp.name) & present
        kind, text = F.when(own, F.lit(comp.name)).otherwise(kind), F.when(own, rendered).otherwise(text)
    return ranked.withColumn("reason_kind", kind).withColumn("reason", text)


def reason_context(ranked: DataFrame, sequences: DataFrame, item_vectors: DataFrame, items: DataFrame,
                   topic_terms: DataFrame, recent_items: int, verbs: Mapping[str, str]) -> DataFrame:
    """Add the columns the reason templates name.

    - ``anchor_title``/``anchor_verb``: of the user's ``2 * recent_items`` newest items, the one
      most similar to the pick (cosine of item vectors), and what the user did with it;
    - ``rule_title``: the antecedent of the fired rule (``rule_from``);
    - ``nb_title``: the user's item that gives the pick most of its neighbour weight (``nb_from``);
    - ``user_terms``/``item_terms``: three terms of the user's and of the item's top topic (the
      item's falls back to its category);
    - ``engaged_verb``: the verb of the user's newest event on the item;
    - ``seq_title``/``seq_verb``: the item of the user's history the sequence model's newest
      position attends to most (``_sanchor``), and what the user did with it (``_satype``).

    ``ranked`` needs ``_iv`` (the item vector), ``rule_from``, ``nb_from``, ``engaged_type``, ``_utop``, ``_itop``
    and ``category``; ``item_vectors`` is ``(item_id, _iv)``.
    """
    recent = (sequences.select(c.USER_ID, F.posexplode("events").alias("_p", "_e"))
              .where(F.col("_p") < 2 * recent_items)
              .select(c.USER_ID, F.col(f"_e.{c.ITEM_ID}").alias("_anchor"), F.col(f"_e.{c.EVENT_TYPE}").alias("_at")))
    avec = item_vectors.withColumnRenamed(c.ITEM_ID, "_anchor").withColumnRenamed("_iv", "_av")
    by_sim = Window.partitionBy(c.USER_ID, c.ITEM_ID).orderBy(F.col("_sim").desc(), F.col("_anchor"))
    anchor = (ranked.select(c.USER_ID, c.ITEM_ID, "_iv").join(recent, c.USER_ID).join(avec, "_anchor")
              .where(F.col("_anchor") != F.col(c.ITEM_ID)).withColumn("_sim", dot(F.col("_iv"), F.col("_av")))
              .withColumn("_r", F.row_number().over(by_sim)).where("_r = 1")
              .select(c.USER_ID, c.ITEM_ID, "_anchor", lookup(verbs, F.col("_at")).alias("anchor_verb")))
    titles = items.select(F.col(c.ITEM_ID).alias("_tid"), F.col(c.TITLE).alias("_title"))
    terms = topic_terms.select("topic", F.array_join(F.slice("terms", 1, 3), ", ").alias("_terms"))
    return (ranked.join(anchor, [c.USER_ID, c.ITEM_ID], "left")
            .join(titles.withColumnRenamed("_tid", "_anchor").withColumnRenamed("_title", "anchor_title"),
                  "_anchor", "left")
            .join(titles.withColumnRenamed("_tid", "rule_from").withColumnRenamed("_title", "rule_title"),
                  "rule_from", "left")
            .join(titles.withColumnRenamed("_tid", "nb_from").withColumnRenamed("_title", "nb_title"),
                  "nb_from", "left")
            .join(terms.withColumnRenamed("topic", "_utop").withColumnRenamed("_terms", "user_terms"), "_utop", "left")
            .join(terms.withColumnRenamed("topic", "_itop").withColumnRenamed("_terms", "item_terms"), "_itop", "left")
            .join(titles.withColumnRenamed("_tid", "_sanchor").withColumnRenamed("_title", "seq_title"),
                  "_sanchor", "left")
            .withColumn("seq_verb", lookup(verbs, F.col("_satype")))
            .withColumn("anchor_title", F.coalesce(F.col("anchor_title"), F.lit("an item")))
            .withColumn("item_terms", F.coalesce(F.col("item_terms"), F.col(c.CATEGORY)))
            .withColumn("engaged_verb", lookup(verbs, F.col("engaged_type"))))
