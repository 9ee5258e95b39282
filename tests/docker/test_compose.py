"""docker/: the images and compose file, checked without a Docker engine.

No Docker engine runs where this suite runs, so nothing here builds an image or starts a
container. What can be checked for real is: compose.yaml's structure (services, health
checks, volumes, dependencies, one index writer, the same broker and DB everywhere); that
every command a container runs parses against the real ``docqa`` click tree; that the
Dockerfile copies paths that exist and pins the same torch as pyproject.toml; that the
project's wheel (what ``pip install .`` puts in the image) carries the templates and
browser assets; and the health probe and the schema-migration one-shot, run as processes
against the real Redis, SQLite and PostgreSQL.
"""

from __future__ import annotations

import fnmatch
import http.server
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
import redis
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
PROBE = DOCKER / "healthcheck.py"

#: the services issue 5 asks for (name in compose.yaml -> role)
REQUIRED = (
    "web",
    "ingest-worker",
    "index-worker",
    "generate-worker",
    "summarize-worker",
    "redis",
    "postgres",
)
DOCQA_WORKERS = ("ingest-worker", "index-worker", "generate-worker", "summarize-worker")
#: a Redis database of its own (others use 0 and their own numbers); flushed only here
PROBE_BROKER = "redis://127.0.0.1:6379/13"
#: where the image copies docker/healthcheck.py
PROBE_IN_IMAGE = "/opt/docqa/healthcheck.py"


# ---------------------------------------------------------------------------- helpers


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR}`` with nothing set: the defaults."""

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(3)
        assert default is not None, f"${{{name}}} has no default: compose would leave it empty"
        return default

    return re.sub(r"\$\{(\w+)(:?-([^}]*))?\}", sub, value)


def docqa_services() -> dict[str, dict[str, Any]]:
    """Services that run the docqa image (the others are redis and postgres)."""
    return {n: s for n, s in services().items() if "build" in s or "DOCQA_IMAGE" in s["image"]}


def long_running(svc: dict[str, Any]) -> bool:
    return str(svc.get("restart", "")) != "no"


def env(svc: dict[str, Any]) -> dict[str, str]:
    raw = svc.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: interpolate(str(v)) for k, v in raw.items()}


def command(svc: dict[str, Any]) -> list[str]:
    cmd = svc["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def option(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def queues_of(argv: list[str]) -> set[str]:
    value = option(argv, "--queues", "-Q")
    return {q.strip() for q in value.split(",")} if value else set()


def mounts(svc: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (named volume or host path) of a service's volumes."""
    out = {}
    for vol in svc.get("volumes", []):
        if isinstance(vol, dict):
            out[vol["target"]] = str(vol["source"])
        else:
            source, target = interpolate(str(vol)).split(":")[:2]
            out[target] = source
    return out


def check_docqa_command(argv: list[str]) -> click.Context:
    """Parse ``argv`` (``docqa ...``) with the real click tree; fail on an unknown command
    or option, the way the container would at start."""
    from cli.main import main

    assert argv[0] == "docqa", f"not a docqa command: {argv}"
    cmd: click.Command = main
    args = argv[1:]
    path = ["docqa"]
    while isinstance(cmd, click.Group):
        assert args, f"{' '.join(argv)}: no subcommand of {' '.join(path)}"
        name, args = args[0], args[1:]
        if name not in cmd.commands:
            pytest.fail(
                f"`{' '.join([*path, name])}` is not a command of the docqa CLI (cli/main.py"
                f" has: {', '.join(sorted(cmd.commands))}); the container running"
                f" `{' '.join(argv)}` would exit at once"
                + (
                    ". `docqa worker` comes from cli/worker.py, registered in"
                    " cli/main.py with main.add_command"
                    if name == "worker"
                    else ""
                )
            )
        cmd = cmd.commands[name]
        path.append(name)
    try:
        return cmd.make_context(" ".join(path), list(args))
    except click.ClickException as exc:
        pytest.fail(f"`{' '.join(argv)}` does not parse: {exc.format_message()}")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def dockerfile_stages() -> list[Stage]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return stages


