"""The ranking library on small literal frames: blend, top-N, rules, reasons, the component table."""
import math

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.evaluation import model_names
from jobs.ranking import fired_rules, reasons, standardise_and_blend, top_n
from schemas.components import COMPONENTS, Component, ablations, default_weights, log_affinity, names
from schemas.tables import components_struct

SCORED = "user_id string, item_id string, category string, score double, engaged_type string"


def test_top_n_breaks_ties_by_item_id_and_caps_categories(spark):
    rows = [("u", "i3", "a", 1.0, None), ("u", "i1", "a", 1.0, None), ("u", "i2", "a", 1.0, None),
            ("u", "i4", "b", 0.5, None), ("u", "i5", "b", 2.0, None), ("v", "i1", "a", 0.1, None)]
    got = top_n(spark.createDataFrame(rows, SCORED), n=3, max_per_category=2)
    expected = spark.createDataFrame([("u", "i5", 1), ("u", "i1", 2), ("u", "i2", 3), ("v", "i1", 1)],
                                     "user_id string, item_id string, rank int")
    assertDataFrameEqual(got.select("user_id", "item_id", F.col("rank").cast("int")), expected, checkRowOrder=False)


def test_top_n_keeps_at_most_max_engaged_seen_items(spark):
    rows = [("u", f"e{i}", f"c{i}", 10.0 - i, "view") for i in range(4)] + \
           [("u", f"n{i}", f"d{i}", 1.0 - i / 10, None) for i in range(3)]
    scored = spark.createDataFrame(rows, SCORED)
    free = [r["item_id"] for r in top_n(scored, 5, 10).orderBy("rank").collect()]
    assert free == ["e0", "e1", "e2", "e3", "n0"]
    capped = [r["item_id"] for r in top_n(scored, 5, 10, max_engaged=2).orderBy("rank").collect()]
    assert capped == ["e0", "e1", "n0", "n1", "n2"]
    assert [r["item_id"] for r in top_n(scored, 5, 10, max_engaged=0).orderBy("rank").collect()] == ["n0", "n1", "n2"]


def _features(spark, extra_cols=(), extra_values=()):
    cols = ["user_id string", "item_id string"] + [f"{n} double" for n in names()] + list(extra_cols)
    rows = [("u", "a", 0.9, 0.5, 0.1, None, 1.0, 0.5, 0.2, *extra_values[:1]),
            ("u", "b", 0.1, 0.1, 0.3, 0.8, 3.0, 0.0, 0.6, *extra_values[1:2]),
            ("v", "c", 0.5, 0.3, 0.2, None, 2.0, 1.0, 0.2, *extra_values[2:3])]
    return spark.createDataFrame(rows, ", ".join(cols))


def test_standardise_and_blend_z_scores_each_input_and_weights_them(spark):
    weights = {n: 0.0 for n in names()} | {"popularity": 2.0, "topic": 1.0, "rule": 1.0}
    got = {r["item_id"]: r for r in standardise_and_blend(_features(spark), weights).collect()}
    # popularity: identity input, mean 2, population std sqrt(2/3)
    std = math.sqrt(2 / 3)
    assert got["b"]["z_popularity"] == pytest.approx(1 / std)
    # topic: log(x + 1e-3) before standardising
    logs = [math.log(x + 1e-3) for x in (0.5, 0.1, 0.3)]
    mean = sum(logs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 3)
    assert got["a"]["z_topic"] == pytest.approx((logs[0] - mean) / sd)
    # rule: one value only -> std 0 -> z 0 everywhere; NULL -> 0
    assert {r["z_rule"] for r in got.values()} == {0.0}
    for r in got.values():
        assert r["score"] == pytest.approx(2.0 * r["z_popularity"] + r["z_topic"])


def test_fired_rules_need_the_whole_antecedent_among_the_newest_items(spark):
    seqs = spark.createDataFrame(
        [("u", [("x",), ("y",), ("old",)]), ("v", [("x",)])],
        "user_id string, events array<struct<item_id: string>>")
    rules = spark.createDataFrame(
        [(["x"], "p", 0.3), (["x", "y"], "q", 0.9), (["old"], "r", 0.8), (["y"], "p", 0.6)],
        "antecedent array<string>, consequent string, confidence double")
    got = fired_rules(seqs, rules, recent_items=2)
    expected = spark.createDataFrame([("u", "p", 0.6, "y"), ("u", "q", 0.9, "x"), ("v", "p", 0.3, "x")],
                                     "user_id string, item_id string, rule double, rule_from string")
    assertDataFrameEqual(got, expected, checkRowOrder=False)     # "old" is not among u's 2 newest


