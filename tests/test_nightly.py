"""The nightly driver end to end on a small sample: DQ gate, resumes (after a failed gate, after a
killed run), run report, deploy files."""
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from delta.tables import DeltaTable
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from jobs.common import delta_io
from jobs.common.config import load_config, with_values
from jobs.common.errors import DataQualityError
from jobs.common.runner import run_stage
from jobs.nightly import main as nightly_main
from jobs.nightly import plan_stages, run_nightly
from jobs.sample_data import SampleSpec
from jobs.stages import STAGES
from tests.conftest import cli_args, cli_env, deep_merge

ROOT = Path(__file__).resolve().parents[1]
DS = SampleSpec().end_date          # the shop night of tests/conftest.py


@pytest.fixture(scope="module")
def night(shape_night):
    shop = shape_night("shop")
    return shop.cfg, shop.lake.root, shop.lake.truth, shop.out


# A forced night of the shop night's date on a copy of its lake, cut to what it tests: no
# evaluation, no sequence model (its stage still runs and records that it is off), the fixed blend.
FORCED = {"eval": {"protocols": []}, "dq": {"validate_raw": False}, "seqrec": {"enabled": False},
         "rank": {"model": "fixed"}}


@pytest.fixture(scope="module")
def killed_then_resumed(spark, shape_night, tmp_path_factory):
    """A copy of the shop night's lake; a ``--force`` run of its date in a process of its own,
    killed (with its JVM) when encode_items starts; then a plain run in this process. Returns the
    copy's configuration, the shop night's run id, the killed process's return code and the plain
    run's outcome."""
    shop = shape_night("shop")
    root = tmp_path_factory.mktemp("killed")
    shutil.copytree(shop.cfg["lake"]["root"], root / "lake", ignore=shutil.ignore_patterns("_holdout", "_dq"))
    values = deep_merge(shop.lake.values, deep_merge(FORCED, {
        "lake": {"root": str(root / "lake")}, "dq": {"docs_dir": str(root / "dq")},
        "report": {"dir": str(root / "reports")}}))
    conf = root / "conf.yaml"
    conf.write_text(yaml.safe_dump(values))
    proc = subprocess.Popen(cli_args("nightly", "--date", DS, "--conf", conf, "--force"), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True, env=cli_env())
    for line in proc.stdout:
        if "encode_items" in line and "..." in line:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=120)
    cfg = load_config(values=values)
    forced = _runs(spark, cfg).orderBy(F.col("finished_at").desc()).first()
    again = run_nightly(spark, cfg, DS, report=False, echo=lambda *a, **k: None)
    return cfg, shop.out["plan"].run_id, proc.returncode, forced["run_id"], again


def test_a_resume_after_a_killed_force_run_resumes_that_run(spark, killed_then_resumed):
    cfg, older, code, forced, again = killed_then_resumed
    assert code == -signal.SIGKILL
    assert forced != older
    # a plain run resumes the killed run, not the older complete one
    assert again["exit_code"] == 0, again["error"]
    assert again["plan"].run_id == forced and again["plan"].stages[0] == "encode_items"
    published = _published(spark, cfg)
    assert {r["run_id"] for r in published.select("run_id").distinct().collect()} == {forced}
    clean = delta_io.read_table(spark, cfg, "events_clean")
    assert {r["run_id"] for r in clean.select("run_id").distinct().collect()} == {forced}


def test_publishing_a_date_again_gives_the_same_table_and_one_copy(spark, killed_then_resumed):
    """rank_topn, validate and publish of a published date again (the fixed blend), with another
    date's rank_topn committed in between: publishing is not held back by the other date's
    staging, the table is the same, in one copy, and a reader of the version before the new
    commit still reads that version."""
    cfg, _, _, forced, _ = killed_then_resumed
    first = _published(spark, cfg).drop("run_id").localCheckpoint()
    v_before = delta_io.current_version(spark, cfg, "recommendations")
    for stage in ("rank_topn", "validate"):
        run_stage(spark, cfg, stage, DS, "run-again")
    other = DS - dt.timedelta(days=1)
    run_stage(spark, cfg, "rank_topn", other, "run-other")        # a commit for another date
    summary = run_stage(spark, cfg, "publish", DS, "run-again")
    assert summary["rows"] == first.count() > 0
    again = _published(spark, cfg)
    assert {r["run_id"] for r in again.select("run_id").distinct().collect()} == {"run-again"}
    assertDataFrameEqual(again.drop("run_id"), first, checkRowOrder=False)
    old = _published(spark, cfg, version=v_before)
    assert old.count() == first.count() and old.where(F.col("run_id") != forced).count() == 0


def _published(spark, cfg, version=None):
    """The date's published lists (at ``version`` of the table when given)."""
    return delta_io.read_table(spark, cfg, "recommendations", version=version).where(F.col("ds") == DS)


def _runs(spark, cfg):
    return delta_io.read_table(spark, cfg, "runs").where(F.col("ds") == DS)


