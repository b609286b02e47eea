"""The erasure DAG: its trigger form, dry run and execute through dag.test() on a real lake, its note, hostile input."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.core.config import FacelakeConfig
from jobs.core.runs import RunContext
from jobs.orchestration.airflow_local import PROJECT_ROOT, airflow_env, migrate_db
from jobs.orchestration.erasure_dag import NOTE_KEY, STEPS, erase_argv, form_schema
from jobs.orchestration.runner import LAKE_POOL, RUNNER_ENV
from jobs.orchestration.subprocess_task import CLI_ENV

DAG_ID = "facelake_erasure"
PLUGIN_FILE = PROJECT_ROOT / "plugins" / "facelake_run_notes.py"
GOOD = {"ticket": "ICO-2026-001", "requested_by": "dpo@example (compliance)"}


@pytest.fixture(scope="module")
def airflow_db() -> None:
    migrated = migrate_db(Path(os.environ["AIRFLOW_HOME"]))
    assert migrated.returncode == 0, (migrated.stdout + migrated.stderr)[-3000:]


@pytest.fixture(scope="module")
def note_listener(airflow_db: None) -> None:
    """The note plugin's listener, as the scheduler has it when ``[core] plugins_folder`` is the project's
    plugins/ (``test_the_note_plugin_loads_from_the_plugins_folder`` checks that); registered here when
    this process's listener manager was built without it."""
    from airflow.listeners.listener import get_listener_manager

    manager = get_listener_manager()
    if not any(type(p).__name__ == "RunNoteListener" for p in manager.pm.get_plugins()):
        spec = importlib.util.spec_from_file_location("facelake_run_notes", PLUGIN_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        manager.add_listener(module.LISTENER)


def load_dag():
    """A freshly parsed DAG (resolving params mutates the DAG's Param objects)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / f"{DAG_ID}.py"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def server_params(conf: dict):
    """What the API server and dag.test() do with a trigger's conf: merge into the serialized DAG's
    params and validate (JSON schema); raises ParamValidationError."""
    from airflow.serialization.serialized_objects import DagSerialization

    dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(load_dag()))
    return dag.params.deep_merge(conf).validate()


def states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def run_note(run) -> str | None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.get(DagRun, run.id).note


@pytest.fixture
def clean_env() -> Iterator[None]:
    # dag.test runs tasks in this process, and the task runner exports AIRFLOW_CTX_* into os.environ.
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


# -- the form ------------------------------------------------------------------------------------------


def test_the_form_has_defaults_titles_descriptions_and_two_required_fields() -> None:
    dag = load_dag()
    params = dag.params
    assert set(params.keys()) == {
        "selector",
        "value",
        "photo",
        "mode",
        "ticket",
        "requested_by",
        "expand_faces",
        "lake",
    }
    for name in params:
        param = params.get_param(name)
        assert param.schema.get("title") and len(param.description or "") > 20, name
    dumped = params.dump()
    assert {k: dumped[k] for k in ("selector", "value", "mode", "photo", "expand_faces", "lake")} == {
        "selector": "jurisdiction",
        "value": "uk",
        "mode": "dry_run",
        "photo": None,
        "expand_faces": None,
        "lake": None,
    }
    assert params.get_param("selector").schema["enum"] == [
        "jurisdiction",
        "source_domain",
        "image_hashes",
        "subject_photo",
    ]
    assert set(params.get_param("mode").schema["values_display"]) == {"dry_run", "execute"}
    # Only the ticket and the requester are missing from a blank form; filled in, it validates.
    from airflow.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="ticket"):
        server_params({"requested_by": "dpo"})
    with pytest.raises(ParamValidationError, match="requested_by"):
        server_params({"ticket": "T-1"})
    assert server_params(GOOD) == {
        "selector": "jurisdiction",
        "value": "uk",
        "photo": None,
        "mode": "dry_run",
        "expand_faces": None,
        "lake": None,
        **GOOD,
    }
    # Every task writes the lake: all in the one-slot pool; the index step emits the index asset.
    assert {t.task_id: t.pool for t in dag.tasks} == dict.fromkeys(STEPS, LAKE_POOL)
    assert [a.name for a in dag.get_task("index").outlets] and not dag.get_task("verify").outlets
    assert dag.max_active_runs == 1 and dag.schedule is None and not dag.catchup
    assert all(t.owner == "facelake" and t.retries >= 1 for t in dag.tasks)
    assert "facelake" in dag.tags and "pool" in dag.doc_md and "note" in dag.doc_md


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        pytest.param({"ticket": ""}, "ticket", id="ticket-empty"),
        pytest.param({"ticket": "T-1\n"}, "ticket", id="ticket-trailing-newline"),
        pytest.param({"ticket": "T-1 && touch CANARY"}, "ticket", id="ticket-shell"),
        pytest.param({"ticket": "{{ var.value.secret }}"}, "ticket", id="ticket-jinja"),
        pytest.param({"ticket": "-h"}, "ticket", id="ticket-option"),
        pytest.param({"ticket": "T" * 121}, "ticket", id="ticket-too-long"),
        pytest.param({"requested_by": "$(id)"}, "requested_by", id="requester-command-substitution"),
        pytest.param({"value": "uk\n--help"}, "value", id="value-option-on-second-line"),
        pytest.param({"value": "uk,-x"}, "value", id="value-option-after-comma"),
        pytest.param({"value": "-uk"}, "value", id="value-leading-dash"),
        pytest.param({"value": "`id`"}, "value", id="value-backticks"),
        pytest.param({"value": "{{ conn.db.password }}"}, "value", id="value-jinja"),
        pytest.param({"value": "münchen.de"}, "value", id="value-non-ascii"),
        pytest.param({"selector": "everything"}, "selector", id="selector-unknown"),
        pytest.param({"mode": "execute; rm -rf /"}, "mode", id="mode-unknown"),
        pytest.param({"expand_faces": 0}, "expand_faces", id="expand-zero"),
        pytest.param({"expand_faces": 1.5}, "expand_faces", id="expand-above-one"),
        pytest.param({"lake": "--config=/etc/x"}, "lake", id="lake-option"),
        pytest.param({"photo": "/p\x00.jpg"}, "photo", id="photo-NUL"),
    ],
)
def test_the_form_refuses_values_with_the_fields_name(conf: dict, field: str) -> None:
    from airflow.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=f"param {field}"):
        server_params({**GOOD, **conf})


def test_the_form_accepts_every_selector_kind() -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    for conf in (
        {"selector": "jurisdiction", "value": "UK, fr"},
        {"selector": "source_domain", "value": "news.example.co.uk"},
        {"selector": "image_hashes", "value": f"{sha}\n{sha.upper()},\r\n{sha}"},
        {"selector": "subject_photo", "value": None, "photo": "/orders/subject 1.jpg"},
        {"mode": "execute", "expand_faces": 0.62, "lake": "s3a://bucket/lake"},
    ):
        assert server_params({**GOOD, **conf})["ticket"] == GOOD["ticket"]


# -- argv ------------------------------------------------------------------------------------------------


def test_form_values_become_option_value_argv_elements() -> None:
    params = {
        "selector": "image_hashes",
        "value": "a1, b2\nc3",
        "photo": "/ignored.jpg",
        "mode": "execute",
        "expand_faces": 0.6,
        "lake": "/l",
        **GOOD,
    }
    assert erase_argv(params, "purge", "/tmp/s.json") == [
        "erase",
        "--selector=image_hashes",
        "--value=a1",
        "--value=b2",
        "--value=c3",
        "--mode=execute",
        "--ticket=ICO-2026-001",
        "--requested-by=dpo@example (compliance)",
        "--expand-faces=0.6",
        "--lake=/l",
        "--until=purge",
        "--summary-json=/tmp/s.json",
    ]
    photo = {"selector": "subject_photo", "value": "uk", "photo": "/p.jpg", **GOOD}
    assert erase_argv(photo, "plan", "s")[1:4] == [
        "--selector=subject_photo",
        "--photo=/p.jpg",
        "--mode=dry_run",
    ]
    with pytest.raises(ValueError, match="step"):
        erase_argv(params, "everything", "s")


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"value": "--help"}, id="value-help"),
        pytest.param({"ticket": "x" * 121}, id="ticket-too-long"),
        pytest.param({"ticket": "T\n2026-12-01 INFO forged log line"}, id="ticket-newline"),
        pytest.param({"requested_by": "{{ var.value.secret }}"}, id="requester-jinja"),
        pytest.param({"selector": "source_domain", "value": "$(touch CANARY)"}, id="domain-shell"),
    ],
)
def test_a_value_that_bypassed_the_form_is_inert_data_the_cli_refuses(
    params: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As if the form's validation were bypassed: the argv still holds each value as one option's value,
    # and `facelake erase` refuses the request (exit 2) before touching any lake or starting Spark.
    from jobs.orchestration.runner import cli_main

    main = cli_main()  # the `facelake` console script's main, as the in-process runner calls it
    params = {**GOOD, **{k: v.replace("CANARY", str(tmp_path / "CANARY")) for k, v in params.items()}}
    params["lake"] = str(tmp_path / "lake")
    summary = tmp_path / "s.json"
    assert main(erase_argv(params, "plan", summary)) == 2
    out = capsys.readouterr()
    assert "usage:" not in out.out and "facelake erase:" in out.err  # refused, not --help
    assert not summary.exists() and not (tmp_path / "CANARY").exists()
    assert not list(tmp_path.iterdir())


# -- runs through Airflow ----------------------------------------------------------------------------------

# Records its argv and exits with $RECORDER_EXIT: stands for a command that refuses the request.
RECORDER = """\
import json, sys, os
with open({out!r}, "a", encoding="utf-8") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(int(os.environ.get("RECORDER_EXIT", "2")))
"""


def test_a_malicious_form_value_runs_nothing(
    airflow_db: None, note_listener: None, clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.exceptions import ParamValidationError
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    canary = tmp_path / "CANARY"
    out = tmp_path / "argv.jsonl"
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER.format(out=str(out)))
    monkeypatch.setenv(RUNNER_ENV, "subprocess")
    monkeypatch.setenv(CLI_ENV, shlex.join([sys.executable, str(script)]))
    monkeypatch.setenv("AIRFLOW_VAR_SECRET", "variable-secret-value")

    def runs() -> int:
        with create_session() as session:
            return session.query(DagRun).filter(DagRun.dag_id == DAG_ID).count()

    before = runs()
    # 1. The form refuses it: no run is created, no task starts.
    with pytest.raises(ParamValidationError, match="param ticket"):
        load_dag().test(run_conf={**GOOD, "ticket": f"T-1'; touch {canary}; echo '"})
    assert runs() == before and not out.exists()

    # 2. The form lets a lake path with shell and Jinja text through (a path may hold such characters):
    # it reaches the command as one inert argv element; the command refuses, the run stops at plan.
    lake = f"/lakes/x'$(touch {canary}){{{{ var.value.secret }}}}"
    run = load_dag().test(run_conf={**GOOD, "lake": lake})
    assert not canary.exists()
    assert states(run) == {
        "plan": "failed",
        "erase": "upstream_failed",
        "purge": "upstream_failed",
        "index": "upstream_failed",
        "verify": "upstream_failed",
        "report": "upstream_failed",
    }
    calls = [json.loads(line) for line in out.read_text().splitlines()]
    # Once: a refused request (exit 2) is not retried.
    assert len(calls) == 1 and calls[0][:-1] == [
        "erase",
        "--selector=jurisdiction",
        "--value=uk",
        "--mode=dry_run",
        f"--ticket={GOOD['ticket']}",
        f"--requested-by={GOOD['requested_by']}",
        f"--lake={lake}",
        "--until=plan",
    ]
    assert "variable-secret-value" not in json.dumps(calls)
    assert run_note(run) == "**Erasure failed** at step plan: exit code 2 (bad request)"


@pytest.fixture(scope="module")
def tiny_lake(spark: SparkSession, spark_config: FacelakeConfig, tmp_path_factory: pytest.TempPathFactory):
    """12 images (every third UK) with one face each and an index build (as tests/erasure builds it)."""
    from indexdata import append_faces, face_ids
    from lakedata import rows

    from jobs.index.build import build_index
    from jobs.lake.tables import latest_version, merge_new_rows
    from jobs.testdata.vectors import clustered_vectors

    config = spark_config.replace(
        lake=str(tmp_path_factory.mktemp("erasure-dag") / "lake"), index_exact_below=1_000
    )
    lake = config.lake
    ids = [hashlib.sha256(f"image {i}".encode()).hexdigest() for i in range(12)]
    image_rows = [
        {"image_id": v, "canonical_id": v, "jurisdiction_tags": ["uk"] if i % 3 == 0 else []}
        for i, v in enumerate(ids)
    ]
    merge_new_rows(spark, lake, "images", rows(spark, "images", image_rows), RunContext("ingest"))
    append_faces(spark, lake, clustered_vectors(12, 8, seed=3), face_ids(12), image_ids=ids)
    build_index(spark, config, RunContext("index-build"))
    uk = {r["image_id"] for r in image_rows if r["jurisdiction_tags"]}
    return {"config": config, "ids": ids, "uk": uk, "images_version": latest_version(spark, lake, "images")}


@pytest.fixture
def inprocess(clean_env: None, monkeypatch: pytest.MonkeyPatch, spark_config: FacelakeConfig) -> None:
    # The tasks call the CLI in this process: it reuses the test run's SparkSession; its settings stay.
    monkeypatch.setenv(RUNNER_ENV, "inprocess")
    monkeypatch.setenv("FACELAKE_SPARK_MASTER", spark_config.spark_master)
    monkeypatch.setenv("FACELAKE_SHUFFLE_PARTITIONS", str(spark_config.shuffle_partitions))
    monkeypatch.setenv("FACELAKE_SPARK_UI", "false")


def test_dry_run_then_execute_through_airflow(
    spark: SparkSession, airflow_db: None, note_listener: None, tiny_lake: dict, inprocess: None
) -> None:
    from jobs.index.search import open_build
    from jobs.lake.tables import latest_version, read_table

    lake, uk, ids = tiny_lake["config"].lake, tiny_lake["uk"], tiny_lake["ids"]
    conf = {**GOOD, "lake": lake}
    before = {t: latest_version(spark, lake, t) for t in ("images", "faces")}

    dry = load_dag().test(run_conf=conf)
    assert str(dry.state) == "success"
    assert states(dry) == {
        "plan": "success",
        "erase": "skipped",
        "purge": "skipped",
        "index": "skipped",
        "verify": "skipped",
        "report": "success",
    }
    note = run_note(dry)
    assert note.startswith("**Erasure ") and "dry_run · planned" in note
    assert f"images {len(uk)} · faces {len(uk)}" in note and "report: `" in note
    report = Path(note.split("report: `", 1)[1].rstrip("`"))
    assert report.is_file() and report.is_relative_to(Path(lake))
    # A dry run changes no table.
    assert {t: latest_version(spark, lake, t) for t in ("images", "faces")} == before

    run = load_dag().test(run_conf={**conf, "mode": "execute"})
    assert str(run.state) == "success", states(run)
    assert set(states(run).values()) == {"success"}
    note = run_note(run)
    assert "execute · completed · verification passed" in note, note
    assert f"index vectors removed {len(uk)}" in note and "history survival 1.0000" in note
    assert "uk" not in note.lower()  # ids and counts only, never the selector's value

    # Invariant 5: no UK row at any version, no UK vector in the published build.
    for version in range(tiny_lake["images_version"] + 1):
        got = {r[0] for r in read_table(spark, lake, "images", version=version).select("image_id").collect()}
        assert got in (set(), set(ids) - uk)
    assert not set(open_build(spark, lake).id_map["image_id"]) & uk
    # Invariant 5 (audit): one completed execute row with the DAG run's id, ids and counts only.
    audit = read_table(spark, lake, "erasure_audit").where("mode = 'execute'").collect()
    assert [(a["status"], a["dag_run_id"], a["counts"]["images"]) for a in audit] == [
        ("completed", run.run_id, len(uk))
    ]
    # Invariant 6: rows not erased kept their history (survival 1.0 above); non-UK rows all still there.
    assert {r[0] for r in read_table(spark, lake, "images").select("image_id").collect()} == set(ids) - uk


def test_the_note_plugin_loads_from_the_plugins_folder(tmp_path: Path) -> None:
    env = airflow_env(tmp_path / "home")
    env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PLUGIN_FILE.parent)
    airflow = str(Path(sys.executable).parent / "airflow")
    done = subprocess.run(
        [airflow, "plugins", "--output", "json"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    plugins = {p["name"]: p for p in json.loads(done.stdout[done.stdout.index("[") :])}
    assert "RunNoteListener" in json.dumps(plugins["facelake_run_notes"]["listeners"])


def test_note_key_is_the_plugins(tmp_path: Path) -> None:
    # The plugin does not import jobs/: both sides must name the XCom the same.
    assert f'NOTE_KEY = "{NOTE_KEY}"' in PLUGIN_FILE.read_text()
    assert set(form_schema()) >= {"ticket", "requested_by"}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (the browser's regex engine)")
def test_the_form_patterns_mean_the_same_to_the_browser_and_the_server() -> None:
    # The UI checks "pattern" with ECMAScript regexes, the server with Python's re (jsonschema).
    samples = [
        "uk",
        "UK, fr",
        "a\nb",
        "T-1",
        "T-1\n",
        "-x",
        "uk,-x",
        "a\n-b",
        "x;y",
        "{{ x }}",
        "a b",
        "é",
        "",
    ]
    patterns = {n: s["pattern"] for n, s in form_schema().items() if "pattern" in s}
    script = (
        "const [p, s] = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "console.log(JSON.stringify(Object.fromEntries(Object.entries(p).map("
        "([n, r]) => [n, s.map((x) => new RegExp(r, 'u').test(x))]))));"
    )
    done = subprocess.run(
        ["node", "-e", script],
        input=json.dumps([patterns, samples]),
        capture_output=True,
        text=True,
        check=True,
    )
    expected = {n: [re.search(p, s) is not None for s in samples] for n, p in patterns.items()}
    assert json.loads(done.stdout) == expected
    assert expected["ticket"][samples.index("T-1")] and not expected["ticket"][samples.index("T-1\n")]
