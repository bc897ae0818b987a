"""deploy/: Prometheus config and alerts pass ``promtool``, every YAML parses, every file it names
exists, every ``idnode_*`` metric a dashboard or an alert uses is one a live node exports (a
top-level, a secondary registered with it and a recursive node, each scraped), and the compose
hierarchy fits together: roles, ports, the top-level address, seeds and volumes, healthchecks. Label
names and values in every selector and grouping are checked per metric against those live nodes;
the Kubernetes pod's settings are loaded as the node loads them (ConfigMap TOML, image ENV, env).

``promtool`` comes from the Debian package ``prometheus`` (``make test`` installs it when it runs as
root with apt-get); without it these tests fail, they do not skip.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from node import config as config_mod
from node.config import Config
from node.industries import select_industries
from node.metrics import op_label
from protocol.codes import OpCode, ResponseCode
from protocol.site import parse_address
from tests.node.conftest import (
    PREFIX,
    RunningNode,
    create,
    http,
    make_config,
    running_node,
    value,
)

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
ROLES = ("toplevel", "secondary", "recursive")
#: what the hierarchy panels and alerts are about: the metric, and the role that exports it
HIERARCHY_METRICS = {
    "idnode_delegated_nodes": "toplevel",
    "idnode_toplevel_registered": "secondary",
    "idnode_referrals_followed_total": "recursive",
}
#: heartbeats as fast as tests/node/test_hierarchy.py has them
FAST = {"heartbeat_interval_s": 0.1, "heartbeat_stale_s": 1.5, "hop_timeout_s": 0.5}


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


def _wait(check: Any, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not in {timeout_s} s: {what}"
        time.sleep(0.05)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningNode]]:
    """A top-level node, a secondary registered with it and a recursive node (by role), after a
    few requests: one created and resolved at the secondary, and resolved through the recursive
    node, so that every family has samples and the hierarchy's gauges have moved."""
    tmp = tmp_path_factory.mktemp("deploy")
    with contextlib.ExitStack() as stack:
        top = stack.enter_context(
            running_node(make_config(tmp / "top", role="toplevel", home=[], **FAST))
        )
        above = f"127.0.0.1:{top.ports['tcp']}"
        secondary = stack.enter_context(
            running_node(make_config(tmp / "sec", role="secondary", toplevel=above, **FAST))
        )
        recursive = stack.enter_context(
            running_node(
                make_config(tmp / "rec", role="recursive", toplevel=above, home=[], **FAST)
            )
        )
        create(secondary, f"{PREFIX}/deploy", value(1, "URL", "https://example.com/"))
        assert http(secondary, "GET", f"/api/handles/{PREFIX}/deploy").status == 200
        assert http(secondary, "GET", f"/api/handles/{PREFIX}/absent").status == 404
        assert http(secondary, "GET", "/healthz").status == 200
        _wait(lambda: http(secondary, "GET", "/readyz").status == 200, "secondary registered")
        alive = ("idnode_delegated_nodes", (("state", "alive"),))
        _wait(
            lambda: _samples(http(top, "GET", "/metrics").body.decode()).get(alive) == 1,
            "the top-level counts the secondary alive",
        )
        through = http(recursive, "GET", f"/api/handles/{PREFIX}/deploy")
        assert through.status == 200, through.body
        yield {"toplevel": top, "secondary": secondary, "recursive": recursive}


@pytest.fixture(scope="module")
def expositions(hierarchy: dict[str, RunningNode]) -> dict[str, str]:
    """/metrics of each node of ``hierarchy``, by role."""
    out = {}
    for role, node in hierarchy.items():
        reply = http(node, "GET", "/metrics")
        assert reply.status == 200
        out[role] = reply.body.decode()
    return out


@pytest.fixture(scope="module")
def label_values(expositions: dict[str, str]) -> dict[str, dict[str, set[str]]]:
    """Sample names some node exports, each with the values of each of its labels."""
    out: dict[str, dict[str, set[str]]] = {}
    for text in expositions.values():
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = out.setdefault(sample.name, {})
                for label, v in sample.labels.items():
                    labels.setdefault(label, set()).add(v)
    return out