def dockerfile_args() -> dict[str, str]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    return dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))


def exec_form(rest: str) -> list[str]:
    value = yaml.safe_load(rest)  # a JSON array is valid YAML
    assert isinstance(value, list), f"use the exec (JSON) form, not the shell form: {rest}"
    return [str(v) for v in value]


def copies(stage: Stage) -> list[tuple[str | None, list[str], str]]:
    """(from-stage or None, sources, destination) of each COPY in a stage."""
    out = []
    for keyword, rest in stage.instructions:
        if keyword != "COPY":
            continue
        parts = rest.split()
        flags = [p for p in parts if p.startswith("--")]
        paths = [p for p in parts if not p.startswith("--")]
        src_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        out.append((src_stage, paths[:-1], paths[-1]))
    return out


def env_of(stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for keyword, rest in stage.instructions:
        if keyword == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                out[key] = value
    return out


def pyproject() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


def pin(requirement_name: str) -> str:
    for dep in pyproject()["project"]["dependencies"]:
        m = re.fullmatch(rf"{re.escape(requirement_name)}==([\w.]+)", dep.split(";")[0].strip())
        if m:
            return m.group(1)
    raise AssertionError(f"{requirement_name} is not pinned with == in pyproject.toml")


# ---------------------------------------------------------------------- compose.yaml


def test_required_services_exist() -> None:
    missing = [name for name in REQUIRED if name not in services()]
    assert not missing, f"compose.yaml lacks the services {missing}"


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, svc in services().items():
        if not long_running(svc):
            continue
        check = svc.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), f"{name}: no healthcheck"


def test_docqa_healthchecks_use_the_probe_the_image_ships() -> None:
    for name, svc in docqa_services().items():
        if not long_running(svc):
            continue
        test = [str(t) for t in svc["healthcheck"]["test"]]
        assert test[0] == "CMD" and PROBE_IN_IMAGE in test, f"{name}: {test}"
        mode = "web" if name == "web" else "worker"
        assert test[-1] == mode, f"{name} should probe as {mode}: {test}"
    final = dockerfile_stages()[-1]
    assert (None, ["docker/healthcheck.py"], PROBE_IN_IMAGE) in copies(final)


def test_redis_keeps_an_append_only_file_on_a_volume() -> None:
    redis_svc = services()["redis"]
    argv = command(redis_svc)
    assert argv[0] == "redis-server"
    assert option(argv, "--appendonly") == "yes", argv
    assert mounts(redis_svc).get("/data") in compose()["volumes"], "redis /data is no volume"
    assert [str(t) for t in redis_svc["healthcheck"]["test"]][-2:] == ["redis-cli", "ping"]


def test_postgres_keeps_its_data_on_a_volume_and_reports_ready() -> None:
    pg = services()["postgres"]
    assert mounts(pg).get("/var/lib/postgresql/data") in compose()["volumes"]
    assert "pg_isready" in [str(t) for t in pg["healthcheck"]["test"]]


def test_images_run_as_a_non_root_user() -> None:
    final = dockerfile_stages()[-1]
    users = [rest for keyword, rest in final.instructions if keyword == "USER"]
    assert users, "the runtime stage has no USER line: containers would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users
    created = " ".join(rest for keyword, rest in final.instructions if keyword == "RUN")
    assert re.search(rf"useradd\b[^&]*\b{re.escape(user)}\b", created), f"{user} is never created"
    for name, svc in docqa_services().items():
        assert str(svc.get("user", user)).split(":")[0] not in ("root", "0"), name
        assert not svc.get("privileged"), name


