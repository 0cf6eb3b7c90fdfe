import pytest
from hypothesis import given, strategies as st

from jobs.common.config import load_config, parse_override, redacted
from jobs.common.errors import ConfigError


def test_defaults_load_and_have_documented_sections():
    cfg = load_config()
    assert cfg.get_path("clean.window_days") == 1
    assert cfg.get_path("spark.master") is None
    assert cfg["input"]["format"] == "jsonl"


def test_layers_default_file_set_in_order(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("clean:\n  window_days: 3\n  bot_max_events_per_hour: 50\n")
    cfg = load_config([f], ["clean.window_days=5", "spark.conf.spark.sql.shuffle.partitions=8"])
    assert cfg.get_path("clean.window_days") == 5          # --set beats --conf
    assert cfg.get_path("clean.bot_max_events_per_hour") == 50
    assert cfg["spark"]["conf"] == {"spark.sql.shuffle.partitions": "8"}


def test_unknown_key_names_key_and_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("clean:\n  no_such_key: 1\n")
    with pytest.raises(ConfigError) as err:
        load_config([f])
    assert "clean.no_such_key" in str(err.value) and str(f) in str(err.value)
    with pytest.raises(ConfigError, match=r"clean\.no_such_key.*--set"):
        load_config(overrides=["clean.no_such_key=1"])


def test_wrong_type_names_key_and_expected_type(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("clean:\n  window_days: three\n")
    with pytest.raises(ConfigError, match=r"clean\.window_days.*must be int.*got str"):
        load_config([f])
    with pytest.raises(ConfigError, match="must be bool"):
        load_config(overrides=["input.csv_header=maybe"])
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(overrides=["clean=3"])


def test_float_accepts_int_and_spark_conf_is_free_form():
    cfg = load_config(values={"clean": {"rating_min": 0}, "spark": {"conf": {"anything.goes": "x"}}})
    assert cfg["clean"]["rating_min"] == 0.0 and isinstance(cfg["clean"]["rating_min"], float)
    assert cfg["spark"]["conf"]["anything.goes"] == "x"


def test_env_interpolation_and_missing_variable(tmp_path):
    f = tmp_path / "env.yaml"
    f.write_text("lake:\n  root: ${LAKE_ROOT}/x\ninput:\n  events_path: ${NOPE:-fallback}\n")
    cfg = load_config([f], env={"LAKE_ROOT": "s3a://b"})
    assert cfg["lake"]["root"] == "s3a://b/x"
    assert cfg["input"]["events_path"] == "fallback"
    with pytest.raises(ConfigError, match=r"lake\.root.*LAKE_ROOT"):
        load_config([f], env={})


def test_missing_conf_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config([tmp_path / "nope.yaml"])


def test_redaction_hides_secret_looking_keys():
    out = redacted({"spark": {"conf": {"fs.s3a.secret.key": "abc", "fs.s3a.endpoint": "e"}}})
    assert out["spark"]["conf"]["fs.s3a.secret.key"] == "***"
    assert out["spark"]["conf"]["fs.s3a.endpoint"] == "e"


@given(st.text(max_size=40))
def test_parse_override_never_crashes_unexpectedly(text):
    # any string is either a valid override or a ConfigError, never another exception
    try:
        out = parse_override(text)
    except ConfigError:
        return
    assert isinstance(out, dict) and len(out) == 1


def test_the_sequence_models_id_dropout_reaches_its_architecture_within_its_range():
    from jobs.common.settings import SeqRecSettings

    assert SeqRecSettings.from_config(load_config()).architecture["id_dropout"] == 0.0
    s = SeqRecSettings.from_config(load_config(overrides=["seqrec.id_dropout=0.5"]))
    assert s.architecture["id_dropout"] == 0.5
    with pytest.raises(ConfigError, match=r"seqrec\.id_dropout"):
        SeqRecSettings.from_config(load_config(overrides=["seqrec.id_dropout=0.95"]))
