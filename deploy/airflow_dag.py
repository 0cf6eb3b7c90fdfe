"""Airflow DAG: the recjobs nightly every day at 02:00 UTC for the previous day.

Copy (or symlink) this file into the Airflow dags folder and set the Airflow Variables
``recjobs_home`` (the checkout on the worker, default /opt/recjobs), ``recjobs_conf``
(default conf/cluster.yaml) and optionally ``recjobs_submit_args`` (e.g. "--master yarn").

Tasks: ``nightly`` runs ``deploy/spark-submit.sh --date {{ ds }}``; a retry resumes after the
last stage that succeeded (the driver reads ``runs``), so a retry does not redo finished work.
Exit code 3 means the data-quality gate stopped publishing: the task fails and the previous
recommendations stay published. ``dq_summary`` prints the data-quality summary and the path of
the Data Docs into the task log, whether or not the nightly succeeded.
"""
from __future__ import annotations

import datetime as dt

from airflow import DAG

try:  # Airflow 3 moved the standard operators into a provider package
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

HOME = "{{ var.value.get('recjobs_home', '/opt/recjobs') }}"
CONF = "{{ var.value.get('recjobs_conf', 'conf/cluster.yaml') }}"
SUBMIT_ARGS = "{{ var.value.get('recjobs_submit_args', '') }}"

default_args = {
    "owner": "recjobs",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=15),
    "execution_timeout": dt.timedelta(hours=6),
}

with DAG(
    dag_id="recjobs_nightly",
    description="Nightly per-user top-N recommendations to Delta Lake, gated by great-expectations",
    schedule="0 2 * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["recjobs", "spark", "delta"],
) as dag:
    nightly = BashOperator(
        task_id="nightly",
        bash_command=(f"cd {HOME} && RECJOBS_SUBMIT_ARGS=\"{SUBMIT_ARGS}\" "
                      f"deploy/spark-submit.sh --date {{{{ ds }}}} --conf {CONF}"),
    )
    dq_summary = BashOperator(
        task_id="dq_summary",
        bash_command=f"cd {HOME} && .venv/bin/recjobs dq --date {{{{ ds }}}} --conf {CONF}",
        trigger_rule="all_done",
        retries=0,
    )
    nightly >> dq_summary
