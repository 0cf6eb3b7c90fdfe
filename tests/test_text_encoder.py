"""The text encoder: loading, length sorting, pooling, normalisation, the Spark UDF."""
import numpy as np
import pytest

from jobs.common.config import load_config
from jobs.common.encoding import model_ref
from jobs.common.errors import ConfigError
from udfs.models import model_info
from udfs.text_encoder import EncoderSettings, TextEncoder, encoder_udf, get_encoder

TEXTS = ["running shoes", "a", "kitchen knife stainless and trail jogging sneakers for the garden tent",
         "novel", "", "camping tent with brand tags and category audio garden novel knife",
         "running shoes", None, "trail"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return EncoderSettings(model=tiny_model_dir, batch_size=3, max_length=32)


def test_length_sorting_keeps_count_and_order(tiny):
    enc = get_encoder(tiny)
    batched = enc.encode(TEXTS)
    one_by_one = np.stack([enc.encode([t])[0] for t in TEXTS])
    assert batched.shape == (len(TEXTS), enc.dim)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_unit_norm_identical_texts_and_determinism(tiny):
    first = TextEncoder(tiny).encode(TEXTS)
    second = TextEncoder(tiny).encode(TEXTS)           # a fresh load gives the same numbers
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first[0], first[6])  # "running shoes" twice
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first[0], first[2])


def test_cls_pooling_is_selectable(tiny):
    cls = TextEncoder(EncoderSettings(model=tiny.model, pooling="cls", max_length=32)).encode(TEXTS[:3])
    mean = get_encoder(tiny).encode(TEXTS[:3])
    np.testing.assert_allclose(np.linalg.norm(cls, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(cls, mean)


def test_spark_udf_matches_direct_encoding(spark, tiny):
    df = spark.createDataFrame(list(enumerate(TEXTS)), "id int, text string").repartition(3)
    rows = sorted(df.withColumn("v", encoder_udf(tiny)("text")).collect(), key=lambda r: r["id"])
    got = np.array([r["v"] for r in rows], dtype=np.float32)
    np.testing.assert_allclose(got, get_encoder(tiny).encode(TEXTS), atol=1e-5)


def test_model_info_reads_dimension_and_fingerprint(tiny_model_dir):
    info = model_info(tiny_model_dir)
    assert info["dim"] == 32 and len(info["revision"]) == 16
    assert model_info(tiny_model_dir) == info


def test_missing_model_path_is_a_config_error_naming_path_and_key(tmp_path):
    cfg = load_config(values={"encoder": {"model": str(tmp_path / "no-model")}})
    with pytest.raises(ConfigError) as err:
        model_ref(cfg)
    assert str(tmp_path / "no-model") in str(err.value) and "encoder.model" in str(err.value)


def test_packaged_minilm_puts_similar_products_close():
    enc = get_encoder(EncoderSettings())
    assert enc.dim == 384
    shoes, sneakers, knife = enc.encode(["trail running shoes", "lightweight jogging sneakers",
                                         "stainless kitchen knife"])
    assert float(shoes @ sneakers) > float(shoes @ knife) + 0.2


def test_texts_longer_than_the_model_allows_are_truncated(tiny):
    long = EncoderSettings(model=tiny.model, max_length=10_000)       # tiny model: 128 positions
    vec = TextEncoder(long).encode(["running shoes " * 500])
    assert vec.shape == (1, 32) and abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5


@pytest.mark.parametrize("runtime", ["torch-int8", "onnx"])
def test_cpu_runtimes_give_unit_vectors_close_to_float32_in_input_order(tiny, runtime, tmp_path, monkeypatch):
    monkeypatch.setenv("RECJOBS_ONNX_CACHE", str(tmp_path / "onnx"))
    ref = TextEncoder(tiny).encode(TEXTS)
    enc = TextEncoder(EncoderSettings(model=tiny.model, batch_size=3, max_length=32, runtime=runtime))
    assert enc.runtime == runtime
    got = enc.encode(TEXTS)
    assert got.shape == ref.shape
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    cosine = np.sum(got * ref, axis=1)
    assert cosine.min() > (0.999 if runtime == "onnx" else 0.95), cosine      # ONNX: the same float32 maths
    # "running shoes" twice, in different batches: int8 scales activations per batch, so close, not equal
    np.testing.assert_allclose(got[0], got[6], atol=1e-5 if runtime == "onnx" else 3e-2)
    if runtime == "onnx":
        assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1               # exported once, kept
        again = TextEncoder(EncoderSettings(model=tiny.model, batch_size=3, max_length=32, runtime=runtime))
        np.testing.assert_allclose(again.encode(TEXTS), got, atol=1e-6)


def test_the_runtime_is_checked_and_named_in_the_vectors_revision(tiny_model_dir, monkeypatch):
    torch_ref = model_ref(load_config(values={"encoder": {"model": tiny_model_dir, "runtime": "torch"}}))
    int8 = model_ref(load_config(values={"encoder": {"model": tiny_model_dir, "runtime": "torch-int8"}}))
    assert int8.revision == f"{torch_ref.revision}+torch-int8"          # a change of runtime re-encodes
    with pytest.raises(ConfigError, match="encoder.runtime"):
        model_ref(load_config(values={"encoder": {"model": tiny_model_dir, "runtime": "tensorrt"}}))
    import importlib.util

    auto = load_config(values={"encoder": {"model": tiny_model_dir, "runtime": "auto"}})
    assert model_ref(auto).settings.runtime == "onnx"                 # ONNX Runtime is installed here
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ConfigError, match=r"recjobs\[onnx\]"):
        model_ref(load_config(values={"encoder": {"model": tiny_model_dir, "runtime": "onnx"}}))
    assert model_ref(auto).settings.runtime == "torch"                # without it, auto is torch
    assert model_ref(auto).revision == torch_ref.revision


def test_torch_int8_on_a_torch_without_dynamic_quantisation_is_a_clear_error(tiny, tiny_model_dir, monkeypatch):
    """torch has deprecated torch.ao.quantization for removal: where it is gone, the driver's check
    and a worker's encoder both name the setting and what to set instead, not an ImportError."""
    import sys

    int8 = load_config(values={"encoder": {"model": tiny_model_dir, "runtime": "torch-int8"}})
    assert model_ref(int8).settings.runtime == "torch-int8"         # this torch still has it
    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)   # a torch that has dropped it
    with pytest.raises(ConfigError, match=r"encoder.runtime: torch-int8 needs .* set encoder.runtime to onnx"):
        model_ref(int8)
    with pytest.raises(ValueError, match=r"torch-int8 needs .*recjobs\[onnx\]'\) or torch"):
        TextEncoder(EncoderSettings(model=tiny.model, runtime="torch-int8"))
    assert TextEncoder(EncoderSettings(model=tiny.model, runtime="torch")).encode(TEXTS).shape[0] == len(TEXTS)
