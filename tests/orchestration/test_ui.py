"""`./dev ui`'s set-up: a stable login, one port for every component, the project's DAGs and plugins."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from jobs.orchestration.airflow_local import PROJECT_ROOT
from jobs.orchestration.ui import (
    UI_USER,
    UiServer,
    _alive,
    _descendants,
    ensure_password,
    free_port,
    main,
    ui_env,
)


def test_password_is_generated_once_in_the_auth_managers_file(tmp_path: Path) -> None:
    first = ensure_password(tmp_path)
    assert len(first) >= 12
    # The file the simple auth manager reads: the same password on every later start.
    stored = json.loads((tmp_path / "simple_auth_manager_passwords.json.generated").read_text())
    assert stored == {UI_USER: first}
    assert ensure_password(tmp_path) == first
    assert ensure_password(tmp_path, "viewer") != first


def test_env_points_every_component_at_one_local_port(tmp_path: Path) -> None:
    env = ui_env(tmp_path, 18123)
    assert env["AIRFLOW_HOME"] == str(tmp_path)
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(PROJECT_ROOT / "dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(PROJECT_ROOT / "plugins")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    assert env["AIRFLOW__API__PORT"] == "18123"
    # Workers report to this server, not the default :8080.
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18123/execution/"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == f"{UI_USER}:admin"
    # Token secrets are shared by every component and stable across restarts of the same home.
    again = ui_env(tmp_path, 18124)
    assert again["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert (
        ui_env(tmp_path / "other", 18123)["AIRFLOW__API_AUTH__JWT_SECRET"]
        != env["AIRFLOW__API_AUTH__JWT_SECRET"]
    )


def test_busy_port_is_refused_before_anything_starts(tmp_path: Path, capsys) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", free_port()))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--port", str(port), "--home", str(tmp_path)]) == 2
    assert f"port {port} is in use" in capsys.readouterr().err
    assert not (tmp_path / "airflow.db").exists()


def test_stop_also_ends_processes_in_groups_of_their_own(tmp_path: Path) -> None:
    # Like a task supervisor under the LocalExecutor: a grandchild in its own session and process group.
    spawn = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True); "
        "time.sleep(300)"
    )
    component = subprocess.Popen([sys.executable, "-c", spawn], start_new_session=True)
    server = UiServer(home=tmp_path, port=1, user=UI_USER, password="x", env={}, processes={"c": component})
    deadline = time.monotonic() + 20
    while not (tree := _descendants({component.pid})) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(tree) == 1
    (grandchild,) = tree
    assert os.getpgid(grandchild) != os.getpgid(component.pid)
    server.stop(grace=5)
    assert component.poll() is not None
    assert not _alive(grandchild)
