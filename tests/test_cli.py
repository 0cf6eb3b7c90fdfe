"""The recjobs command line: help, exit codes and one-line errors."""
import os
import subprocess
import sys

import pytest

from jobs.common.errors import EnvironmentProblem
from jobs.common.session import check_java, java_version
from tests.conftest import cli_args, cli_env


def _recjobs(*args, cwd=None):
    return subprocess.run(cli_args(*args), capture_output=True, text=True, cwd=cwd, timeout=300, env=cli_env())


def test_help_lists_subcommands():
    out = _recjobs("--help")
    assert out.returncode == 0
    for cmd in ("demo", "sample-data", "run", "nightly", "stages"):
        assert cmd in out.stdout


def test_unknown_config_key_exits_2_naming_the_key():
    out = _recjobs("run", "clean", "--date", "2026-06-30", "--set", "clean.no_such_key=1")
    assert out.returncode == 2
    assert "clean.no_such_key" in out.stderr
    assert "Traceback" not in out.stderr


def test_wrong_type_in_conf_file_exits_2_naming_key_and_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("clean:\n  window_days: many\n")
    out = _recjobs("run", "clean", "--date", "2026-06-30", "--conf", str(f))
    assert out.returncode == 2
    assert "clean.window_days" in out.stderr and str(f) in out.stderr and "Traceback" not in out.stderr


def test_missing_input_path_exits_2_naming_the_path(tmp_path):
    out = _recjobs("run", "clean", "--date", "2026-06-30", "--set", "spark.master=local[1]",
                   "--set", f"lake.root={tmp_path / 'lake'}", "--set", f"input.items_path={tmp_path / 'no_items'}")
    assert out.returncode == 2, out.stderr[-2000:]
    assert str(tmp_path / "no_items") in out.stderr and "input.items_path" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "lake").exists()             # said before Spark started: no lock, no table


def test_local_input_paths_are_checked_before_spark_and_the_rest_left_to_the_read(tmp_path):
    import datetime as dt

    from jobs.common.config import load_config, with_values
    from jobs.common.errors import InputError
    from jobs.common.raw_io import check_local_inputs

    ds = dt.date(2026, 6, 30)
    (tmp_path / "items").mkdir()
    (tmp_path / "events-2026-06-30").mkdir()
    inputs = lambda events, items: with_values(load_config(), {"input.events_path": events,  # noqa: E731
                                                               "input.items_path": items})
    check_local_inputs(inputs(str(tmp_path / "events-{ds}"), f"file:{tmp_path / 'items'}"), ds)
    with pytest.raises(InputError, match=r"events-2026-07-01 \(key input.events_path\).*--set input.events_path="):
        check_local_inputs(inputs(str(tmp_path / "events-{ds}"), str(tmp_path / "items")), ds + dt.timedelta(days=1))
    with pytest.raises(InputError, match=r"file:.*nothing \(key input.items_path\)"):
        check_local_inputs(inputs(str(tmp_path / "events-{ds}"), f"file://{tmp_path / 'nothing'}"), ds)
    # a glob or another file system: the read decides
    check_local_inputs(inputs(str(tmp_path / "events-*"), "s3a://bucket/items"), ds)


def test_bad_date_is_a_usage_error():
    out = _recjobs("run", "clean", "--date", "30/06/2026")
    assert out.returncode == 2 and "YYYY-MM-DD" in out.stderr


def _fake_java(tmp_path, version_line):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    java = bin_dir / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(0o755)
    return str(java)


def test_java_version_parsing(tmp_path):
    assert java_version(_fake_java(tmp_path, 'openjdk version "17.0.15" 2025-04-15')) == 17
    assert java_version(_fake_java(tmp_path / "b", 'java version "1.8.0_392"')) == 8


def test_old_or_missing_java_gives_a_clear_error(tmp_path, monkeypatch):
    _fake_java(tmp_path, 'java version "1.8.0_392"')
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="Java 8 found.*17"):
        check_java()
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(EnvironmentProblem, match="Java was not found"):
        check_java()


