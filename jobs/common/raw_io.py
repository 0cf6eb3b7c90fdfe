"""Reading raw inputs with explicit schemas, keeping every record (malformed ones included).

Each raw row comes back with four helper columns: ``_raw_record`` (the line or a JSON rendering
of the row, for the quarantine), ``_source_file``, ``_malformed`` (the reader could not parse it
against the schema) and ``_bad_id`` (the id fields whose JSON value is neither a string nor an
integer, comma-separated; NULL when all are fine).

The input contract, checked before anything is written:

- JSON lines: ids may be strings or integers (integers become strings: many systems number
  their users); any other JSON type marks the record ``_bad_id``. A string of any length is read
  (the clean stage cuts it to ``clean.max_text_length`` and flags it).
- CSV: columns are mapped by the header's names, whatever their order (files may differ); a
  header without a required column exits 2 naming the file and the column. Without a header
  (``input.csv_header: false``) the columns are taken in the contract's order.
- Parquet and Delta: every contract column present must have a type that converts to it (ids
  and texts: strings or integers; numbers: numeric types; ``ts``: strings, integers or
  timestamps); a column of another type exits 2 naming the file and the column.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import os

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (DataType, DecimalType, DoubleType, FloatType, IntegerType, LongType, NumericType,
                               ShortType, StringType, StructField, StructType, TimestampNTZType, TimestampType,
                               ByteType, VariantType)

from jobs.common.delta_io import hadoop_path
from jobs.common.errors import InputError
from schemas import columns as c
from schemas.columns import CORRUPT

RAW = "_raw_record"
FILE = "_source_file"
MALFORMED = "_malformed"
BAD_ID = "_bad_id"
FORMATS = ("jsonl", "csv", "parquet", "delta")
ID_FIELDS = (c.EVENT_ID, c.USER_ID, c.ITEM_ID)
# Columns a record cannot do without (the rest may be absent from a file and read as NULL).
REQUIRED = {"events": (c.USER_ID, c.ITEM_ID, c.EVENT_TYPE, c.TS), "items": (c.ITEM_ID, c.TITLE)}
# JSON strings of any length are read; Jackson's default limit (20M characters) would turn a record
# with a long review into a malformed one instead of a cut one.
MAX_JSON_STRING = str(2**31 - 1)
_INTEGER_VARIANTS = r"^(TINYINT|SMALLINT|INT|BIGINT|DECIMAL\(\d+,0\))$"


def resolve_path(template: str, ds: dt.date) -> str:
    """Fill ``{ds}`` in an input path template."""
    return template.replace("{ds}", ds.isoformat())


def _with_corrupt(schema: StructType) -> StructType:
    return StructType(list(schema.fields) + [StructField(CORRUPT, StringType(), True)])


def _kind(schema: StructType) -> str:
    return "events" if c.EVENT_TYPE in schema.fieldNames() else "items"


def _not_found(path: str, conf_key: str) -> InputError:
    return InputError(f"input path {path} (key {conf_key}) does not exist; "
                      f"fix {conf_key} with --conf or --set {conf_key}=PATH")


def check_local_inputs(cfg, ds: dt.date) -> None:
    """Before Spark starts: the input paths on this machine's file system (no scheme but
    ``file:``, no glob) must exist. A missing one raises the error the read would give once
    Spark had started, in a moment; other paths are left to the read.

    Raises:
        InputError: A local input path does not exist.
    """
    for key in ("items_path", "events_path"):
        path = resolve_path(cfg["input"][key], ds)
        local = path[len("file:"):] if path.startswith("file:") else path
        if "://" in local or any(ch in local for ch in "*?[{"):
            continue
        if not os.path.exists(local):
            raise _not_found(path, f"input.{key}")


def _missing_path(exc: Exception) -> bool:
    text = str(exc)
    return "PATH_NOT_FOUND" in text or "does not exist" in text or "not a Delta table" in text


def read_raw(
    spark: SparkSession,
    path: str,
    fmt: str,
    schema: StructType,
    conf_key: str,
    csv_separator: str = ",",
    csv_header: bool = True,
) -> DataFrame:
    """Read one raw input with an explicit schema (the contract of the module docstring).

    Args:
        spark: The session.
        path: File or folder (any Hadoop file system URI).
        fmt: ``jsonl``, ``csv``, ``parquet`` or ``delta``.
        schema: The raw contract (all fields nullable).
        conf_key: The configuration key the path came from, named in errors.
        csv_separator: CSV field separator.
        csv_header: Whether CSV files start with a header line.

    Returns:
        The schema's columns plus ``_raw_record``, ``_source_file``, ``_malformed`` and ``_bad_id``.

    Raises:
        InputError: The path does not exist, the format is unknown, a CSV header lacks a required
            column, or a Parquet/Delta column has a type that does not convert to the contract.
    """
    if fmt not in FORMATS:
        raise InputError(f"input format {fmt!r} (key input.format) is not one of {', '.join(FORMATS)}")
    try:
        if fmt == "jsonl":
            return _read_jsonl(spark, path, schema)
        if fmt == "csv":
            df = _read_csv(spark, path, schema, conf_key, csv_separator, csv_header)
        else:
            df = _read_columnar(spark, path, fmt, schema, conf_key)
    except AnalysisException as exc:
        if _missing_path(exc):
            raise _not_found(path, conf_key) from None
        raise
    fields = schema.fieldNames()
    rendered = F.to_json(F.struct(*[F.col(n) for n in fields]))
    return df.select(
        *fields,
        F.coalesce(F.col(CORRUPT), rendered).alias(RAW),
        F.col(FILE),
        F.col(CORRUPT).isNotNull().alias(MALFORMED),
        F.lit(None).cast("string").alias(BAD_ID),
    )


def _read_jsonl(spark: SparkSession, path: str, schema: StructType) -> DataFrame:
    fields = schema.fieldNames()
    ids = [f for f in ID_FIELDS if f in fields]
    # ids parsed as variants, so that their JSON type can be checked (and integers kept)
    parse = StructType([StructField(f.name, VariantType() if f.name in ids else f.dataType, True)
                        for f in schema.fields] + [StructField(CORRUPT, StringType(), True)])
    lines = (spark.read.text(path)
             .select(F.col("value").alias(RAW), F.col("_metadata.file_path").alias(FILE))
             .where(F.trim(F.col(RAW)) != ""))
    parsed = lines.withColumn("_j", F.from_json(F.col(RAW), parse, {
        "mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT, "maxStringLen": MAX_JSON_STRING}))
    cols, bad = [], []
    for name in fields:
        value = F.col(f"_j.{name}")
        if name in ids:
            kind = F.schema_of_variant(value)
            ok = (kind == "STRING") | kind.rlike(_INTEGER_VARIANTS)
            present = value.isNotNull() & ~F.is_variant_null(value)
            bad.append(F.when(present & ~ok, F.lit(name)))
            value = F.when(present & ok, value.cast("string"))
        cols.append(value.alias(name))
    bad_ids = F.concat_ws(",", *bad) if bad else F.lit("")
    return parsed.select(
        *cols, RAW, FILE,
        (F.col("_j").isNull() | F.col(f"_j.{CORRUPT}").isNotNull()).alias(MALFORMED),
        F.when(bad_ids != "", bad_ids).alias(BAD_ID))


def _files(spark: SparkSession, path: str, suffix: str) -> list[str]:
    """The data files under ``path`` (a file or a folder, recursively), through Hadoop's file system
    (any URI), skipping hidden and ``_``-prefixed ones as Spark does. At most a listing: no data is read."""
    fs, root = hadoop_path(spark, path)
    if not fs.exists(root):
        return []
    found = fs.listFiles(root, True)
    out = []
    while found.hasNext():
        p = found.next().getPath()
        if not p.getName().startswith(("_", ".")) and p.getName().endswith(suffix):
            out.append(p.toString())
    return sorted(out)


def _first_line(spark: SparkSession, file: str) -> str:
    jvm = spark.sparkContext._jvm
    fs, p = hadoop_path(spark, file)
    stream = fs.open(p)
    try:
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        return reader.readLine() or ""
    finally:
        stream.close()


def _read_csv(spark: SparkSession, path: str, schema: StructType, conf_key: str, sep: str,
              header: bool) -> DataFrame:
    def reader(file_schema: StructType):
        return (spark.read.schema(_with_corrupt(file_schema)).option("header", header).option("sep", sep)
                .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT).option("encoding", "UTF-8"))

    types = {f.name: f.dataType for f in schema.fields}
    if not header:
        df = reader(schema).csv(path)
        return df.withColumn(FILE, F.col("_metadata.file_path"))
    files = _files(spark, path, "")
    if not files:
        raise _not_found(path, conf_key)
    by_header: dict[tuple, list[str]] = {}
    for file in files:
        names = tuple(n.strip() for n in next(csv.reader(io.StringIO(_first_line(spark, file)), delimiter=sep), []))
        missing = [n for n in REQUIRED[_kind(schema)] if n not in names]
        if missing:
            raise InputError(f"{file}: the CSV header ({', '.join(names) or 'empty'}) lacks the required column(s) "
                             f"{', '.join(missing)}; name the columns as in the raw contract (README, 'Raw input "
                             f"contract') or fix {conf_key}")
        by_header.setdefault(names, []).append(file)
    parts = []
    for names, group in by_header.items():
        # the file's own column order, each known column with the contract's type
        file_schema = StructType([StructField(n, types.get(n, StringType()), True) for n in names])
        df = reader(file_schema).csv(group).withColumn(FILE, F.col("_metadata.file_path"))
        parts.append(df.select(*[F.col(n) if n in names else F.lit(None).cast(types[n]).alias(n) for n in types],
                               CORRUPT, FILE))
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def _converts(source: DataType, target: DataType, name: str) -> bool:
    """Whether a column of type ``source`` can become the contract's ``target``."""
    integer = (ByteType, ShortType, IntegerType, LongType)
    if isinstance(source, StringType):
        return isinstance(target, StringType)
    if isinstance(target, StringType):
        timestamps = (TimestampType, TimestampNTZType)
        return isinstance(source, integer) or (name == c.TS and isinstance(source, (*timestamps, NumericType)))
    if isinstance(target, (DoubleType, FloatType, DecimalType)):
        return isinstance(source, NumericType)
    return source == target