@pytest.fixture(scope="module")
def exported(label_values: dict[str, dict[str, set[str]]]) -> dict[str, set[str]]:
    """Sample names some node exports (``_total``, ``_bucket``, ``_sum``, ``_count`` included),
    each with its label names."""
    return {name: set(labels) for name, labels in label_values.items()}


def test_hierarchy_metrics_are_exported_by_their_roles(expositions: dict[str, str]) -> None:
    """The role each hierarchy metric belongs to exports it, with the values the scenario gave."""
    samples = {role: _samples(text) for role, text in expositions.items()}
    for name, role in HIERARCHY_METRICS.items():
        assert any(n == name for n, _ in samples[role]), (role, name)
    assert samples["toplevel"][("idnode_delegated_nodes", (("state", "alive"),))] == 1
    assert samples["toplevel"][("idnode_delegated_nodes", (("state", "stale"),))] == 0
    assert samples["secondary"][("idnode_toplevel_registered", ())] == 1
    assert samples["recursive"][("idnode_referrals_followed_total", ())] >= 1
    # and only there: the gauges belong to one role each
    assert not any(n == "idnode_delegated_nodes" for n, _ in samples["secondary"])
    assert not any(n == "idnode_toplevel_registered" for n, _ in samples["recursive"])


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


@pytest.mark.parametrize("role", ROLES)
def test_exposition_passes_promtool_lint(role: str, expositions: dict[str, str]) -> None:
    result = promtool("check", "metrics", stdin=expositions[role])
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


#: label values a node can give beyond those the ``hierarchy`` scenario happens to show: every
#: response code and every op name (the enumerations node/metrics.py labels with)
POSSIBLE_VALUES = {
    "code": {str(int(c)) for c in ResponseCode},
    "op": {op_label(op) for op in OpCode} | {op_label(-1)},
}
#: a selector's matchers: label, operator, quoted value
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def _balanced(expr: str, start: int) -> str:
    """The text inside the parentheses opening at ``expr[start]``."""
    depth = 0
    for i in range(start, len(expr)):
        depth += {"(": 1, ")": -1}.get(expr[i], 0)
        if depth == 0:
            return expr[start + 1 : i]
    raise AssertionError(f"unbalanced parentheses: {expr[start:]!r}")