def test_data_and_model_are_volumes_shared_by_web_and_workers() -> None:
    svcs = docqa_services()
    named = compose()["volumes"]
    data_sources = {name: mounts(svc).get("/data") for name, svc in svcs.items()}
    assert None not in data_sources.values(), f"a docqa service without /data: {data_sources}"
    assert len(set(data_sources.values())) == 1, f"not one shared data volume: {data_sources}"
    assert next(iter(data_sources.values())) in named
    for name, svc in svcs.items():
        e = env(svc)
        assert e.get("DOCQA_DATA_DIR") == "/data", name
        assert e.get("DOCQA_MODEL_DIR", "").startswith("/models/"), name
    # web and summarize-worker read the tokenizer there; generate-worker runs the model
    for name in ("web", "generate-worker", "summarize-worker"):
        assert "/models" in mounts(svcs[name]), f"{name} does not mount the model folder"
    final_env = env_of(dockerfile_stages()[-1])
    assert final_env.get("DOCQA_DATA_DIR") == "/data"
    assert final_env.get("DOCQA_MODEL_DIR", "").startswith("/models/")
    assert final_env.get("HF_HUB_OFFLINE") == "1"


def test_docqa_services_wait_for_healthy_redis_postgres_and_the_schema() -> None:
    for name, svc in docqa_services().items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        assert deps.get("postgres", {}).get("condition") == "service_healthy", name
        if long_running(svc):
            assert deps.get("redis", {}).get("condition") == "service_healthy", name
            assert deps.get("migrate", {}).get("condition") == "service_completed_successfully"


def test_web_and_workers_share_one_broker_and_one_database() -> None:
    svcs = docqa_services()
    brokers = {name: env(svc).get("DOCQA_BROKER_URL") for name, svc in svcs.items()}
    dbs = {name: env(svc).get("DOCQA_DATABASE_URL") for name, svc in svcs.items()}
    assert len(set(dbs.values())) == 1 and None not in dbs.values(), dbs
    running = {n: b for n, b in brokers.items() if long_running(svcs[n])}
    assert len(set(running.values())) == 1 and None not in running.values(), running
    broker = redis.connection.parse_url(next(iter(running.values())))
    assert broker["host"] == "redis" and broker.get("port", 6379) == 6379
    url = sa.make_url(next(iter(dbs.values())))
    pg_env = env(services()["postgres"])
    assert url.get_backend_name() == "postgresql" and url.host == "postgres"
    assert (url.username, url.password, url.database) == (
        pg_env["POSTGRES_USER"],
        pg_env["POSTGRES_PASSWORD"],
        pg_env["POSTGRES_DB"],
    )
    for name, svc in svcs.items():
        if long_running(svc):
            assert env(svc).get("DOCQA_GENERATION") == "worker", name


def test_only_one_index_writer_which_also_runs_the_reconciler() -> None:
    from worker.celery_app import QUEUES

    svcs = docqa_services()
    workers = {n: command(s) for n, s in svcs.items() if command(s)[:2] == ["docqa", "worker"]}
    assert set(DOCQA_WORKERS) <= set(workers)
    consumed = {n: queues_of(argv) for n, argv in workers.items()}
    for name, queues in consumed.items():
        assert queues and queues <= set(QUEUES), f"{name} consumes {queues}; known: {QUEUES}"
    assert set().union(*consumed.values()) == set(QUEUES), f"a queue nobody consumes: {consumed}"
    index = [n for n, queues in consumed.items() if "index" in queues]
    assert index == ["index-worker"], f"index consumers: {index}"
    argv = workers["index-worker"]
    assert option(argv, "--concurrency", "-c") == "1", argv
    beat = [n for n, a in workers.items() if "--beat" in a or "-B" in a]
    assert beat == ["index-worker"], f"the reconciler (beat) must run once: {beat}"
    replicas = svcs["index-worker"].get("deploy", {}).get("replicas", 1)
    assert replicas == 1
    # A summary holds its process for the whole job: never in the process questions need.
    assert consumed["generate-worker"] == {"generate"}
    assert consumed["summarize-worker"] == {"summarize"}
    model_holders = [n for n, queues in consumed.items() if "generate" in queues]
    assert model_holders == ["generate-worker"], model_holders


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_workers_get_time_for_their_bounded_shutdown() -> None:
    """SIGTERM lets running tasks finish for WORKER_SOFT_SHUTDOWN_S, then requeues the rest;
    a SIGKILL before that (Docker's default is after 10 s) strands them until the broker's
    visibility timeout."""
    from worker.celery_app import WORKER_SOFT_SHUTDOWN_S

    for name in DOCQA_WORKERS:
        grace = seconds(str(services()[name].get("stop_grace_period", "10s")))
        assert grace >= WORKER_SOFT_SHUTDOWN_S + 10, f"{name}: stop_grace_period {grace} s"
        assert services()[name].get("init") is True, f"{name}: no init to reap sandbox children"