def test_missing_model_path_exits_2_naming_path_and_key(tmp_path):
    out = _recjobs("run", "encode_items", "--date", "2026-06-30", "--set", f"encoder.model={tmp_path / 'nope'}")
    assert out.returncode == 2
    assert str(tmp_path / "nope") in out.stderr and "encoder.model" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_session_sizes_shuffles_and_delta_snapshots_from_its_cores_unless_configured():
    from types import SimpleNamespace

    from jobs.common.session import size_partitions

    class Given(dict):
        def contains(self, key):
            return key in self

    class Runtime(dict):
        def set(self, key, value):
            self[key] = value

    def sized(cores, given, master="local[*]"):
        session = SimpleNamespace(conf=Runtime(), sparkContext=SimpleNamespace(
            getConf=lambda: Given(given), defaultParallelism=cores, master=master))
        size_partitions(session)
        return session.conf

    adaptive = {"spark.sql.adaptive.enabled": "true", "spark.sql.adaptive.coalescePartitions.enabled": "true"}
    assert sized(2, {}) == {"spark.sql.shuffle.partitions": "4", "spark.databricks.delta.snapshotPartitions": "2",
                            **adaptive}
    assert sized(400, {})["spark.databricks.delta.snapshotPartitions"] == "50"      # Delta's own, at most
    assert sized(2, {}, "yarn") == {"spark.sql.shuffle.partitions": "4", **adaptive}   # a cluster: Delta's
    assert sized(2, {"spark.sql.shuffle.partitions": "7", "spark.databricks.delta.snapshotPartitions": "9",
                     "spark.sql.adaptive.enabled": "false"}) == {
        "spark.sql.adaptive.coalescePartitions.enabled": "true"}                      # what is set stays


def test_local_workers_get_this_interpreter_when_no_master_is_configured(spark, lake_cfg, tmp_path, tiny_model_dir):
    """No master in the configuration (Spark then runs locally) and a PATH whose first python3 is
    not the project's: the workers must still get the project's interpreter, or encoding fails."""
    import datetime as dt
    from pathlib import Path

    from jobs.common import delta_io

    items = spark.createDataFrame(
        [(f"i{n}", f"title {n}", "Books", None, 1.0, "d", ["a"], dt.datetime(2026, 6, 1), False, "f", "r", dt.date(2026, 6, 1))
         for n in range(5)],
        "item_id string, title string, category string, brand string, price double, description string, "
        "tags array<string>, updated_at timestamp, text_truncated boolean, source_file string, run_id string, ds date")
    delta_io.overwrite(items, lake_cfg, "items_clean")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text("#!/bin/sh\necho 'this python3 is not the project interpreter' >&2\nexit 3\n")
    (fake / "python3").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV")}
    env["PATH"] = f"{fake}:{env['PATH']}"
    recjobs = str(Path(sys.executable).parent / "recjobs")
    out = subprocess.run([recjobs, "run", "encode_items", "--date", "2026-06-30",
                          "--set", f"lake.root={lake_cfg['lake']['root']}", "--set", f"encoder.model={tiny_model_dir}",
                          "--set", "spark.conf.spark.ui.enabled=false"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert '"encoded": 5' in out.stdout
    assert delta_io.read_table(spark, lake_cfg, "item_embeddings").count() == 5


def test_the_demo_runs_a_small_sample_without_code_generation_unless_told_otherwise(tmp_path):
    from jobs.cli import demo_config

    sample_conf = tmp_path / "recjobs.yaml"
    sample_conf.write_text("clean:\n  window_days: 9\nspark:\n  conf:\n    spark.sql.shuffle.partitions: '3'\n")
    cfg = demo_config(tmp_path / "out", sample_conf)
    spark_conf = cfg["spark"]["conf"]
    assert spark_conf["spark.sql.codegen.wholeStage"] == "false" and spark_conf["spark.sql.codegen.factoryMode"] == "NO_CODEGEN"
    # the local set-up underneath, the sample's settings and the demo's folders on top
    assert cfg["spark"]["master"] == "local[*]" and spark_conf["spark.driver.memory"] == "4g"
    assert cfg["clean"]["window_days"] == 9 and spark_conf["spark.sql.shuffle.partitions"] == "3"
    assert cfg["lake"]["root"] == str(tmp_path / "out" / "lake")
    # the user's --set has the last word, as the file's comment says
    on = demo_config(tmp_path / "out", sample_conf, overrides=["spark.conf.spark.sql.codegen.wholeStage=true",
                                                               "spark.conf.spark.sql.codegen.factoryMode=FALLBACK"])
    assert on["spark"]["conf"]["spark.sql.codegen.wholeStage"] == "true"
    assert on["spark"]["conf"]["spark.sql.codegen.factoryMode"] == "FALLBACK"
    # nothing else layers it: conf/local.yaml alone keeps Spark's code generation
    from jobs.common.config import load_config
    from conf import CONF_DIR

    assert "spark.sql.codegen.wholeStage" not in load_config([CONF_DIR / "local.yaml"])["spark"]["conf"]
