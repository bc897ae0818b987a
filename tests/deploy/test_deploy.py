"""deploy/: Prometheus config and alerts pass ``promtool``, every YAML parses, every file it names
exists, and every ``idnode_*`` metric a dashboard or an alert uses is one a live node exports.

``promtool`` comes from the Debian package ``prometheus`` (``make test`` installs it when it runs as
root with apt-get); without it these tests fail, they do not skip.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from node import config as config_mod
from node.config import Config
from tests.node.conftest import create, http, make_config, running_node, value

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
METRIC = re.compile(r"\bidnode_[A-Za-z0-9_]+")
#: labels Prometheus adds to every scraped series, and the histogram bucket label
TARGET_LABELS = {"instance", "job", "le", "role"}


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool is not on PATH: install the Debian package `prometheus` "
            "(apt-get install -y --no-install-recommends prometheus); `make test` does so when "
            "it runs as root with apt-get"
        )
    return subprocess.run(
        [exe, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}:\n{result.stdout}\n{result.stderr}"


def _load_yaml(path: Path) -> list[Any]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def _default(text: str) -> str:
    """``${NAME:-default}`` -> ``default``, as compose substitutes it with NAME unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


# ------------------------------------------------------------------------------------------------
# A live node's exposition


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> str:
    """/metrics of a node that answered a few requests (so that every family has samples)."""
    with running_node(make_config(tmp_path_factory.mktemp("deploy") / "data")) as node:
        create(node, "88.100.1/deploy", value(1, "URL", "https://example.com/"))
        http(node, "GET", "/api/handles/88.100.1/deploy")
        http(node, "GET", "/api/handles/88.100.1/absent")
        assert http(node, "GET", "/healthz").status == 200
        assert http(node, "GET", "/readyz").status == 200
        reply = http(node, "GET", "/metrics")
        assert reply.status == 200
        return reply.body.decode()


@pytest.fixture(scope="module")
def exported(exposition: str) -> dict[str, set[str]]:
    """Sample names the node exports (``_total``, ``_bucket``, ``_sum``, ``_count`` included),
    each with its label names."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def _alert_exprs() -> Iterator[tuple[str, str]]:
    for doc in _load_yaml(PROMETHEUS / "alerts.yml"):
        for group in doc["groups"]:
            for rule in group["rules"]:
                yield rule.get("alert") or rule["record"], rule["expr"]


def _dashboard_exprs() -> Iterator[tuple[str, str]]:
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]
        for variable in dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            yield f"{path.name}: ${variable['name']}", text


# ------------------------------------------------------------------------------------------------
# promtool


def test_promtool_check_config() -> None:
    _ok(promtool("check", "config", str(PROMETHEUS / "prometheus.yml")))


def test_promtool_check_rules() -> None:
    _ok(promtool("check", "rules", str(PROMETHEUS / "alerts.yml")))


def test_promtool_alert_unit_tests() -> None:
    _ok(promtool("test", "rules", str(PROMETHEUS / "alerts_test.yml")))


def test_exposition_passes_promtool_lint(exposition: str) -> None:
    result = promtool("check", "metrics", stdin=exposition)
    _ok(result)
    assert not result.stdout.strip() and "problem" not in result.stderr.lower(), result


# ------------------------------------------------------------------------------------------------
# metric names used by the dashboard and the alerts


@pytest.mark.parametrize(
    "source", ["alerts", "dashboards"], ids=["alerts.yml", "grafana dashboards"]
)
def test_every_metric_used_is_exported(source: str, exported: dict[str, set[str]]) -> None:
    exprs = list(_alert_exprs() if source == "alerts" else _dashboard_exprs())
    assert exprs
    used = {(where, name) for where, expr in exprs for name in METRIC.findall(expr)}
    assert used, "no idnode_* metric used"
    unknown = sorted((where, name) for where, name in used if name not in exported)
    assert not unknown, f"metrics not exported by the node: {unknown}"


@pytest.mark.parametrize(
    "source", ["alerts", "dashboards"], ids=["alerts.yml", "grafana dashboards"]
)
def test_every_label_used_is_exported(source: str, exported: dict[str, set[str]]) -> None:
    """Label names in ``by (...)`` clauses and in selectors exist on some idnode metric."""
    labels = set(TARGET_LABELS)
    for names in exported.values():
        labels |= names
    exprs = _alert_exprs() if source == "alerts" else _dashboard_exprs()
    for where, expr in exprs:
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            for label in (s.strip() for s in group.split(",")):
                assert label in labels, (where, label)
        for selector in re.findall(r"idnode_[A-Za-z0-9_]+\{([^}]*)\}", expr):
            for label in re.findall(r"([A-Za-z_]+)\s*(?:=~|!~|!=|=)", selector):
                assert label in labels, (where, label)


def test_alerts_leave_out_the_heartbeat_rule_until_its_metric_exists(
    exported: dict[str, set[str]],
) -> None:
    text = (PROMETHEUS / "alerts.yml").read_text()
    assert "heartbeat" in text.lower()  # the comment saying why it is not there
    names = {name for _, expr in _alert_exprs() for name in METRIC.findall(expr)}
    assert not any("heartbeat" in n for n in names) or any("heartbeat" in n for n in exported)


# ------------------------------------------------------------------------------------------------
# Prometheus and Grafana files


def test_prometheus_config_files_and_target() -> None:
    (config,) = _load_yaml(PROMETHEUS / "prometheus.yml")
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS / rule_file).is_file(), rule_file
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "idnode"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    (compose,) = _load_yaml(COMPOSE)
    services = compose["services"]
    for target in targets:
        host, _, port = target.partition(":")
        assert host in services, target
        published = [p.split(":")[-1] for p in services[host].get("ports", [])]
        assert f"{port}/tcp" in published or port in published, (target, published)


def test_grafana_provisioning_and_dashboard() -> None:
    (datasources,) = _load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    uids = {d["uid"] for d in datasources["datasources"]}
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    (providers,) = _load_yaml(GRAFANA / "provisioning" / "dashboards" / "idnode.yml")
    paths = {p["options"]["path"] for p in providers["providers"]}
    (compose,) = _load_yaml(COMPOSE)
    mounts = dict(_binds(compose["services"]["grafana"]))
    for path in paths:  # the provider reads a directory compose mounts from deploy/grafana
        assert path in mounts.values(), (path, mounts)
    assert DASHBOARDS, "no dashboard JSON in deploy/grafana/dashboards"
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        titles = " ".join(p["title"].lower() for p in dashboard["panels"])
        for topic in ("requests per second", "error", "p50", "p99", "cache hit", "store"):
            assert topic in titles, topic
        exprs = " ".join(e for _, e in _dashboard_exprs())
        assert "instance" in exprs and "transport" in exprs and " op" in exprs
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] in uids, panel["title"]


# ------------------------------------------------------------------------------------------------
# compose


def _binds(service: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """(host path, container path) of a service's bind mounts (sources relative to deploy/)."""
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if source.startswith((".", "/")):
            yield (DEPLOY / source).resolve(), rest.split(":")[0]


