"""`./dev ui`: the Airflow UI on localhost (api-server, scheduler, dag-processor, triggerer) with dags/."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jobs.orchestration.airflow_local import PROJECT_ROOT, airflow_env, migrate_db
from jobs.orchestration.runner import LAKE_POOL, LAKE_POOL_DESCRIPTION, LAKE_POOL_SLOTS

# Stdlib only (no Airflow import): Airflow reads AIRFLOW_HOME when imported, and each server is a child
# process with its own environment, so one Python process can start UIs for different homes (the tests).

UI_USER = "admin"
DEFAULT_PORT = 8080
# The components `airflow standalone` starts, as separate children so each has its own log file and
# all of them can be stopped together.
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTH_PATH = "/api/v2/monitor/health"
STOP_GRACE_SECONDS = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _secrets(home: Path) -> dict[str, str]:
    """Per-home secrets, generated once: every component must sign and check tokens with the same keys."""
    path = home / "ui_secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {"jwt_secret": secrets.token_urlsafe(64), "secret_key": secrets.token_urlsafe(32)}
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values


def ensure_password(home: Path, user: str = UI_USER) -> str:
    """The UI password of ``user``: read from the simple auth manager's password file under ``home``,
    or generated and written there (the format the manager reads) the first time."""
    path = home / "simple_auth_manager_passwords.json.generated"
    passwords: dict[str, str] = json.loads(path.read_text() or "{}") if path.exists() else {}
    if user not in passwords:
        passwords[user] = secrets.token_urlsafe(12)
        path.write_text(json.dumps(passwords) + "\n")
        path.chmod(0o600)
    return passwords[user]


def ui_env(home: Path, port: int, user: str = UI_USER) -> dict[str, str]:
    """Environment of every UI component: the project's DAGs and SQLite DB (airflow_env), the simple
    auth manager with ``user`` as admin, the API on 127.0.0.1:``port``, shared token secrets."""
    env = airflow_env(home)
    keys = _secrets(home)
    base_url = f"http://127.0.0.1:{port}"
    env.update(
        {
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                home / "simple_auth_manager_passwords.json.generated"
            ),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            # Workers report task state to this server's execution API, not the default :8080.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # The project's plugins: plugins/facelake_run_notes.py turns an erasure's report into the run's note.
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            # New DAG files show up within half a minute while editing dags/ (default: 5 minutes).
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        }
    )
    # 2-core laptops and CI: a few task slots are plenty (the lake pool serialises writers anyway).
    env.setdefault("AIRFLOW__CORE__PARALLELISM", "4")
    return env


@dataclass
class UiServer:
    """A running local Airflow UI: its children, their log files, the URL and the login."""

    home: Path
    port: int
    user: str
    password: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Base URL of the UI and the REST API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_dir(self) -> Path:
        """Folder holding one log file per component."""
        return self.home / "ui-logs"

    def start(self) -> None:
        """Start every component as a child in its own process group (so stop() reaches its workers)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        airflow = str(Path(sys.executable).parent / "airflow")
        for name in COMPONENTS:
            args = [airflow, name]
            if name == "api-server":
                args += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
            with open(self.log_dir / f"{name}.log", "ab") as log_file:
                self.processes[name] = subprocess.Popen(
                    args,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def exited(self) -> dict[str, int]:
        """Components that have exited, with their exit codes."""
        return {
            name: code for name, process in self.processes.items() if (code := process.poll()) is not None
        }

    def health(self) -> dict[str, object] | None:
        """The API's health document, or None while it does not answer."""
        try:
            with urllib.request.urlopen(self.url + HEALTH_PATH, timeout=5) as response:
                return json.load(response)
        except (OSError, ValueError):
            return None

    def wait_healthy(self, timeout: float = 180.0) -> None:
        """Wait until the API answers and reports the metadata DB, scheduler, DAG processor and triggerer
        healthy; raise RuntimeError (with the logs' tails) on timeout or if a component exits."""
        deadline = time.monotonic() + timeout
        while True:
            if dead := self.exited():
                raise RuntimeError(f"Airflow components exited early: {dead}\n{self.logs_tail()}")
            doc = self.health()
            if doc is not None and all(
                isinstance(part, dict) and part.get("status") == "healthy" for part in doc.values()
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Airflow UI not healthy after {timeout:.0f} s (last health: {doc})\n{self.logs_tail()}"
                )
            time.sleep(1.0)

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> None:
        """Wait until the DAG processor has parsed ``dag_id`` (the API knows it); RuntimeError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.api("GET", f"/api/v2/dags/{dag_id}")
                return
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise
            if time.monotonic() > deadline:
                raise RuntimeError(f"DAG {dag_id} not parsed after {timeout:.0f} s\n{self.logs_tail()}")
            time.sleep(2.0)

    def api(self, method: str, path: str, body: object | None = None) -> object:
        """Call the REST API as the UI user (a fresh token per call: simple, and calls are few)."""
        token = self._request("POST", "/auth/token", {"username": self.user, "password": self.password})
        assert isinstance(token, dict)
        return self._request(method, path, body, token["access_token"])

    def _request(
        self, method: str, path: str, body: object | None = None, token: str | None = None
    ) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            # The API's own reason (a validation message) makes a failed call readable in a test report.
            error.msg = f"{error.msg}: {error.read(2000).decode(errors='replace')}"
            raise

    def ensure_pool(self) -> None:
        """Create the lake pool (one slot) unless it exists already (airflow_local.migrate_db makes it)."""
        try:
            self.api("GET", f"/api/v2/pools/{LAKE_POOL}")
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise
            self.api(
                "POST",
                "/api/v2/pools",
                {"name": LAKE_POOL, "slots": LAKE_POOL_SLOTS, "description": LAKE_POOL_DESCRIPTION},
            )

    def logs_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of each component's log, for failure messages."""
        parts = []
        for name in COMPONENTS:
            path = self.log_dir / f"{name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            parts.append(f"----- {name} ({path}) -----\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM every component and every process under it, then SIGKILL what is left after ``grace``
        seconds. Task processes (the task supervisor and its `facelake` child) run in process groups of
        their own, so the tree is walked first: once their parents die they are re-parented and lost."""
        tree = _descendants({process.pid for process in self.processes.values()})
        for process in self.processes.values():
            _signal_group(process.pid, signal.SIGTERM)
        for pid in tree:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        while time.monotonic() < deadline and any(_alive(pid) for pid in tree):
            time.sleep(0.2)
        # Whatever is left: groups whose leader exited but whose workers live on, and stray task processes.
        for process in self.processes.values():
            _signal_group(process.pid, signal.SIGKILL)
        for pid in tree:
            _signal(pid, signal.SIGKILL)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)

    def __enter__(self) -> UiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _descendants(roots: set[int]) -> set[int]:
    """Every process below ``roots`` (from /proc; empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command name may hold spaces and parentheses: the fields start after the last ")".
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def start_ui(home: Path | None = None, port: int = DEFAULT_PORT, user: str = UI_USER) -> UiServer:
    """Migrate the metadata DB under ``home`` (default .cache/airflow), then start the UI's components
    on 127.0.0.1:``port``; returns at once (call ``wait_healthy`` and ``ensure_pool`` next)."""
    env = ui_env(home or Path(airflow_env()["AIRFLOW_HOME"]), port, user)
    home = Path(env["AIRFLOW_HOME"])
    migrated = migrate_db(home)
    if migrated.returncode != 0:
        raise RuntimeError(
            f"airflow db migrate failed:\n{migrated.stdout[-3000:]}\n{migrated.stderr[-3000:]}"
        )
    server = UiServer(home=home, port=port, user=user, password=ensure_password(home, user), env=env)
    try:
        server.start()
    except BaseException:
        # Interrupted or failed half-way: no component may outlive the caller.
        server.stop()
        raise
    return server


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """``./dev ui [--port N] [--home DIR]``: start the UI, print its URL and login, run until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="./dev ui", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1 (default 8080)")
    parser.add_argument("--home", type=Path, default=None, help="AIRFLOW_HOME (default .cache/airflow)")
    args = parser.parse_args(argv)
    if _port_in_use(args.port):
        print(f"facelake: port {args.port} is in use; try ./dev ui --port {free_port()}", file=sys.stderr)
        return 2
    # Ctrl-C, SIGTERM and a closed terminal all end in the finally block, which stops every component.
    # SIGINT explicitly too: a shell starts background jobs with SIGINT ignored, and Python keeps that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    server: UiServer | None = None
    try:
        print("facelake: migrating the Airflow DB and starting the UI (about a minute)...", file=sys.stderr)
        server = start_ui(args.home, args.port)
        server.wait_healthy()
        server.ensure_pool()
        print(
            f"\n  Airflow UI:  {server.url}\n  login:       {server.user} / {server.password}\n"
            f"  DAGs from:   {server.env['AIRFLOW__CORE__DAGS_FOLDER']}\n"
            f"  logs:        {server.log_dir}/\n  stop:        Ctrl-C\n",
            flush=True,
        )
        while not (dead := server.exited()):
            time.sleep(1.0)
        print(f"facelake: Airflow component(s) exited: {dead}\n{server.logs_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nfacelake: stopping the Airflow UI...", file=sys.stderr)
        return 0
    except RuntimeError as error:
        print(f"facelake: {error}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
