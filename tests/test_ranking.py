"""The ranking library on small literal frames: blend, top-N, rules, reasons, the component table."""
import math

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.evaluation import model_names
from jobs.ranking import blend_stats, fired_rules, reasons, standardise_and_blend, top_n
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


# each component's raw value for the rows a, b and c
RAW = {"semantic": (0.9, 0.1, 0.5), "sequence": (1.5, -0.5, 0.2), "topic": (0.5, 0.1, 0.3),
       "sentiment": (0.1, 0.3, 0.2), "rule": (None, 0.8, None), "neighbours": (0.0, 0.4, 1.2), "popularity": (1.0, 3.0, 2.0),
       "engagement": (0.5, 0.0, 1.0), "category_affinity": (0.2, 0.6, 0.2), "disliked": (0.0, 0.0, 0.9)}


def _features(spark, extra_cols=(), extra_values=()):
    cols = ["user_id string", "item_id string"] + [f"{n} double" for n in names()] + list(extra_cols)
    rows = [(user, item, *[RAW[n][j] for n in names()], *extra_values[j:j + 1])
            for j, (user, item) in enumerate([("u", "a"), ("u", "b"), ("v", "c")])]
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
    # the statistics of the same rows, computed once and passed in, standardise them the same way
    feats = _features(spark)
    shared = {r["item_id"]: r for r in standardise_and_blend(feats, weights, stats=blend_stats(feats)).collect()}
    assert {k: r["score"] for k, r in shared.items()} == pytest.approx({k: r["score"] for k, r in got.items()})


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
           "category string, item_terms string, seq_title string, seq_verb string, nb_title string")


def test_reasons_come_from_the_strongest_weighted_component(spark):
    z = ", ".join(f"z_{n} double" for n in names())
    schema = f"user_id string, item_id string, {z}, {CONTEXT}"
    zeros = [0.0] * len(names())

    def row(item, strongest, value=2.0, **ctx):
        vals = list(zeros)
        vals[names().index(strongest)] = value
        c = {"anchor_title": "Tent", "anchor_verb": "purchased", "rule_title": None, "user_terms": "tent, camp",
             "engaged_verb": "viewed", "category": "Camping", "item_terms": "camp, fire", "seq_title": None,
             "seq_verb": None, "nb_title": None} | ctx
        return ("u", item, *vals, *c.values())

    frame = spark.createDataFrame([row("a", "semantic"), row("b", "engagement"), row("c", "rule"),
                                   row("d", "rule", rule_title="Stove"), row("e", "category_affinity"),
                                   row("f", "popularity", item_terms=None, category=None),
                                   row("g", "sequence", seq_title="Dune", seq_verb="rated"), row("h", "sequence"),
                                   row("i", "neighbours", nb_title="Stove"), row("j", "neighbours")],
                                  schema)
    got = {r["item_id"]: (r["reason_kind"], r["reason"]) for r in reasons(frame, default_weights()).collect()}
    assert got["a"] == ("semantic", "similar to Tent you purchased")
    assert got["b"] == ("engagement", "recently viewed by you")
    assert got["c"] == ("popularity", "popular in camp, fire")          # no rule title: the fallback's reason
    assert got["d"] == ("rule", "often bought after Stove")
    assert got["e"] == ("category_affinity", "you often browse Camping")
    assert got["f"] == ("popularity", "popular in the catalogue")       # the fallback always renders
    assert got["g"] == ("sequence", "because you rated Dune")
    assert got["h"] == ("popularity", "popular in camp, fire")          # no vector, no anchor: the fallback
    assert got["i"] == ("neighbours", "often chosen with Stove")
    assert got["j"] == ("popularity", "popular in camp, fire")          # no neighbour source: the fallback
    # a negative weight turns the strongest contribution around
    flipped = {r["item_id"]: r["reason_kind"]
               for r in reasons(frame, default_weights() | {"semantic": -1.0}).collect()}
    assert flipped["a"] != "semantic"
    # a component weighted at or below 0 never explains, however low the row is on it (a learned
    # negative sentiment weight does not make a poorly rated item "highly rated by reviewers")
    low = spark.createDataFrame([row("k", "sentiment", value=-9.0), row("l", "disliked", value=-9.0)], schema)
    for weights in (default_weights() | {"sentiment": -1.0}, default_weights()):
        kinds = {r["item_id"]: r["reason_kind"] for r in reasons(low, weights).collect()}
        assert kinds["k"] != "sentiment" and kinds["l"] != "disliked"
    # nothing weighted above 0: every row gets the fallback
    assert {r["reason_kind"] for r in reasons(frame, {n: 0.0 for n in names()}).collect()} == {"popularity"}


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


