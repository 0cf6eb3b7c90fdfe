"""Decay-weighted means of per-item vectors per user (item embeddings, topic distributions)."""
from __future__ import annotations

from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.stat import Summarizer
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from schemas import columns as c


def sequence_weights(user_sequences: DataFrame, col_user: str = c.USER_ID) -> DataFrame:
    """``(user, item, weight)``: one row per event of each user's sequence."""
    return user_sequences.select(col_user, F.explode("events").alias("_e")).select(
        col_user, F.col(f"_e.{c.ITEM_ID}").alias(c.ITEM_ID), F.col("_e.weight").alias("weight"))


def weighted_mean(weighted_items: DataFrame, item_vectors: DataFrame, vector_col: str, out_col: str,
                  dtype: str = "float32", col_user: str = c.USER_ID, col_item: str = c.ITEM_ID) -> DataFrame:
    """Per user ``sum(w_i * v_i) / sum(w_i)`` over the items that have a vector (MLlib Summarizer).

    Args:
        weighted_items: ``(user, item, weight)`` rows.
        item_vectors: ``(item, vector_col)`` with array vectors.
        vector_col: Name of the array column in ``item_vectors``.
        out_col: Name of the result column.
        dtype: ``float32`` or ``float64`` for the result array.

    Returns:
        ``(user, out_col)``; users none of whose items have a vector are absent.
    """
    joined = (weighted_items.join(item_vectors.select(col_item, vector_col), col_item)
              .select(col_user, array_to_vector(vector_col).alias("_v"), F.col("weight").cast("double")))
    return (joined.groupBy(col_user)
            .agg(Summarizer.mean(F.col("_v"), F.col("weight")).alias("_m"))
            .select(col_user, vector_to_array("_m", dtype).alias(out_col)))