def _grouped(expr: str) -> Iterator[tuple[list[str], str]]:
    """(labels, aggregated expression) of each ``by``/``without`` clause, the clause before its
    argument (``sum by (a) (x)``) or after it (``sum(x) by (a)``)."""
    for clause in re.finditer(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels = [s.strip() for s in clause.group(1).split(",") if s.strip()]
        after = expr[clause.end() :].lstrip()
        if after.startswith("("):
            yield labels, _balanced(after, 0)
            continue
        before = expr[: clause.start()].rstrip()
        assert before.endswith(")"), f"no aggregated expression around {clause.group(0)!r}"
        depth, i = 0, len(before) - 1
        while True:
            depth += {")": 1, "(": -1}.get(before[i], 0)
            if depth == 0:
                break
            i -= 1
        yield labels, before[i + 1 : -1]


def _matches(op: str, pattern: str, values: set[str]) -> bool:
    """Whether matcher ``op pattern`` can select or keep out some value the node gives."""
    if op in ("=", "!="):
        return pattern in values
    if re.fullmatch(r"[\w.-]+(?:\|[\w.-]+)*", pattern):  # a list of values: each must be one
        return set(pattern.split("|")) <= values
    return any(re.fullmatch(pattern, v) for v in values)


@pytest.mark.parametrize(
    "source", ["alerts", "dashboards"], ids=["alerts.yml", "grafana dashboards"]
)
def test_every_label_used_is_exported(
    source: str, label_values: dict[str, dict[str, set[str]]]
) -> None:
    """Each selector's matchers name labels of that metric with values it takes (codes are
    numbers, a store operation is read or commit), and each ``by``/``without`` clause names labels
    that every metric it aggregates has; labels Prometheus adds (instance, role, ...) aside."""
    exprs = list(_alert_exprs() if source == "alerts" else _dashboard_exprs())
    for where, expr in exprs:
        for metric, selector in re.findall(r"\b(idnode_[A-Za-z0-9_]+)\s*\{([^}]*)\}", expr):
            labels = label_values[metric]
            for label, op, pattern in MATCHER.findall(selector):
                if label in TARGET_LABELS:
                    continue
                assert label in labels, (where, metric, f"no label {label!r}", sorted(labels))
                if "$" in pattern:  # a Grafana variable
                    continue
                values = labels[label] | POSSIBLE_VALUES.get(label, set())
                assert _matches(op, pattern, values), (where, metric, label, op, pattern, values)
        for grouping, inner in _grouped(expr):
            metrics = set(METRIC.findall(inner))
            assert metrics, (where, grouping, inner)
            for label in set(grouping) - TARGET_LABELS:
                lacking = sorted(m for m in metrics if label not in label_values[m])
                assert not lacking, (where, f"by ({label}) over metrics without it", lacking)
        for metric, label in re.findall(
            r"label_values\(\s*(idnode_[A-Za-z0-9_]+)[^,]*,\s*(\w+)\s*\)", expr
        ):
            assert label in TARGET_LABELS or label in label_values[metric], (where, label)


def _alerts() -> dict[str, dict[str, Any]]:
    return {
        rule["alert"]: rule
        for doc in _load_yaml(PROMETHEUS / "alerts.yml")
        for group in doc["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


@pytest.mark.parametrize(
    ("metric", "wait"), [("idnode_delegated_nodes", "1m"), ("idnode_toplevel_registered", "2m")]
)
def test_hierarchy_alerts_and_their_unit_tests(metric: str, wait: str) -> None:
    """A node that stopped heartbeating (seen at the top-level) and a secondary the top-level
    lost (seen at the secondary) alert, after a while, and alerts_test.yml has each fire and
    stay quiet."""
    (name,) = [a for a, rule in _alerts().items() if metric in rule["expr"]]
    rule = _alerts()[name]
    assert rule["for"] == wait and rule["labels"]["severity"] in ("warning", "critical")
    (tests,) = _load_yaml(PROMETHEUS / "alerts_test.yml")
    cases = [c for g in tests["tests"] for c in g["alert_rule_test"] if c["alertname"] == name]
    assert any(c["exp_alerts"] for c in cases), f"{name}: no case where it fires"
    assert any(not c["exp_alerts"] for c in cases), f"{name}: no case where it stays quiet"


# ------------------------------------------------------------------------------------------------
# Prometheus and Grafana files


def test_prometheus_config_files_and_target() -> None:
    """Job ``idnode`` scrapes every node of the compose file, labelled with the node's role."""
    (config,) = _load_yaml(PROMETHEUS / "prometheus.yml")
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS / rule_file).is_file(), rule_file
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "idnode"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    nodes = _nodes()
    scraped = {}
    for group in job["static_configs"]:
        for target in group["targets"]:
            host, _, port = target.partition(":")
            assert host in nodes, target
            assert int(port) == nodes[host].http_port, target  # the container's HTTP port
            assert group["labels"]["role"] == nodes[host].role, target
            scraped[host] = target
    assert set(scraped) == set(nodes), "nodes Prometheus does not scrape"


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
        for topic in ("delegated nodes", "registration", "referrals followed"):
            assert topic in titles, topic
        # nodes are picked by role, then by instance among the nodes of those roles
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert {"role", "instance"} <= set(variables)
        assert "$role" in json.dumps(variables["instance"]["query"])
        assert "allValue" not in variables["instance"]  # All: every instance of those roles
        for metric in HIERARCHY_METRICS:
            assert any(
                metric in t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])
            )
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
    assert {"toplevel", "secondary-a", "secondary-b", "recursive"} <= set(services)
    assert {"prometheus", "grafana", "locust-master", "locust-worker"} <= set(services)
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
    assert idnode_services >= 6  # two seeds and four nodes


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: _default(str(v)) for k, v in (service.get("environment") or {}).items()}