def test_container_commands_are_real_docqa_commands() -> None:
    for svc in docqa_services().values():
        argv = command(svc)
        if argv[0] == "docqa":
            check_docqa_command(argv)
    serve = check_docqa_command(command(services()["web"]))
    assert serve.params["host"] == "0.0.0.0", "web must listen on all interfaces"
    assert serve.params["port"] == 8000
    web = services()["web"]
    assert any(str(p).endswith(":8000") for p in web.get("ports", []))


def test_docqa_commands_of_the_readme_section_exist() -> None:
    """Commands and options only: their paths (``--from /models/...``) exist in a container."""
    from cli.main import main

    lines = re.findall(r"^\s*(?:\.venv/bin/)?(docqa [^\n#]*)", readme_section(), re.M)
    assert any(line.startswith("docqa model build") for line in lines), lines
    assert any(line.startswith("docqa worker") for line in lines), lines
    for line in lines:
        args = shlex.split(line)[1:]
        cmd: click.Command = main
        while isinstance(cmd, click.Group):
            assert args and args[0] in cmd.commands, f"README: `{line}`: unknown command"
            cmd, args = cmd.commands[args[0]], args[1:]
        known = {opt for param in cmd.params for opt in param.opts}
        unknown = [a for a in args if a.startswith("-") and a.split("=")[0] not in known]
        assert not unknown, f"README: `{line}`: unknown options {unknown}"


# ------------------------------------------------------------------------ Dockerfile


def test_dockerfile_copy_sources_exist_and_are_not_dockerignored() -> None:
    stages = dockerfile_stages()
    names = {s.name for s in stages if s.name}
    ignored = [
        p.strip().rstrip("/")
        for p in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if p.strip() and not p.startswith("#")
    ]
    for stage in stages:
        for src_stage, sources, _dest in copies(stage):
            if src_stage is not None:
                assert src_stage in names, f"COPY --from={src_stage}: no such stage"
                continue
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
                hits = [p for p in ignored if fnmatch.fnmatch(src.rstrip("/"), p)]
                assert not hits, f"COPY {src} is excluded by .dockerignore {hits}"


def test_dockerfile_installs_the_cpu_torch_pinned_in_pyproject() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    pinned = pin("torch")
    installs = re.findall(r"pip install[^\n]*torch==([\w.+]+)", text)
    assert installs == [pinned], f"Dockerfile torch {installs}, pyproject.toml {pinned}"
    assert re.search(r"--index-url https://download\.pytorch\.org/whl/cpu torch==", text)
    # the project itself is installed after torch, as a regular install of the copied source
    assert text.index("download.pytorch.org") < text.index("pip install /src")


def test_dockerfile_python_matches_requires_python() -> None:
    base = dockerfile_args()["PYTHON_IMAGE"]
    m = re.match(r"python:(\d+)\.(\d+)", base)
    assert m, base
    spec = pyproject()["project"]["requires-python"]
    assert spec == f">={m[1]}.{m[2]},<{m[1]}.{int(m[2]) + 1}", (base, spec)