def test_compose_parses_and_every_file_it_names_exists() -> None:
    (compose,) = _load_yaml(COMPOSE)
    services = compose["services"]
    assert {"node", "prometheus", "grafana", "locust-master", "locust-worker"} <= set(services)
    assert "top-level" in COMPOSE.read_text() and "recursive" in COMPOSE.read_text()
    named_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            context = (DEPLOY / build["context"]).resolve()
            assert context.is_dir(), (name, context)
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for host, _ in _binds(service):
            assert host.exists(), (name, host)
        for volume in service.get("volumes", []):
            source = volume.partition(":")[0]
            if not source.startswith((".", "/")):
                assert source in named_volumes, (name, source)
        for dependency in service.get("depends_on", []):
            assert dependency in services, (name, dependency)
        for key in ("command", "entrypoint"):
            for arg in service.get(key) or []:
                # a path inside the idnode image: /app is the repository (deploy/Dockerfile)
                for path in re.findall(r"/app/[\w./-]+", str(arg)):
                    assert (ROOT / path.removeprefix("/app/")).is_file(), (name, path)
        for variable in (service.get("environment") or {}).values():
            for path in re.findall(r"/var/lib/grafana/dashboards/[\w.-]+", str(variable)):
                assert (GRAFANA / "dashboards" / Path(path).name).is_file(), (name, path)


def _idnode_parser(subcommand: str) -> argparse.ArgumentParser:
    """The flags of ``idnode <subcommand>``, as node/cli.py gives them."""
    parser = argparse.ArgumentParser(prog=f"idnode {subcommand}", exit_on_error=False)
    if subcommand in ("serve", "demo"):
        config_mod.add_arguments(parser)
        if subcommand == "demo":
            parser.add_argument("--identifiers", type=int)
    else:  # a subcommand with its own module, e.g. node/seed.py
        importlib.import_module(f"node.{subcommand}").add_arguments(parser)
    return parser