def _nodes() -> dict[str, Config]:
    """The compose services running ``idnode serve``, each with its settings (the image's
    IDNODE_HOST and IDNODE_DATA_DIR, then its environment)."""
    (compose,) = _load_yaml(COMPOSE)
    out = {}
    for name, service in compose["services"].items():
        if service.get("image", "").startswith("idnode:") and "entrypoint" not in service:
            out[name] = config_mod.load(None, {**_image_env(), **_env(service)})
    return out


def _published(service: dict[str, Any]) -> dict[str, str]:
    """Container port/protocol -> host port of each published port ("8001:8000/tcp")."""
    out = {}
    for text in service.get("ports", []):
        host, _, inside = str(text).rpartition(":")
        inside = inside if "/" in inside else f"{inside}/tcp"
        out[inside] = host
    return out


def _volume_at(service: dict[str, Any], path: str) -> str:
    (volume,) = [str(v).partition(":")[0] for v in service["volumes"] if v.split(":")[1] == path]
    return volume


def test_compose_hierarchy() -> None:
    """One top-level, two secondaries registering with it, one recursive node walking from it:
    each with its own ports, each secondary with its own data, seeded with other industries."""
    (compose,) = _load_yaml(COMPOSE)
    services = compose["services"]
    nodes = _nodes()
    by_role = {role: sorted(n for n, c in nodes.items() if c.role == role) for role in ROLES}
    assert len(by_role["toplevel"]) == 1 and len(by_role["secondary"]) >= 2, by_role
    assert len(by_role["recursive"]) >= 1, by_role
    assert set(nodes) == {n for names in by_role.values() for n in names}, "unknown roles"
    (top,) = by_role["toplevel"]
    used: dict[str, str] = {}
    for name, config in nodes.items():
        service = services[name]
        # the HTTP port and the Handle port (TCP and UDP) are published, on host ports of their own
        published = _published(service)
        inside = {f"{config.http_port}/tcp", f"{config.port}/tcp", f"{config.port}/udp"}
        assert set(published) == inside, (name, published)
        for port, host in published.items():
            key = f"{host}/{port.partition('/')[2]}"
            assert key not in used, (name, key, used.get(key))
            used[key] = name
        assert "test" in service["healthcheck"], name
        if config.role == "toplevel":
            continue
        # the top-level's Handle port, by its service name, and started once it is healthy
        assert parse_address(config.toplevel) == (top, nodes[top].port), (name, config.toplevel)
        assert service["depends_on"][top]["condition"] == "service_healthy", name
    assert {nodes[n].port for n in by_role["recursive"]} == {3641}  # China's recursive nodes
    assert _published(services[top])["2641/tcp"] == "2641"

    # every secondary: its own volume, filled by its own seed, with industries no other one has
    volumes: set[str] = set()
    industries: set[str] = set()
    for name in by_role["secondary"]:
        service = services[name]
        volume = _volume_at(service, nodes[name].data_dir)
        assert volume not in volumes, (name, volume)
        volumes.add(volume)
        (seed,) = [
            dep
            for dep, how in service["depends_on"].items()
            if how["condition"] == "service_completed_successfully"
        ]
        assert services[seed]["entrypoint"] == ["idnode", "seed"], seed
        command = [_default(str(a)) for a in services[seed]["command"]]
        args = _idnode_parser("seed").parse_args(command)
        assert _volume_at(services[seed], args.data_dir) == volume, (name, seed)
        codes = set(select_industries(args.industries))
        assert args.industries and not codes & industries, (seed, args.industries)
        industries |= codes


def test_compose_secondaries_register_an_address_others_reach() -> None:
    """A secondary's site (HS_SITE, what the top-level refers to) carries its ``advertise_host``:
    an IP address, its own fixed address in the compose network, not 0.0.0.0."""
    (compose,) = _load_yaml(COMPOSE)
    (subnet,) = [c["subnet"] for c in compose["networks"]["default"]["ipam"]["config"]]
    network = ipaddress.ip_network(subnet)
    addresses = set()
    for name, config in _nodes().items():
        if config.role != "secondary":
            continue
        address = ipaddress.ip_address(config.advertise_host)
        assert address in network and not address.is_unspecified, (name, config.advertise_host)
        advertised = config.advertise_host
        assert compose["services"][name]["networks"]["default"]["ipv4_address"] == advertised
        addresses.add(address)
    assert len(addresses) >= 2