def test_plan_resumes_after_the_last_succeeded_stage():
    stages = list(STAGES)
    done = {s: "succeeded" for s in stages[:4]} | {stages[4]: "failed", stages[6]: "succeeded"}
    plan = plan_stages(stages, done, "run-a", DS)
    assert plan.stages == stages[4:] and plan.skipped == stages[:4] and plan.run_id == "run-a"
    forced = plan_stages(stages, done, "run-a", DS, force=True)
    assert forced.stages == stages and forced.run_id != "run-a"
    assert plan_stages(stages, done, "run-a", DS, from_stage="validate").stages == stages[stages.index("validate"):]
    assert plan_stages(stages, {}, None, DS).stages == stages


def test_nightly_publishes_and_writes_the_report(spark, night):
    cfg, root, _, out = night
    assert out["exit_code"] == 0, out["error"]
    assert list(out["results"]) == list(STAGES)
    report = json.loads((root / "reports" / DS.isoformat() / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]] == list(STAGES)
    assert all(s["status"] == "succeeded" for s in report["stages"])
    clean = out["results"]["clean"]
    for part in ("events", "items"):
        r = report["reconciliation"][part]
        assert r["identity_holds"] and r["raw"] == clean[part]["raw"]
        assert r["raw"] == r["clean"] + r["quarantined"] + r["duplicates_removed"]
    dq = report["dq"]
    assert dq["failed_error"] == 0 and dq["expectations"] == out["results"]["validate"]["expectations"] > 40
    assert dq["tables"]["recommendations_staging"]["failed_error"] == 0
    # the raw suite is warn-level and sees the planted faults
    assert dq["tables"]["raw_events"]["failed_warn"] > 0
    assert Path(dq["data_docs"]).is_file()
    assert (Path(cfg["lake"]["root"]) / "_dq" / DS.isoformat() / "recommendations.json").is_file()
    recs = report["recommendations"]
    n_rows = _published(spark, cfg).count()
    assert recs["table"] == "recommendations" and recs["rows"] == n_rows > 0
    assert sum(recs["score_histogram"]["counts"]) == n_rows
    assert sum(n for _, n in recs["per_category"]) == n_rows
    assert 0 < recs["coverage"]["coverage"] <= 1 and recs["coverage"]["share"][-1] == pytest.approx(1.0)
    html = (root / "reports" / DS.isoformat() / "report.html").read_text()
    # the three plots of the lists, and the blend's weights by night
    assert html.count("data:image/png;base64,") == 4 and "alt='blend_weights'" in html
    assert "gate <span class='ok'>passed" in html and "<h2>Blend: learned tonight</h2>" in html
    assert report["blend"]["source"] == "learned" and set(report["blend"]["weights"]) == set(report["blend"]["fixed_weights"])
    # the evaluate stage ran (leave-last-out, popularity baseline) and its metrics are in the report
    models = {(e["protocol"], e["model"]) for e in report["evaluation"]}
    assert models == {("leave_last_out", m) for m in ("blend", "blend_fixed", "popularity", "ease", "seqrec")}
    # the sequence model's section
    assert "<h2>Sequence model: full training</h2>" in html and report["sequence_model"]["users_scored"] > 0
    assert "<h2>Evaluation</h2>" in html
    assert delta_io.read_table(spark, cfg, "dq_results").where(F.col("ds") == DS).count() == dq["expectations"]


def test_second_nightly_skips_every_succeeded_stage(spark, night):
    cfg, _, _, first = night
    before = _runs(spark, cfg).count()
    again = run_nightly(spark, cfg, DS, report=False, echo=lambda *a, **k: None)
    assert again["exit_code"] == 0 and again["plan"].stages == [] and again["plan"].skipped == list(STAGES)
    assert _runs(spark, cfg).count() == before


def test_duplicated_rank_blocks_publish_and_resume_runs_only_the_rest(spark, night):
    cfg, root, _, _ = night
    published = _published(spark, cfg).localCheckpoint()
    version = delta_io.current_version(spark, cfg, "recommendations")
    staged = delta_io.read_table(spark, cfg, "recommendations_staging").where(F.col("ds") == DS)
    first = staged.orderBy("user_id", "rank").limit(1)
    other = staged.join(first.select("user_id"), "user_id", "left_anti").select("item_id").limit(1)
    planted = (first.drop("item_id").crossJoin(other).withColumn("run_id", F.lit("planted"))
               .withColumn("components", F.col("components").withField("engagement", F.lit(2.0))))
    delta_io.append(planted, cfg, "recommendations_staging")

    # the CLI entry point (also what spark-submit runs) exits 3
    code = nightly_main(["--date", DS.isoformat(), "--conf", str(root / "conf.yaml"), "--from-stage", "validate"])
    assert code == 3
    assert delta_io.current_version(spark, cfg, "recommendations") == version
    assertDataFrameEqual(_published(spark, cfg), published)
    with pytest.raises(DataQualityError):
        run_stage(spark, cfg, "publish", DS, "manual")     # publish alone refuses too
    report = json.loads((root / "reports" / DS.isoformat() / "report.json").read_text())
    assert report["status"] == "dq_gate_failed"
    failures = report["dq"]["tables"]["recommendations_staging"]["failures"]
    assert any(f["description"] == "rank unique per user" and f["unexpected"] == 2 for f in failures)
    assert any(f["description"].startswith("components.engagement") and f["unexpected"] == 1 for f in failures)

    # repair the staging table; a plain re-run resumes at validate and runs only what is left (its
    # evaluate stage without protocols: scoring the night's again is not what this tests, and the
    # night's metrics stay as they are)
    DeltaTable.forPath(spark, delta_io.table_path(cfg, "recommendations_staging")).delete("run_id = 'planted'")
    out = run_nightly(spark, with_values(cfg, {"eval.protocols": []}), DS, report=False, echo=lambda *a, **k: None)
    assert out["exit_code"] == 0, out["error"]
    assert out["plan"].stages == ["validate", "publish", "evaluate"]
    assert set(out["plan"].skipped) == set(STAGES) - {"validate", "publish", "evaluate"}
    assert delta_io.current_version(spark, cfg, "recommendations") == version + 1


