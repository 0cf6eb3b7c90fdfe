"""Build the zip of the project's packages for ``spark-submit --py-files``.

    python -m jobs.package [--out dist/recjobs-pyfiles.zip]

The zip holds ``jobs/``, ``udfs/``, ``schemas/`` and ``conf/`` (Python sources and the YAML
defaults the configuration loader needs), so executors import the same code as the driver.
Third-party packages (torch, transformers, ...) are not in it: executors need a Python
environment with the project's requirements (``pip install .`` on the nodes, or a packed
virtualenv passed with ``--archives``).
"""
from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jobs", "udfs", "schemas", "conf")
SUFFIXES = (".py", ".yaml", ".conf", ".properties")


def build(out: Path) -> list[str]:
    """Write the zip; returns the archived names."""
    out.parent.mkdir(parents=True, exist_ok=True)
    names = []
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for pkg in PACKAGES:
            for path in sorted((ROOT / pkg).rglob("*")):
                if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts:
                    name = path.relative_to(ROOT).as_posix()
                    zf.write(path, name)
                    names.append(name)
    tmp.replace(out)   # never leave a half-written zip where spark-submit looks
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "dist" / "recjobs-pyfiles.zip"))
    args = parser.parse_args(argv)
    names = build(Path(args.out))
    print(f"{args.out}: {len(names)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
