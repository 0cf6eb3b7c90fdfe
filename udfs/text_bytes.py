"""Text that may not be valid UTF-8: a readable, valid copy with the bad bytes escaped."""
from __future__ import annotations

import pandas as pd


def escape_invalid_utf8(raw: bytes | None) -> str | None:
    """``raw`` decoded as UTF-8, each byte that is not part of valid UTF-8 written as ``\\xNN``."""
    return None if raw is None else bytes(raw).decode("utf-8", errors="backslashreplace")


def escaped_utf8_udf():
    """Spark pandas UDF: binary -> string, :func:`escape_invalid_utf8` of each value."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")
    def escape(raw: pd.Series) -> pd.Series:
        return raw.map(escape_invalid_utf8)

    return escape
