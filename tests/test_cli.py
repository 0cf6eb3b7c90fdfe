"""The recjobs command line: help, exit codes and one-line errors."""
import os
import subprocess
import sys

import pytest

from jobs.common.errors import EnvironmentProblem
from jobs.common.session import check_java, java_version


def _recjobs(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, "PYTHONPATH": os.getcwd()})


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