CONTEXT = ("anchor_title string, anchor_verb string, rule_title string, user_terms string, engaged_verb string, "
           "category string, item_terms string")


def test_reasons_come_from_the_strongest_weighted_component(spark):
    z = ", ".join(f"z_{n} double" for n in names())
    schema = f"user_id string, item_id string, {z}, {CONTEXT}"
    zeros = [0.0] * len(names())

    def row(item, strongest, value=2.0, **ctx):
        vals = list(zeros)
        vals[names().index(strongest)] = value
        c = {"anchor_title": "Tent", "anchor_verb": "purchased", "rule_title": None, "user_terms": "tent, camp",
             "engaged_verb": "viewed", "category": "Camping", "item_terms": "camp, fire"} | ctx
        return ("u", item, *vals, *c.values())

    frame = spark.createDataFrame([row("a", "semantic"), row("b", "engagement"), row("c", "rule"),
                                   row("d", "rule", rule_title="Stove"), row("e", "category_affinity"),
                                   row("f", "popularity", item_terms=None, category=None)], schema)
    got = {r["item_id"]: (r["reason_kind"], r["reason"]) for r in reasons(frame, default_weights()).collect()}
    assert got["a"] == ("semantic", "similar to Tent you purchased")
    assert got["b"] == ("engagement", "recently viewed by you")
    assert got["c"] == ("popularity", "popular in camp, fire")          # no rule title: the fallback's reason
    assert got["d"] == ("rule", "often bought after Stove")
    assert got["e"] == ("category_affinity", "you often browse Camping")
    assert got["f"] == ("popularity", "popular in the catalogue")       # the fallback always renders
    # a negative weight turns the strongest contribution around
    flipped = {r["item_id"]: r["reason_kind"]
               for r in reasons(frame, default_weights() | {"semantic": -1.0}).collect()}
    assert flipped["a"] != "semantic"


def test_a_new_component_is_one_table_entry(spark):
    dummy = Component("dummy", "a planted test signal", 3.0, "because of {dummy_note}", "no_dummy",
                      log_affinity, (0.0, 1.0))
    table = (*COMPONENTS, dummy)
    # the schema's struct, the default weights and the ablations pick it up
    assert components_struct(table).fieldNames() == [*names(), "dummy"]
    assert default_weights(table)["dummy"] == 3.0 and ablations(table)["no_dummy"] == "dummy"
    assert "blend_no_dummy" in model_names(table) and "blend_no_dummy" not in model_names()
    # the blend uses its transform and weight, the reasons its template
    feats = _features(spark, ["dummy double"], (0.9, 0.1, 0.5)) \
        .withColumn("dummy_note", F.concat(F.lit("note "), F.col("item_id")))
    weights = {n: 0.0 for n in names()} | {"dummy": 3.0}
    scored = standardise_and_blend(feats, weights, table)
    logs = {"a": math.log(0.9 + 1e-3), "b": math.log(0.1 + 1e-3), "c": math.log(0.5 + 1e-3)}
    mean = sum(logs.values()) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs.values()) / 3)
    for r in scored.collect():
        assert r["score"] == pytest.approx(3.0 * (logs[r["item_id"]] - mean) / sd)
    ctx = scored
    for col in CONTEXT.split(", "):
        ctx = ctx.withColumn(col.split()[0], F.lit(None).cast("string"))
    why = {r["item_id"]: (r["reason_kind"], r["reason"]) for r in reasons(ctx, weights, table).collect()}
    assert why["a"] == ("dummy", "because of note a")
    assert why["b"][0] == "popularity"                                 # its z is negative: not the strongest


def test_components_are_declared_once_with_unique_names():
    assert len(set(names())) == len(COMPONENTS)
    assert len(set(ablations())) == len(ablations())
    assert all(comp.default_weight == default_weights()[comp.name] for comp in COMPONENTS)
    assert all(set(comp.reason_fields) <= set(f.split()[0] for f in CONTEXT.split(", ")) for comp in COMPONENTS)