def test_a_demoting_component_never_gets_a_weight_above_zero():
    from jobs.common.config import load_config
    from jobs.common.errors import ConfigError
    from jobs.common.settings import RankSettings
    from schemas.components import clip_demoting

    demoting = [comp.name for comp in COMPONENTS if comp.demotes]
    assert demoting == ["disliked"] and default_weights()["disliked"] < 0
    assert clip_demoting({"disliked": 0.7, "sentiment": -0.2, "semantic": 0.4}) == \
        {"disliked": 0.0, "sentiment": -0.2, "semantic": 0.4}
    assert clip_demoting({"disliked": -0.3})["disliked"] == -0.3
    assert RankSettings.from_config(load_config(overrides=["rank.weights={disliked: -2.5}"])).weights["disliked"] == -2.5
    with pytest.raises(ConfigError, match=r"rank\.weights.*disliked.*at most 0"):
        RankSettings.from_config(load_config(overrides=["rank.weights={disliked: 1.0}"]))


def test_components_are_declared_once_with_unique_names():
    assert len(set(names())) == len(COMPONENTS)
    assert len(set(ablations())) == len(ablations())
    assert all(comp.default_weight == default_weights()[comp.name] for comp in COMPONENTS)
    assert all(set(comp.reason_fields) <= set(f.split()[0] for f in CONTEXT.split(", ")) for comp in COMPONENTS)


# ------------------------------------------------------------------------------- the learned blend
def test_one_pass_ndcg_matches_the_metrics_module(spark):
    from pyspark.sql import Window

    from jobs.common.metrics import accuracy
    from jobs.ranking.learn import ndcg_of

    rows = spark.createDataFrame([("u", f"i{i}", float(i), float(-i)) for i in range(12)] +
                                 [("v", "a", 1.0, 0.0), ("v", "b", 0.0, 1.0)],
                                 "user_id string, item_id string, up double, down double")
    truth = spark.createDataFrame([("u", "i11"), ("u", "i0"), ("v", "b"), ("w", "x")], "user_id string, item_id string")
    got = ndcg_of(rows, {"up": F.col("up"), "down": F.col("down")}, truth)
    for name in ("up", "down"):
        order = Window.partitionBy("user_id").orderBy(F.col(name).desc(), "item_id")
        top = rows.withColumn("rank", F.row_number().over(order)).where("rank <= 10")
        assert got[name] == pytest.approx(accuracy(top, truth, [10])[("ndcg", 10)])
    # u: i11 first by "up" (i0 falls outside the top 10), v: b second; w has no candidates and counts 0
    assert got["up"] == pytest.approx((1 / (1 + 1 / math.log2(3)) + 1 / math.log2(3) + 0) / 3)


def _labelled(spark, users=120, per_user=12, follow="rule"):
    """Candidates whose label follows ``follow`` (and nothing else), with the half-life grid columns."""
    import random

    from jobs.ranking.features import grid_column

    rnd = random.Random(3)
    cols = ["user_id string", "item_id string", "label double", "category string"] + \
        [f"{n} double" for n in names()] + [f"{grid_column(c, h)} double" for c in ("engagement", "popularity")
                                             for h in (1.0, 4.0)]
    rows = []
    for u in range(users):
        best = rnd.randrange(per_user)
        for i in range(per_user):
            values = {n: rnd.random() for n in names()}
            values[follow] = 0.9 + rnd.random() / 10 if i == best else rnd.random() * 0.8
            grid = [values["engagement"], values["engagement"] ** 2, values["popularity"], values["popularity"] * 2]
            rows.append((f"u{u}", f"i{i}", 1.0 if i == best else 0.0, "c", *[values[n] for n in names()], *grid))
    frame = spark.createDataFrame(rows, ", ".join(cols))
    return frame, frame.where("label = 1").select("user_id", "item_id")


def test_the_fit_learns_the_component_the_labels_follow_and_keeps_the_best(spark):
    from jobs.ranking.learn import fit_blend

    rows, held = _labelled(spark)
    fixed = default_weights()
    fitted = fit_blend(rows, held, fixed, {"engagement": [1.0, 4.0], "popularity": [1.0, 4.0]},
                       {"engagement": 1.0, "popularity": 4.0}, negatives_per_user=5, validation_share=0.3, seed=2)
    learned = fitted.metrics["learned_weights"]
    assert max(learned, key=lambda n: abs(learned[n])) == "rule" and learned["rule"] > 0
    assert fitted.metrics["best_single"] == "rule" and fitted.metrics["best_single_ndcg"] == pytest.approx(1.0)
    # what is kept is the best on the validation users, never below a single component or the fixed weights
    results = fitted.metrics["ndcg"]
    assert fitted.metrics["validation_ndcg"] == max(results.values())
    assert "searched" not in results                                # no search sweeps: no searched candidate
    assert fitted.chosen in ("learned", "single:rule") and fitted.metrics["validation_ndcg"] == pytest.approx(1.0)
    assert set(fitted.half_lives) == {"engagement", "popularity"}
    assert fitted.metrics["positives"] > 0 and fitted.metrics["training_rows"] < rows.count()


def test_a_demoting_component_the_labels_follow_is_never_turned_into_a_promotion(spark):
    from jobs.ranking.learn import fit_blend

    rows, held = _labelled(spark, follow="disliked")
    fitted = fit_blend(rows, held, default_weights(), {"engagement": [1.0], "popularity": [1.0]},
                       {"engagement": 1.0, "popularity": 1.0}, negatives_per_user=5, seed=5)
    assert fitted.metrics["learned_weights"]["disliked"] == 0.0
    assert "single:disliked" not in fitted.metrics["ndcg"]
    assert fitted.weights["disliked"] <= 0.0


