"""The Airflow Assets of the lake (faces table, published FAISS index) that DAGs emit and schedule on."""

from __future__ import annotations

from airflow.sdk import Asset

# The one module under jobs/ that imports Airflow: DAG-side wiring, imported only by DAG files (never by
# a job), kept here rather than in dags/ because a plain DagBag does not put the DAG folder on sys.path,
# so `from facelake_assets import ...` would fail in tests and `airflow dags test`.
#
# Logical identities, not storage paths: the lake root is a run-time value (a form field, the config),
# and an "x-" scheme tells Airflow not to normalise the URI. The lake a run wrote is carried in the
# asset event's extra ({"lake": ...}) when the run named one.
FACES_ASSET = Asset(name="facelake_faces", uri="x-facelake://lake/tables/faces", group="facelake")
"""The ``faces`` table: updated by ``facelake embed`` (manual ingest DAG); the index DAG schedules on it."""

INDEX_ASSET = Asset(name="facelake_index", uri="x-facelake://lake/index", group="facelake")
"""The published FAISS index build: updated by the nightly, index and erasure DAGs."""