def test_compose_idnode_commands_use_real_flags() -> None:
    (compose,) = _load_yaml(COMPOSE)
    settings = {f.name for f in Config.fields()}
    idnode_services = 0
    for name, service in compose["services"].items():
        entrypoint = service.get("entrypoint") or (
            ["idnode", "serve"] if service.get("image", "").startswith("idnode:") else None
        )
        if not entrypoint or entrypoint[0] != "idnode":
            continue
        idnode_services += 1
        command = [_default(str(a)) for a in service.get("command", [])]
        parser = _idnode_parser(entrypoint[1])
        try:
            parser.parse_args(command)
        except (argparse.ArgumentError, SystemExit) as exc:
            pytest.fail(f"{name}: idnode {entrypoint[1]} {command}: {exc}")
        for variable in service.get("environment", {}):
            assert variable.startswith("IDNODE_"), (name, variable)
            assert variable.removeprefix("IDNODE_").lower() in settings, (name, variable)
    assert idnode_services >= 2  # the seed and the node
    node = compose["services"]["node"]
    assert {p.split(":")[-1] for p in node["ports"]} == {"8000/tcp", "2641/tcp", "2641/udp"}


#: parses a Locust command line with Locust's own parser plus the idnode flags (in a subprocess:
#: importing Locust here would monkey-patch this process's sockets)
_LOCUST_PARSE = """
import sys
from locust.argument_parser import get_parser
from benchmarks.locust import options
parser = get_parser()
options.add_arguments(parser)
parser.parse_args(sys.argv[1:])
"""


def test_compose_locust_command_lines_parse() -> None:
    (compose,) = _load_yaml(COMPOSE)
    for name in ("locust-master", "locust-worker"):
        service = compose["services"][name]
        assert service["entrypoint"] == ["locust"]
        args = [_default(str(a)) for a in service["command"]]
        result = subprocess.run(
            [sys.executable, "-c", _LOCUST_PARSE, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (name, args, result.stderr[-2000:])


# ------------------------------------------------------------------------------------------------
# Dockerfile


def _instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile() -> None:
    instructions = _instructions()
    get = lambda k: [rest for key, rest in instructions if key == k]  # noqa: E731
    assert get("FROM") == ["python:3.11-slim"]
    users = get("USER")
    assert users and users[-1] not in ("root", "0"), users
    assert set(" ".join(get("EXPOSE")).split()) == {"8000/tcp", "2641/tcp", "2641/udp"}
    (healthcheck,) = get("HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert get("ENTRYPOINT") == ['["idnode", "serve"]']
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for copy in get("COPY"):
        *sources, _ = shlex.split(copy)
        for source in sources:
            assert (ROOT / source).exists(), source
            assert f"!{source.rstrip('/')}/" in ignore or f"!{source}" in ignore, source


# ------------------------------------------------------------------------------------------------
# Kubernetes


def _k8s() -> dict[str, dict[str, Any]]:
    (kustomization,) = _load_yaml(K8S / "kustomization.yaml")
    docs: dict[str, dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        path = K8S / resource
        assert path.is_file(), resource
        for doc in _load_yaml(path):
            assert doc["apiVersion"] and doc["metadata"]["name"], resource
            docs[doc["kind"]] = doc
    return docs


def test_k8s_manifests_parse_and_fit_together() -> None:
    docs = _k8s()
    assert set(docs) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }
    deployment = docs["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert docs["Service"]["spec"]["selector"].items() <= pod_labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= (
        pod_labels.items()
    )
    target = docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])

    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    ports = {(p["name"], p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert {("http", 8000, "TCP"), ("handle-tcp", 2641, "TCP"), ("handle-udp", 2641, "UDP")} <= (
        ports
    )
    names = {p[0] for p in ports}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in names
    service_ports = {
        (p["port"], p["protocol"], p["targetPort"]) for p in docs["Service"]["spec"]["ports"]
    }
    assert {(8000, "TCP", "http"), (2641, "TCP", "handle-tcp"), (2641, "UDP", "handle-udp")} <= (
        service_ports
    )

    # the ConfigMap's TOML is what --config reads, with settings the node knows
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_map = docs["ConfigMap"]
    (config_volume,) = [v for v in volumes.values() if "configMap" in v]
    assert config_volume["configMap"]["name"] == config_map["metadata"]["name"]
    args = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    assert config_path.parent == Path(mounts[config_volume["name"]])
    settings = tomllib.loads(config_map["data"][config_path.name])
    config = Config().merged(settings)
    assert (config.http_port, config.port, config.role) == (8000, 2641, "secondary")
    assert config.data_dir in mounts.values()
    assert (
        config.shutdown_grace_s
        < deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    )
    for env in container.get("env", []):
        assert env["name"].removeprefix("IDNODE_").lower() in {f.name for f in Config.fields()}