def _type_problems(found: StructType, schema: StructType) -> list[str]:
    have = {f.name: f.dataType for f in found.fields}
    return [f"{f.name} is {have[f.name].simpleString()} (the contract needs {f.dataType.simpleString()})"
            for f in schema.fields if f.name in have and not _converts(have[f.name], f.dataType, f.name)]


def _read_columnar(spark: SparkSession, path: str, fmt: str, schema: StructType, conf_key: str) -> DataFrame:
    if fmt == "delta":
        df = spark.read.format("delta").load(path)
        source = lambda: [(path, df.schema)]  # noqa: E731
    else:
        try:
            df = spark.read.option("mergeSchema", "true").parquet(path)
        except AnalysisException as exc:
            if _missing_path(exc):
                raise
            df = None          # the files' types conflict with each other: name the file below
        source = lambda: [(f, spark.read.parquet(f).schema) for f in _files(spark, path, ".parquet")]  # noqa: E731
    if df is None or _type_problems(df.schema, schema):
        for file, found in source():
            problems = _type_problems(found, schema)
            if problems:
                raise InputError(f"{file}: column {problems[0]}; write it with the contract's types "
                                 f"(README, 'Raw input contract') or fix {conf_key}")
        raise InputError(f"{path}: the files' column types conflict with each other; fix {conf_key}")
    missing = [n for n in REQUIRED[_kind(schema)] if n not in df.columns]
    if missing:
        raise InputError(f"{path}: field(s) {', '.join(missing)} of the raw contract are missing; "
                         f"add them (see schemas/tables.py) or fix {conf_key}")
    file_col = F.lit(path) if fmt == "delta" else F.col("_metadata.file_path")
    return df.select(*[(F.col(f.name) if f.name in df.columns else F.lit(None)).cast(f.dataType).alias(f.name)
                       for f in schema.fields],
                     F.lit(None).cast("string").alias(CORRUPT), file_col.alias(FILE))


