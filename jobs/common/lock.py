"""The per-date run lock: two runs of one date never work at the same time.

A run takes the date's row of ``run_locks`` with a conditional Delta MERGE (insert when the date
has no row; replace the row it read when that row was released or its holder is gone). Two runs
that try at once both commit against the same table version: Delta's optimistic concurrency lets
one commit and fails the other, which then reads who holds the date and exits with code 4 ("try
later"). A holder is gone when its process no longer exists (same host) or its heartbeat is
older than ``run.lock_timeout_minutes`` (another host). The heartbeat is renewed after a stage
once the last one is older than a tenth of that timeout (a Delta commit after every stage cost
about 1.7 s of every stage's few seconds on small data), so a live run's heartbeat is never older
than a tenth of the timeout plus its longest stage. A process re-enters its own lock.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from contextlib import contextmanager
from typing import Iterator, Mapping

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.common import delta_io
from jobs.common.errors import RunLocked
from schemas import columns as c
from schemas import tables as t

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # exists, belongs to someone else
        return True
    return True


def holder_is_gone(row, host: str, timeout_minutes: float, now: dt.datetime) -> bool:
    """Whether the lock ``row`` may be taken over: released, its process is gone (same host), or its
    heartbeat is older than the timeout (another host)."""
    if row["released"]:
        return True
    if row["host"] == host:
        return not _alive(int(row["pid"]))
    return now - row["heartbeat_at"] > dt.timedelta(minutes=timeout_minutes)


class RunLock:
    """The lock of one date held by this process for ``run_id``."""

    def __init__(self, spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str, timeout_minutes: float) -> None:
        self.spark, self.cfg, self.ds, self.run_id = spark, cfg, ds, run_id
        self.timeout_minutes = timeout_minutes
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.beat_at: dt.datetime | None = None      # when this process last wrote its heartbeat

    def _row(self):
        return (delta_io.read_table(self.spark, self.cfg, "run_locks")
                .where(F.col(c.DS) == F.lit(self.ds)).first())

    def _mine(self, row) -> bool:
        return row is not None and not row["released"] and row[c.RUN_ID] == self.run_id \
            and row["host"] == self.host and int(row["pid"]) == self.pid

    def acquire(self) -> "RunLock":
        """Take the date's lock, or raise :class:`RunLocked` naming the run that holds it."""
        from delta import exceptions as conflicts
        from delta.tables import DeltaTable

        row = self._row()
        if self._mine(row):
            self.beat_at = row["heartbeat_at"]
            return self
        now = _now()
        if row is not None and not holder_is_gone(row, self.host, self.timeout_minutes, now):
            raise self._locked(row)
        path = delta_io.ensure_table(self.spark, delta_io.table("run_locks"), delta_io.lake_root(self.cfg))
        mine = self.spark.createDataFrame([(self.ds, self.run_id, self.host, self.pid, now, now, False)], t.RUN_LOCKS)
        seen = "t.run_id IS NULL" if row is None else \
            f"t.run_id = '{row[c.RUN_ID]}' AND t.heartbeat_at = TIMESTAMP'{row['heartbeat_at'].isoformat(sep=' ')}'"
        try:
            (DeltaTable.forPath(self.spark, path).alias("t")
             .merge(mine.alias("s"), "t.ds = s.ds")
             .whenMatchedUpdateAll(condition=seen)
             .whenNotMatchedInsertAll()
             .execute())
        except tuple(getattr(conflicts, name) for name in conflicts.__all__):
            pass          # another run committed first: what it wrote decides below
        row = self._row()
        if not self._mine(row):
            raise self._locked(row)
        self.beat_at = row["heartbeat_at"]
        log.info("run lock for %s taken by %s (%s:%d)", self.ds, self.run_id, self.host, self.pid)
        return self

    def _locked(self, row) -> RunLocked:
        who = f"run {row[c.RUN_ID]} on {row['host']} (pid {row['pid']}, since {row['acquired_at']:%Y-%m-%d %H:%M} UTC)" \
            if row is not None else "another run"
        return RunLocked(f"{who} is running {self.ds} now; try again later (a holder that stopped without "
                         f"releasing the lock is taken over once its process is gone, or after "
                         f"run.lock_timeout_minutes = {self.timeout_minutes:g} without a heartbeat from another host)")

    def _update(self, assignments: dict) -> None:
        from delta.tables import DeltaTable

        DeltaTable.forPath(self.spark, delta_io.table_path(self.cfg, "run_locks")).update(
            condition=(F.col(c.DS) == F.lit(self.ds)) & (F.col(c.RUN_ID) == self.run_id)
            & (F.col("host") == self.host) & (F.col("pid") == self.pid),
            set=assignments)

    def heartbeat(self, force: bool = False) -> bool:
        """Tell other hosts this run is alive (called after every stage): renewed when the last
        heartbeat is older than a tenth of the timeout, or ``force``. Returns whether it was."""
        now = _now()
        if not force and self.beat_at is not None \
                and now - self.beat_at < dt.timedelta(minutes=self.timeout_minutes / 10):
            return False
        self._update({"heartbeat_at": F.lit(now)})
        self.beat_at = now
        return True

    def release(self) -> None:
        self._update({"released": F.lit(True), "heartbeat_at": F.lit(_now())})
        log.info("run lock for %s released by %s", self.ds, self.run_id)


@contextmanager
def run_lock(spark: SparkSession, cfg: Mapping, ds: dt.date, run_id: str) -> Iterator[RunLock]:
    """Hold the date's lock for the block; released on the way out, also after a failure."""
    lock = RunLock(spark, cfg, ds, run_id, float(cfg["run"]["lock_timeout_minutes"])).acquire()
    try:
        yield lock
    finally:
        try:
            lock.release()
        except Exception:  # never hide the run's own error; an unreleased lock is taken over later
            log.exception("could not release the run lock of %s", ds)
