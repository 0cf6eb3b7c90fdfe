"""Review sentiment in [-1, 1]: VADER (lexicon, CPU, offline) or a transformers classifier.

The transformers backend follows the text encoder's rules (``udfs.device``): one model per Python
worker, length-sorted batches, the task's GPU when assigned, half precision there, batch halving
on CUDA out-of-memory.
"""
import re
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from udfs.device import LoadedModel, cached, set_torch_threads

BACKENDS = ("vader", "transformers")


@dataclass(frozen=True)
class SentimentSettings:
    """Which analyser to run and how (hashable: the worker cache key)."""

    backend: str = "vader"
    model: str = ""                      # transformers backend: folder or cached hub id
    max_length: int = 256
    batch_size: int = 32
    device: str = "auto"
    half_precision: bool = True
    conf_key: str = "sentiment.model"

    @classmethod
    def from_config(cls, section: dict) -> "SentimentSettings":
        return cls(backend=section["backend"], model=section["model"] or "", max_length=int(section["max_length"]),
                   batch_size=int(section["batch_size"]), device=section["device"],
                   half_precision=bool(section["half_precision"]))


def vader_scores(texts: Sequence[str | None]) -> np.ndarray:
    """VADER compound scores (already in [-1, 1]); empty text scores 0."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = cached(("vader",), SentimentIntensityAnalyzer)
    return np.array([analyzer.polarity_scores(t)["compound"] if isinstance(t, str) and t.strip() else 0.0
                     for t in texts], dtype=np.float64)


def label_values(id2label: dict) -> np.ndarray:
    """The sentiment value in [-1, 1] of each class label.

    Star labels ("1 star" .. "5 stars") map linearly onto [-1, 1]; labels naming negative /
    neutral / positive map to -1 / 0 / 1; otherwise classes are read as ordered from most
    negative to most positive.
    """
    n = len(id2label)
    names = [str(id2label[i]).lower() for i in range(n)]
    stars = [re.match(r"^\s*(\d+)\s*star", name) for name in names]
    if all(stars):
        values = np.array([float(m.group(1)) for m in stars])
        return (values - values.min()) / max(values.max() - values.min(), 1e-9) * 2 - 1
    if any("pos" in name or "neg" in name for name in names):
        return np.array([1.0 if "pos" in name else -1.0 if "neg" in name else 0.0 for name in names])
    return np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)


class SentimentClassifier(LoadedModel):
    """A sequence-classification model turned into a score: sum over classes of p(class) * value."""

    kind = "classifier"

    def __init__(self, settings: SentimentSettings) -> None:
        super().__init__(settings)
        self.values = self._torch.tensor(label_values(self.model.config.id2label), dtype=self._torch.float32)

    def score(self, texts: Sequence[str | None]) -> np.ndarray:
        return self.run_batches(texts, np.zeros(len(texts), dtype=np.float64))

    def _forward(self, batch) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            logits = self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits.float()
            probs = torch.softmax(logits, dim=-1).cpu()
            return (probs @ self.values).numpy()


def score_texts(texts: Sequence[str | None], settings: SentimentSettings) -> np.ndarray:
    """Sentiment of each text in [-1, 1], in input order."""
    if settings.backend == "vader":
        return vader_scores(texts)
    if settings.backend == "transformers":
        set_torch_threads()
        model = cached(("sentiment", settings), lambda: SentimentClassifier(settings))
        return np.clip(model.score(texts), -1.0, 1.0)
    raise ValueError(f"sentiment.backend must be one of {BACKENDS}, got {settings.backend!r}")


def sentiment_udf(settings: SentimentSettings):
    """Spark iterator pandas UDF: review text -> double in [-1, 1]."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("double")
    def score(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        for texts in batches:
            yield pd.Series(score_texts(texts.tolist(), settings), index=texts.index)

    return score