# Epoch numbers are told apart by their magnitude: below 1e12 they are seconds (up to the year
# 33658, so that a far-future value in seconds is read as a future time, not as milliseconds of
# the 1970s); from 1e12 to 1e15 milliseconds (from 2001-09-09), 1e15 to 1e18 microseconds, above
# that nanoseconds. Epoch milliseconds before 2001-09-09 are not supported (they read as seconds).
EPOCH_MS_FROM = 1e12
EPOCH_US_FROM = 1e15
EPOCH_NS_FROM = 1e18


def parse_timestamp(col: Column) -> Column:
    """ISO-8601 (with or without offset; naive means UTC) or an epoch number in seconds,
    milliseconds, microseconds or nanoseconds (told apart by magnitude, see ``EPOCH_MS_FROM``).

    Returns NULL for anything unparseable, never raises (also under ANSI mode).
    """
    s = F.trim(col.cast("string"))
    digits = s.rlike(r"^-?\d{1,19}(\.\d+)?$")
    as_num = F.when(digits, s.try_cast("double"))
    size = F.abs(as_num)
    epoch = (F.when(size >= EPOCH_NS_FROM, F.timestamp_micros((as_num / 1000).cast("long")))
             .when(size >= EPOCH_US_FROM, F.timestamp_micros(as_num.cast("long")))
             .when(size >= EPOCH_MS_FROM, F.timestamp_millis(as_num.cast("long")))
             .otherwise(F.timestamp_seconds(as_num.cast("long"))))
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
