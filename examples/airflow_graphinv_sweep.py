"""Airflow DAG: load yesterday's export, sweep, and page on new extraction rings.

Copy into the DAGs folder of an Airflow that has graphinv installed. The sweep's exit
status drives the DAG: 0 passes, 10 (a new or respawned ring scored at the alert
threshold) fails the `sweep` task so the on-failure callback pages; other codes are errors.
Credentials come from the Airflow connection through the environment, never the command.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

EXPORTS = "/data/platform-exports"  # one folder per day: {{ ds }}/accounts.parquet, links…
REPORTS = "/data/graphinv-reports"

with DAG(
    dag_id="graphinv_daily_sweep",
    schedule="0 4 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["trust-and-safety"],
) as dag:
    env = {
        "NEO4J_URI": "{{ conn.graphinv_neo4j.host }}",
        "NEO4J_USER": "{{ conn.graphinv_neo4j.login }}",
        "NEO4J_PASSWORD": "{{ conn.graphinv_neo4j.password }}",
    }
    load = BashOperator(
        task_id="load",
        # Exit 3 (rows quarantined) is not fatal: the quarantine file is kept for review.
        bash_command=f"graphinv --quiet load {EXPORTS}/{{{{ ds }}}} "
        f"--quarantine {REPORTS}/{{{{ ds }}}}/quarantine || [ $? -eq 3 ]",
        env=env,
        append_env=True,
    )
    sweep = BashOperator(
        task_id="sweep",
        bash_command=f"graphinv --quiet sweep --json {REPORTS}/{{{{ ds }}}}/sweep.json",
        env=env,
        append_env=True,
    )
    load >> sweep