def test_compose_locust_loads_a_secondary_with_its_manifest() -> None:
    (compose,) = _load_yaml(COMPOSE)
    services = compose["services"]
    nodes = _nodes()
    args = [_default(str(a)) for a in services["locust-master"]["command"]]
    flags = dict(a.removeprefix("--").partition("=")[::2] for a in args if "=" in a)
    host, _, port = flags["host"].removeprefix("http://").partition(":")
    assert nodes[host].role == "secondary" and int(port) == nodes[host].http_port, flags
    assert int(flags["tcp-port"]) == int(flags["udp-port"]) == nodes[host].port
    volume = _volume_at(services[host], nodes[host].data_dir)
    manifest = Path(flags["manifest"])
    for name in ("locust-master", "locust-worker"):
        assert _volume_at(services[name], str(manifest.parent)) == volume, name
    assert services["locust-master"]["depends_on"][host]["condition"] == "service_healthy"


def _default_http_port(code: str) -> int:
    """The HTTP port a healthcheck's Python asks when IDNODE_HTTP_PORT is unset."""
    (default,) = re.findall(r"""IDNODE_HTTP_PORT['"]\s*,\s*['"](\d+)['"]""", code)
    return int(default)


def test_compose_healthcheck_port_is_the_nodes() -> None:
    """Without IDNODE_HTTP_PORT the healthcheck asks the port each node really serves HTTP on."""
    (compose,) = _load_yaml(COMPOSE)
    for name, config in _nodes().items():
        service = compose["services"][name]
        if "IDNODE_HTTP_PORT" not in _env(service):
            assert _default_http_port(_healthcheck(service)[2]) == config.http_port, name


def _healthcheck(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    return [sys.executable, "-c", test[3]]


def test_compose_healthcheck_is_readiness(
    hierarchy: dict[str, RunningNode], tmp_path: Path
) -> None:
    """Every node's healthcheck asks /readyz where the node listens (its IDNODE_HOST, 0.0.0.0 read
    as 127.0.0.1): it passes on a registered secondary, fails on one the top-level never heard."""
    (compose,) = _load_yaml(COMPOSE)
    commands = {name: _healthcheck(compose["services"][name]) for name in _nodes()}
    assert len({tuple(c) for c in commands.values()}) == 1  # one command, read from the env
    command = next(iter(commands.values()))
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}

    def check(node: RunningNode, host: str) -> int:
        env = {**base, "IDNODE_HOST": host, "IDNODE_HTTP_PORT": str(node.ports["http"])}
        done = subprocess.run(command, env=env, capture_output=True, timeout=30, check=False)
        return done.returncode

    assert check(hierarchy["secondary"], "127.0.0.1") == 0
    assert check(hierarchy["secondary"], "0.0.0.0") == 0
    assert check(hierarchy["recursive"], "127.0.0.1") == 0
    lost = make_config(tmp_path / "lost", toplevel=f"127.0.0.1:{_closed_port()}", **FAST)
    with running_node(lost) as alone:
        assert http(alone, "GET", "/readyz").status == 503
        assert check(alone, "127.0.0.1") != 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _image_env() -> dict[str, str]:
    """The IDNODE_* variables the image's ENV instructions set."""
    out = {}
    for key, rest in _instructions():
        if key == "ENV":
            for item in shlex.split(rest):
                name, _, setting = item.partition("=")
                if name.startswith("IDNODE_"):
                    out[name] = setting
    return out


def _image_healthcheck() -> str:
    """The Python code of the image's HEALTHCHECK (``CMD python -c "..." || exit 1``)."""
    (healthcheck,) = [rest for key, rest in _instructions() if key == "HEALTHCHECK"]
    command = shlex.split(healthcheck.partition(" CMD ")[2])
    assert command[:2] == ["python", "-c"], command
    return command[2]


