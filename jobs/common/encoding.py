"""Driver-side helpers shared by the encoding jobs: model checks and running the encoder UDF."""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
from dataclasses import dataclass
from typing import Mapping

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.common.errors import ConfigError
from udfs.models import ModelNotFound, model_info, resolve_model
from udfs.text_encoder import (ONNX_MISSING, RUNTIMES, EncoderSettings, dynamic_quantisation, encoder_udf,
                                resolve_runtime)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRef:
    """The encoder to run and what to record next to every vector."""

    settings: EncoderSettings
    model_id: str
    revision: str
    dim: int


def model_ref(cfg: Mapping) -> ModelRef:
    """Check the configured encoder on the driver, before any Spark work.

    Raises:
        ConfigError: The model path does not exist (the message names it and ``encoder.model``),
            or a setting is invalid.
    """
    enc = cfg["encoder"]
    if enc["pooling"] not in ("mean", "cls"):
        raise ConfigError(f"encoder.pooling must be mean or cls, got {enc['pooling']!r}")
    if int(enc["batch_size"]) < 1 or int(enc["max_length"]) < 1:
        raise ConfigError("encoder.batch_size and encoder.max_length must be at least 1")
    settings = EncoderSettings.from_config(enc)
    if settings.runtime not in RUNTIMES:
        raise ConfigError(f"encoder.runtime must be one of {', '.join(RUNTIMES)}, got {settings.runtime!r}")
    if settings.runtime == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        raise ConfigError(ONNX_MISSING)
    if settings.runtime == "torch-int8":
        try:
            dynamic_quantisation()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    # the workers run what the driver resolved (auto: onnx where ONNX Runtime is installed)
    settings = dataclasses.replace(settings, runtime=resolve_runtime(settings.runtime))
    try:
        folder, model_id = resolve_model(settings.model, settings.conf_key)
    except ModelNotFound as exc:
        raise ConfigError(str(exc)) from None
    info = model_info(folder)
    # vectors of another runtime differ a little: the revision names it, so a change re-encodes
    revision = info["revision"] if settings.runtime == "torch" else f"{info['revision']}+{settings.runtime}"
    log.info("encoder %s (revision %s, dim %d, runtime %s)", model_id, revision, info["dim"], settings.runtime)
    return ModelRef(settings, model_id, revision, info["dim"])


def encode_column(df: DataFrame, text_col: str, out_col: str, ref: ModelRef, rows: int,
                  arrow_batch_rows: int) -> DataFrame:
    """Add ``out_col`` = encoder(text_col), spreading ``rows`` rows over the cluster's task slots."""
    spark = df.sparkSession
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(arrow_batch_rows))
    slots = max(1, spark.sparkContext.defaultParallelism)
    parts = max(1, min(slots, -(-rows // 64)))  # no task with fewer than ~64 texts unless needed
    return (df.repartition(parts)
            .withColumn(out_col, encoder_udf(ref.settings)(F.col(text_col))))


def model_columns(ref: ModelRef) -> list:
    """Literal columns recorded next to every vector."""
    return [F.lit(ref.dim).alias("dim"), F.lit(ref.model_id).alias("model_id"),
            F.lit(ref.revision).alias("model_revision")]
