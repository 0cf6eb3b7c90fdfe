"""A sampling profiler of the driver's wall time: where a night's seconds go, by project line.

The driver of a Spark job spends most of its time waiting on the JVM (a Spark job, a Delta
commit), which a tracing profiler charges to py4j's socket read. This one looks at the main
thread's stack every ``interval`` seconds and charges the time since its last look to

- the *stage*: the outermost ``jobs/<stage>.py`` module on the stack (a hold-out lake's stages
  run inside ``rank_topn`` and ``evaluate`` and are charged to them), and
- the *site*: the innermost frame in the project (``jobs/``, ``udfs/``, ``schemas/``) and the
  first call it makes outside it (``count``, ``save``, ``run`` of a GX checkpoint ...),
- the *path*: the project functions from the stage down to the site.

    with Sampler() as s:
        run_nightly(...)
    print("\\n".join(s.report()))
"""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tuple(str(ROOT / d) + "/" for d in ("jobs", "udfs", "schemas"))
STAGE_DIR = str(ROOT / "jobs") + "/"


class Sampler:
    """Samples the calling thread's stack from a daemon thread while the block runs."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.sites: Counter = Counter()
        self.paths: Counter = Counter()
        self.stages: Counter = Counter()
        self.samples = 0
        self._stop = threading.Event()

    def __enter__(self) -> "Sampler":
        self._target = threading.get_ident()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            frame = sys._current_frames().get(self._target)
            if frame is not None:
                self._take(frame, now - last)     # a busy machine wakes this thread late: charge the real gap
            last = now

    def _take(self, frame, seconds: float) -> None:
        stack = []                          # innermost first
        while frame is not None:
            stack.append(frame)
            frame = frame.f_back
        stack.reverse()                     # outermost first
        stage, path, site, callee = "(outside a stage)", [], None, ""
        for i, f in enumerate(stack):
            name = f.f_code.co_filename
            if not name.startswith(PROJECT):
                continue
            rel = name[len(str(ROOT)) + 1:]
            if stage == "(outside a stage)" and name.startswith(STAGE_DIR) and "/" not in name[len(STAGE_DIR):] \
                    and Path(name).stem not in ("nightly", "cli", "stages", "__init__"):
                stage = Path(name).stem
            label = f"{rel}:{f.f_code.co_name}"
            if not path or path[-1] != label:
                path.append(label)
            site = f"{rel}:{f.f_lineno} {f.f_code.co_name}"
            callee = stack[i + 1].f_code.co_name if i + 1 < len(stack) else ""
        self.samples += 1
        self.stages[stage] += seconds
        if site is not None:
            # a call into C (time.sleep) has no frame of its own: the site alone
            self.sites[(stage, f"{site} -> {callee}" if callee else site)] += seconds
            self.paths[(stage, " > ".join(path[-4:]))] += seconds

    @staticmethod
    def seconds_of(counter: Counter) -> dict:
        """Seconds, rounded to the hundredth, largest first."""
        return {k: round(v, 2) for k, v in counter.most_common()}

    def report(self, top: int = 8) -> list[str]:
        """Seconds per stage, with each stage's ``top`` sites and paths."""
        lines = [f"driver samples: {self.samples} every {self.interval} s"]
        for stage, seconds in self.stages.most_common():
            lines.append(f"{stage}: {seconds:.1f} s")
            for label, counter in (("site", self.sites), ("path", self.paths)):
                best = sorted(((v, k[1]) for k, v in counter.items() if k[0] == stage), reverse=True)[:top]
                for v, key in best:
                    lines.append(f"    {label} {v:6.1f} s  {key}")
        return lines

    def to_json(self) -> dict:
        return {"interval": self.interval, "samples": self.samples,
                "stages": self.seconds_of(self.stages),
                "sites": [{"stage": stage, "site": site, "seconds": v}
                          for (stage, site), v in self.seconds_of(self.sites).items()],
                "paths": [{"stage": stage, "path": path, "seconds": v}
                          for (stage, path), v in self.seconds_of(self.paths).items()]}