def test_dockerfile_builds_assets_like_make_assets() -> None:
    stages = dockerfile_stages()
    assets = next(s for s in stages if s.name == "assets")
    assert dockerfile_args()["NODE_IMAGE"].startswith("node:20"), "README asks for Node.js 20"
    runs = [rest for keyword, rest in assets.instructions if keyword == "RUN"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    flags = re.search(r"^NPM_CI_FLAGS \?= (.+)$", makefile, re.M)
    assert flags
    assert any(r.startswith("npm ci " + flags[1].strip()) for r in runs), runs
    assert "node web/frontend/build.mjs" in runs
    # build.mjs writes web/static/vendor next to web/frontend; the python stage takes it
    assert 'join(FRONTEND, "..", "static", "vendor")' in (
        ROOT / "web/frontend/build.mjs"
    ).read_text(encoding="utf-8")
    python = next(s for s in stages if s.name == "python")
    assert ("assets", ["/src/web/static/vendor"], "/src/web/static/vendor") in copies(python)


def test_dockerfile_default_command_and_healthcheck() -> None:
    final = dockerfile_stages()[-1]
    cmds = [exec_form(rest) for keyword, rest in final.instructions if keyword == "CMD"]
    assert cmds, "no CMD"
    check_docqa_command(cmds[-1])
    assert not [k for k, _ in final.instructions if k == "ENTRYPOINT"], (
        "an ENTRYPOINT would break `docker compose run <service> docqa ...`"
    )
    checks = [rest for keyword, rest in final.instructions if keyword == "HEALTHCHECK"]
    assert checks and PROBE_IN_IMAGE in checks[-1]


def test_the_wheel_carries_templates_and_browser_assets(tmp_path: Path) -> None:
    """``pip install /src`` in the image: build the wheel from exactly what the Dockerfile
    copies into /src (plus a vendored file, as the assets stage provides) and check every
    template and static file is inside."""
    src = tmp_path / "src"
    python = next(s for s in dockerfile_stages() if s.name == "python")
    for src_stage, sources, dest in copies(python):
        if src_stage is not None:
            continue
        for source in sources:
            target = Path(dest.replace("/src", str(src), 1))
            if (ROOT / source).is_dir():
                shutil.copytree(
                    ROOT / source,
                    target,
                    # a clean clone has no compiled catalogs: the image compiles them
                    ignore=shutil.ignore_patterns("__pycache__", "node_modules", "vendor", "*.mo"),
                )
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target / Path(source).name)
    vendored = src / "web/static/vendor/manifest.json"
    vendored.parent.mkdir(parents=True)
    vendored.write_text("{}\n", encoding="utf-8")
    # the python stage's `pybabel compile` lines, run on the copy
    compiles = [
        rest for keyword, rest in python.instructions if keyword == "RUN" and "pybabel" in rest
    ]
    assert compiles, "the image must compile the UI's translations"
    for command in re.findall(r"pybabel compile ([^&\\]+)", " ".join(compiles)):
        args = command.replace("/src", str(src)).split()
        subprocess.run(
            [sys.executable, "-m", "babel.messages.frontend", "compile", *args],
            check=True,
            capture_output=True,
        )
    out = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(src),
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
        timeout=300,
    )
    (wheel,) = out.glob("docqa-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        p.relative_to(ROOT).as_posix()
        for folder in ("web/templates", "web/static")
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "vendor" not in p.parts
    }
    expected |= {"web/static/vendor/manifest.json", "qa/store/db/migrations/script.py.mako"}
    for po in (ROOT / "web/translations").rglob("*.po"):
        expected |= {
            po.relative_to(ROOT).as_posix(),
            po.with_suffix(".mo").relative_to(ROOT).as_posix(),
        }
    missing = sorted(expected - inside)
    assert not missing, f"`pip install .` would lack {missing} (pyproject package-data)"