def test_gradient_boosted_trees_are_selectable_and_score_with_their_model(spark):
    from pyspark.sql import Window

    from jobs.ranking.learn import fit_blend, model_scorer

    rows, held = _labelled(spark, users=60)
    fitted = fit_blend(rows, held, default_weights(), {"engagement": [1.0], "popularity": [1.0]},
                       {"engagement": 1.0, "popularity": 1.0}, learner="gbt", negatives_per_user=5, seed=4)
    importances = fitted.metrics["learned_weights"]
    assert fitted.learner == "gbt" and max(importances, key=importances.get) == "rule"
    assert fitted.metrics["validation_ndcg"] >= fitted.metrics["best_single_ndcg"]
    # the trees rank with their own model: each user's labelled candidate comes first
    scored = model_scorer(fitted.model)(standardise_and_blend(rows, default_weights()))
    first = scored.withColumn("_r", F.row_number().over(Window.partitionBy("user_id").orderBy(F.col("score").desc())))
    best = {r["user_id"]: r["item_id"] for r in first.where("_r = 1").collect()}
    truth = {r["user_id"]: r["item_id"] for r in held.collect()}
    assert sum(best[u] == i for u, i in truth.items()) >= 0.9 * len(truth)


def _mixed(spark, users=80, per_user=10):
    """Candidates whose label is the best of ``rule + 0.5 * semantic`` (neither alone), with noise in
    ``disliked``, and a held-out user without candidates."""
    import random

    from jobs.ranking.features import grid_column

    rnd = random.Random(7)
    cols = ["user_id string", "item_id string", "label double", "category string"] + \
        [f"{n} double" for n in names()] + [f"{grid_column(c, h)} double" for c in ("engagement", "popularity")
                                             for h in (1.0,)]
    rows = []
    for u in range(users):
        drawn = [(rnd.random(), rnd.random(), rnd.random()) for _ in range(per_user)]
        best = max(range(per_user), key=lambda i: drawn[i][0] + 0.5 * drawn[i][1])
        for i, (rule, semantic, noise) in enumerate(drawn):
            values = {n: 0.0 for n in names()}
            values.update(rule=rule, semantic=semantic, disliked=noise)
            rows.append((f"u{u}", f"i{i}", 1.0 if i == best else 0.0, "c", *[values[n] for n in names()], 0.0, 0.0))
    frame = spark.createDataFrame(rows, ", ".join(cols))
    held = frame.where("label = 1").select("user_id", "item_id").unionByName(
        spark.createDataFrame([("ghost", "i0")], "user_id string, item_id string"))
    return frame, held


def test_the_search_finds_the_mix_the_labels_follow_and_scores_as_the_ranking_does(spark):
    from jobs.ranking.learn import SEARCH_STEPS, _fold, fit_blend, ndcg_of
    from jobs.ranking.search import search_weights

    rows, held = _mixed(spark)
    z = standardise_and_blend(rows, {n: 0.0 for n in names()}).drop("score").cache()
    singles = [comp.name for comp in COMPONENTS if not comp.demotes]
    starts = {f"single:{n}": {n: 1.0} for n in singles}
    found = search_weights(z, held, "label", _fold("user_id", 3, 1), 3, COMPONENTS, starts, SEARCH_STEPS, sweeps=2)
    w = found.weights
    # the counted ranks agree with ranking every user's candidates (the ghost user counts 0 in both)
    ranked = ndcg_of(z, {"searched": sum((F.lit(v) * F.col(f"z_{n}") for n, v in w.items()), F.lit(0.0)),
                         "rule": F.col("z_rule")}, held)
    assert found.in_sample_ndcg == pytest.approx(ranked["searched"], abs=1e-9)
    assert found.in_sample_ndcg > ranked["rule"] + 0.1 and found.out_of_fold_ndcg > ranked["rule"] + 0.05
    # both inputs weigh in, the rule more (NDCG is flat near the optimum: a band, not the exact 0.5)
    assert w["rule"] > 0 and 0.25 <= w["semantic"] / w["rule"] <= 0.8 and w["disliked"] <= 0.0
    assert found.path[0]["start"] == "single:rule" and found.passes >= 1 + len(names())

    # in the fit, the search is a candidate of the choice judged out of fold, and wins here
    fitted = fit_blend(rows, held, default_weights(), {"engagement": [1.0], "popularity": [1.0]},
                       {"engagement": 1.0, "popularity": 1.0}, negatives_per_user=5, seed=1, search_sweeps=1)
    results = fitted.metrics["ndcg"]
    assert "searched" in results and results["searched"] > results["single:rule"]
    assert fitted.metrics["validation_ndcg"] == max(results.values())
    if fitted.chosen == "searched":
        assert fitted.weights == fitted.metrics["search"]["weights"]