def test_dockerfile_healthcheck_asks_the_nodes_healthz(
    hierarchy: dict[str, RunningNode],
) -> None:
    """The image's healthcheck passes on a live node's HTTP port, fails where nothing listens,
    and by default asks the HTTP port the image's node serves (EXPOSEd)."""
    code = _image_healthcheck()
    assert "/healthz" in code
    base = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}

    def check(port: int) -> int:
        env = {**base, **_image_env(), "IDNODE_HTTP_PORT": str(port)}
        command = [sys.executable, "-c", code]
        return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode

    assert check(hierarchy["secondary"].ports["http"]) == 0
    assert check(_closed_port()) != 0
    image = config_mod.load(None, _image_env())
    assert _default_http_port(code) == image.http_port
    exposed = " ".join(rest for key, rest in _instructions() if key == "EXPOSE").split()
    assert f"{image.http_port}/tcp" in exposed


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


def test_k8s_manifests_parse_and_fit_together(tmp_path: Path) -> None:
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
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    config_map = docs["ConfigMap"]
    (config_volume,) = [v for v in volumes.values() if "configMap" in v]
    assert config_volume["configMap"]["name"] == config_map["metadata"]["name"]
    args = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    assert config_path.parent == Path(mounts[config_volume["name"]]["mountPath"])
    for env in container.get("env", []):
        assert env["name"].removeprefix("IDNODE_").lower() in {f.name for f in Config.fields()}

    # what the node in the pod runs with: the TOML, then the image's ENV and the container's env
    # (which win over the TOML), then the flags, through node.config's own loading
    environ = _pod_env(docs, container)
    settings = tomllib.loads(config_map["data"][config_path.name])
    hidden = sorted(k for k in settings if f"IDNODE_{k.upper()}" in environ)
    assert not hidden, f"ConfigMap settings an IDNODE_* variable overrides: {hidden}"
    (tmp_path / config_path.name).write_text(config_map["data"][config_path.name])
    parsed = _idnode_parser("serve").parse_args(args)
    parsed.config = str(tmp_path / config_path.name)
    config = config_mod.load(parsed, environ)

    assert config.role == "secondary"
    # listening on the pod's IP (probes and the Service come there), advertising it
    assert config.host == "0.0.0.0"
    assert config.advertise_host == POD_IP
    assert parse_address(config.toplevel) == ("idnode-toplevel", 2641)
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config.http_port == by_name["http"]
    assert config.port == by_name["handle-tcp"] == by_name["handle-udp"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == (config.metrics_port or config.http_port)
    assert annotations["prometheus.io/path"] == "/metrics"
    # the store on the writable data volume (the root filesystem is read-only)
    (data,) = [m for m in mounts.values() if m["mountPath"] == config.data_dir]
    assert not data.get("readOnly") and "configMap" not in volumes[data["name"]], data
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert (
        config.shutdown_grace_s
        < deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    )
    assert config.workers == 1  # cpu: 1; 0 would start a worker per CPU of the k8s node


#: the address the pod's IDNODE_ADVERTISE_HOST (status.podIP) takes in test_k8s_...
POD_IP = "10.42.0.7"


def _pod_env(docs: dict[str, dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The IDNODE_* environment of the pod's node: the image's ENV, then the container's env,
    with ConfigMap keys read, the pod's IP as ``POD_IP`` and a Secret as a placeholder."""
    config_map = docs["ConfigMap"]
    environ = _image_env()
    for env in container.get("env", []):
        source = env.get("valueFrom", {})
        if "value" in env:
            environ[env["name"]] = str(env["value"])
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            assert ref["name"] == config_map["metadata"]["name"], ref
            environ[env["name"]] = config_map["data"][ref["key"]]
        elif "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "status.podIP", env
            environ[env["name"]] = POD_IP
        else:
            assert "secretKeyRef" in source, env
            environ[env["name"]] = "from-a-secret"
    return environ
