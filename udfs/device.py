"""Device, thread and model-cache rules shared by every model that runs inside a Spark task.

The device is the task's GPU when Spark assigned one (``TaskContext.resources()["gpu"]``), else
``cuda:0`` when CUDA is present, else the CPU. GPU scheduling does not work in ``local[*]``,
which is why the code chooses the device itself. Torch threads follow the task's CPU count.
"""
import logging
import threading
from typing import Callable, Hashable, TypeVar

from udfs.models import resolve_model

log = logging.getLogger(__name__)
T = TypeVar("T")

_CACHE: dict = {}
_LOCK = threading.Lock()


def task_gpu_address() -> str | None:
    """The first GPU address Spark assigned to the running task, if any."""
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is None:
            return None
        gpus = ctx.resources().get("gpu")
        return gpus.addresses[0] if gpus is not None and gpus.addresses else None
    except Exception:  # outside Spark, or an old Spark without resources()
        return None


def task_cpus() -> int | None:
    """CPUs Spark gave the running task (spark.task.cpus), or None outside a task."""
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        return int(ctx.cpus()) if ctx is not None else None
    except Exception:
        return None


def pick_device(preference: str = "auto"):
    """Choose the torch device: ``auto`` (task GPU > cuda:0 > cpu), ``cpu`` or ``cuda[:N]``."""
    import torch

    if preference not in ("auto", None, ""):
        return torch.device(preference)
    address = task_gpu_address()
    if address is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{address}")
    if torch.cuda.is_available():
        return torch.device("cuda:0")
    return torch.device("cpu")


def set_torch_threads() -> None:
    """Inside a Spark task, use as many torch threads as the task has CPUs."""
    import torch

    cpus = task_cpus()
    if cpus and torch.get_num_threads() != cpus:
        torch.set_num_threads(cpus)


def cached(key: Hashable, factory: Callable[[], T]) -> T:
    """One instance per Python worker process and key (models load once, not per batch)."""
    with _LOCK:
        if key not in _CACHE:
            log.info("loading %s", key)
            _CACHE[key] = factory()
        return _CACHE[key]


def run_halving_on_oom(run: Callable[[int, int], int], total: int, batch_size: int) -> None:
    """Call ``run(start, size)`` over ``range(total)`` in batches; halve the batch on CUDA OOM.

    ``run`` returns how many items it handled. The halved size stays for the rest of the call.
    """
    import torch

    start, size = 0, max(1, batch_size)
    while start < total:
        try:
            start += run(start, size)
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise
            size = max(1, size // 2)
            torch.cuda.empty_cache()
            log.warning("CUDA out of memory; batch size halved to %d", size)


def run_sorted_batches(tokenizer, texts, max_length: int, batch_size: int, forward, out):
    """Tokenise once, sort by token length (longest first), run ``forward`` on padded batches.

    ``forward(batch) -> np.ndarray`` gets a dict of tensors; its rows are written into ``out`` at
    the texts' original positions, so the caller sees results in input order. The batch halves
    on CUDA out-of-memory (the longest batch comes first, so that is where it shows).
    """
    import numpy as np

    clean = ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in texts]
    tok = tokenizer(clean, truncation=True, max_length=max_length, padding=False, return_attention_mask=True)
    order = np.argsort([-len(ids) for ids in tok["input_ids"]], kind="stable")

    def run(start: int, size: int) -> int:
        idx = order[start:start + size]
        batch = tokenizer.pad({"input_ids": [tok["input_ids"][i] for i in idx],
                               "attention_mask": [tok["attention_mask"][i] for i in idx]}, return_tensors="pt")
        out[idx] = forward(batch)
        return len(idx)

    run_halving_on_oom(run, len(clean), batch_size)
    return out


def load_hf(kind: str, folder: str, device, half_precision: bool):
    """Tokenizer and model (``AutoModel`` or ``AutoModelForSequenceClassification``) on a device."""
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    cls = AutoModelForSequenceClassification if kind == "classifier" else AutoModel
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = cls.from_pretrained(folder).eval()
    if device.type == "cuda" and half_precision:
        model = model.half()
    return tokenizer, model.to(device)


def effective_max_length(model, requested: int) -> int:
    """``requested``, but never beyond the positions the model was built for."""
    limit = getattr(model.config, "max_position_embeddings", None)
    return min(requested, int(limit)) if limit else requested


class LoadedModel:
    """A Hugging Face model of ``kind`` (encoder | classifier) with its tokenizer on the chosen device.

    ``settings`` needs ``model``, ``conf_key``, ``device``, ``half_precision`` and ``max_length``.
    """

    kind = "encoder"

    def __init__(self, settings) -> None:
        import torch

        self.folder, self.model_id = resolve_model(settings.model, settings.conf_key)
        folder = self.folder
        self.settings = settings
        self.device = pick_device(settings.device)
        self.tokenizer, self.model = load_hf(self.kind, folder, self.device, settings.half_precision)
        self.max_length = effective_max_length(self.model, settings.max_length)
        self._torch = torch

    def run_batches(self, texts, out):
        """Fill ``out`` (one row per text, input order) with ``self._forward`` over sorted batches."""
        if len(texts) == 0:
            return out
        return run_sorted_batches(self.tokenizer, texts, self.max_length, self.settings.batch_size,
                                  self._forward, out)
