"""Reading raw inputs with explicit schemas, keeping every record (malformed ones included).

Each raw row comes back with three helper columns: ``_raw_record`` (the line or a JSON
rendering of the row, for the quarantine), ``_source_file`` and ``_malformed`` (the reader
could not parse it against the schema).
"""
from __future__ import annotations

import datetime as dt

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from jobs.common.errors import InputError
from schemas.columns import CORRUPT

RAW = "_raw_record"
FILE = "_source_file"
MALFORMED = "_malformed"
FORMATS = ("jsonl", "csv", "parquet", "delta")


def resolve_path(template: str, ds: dt.date) -> str:
    """Fill ``{ds}`` in an input path template."""
    return template.replace("{ds}", ds.isoformat())


def _with_corrupt(schema: StructType) -> StructType:
    return StructType(list(schema.fields) + [StructField(CORRUPT, StringType(), True)])


def read_raw(
    spark: SparkSession,
    path: str,
    fmt: str,
    schema: StructType,
    conf_key: str,
    csv_separator: str = ",",
    csv_header: bool = True,
) -> DataFrame:
    """Read one raw input with an explicit schema.

    Args:
        spark: The session.
        path: File or folder (any Hadoop file system URI).
        fmt: ``jsonl``, ``csv``, ``parquet`` or ``delta``.
        schema: The raw contract (all fields nullable).
        conf_key: The configuration key the path came from, named in errors.
        csv_separator: CSV field separator.
        csv_header: Whether CSV files start with a header line.

    Returns:
        The schema's columns plus ``_raw_record``, ``_source_file`` and ``_malformed``.

    Raises:
        InputError: The path does not exist, the format is unknown, or a Delta/Parquet input
            lacks a field of the contract.
    """
    if fmt not in FORMATS:
        raise InputError(f"input format {fmt!r} (key input.format) is not one of {', '.join(FORMATS)}")
    fields = [f.name for f in schema.fields]
    try:
        if fmt == "jsonl":
            lines = (spark.read.text(path)
                     .select(F.col("value").alias(RAW), F.col("_metadata.file_path").alias(FILE))
                     .where(F.trim(F.col(RAW)) != ""))
            parsed = lines.withColumn("_j", F.from_json(
                F.col(RAW), _with_corrupt(schema),
                {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}))
            return parsed.select(
                *[F.col(f"_j.{name}").alias(name) for name in fields], RAW, FILE,
                (F.col("_j").isNull() | F.col(f"_j.{CORRUPT}").isNotNull()).alias(MALFORMED))
        if fmt == "csv":
            df = (spark.read.schema(_with_corrupt(schema))
                  .option("header", csv_header).option("sep", csv_separator)
                  .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
                  .option("encoding", "UTF-8").csv(path))
        elif fmt == "parquet":
            df = spark.read.schema(schema).parquet(path).withColumn(CORRUPT, F.lit(None).cast("string"))
        else:
            df = spark.read.format("delta").load(path)
            missing = [name for name in fields if name not in df.columns]
            if missing:
                raise InputError(
                    f"{path}: field(s) {', '.join(missing)} of the raw contract are missing; "
                    f"add them to the table (see schemas/tables.py) or fix {conf_key}")
            df = df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields]) \
                   .withColumn(CORRUPT, F.lit(None).cast("string"))
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc) or "not a Delta table" in str(exc):
            raise InputError(f"input path {path} (key {conf_key}) does not exist; "
                             f"fix {conf_key} with --conf or --set {conf_key}=PATH") from None
        raise
    rendered = F.to_json(F.struct(*[F.col(n) for n in fields]))
    return df.select(
        *fields,
        F.coalesce(F.col(CORRUPT), rendered).alias(RAW),
        F.col("_metadata.file_path").alias(FILE) if fmt != "delta" else F.lit(path).alias(FILE),
        F.col(CORRUPT).isNotNull().alias(MALFORMED),
    )


def parse_timestamp(col: Column) -> Column:
    """ISO-8601 (with or without offset; naive means UTC) or epoch seconds / milliseconds.

    Returns NULL for anything unparseable, never raises (also under ANSI mode).
    """
    s = F.trim(col.cast("string"))
    digits = s.rlike(r"^-?\d{1,13}(\.\d+)?$")
    as_num = F.when(digits, s.cast("double"))
    epoch = F.when(F.abs(as_num) >= 1e11, F.timestamp_millis(as_num.cast("long"))) \
             .otherwise(F.timestamp_seconds(as_num.cast("long")))
    return F.when(digits, epoch).otherwise(F.try_to_timestamp(s))


def has_invalid_utf8(col: Column) -> Column:
    """True where the string holds byte sequences that are not valid UTF-8.

    Spark keeps the raw bytes of text input, so they are checked byte-wise; a U+FFFD that a
    writer already substituted counts as damage too.
    """
    return F.coalesce(~F.is_valid_utf8(col) | (F.instr(col, "\ufffd") > 0), F.lit(False))


def clean_id(col: Column) -> Column:
    """Ids are trimmed strings; blank means missing."""
    trimmed = F.trim(col.cast("string"))
    return F.when(trimmed == "", None).otherwise(trimmed)


def truncate_text(col: Column, max_len: int) -> tuple[Column, Column]:
    """(cut text, was-cut flag) for one text column."""
    return F.substring(col, 1, max_len), F.coalesce(F.length(col) > max_len, F.lit(False))
