"""Vector arithmetic for user embeddings, in numpy (one pass per row, no per-element work in SQL)."""
import numpy as np
import pandas as pd


def unit(v: np.ndarray) -> np.ndarray:
    """``v / |v|`` (a zero vector stays zero)."""
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-12 else v


def mix_frame(seq: pd.Series, pooled: pd.Series, w_seq: float, w_pool: float) -> pd.DataFrame:
    """Row-wise: unit(seq), unit(pooled), and unit(w_seq * unit(seq) + w_pool * unit(pooled)).

    A row without a pooled vector (None) keeps unit(seq) as its mix.
    """
    out_seq, out_pool, out_mix = [], [], []
    for s, p in zip(seq, pooled):
        s_u = unit(np.asarray(s, dtype=np.float32))
        if p is None or (isinstance(p, float) and np.isnan(p)):
            out_seq.append(s_u)
            out_pool.append(None)
            out_mix.append(s_u)
            continue
        p_u = unit(np.asarray(p, dtype=np.float32))
        out_seq.append(s_u)
        out_pool.append(p_u)
        out_mix.append(unit(w_seq * s_u + w_pool * p_u).astype(np.float32))
    return pd.DataFrame({"embedding": out_mix, "seq_embedding": out_seq, "pooled_embedding": out_pool})


def mix_udf(w_seq: float, w_pool: float):
    """Spark pandas UDF (seq array<float>, pooled array<float>) -> struct of the three vectors."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("embedding array<float>, seq_embedding array<float>, pooled_embedding array<float>")
    def mix(seq: pd.Series, pooled: pd.Series) -> pd.DataFrame:
        return mix_frame(seq, pooled, w_seq, w_pool)

    return mix