# ---------------------------------------------------------- processes the containers run


def test_migrate_one_shot_brings_the_schema_up(db_url: str, tmp_path: Path) -> None:
    """The exact command of the ``migrate`` service, against SQLite and PostgreSQL (given
    as plain postgresql://, like compose.yaml's URL)."""
    url = sa.make_url(db_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql")
    plain = url.render_as_string(hide_password=False)
    argv = command(services()["migrate"])
    assert argv[0] == "python"
    argv[0] = sys.executable  # the image's PATH puts its venv's python first
    env_vars = {**os.environ, "DOCQA_DATABASE_URL": plain, "DOCQA_DATA_DIR": str(tmp_path)}
    done = subprocess.run(argv, env=env_vars, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select version_num from alembic_version")).scalar()
        assert "documents" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def probe(mode: str, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    # A worker on this machine answers a ping in milliseconds: 0.5 s of listening (not
    # 2.5 s) is plenty, and the test probes seven times.
    return subprocess.run(
        [sys.executable, str(PROBE), mode],
        env={**os.environ, "DOCQA_HEALTHCHECK_TIMEOUT_S": "1", **extra},
        cwd=tmp_path,  # no stray .env file
        capture_output=True,
        text=True,
        timeout=60,
    )


class _Readyz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = type(self).status if self.path == "/readyz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def readyz_server() -> Iterator[tuple[int, type[_Readyz]]]:
    handler = type("Handler", (_Readyz,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def test_web_probe_follows_readyz(readyz_server: tuple[int, type[_Readyz]], tmp_path: Path) -> None:
    port, handler = readyz_server
    assert probe("web", tmp_path, DOCQA_PORT=str(port)).returncode == 0
    handler.status = 503
    failed = probe("web", tmp_path, DOCQA_PORT=str(port))
    assert failed.returncode == 1 and "HTTP 503" in failed.stderr
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert probe("web", tmp_path, DOCQA_PORT=str(closed)).returncode == 1


@pytest.fixture
def probe_broker() -> Iterator[str]:
    client = redis.Redis.from_url(PROBE_BROKER)
    client.flushdb()
    try:
        yield PROBE_BROKER
    finally:
        client.flushdb()
        client.close()


def test_worker_probe_needs_a_live_worker_on_this_host(probe_broker: str, tmp_path: Path) -> None:
    alone = probe("worker", tmp_path, DOCQA_BROKER_URL=probe_broker)
    assert alone.returncode == 1 and "no worker" in alone.stderr, alone.stderr
    no_broker = probe("worker", tmp_path, DOCQA_BROKER_URL="redis://127.0.0.1:1/0")
    assert no_broker.returncode == 1 and "unhealthy" in no_broker.stderr
    # a real Celery worker on the same broker and host (the probe needs no docqa task)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-b",
            probe_broker,
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "warning",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            result = probe("worker", tmp_path, DOCQA_BROKER_URL=probe_broker)
            if result.returncode == 0:
                break
            assert worker.poll() is None, "the celery worker exited"
            assert time.monotonic() < deadline, result.stderr
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    gone = probe("worker", tmp_path, DOCQA_BROKER_URL=probe_broker)
    assert gone.returncode == 1, "a stopped worker still reported healthy"


# ---------------------------------------------------------------------------- README


def readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.find("\n## Scaled deployment\n")
    assert start >= 0, "README.md has no 'Scaled deployment' section"
    end = text.find("\n## ", start + 1)
    return text[start:end]


def test_readme_section_names_every_service_and_says_how_it_was_checked() -> None:
    section = readme_section()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.index("## Scaled deployment") < text.index("## What the shared corpus gives")
    for name in services():
        assert f"`{name}`" in section, f"the README does not describe the {name} service"
    assert "docker compose up -d" in section
    assert "--scale ingest-worker=" in section
    assert "not built" in section  # no Docker engine here: say so