DAG_CHECK = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("recjobs_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag = module.dag
nightly, dq = dag.get_task("nightly"), dag.get_task("dq_summary")
print(json.dumps({"dag_id": dag.dag_id, "tasks": sorted(t.task_id for t in dag.tasks),
                  "downstream": sorted(nightly.downstream_task_ids), "retries": dag.default_args["retries"],
                  "nightly_command": nightly.bash_command, "dq_command": dq.bash_command,
                  "dq_trigger_rule": str(dq.trigger_rule), "max_active_runs": dag.max_active_runs}))
"""


def test_airflow_dag_defines_the_nightly_graph(tmp_path):
    """The DAG file imported by a real Airflow (its own virtualenv: ``make airflow-venv``)."""
    python = os.environ.get("RECJOBS_AIRFLOW_PYTHON", str(ROOT / ".venv-airflow" / "bin" / "python"))
    if not Path(python).exists():
        pytest.fail(f"no Airflow interpreter at {python}: run 'make airflow-venv' (make test does) or set "
                    f"RECJOBS_AIRFLOW_PYTHON")
    out = subprocess.run([python, "-c", DAG_CHECK, str(ROOT / "deploy" / "airflow_dag.py")], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "AIRFLOW_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-3000:]
    dag = json.loads(out.stdout.strip().splitlines()[-1])
    assert dag["dag_id"] == "recjobs_nightly" and dag["tasks"] == ["dq_summary", "nightly"]
    assert dag["downstream"] == ["dq_summary"] and dag["retries"] >= 1 and dag["max_active_runs"] == 1
    assert "deploy/spark-submit.sh --date {{ ds }}" in dag["nightly_command"]
    assert "recjobs dq --date {{ ds }}" in dag["dq_command"] and dag["dq_trigger_rule"].lower().endswith("all_done")


def test_pyfiles_zip_carries_the_code_and_the_default_config(tmp_path):
    from jobs.package import build

    zpath = tmp_path / "recjobs-pyfiles.zip"
    names = build(zpath)
    assert {"jobs/nightly.py", "udfs/topk.py", "schemas/expectations.py", "conf/default.yaml"} <= set(names)
    assert zipfile.ZipFile(zpath).testzip() is None
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import conf; "
            "assert conf.__file__.startswith(sys.argv[1]), conf.__file__; "
            "from jobs.common.config import load_config; print(load_config()['rank']['top_n'])")
    out = subprocess.run([sys.executable, "-c", code, str(zpath)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "10"


def test_spark_defaults_name_the_configured_delta_jar():
    import pyspark

    props = dict(line.split(None, 1) for line in (ROOT / "conf" / "spark-defaults.conf").read_text().splitlines()
                 if line.strip() and not line.startswith("#"))
    version = load_config()["spark"]["delta_version"]
    major_minor = ".".join(pyspark.__version__.split(".")[:2])
    assert props["spark.jars.packages"].strip() == f"io.delta:delta-spark_{major_minor}_2.13:{version}"


def _readme_block(after: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("```python", text.index(after)) + len("```python")
    return text[start:text.index("```", start)]


def test_the_readme_reading_example_runs_as_printed(spark, night, tmp_path):
    """The README's Spark-free reading (deltalake, DuckDB over its Arrow dataset), exactly as printed,
    from a folder where demo-output/lake is this night's lake."""
    cfg, _, _, _ = night
    (tmp_path / "demo-output").mkdir()
    (tmp_path / "demo-output" / "lake").symlink_to(cfg["lake"]["root"], target_is_directory=True)
    code = _readme_block("From a service, without Spark or a JVM")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    recs = _published(spark, cfg)
    mine = [r["item_id"] for r in recs.where(F.col("user_id") == "u00042").collect()]
    default = [r["item_id"] for r in recs.where(F.col("user_id") == "__default__").collect()]
    shown = mine or default
    assert len(shown) == cfg["rank"]["top_n"]
    # both prints (pandas, then DuckDB) list every item the service would show the user
    assert all(out.stdout.count(item) >= 2 for item in shown), out.stdout
