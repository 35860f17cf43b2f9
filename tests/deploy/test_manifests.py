"""deploy/k8s (kustomize), its one-zone overlay and the Helm chart deploy/helm/continuity: rendered
and checked against the Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields fail),
the chart's values against values.schema.json, and the configs they carry loaded by the daemons'
own loaders as a pod would (placeholders refused, real values accepted)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from frontend.config import FrontendConfig
from kernel.config import ConfigError
from router.config import RouterConfig
from tests.support.helm import CHART, merge, render_chart

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.30"
REAL = {
    "clusterSecret": "a-real-cluster-secret-0123456789abcdef",
    "adminToken": "a-real-admin-token-0123456789abcdef",
    "apiKeys": {"app.main": {"secret": "a-real-api-key-secret-0123456789abcdef",
                             "capability": '{"*": ["*"]}'}},
}
POD_ENV = {"NODE_ID": "fe-0", "ADVERTISE_HOST": "10.1.2.3", "GOSSIP_BIND": "10.1.2.3:7946"}


def _validate(docs: list[dict[str, Any]]) -> None:
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _kustomize(path: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (for its built-in kustomize) is not installed")
    text = subprocess.run([kubectl, "kustomize", str(REPO / path)], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def _one(docs: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (
        component is None or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component)]
    assert len(found) == 1, (kind, component, len(found))
    return found[0]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]["containers"][0]


def _check_workloads(docs: list[dict[str, Any]]) -> None:
    """What issue 15 asks of the manifests: readiness on /health, liveness on /livez, the router's
    preStop delay and pod-IP advertise address, the admin port in no Service."""
    for component in ("frontend", "router"):
        kind = "StatefulSet" if component == "frontend" else "Deployment"
        c = _container(_one(docs, kind, component))
        assert c["readinessProbe"]["httpGet"]["path"] == "/health"
        assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
        env = {e["name"]: e.get("value") for e in c["env"]}
        prefix = "CONTINUITY_" if component == "frontend" else "CONTINUITY_ROUTER_"
        assert env[f"{prefix}ADVERTISE_HOST"] == "$(POD_IP)"
        assert env[f"{prefix}GOSSIP_BIND"] == "$(POD_IP):7946"
        assert f"{prefix}ADMIN_TOKEN" in env
    router = _container(_one(docs, "Deployment", "router"))
    assert router["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"


def _check_witness(docs: list[dict[str, Any]]) -> None:
    """Issue 11: one router alone in its own zone, with a stable node id, so that losing either
    frontend zone leaves the other a majority of zones."""
    witness = _one(docs, "StatefulSet", "witness")
    assert witness["spec"]["replicas"] == 1
    c = _container(witness)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["CONTINUITY_ROUTER_ZONE"] == "witness" and c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert "continuity-router" in c["command"]
    for service in (d for d in docs if d["kind"] == "Service"):
        ports = {p.get("targetPort", p["port"]) for p in service["spec"]["ports"]}
        assert "admin" not in ports and 9090 not in ports, service["metadata"]["name"]


def _load_as_pod(cls: type, text: str, env: dict[str, str]) -> Any:
    path = Path(__file__).parent / "_pod.toml"
    try:
        path.write_text(text)
        return cls.load(path, env=env)  # type: ignore[attr-defined]
    finally:
        path.unlink(missing_ok=True)


def test_kustomize_base_and_one_zone_overlay_are_valid() -> None:
    base = _kustomize("deploy/k8s")
    _validate(base)
    _check_workloads(base)
    _check_witness(base)
    overlay = _kustomize("deploy/k8s-overlays/one-zone")
    _validate(overlay)
    init = _one(overlay, "StatefulSet", "frontend")["spec"]["template"]["spec"]["initContainers"][0]
    assert "CONTINUITY_ZONE=z" in " ".join(init["command"])
    # The base's placeholders are refused by the daemons, as the README says.
    frontend_toml = _one(base, "ConfigMap")["data"]["frontend.toml"]
    with pytest.raises(ConfigError, match="placeholder"):
        env = {f"CONTINUITY_{k}": v for k, v in POD_ENV.items()}
        env |= {"CONTINUITY_CLUSTER_SECRET": REAL["clusterSecret"], "CONTINUITY_ADMIN_TOKEN": "x" * 20}
        _load_as_pod(FrontendConfig, frontend_toml, env)


@pytest.mark.parametrize("overrides", [{}, {"zones": {"virtual": True}}, {"router": {"tlsSecret": "rt-tls"}},
                                       {"existingSecret": "mine"}])
def test_helm_chart_renders_valid_manifests(overrides: dict[str, Any]) -> None:
    how, docs = render_chart(overrides)
    print(f"rendered with {how}: {len(docs)} manifests")
    _validate(docs)
    _check_workloads(docs)
    fe = _one(docs, "StatefulSet")["spec"]["template"]["spec"]
    assert ("continuity-node-zone" in fe["initContainers"][0]["command"]) is not overrides.get(
        "zones", {}).get("virtual", False)
    assert any(d["kind"] == "Secret" for d in docs) is not bool(overrides.get("existingSecret"))


def test_helm_values_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values, schema)
    for bad in ({"gossipProfile": "fast"}, {"frontend": {"replicas": 1}}, {"bogus": 1},
                {"apiKeys": {"nodot": {"secret": "s"}}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(merge(values, bad), schema)


def test_helm_configs_load_in_the_daemons() -> None:
    _, docs = render_chart(REAL)
    secret = _one(docs, "Secret")["stringData"]
    fe_env = {f"CONTINUITY_{k}": v for k, v in POD_ENV.items()}
    fe_env |= {"CONTINUITY_CLUSTER_SECRET": secret["cluster-secret"],
               "CONTINUITY_ADMIN_TOKEN": secret["admin-token"]}
    fe = _load_as_pod(FrontendConfig, secret["frontend.toml"], fe_env)
    assert fe.admin_port == 9090 and set(fe.keys) == {"app.main"} and fe.clustered
    rt_env = {f"CONTINUITY_ROUTER_{k}": v for k, v in POD_ENV.items()} | {
        "CONTINUITY_ROUTER_CLUSTER_SECRET": secret["cluster-secret"],
        "CONTINUITY_ROUTER_ADMIN_TOKEN": secret["admin-token"]}
    router_toml = _one(docs, "ConfigMap")["data"]["router.toml"]
    rt = _load_as_pod(RouterConfig, router_toml, rt_env)
    assert rt.admin_port == 9090 and rt.advertise_host == "10.1.2.3"
    tomllib.loads(router_toml)
    # The chart's own placeholders are refused.
    _, default_docs = render_chart()
    with pytest.raises(ConfigError, match="placeholder"):
        _load_as_pod(FrontendConfig, _one(default_docs, "Secret")["stringData"]["frontend.toml"], fe_env)


def test_the_fallback_renderer_refuses_what_it_does_not_know() -> None:
    from tests.support.helm import TemplateError, render_text

    template = 'a: {{ .Values.x | quote }}{{- if not .Values.y }} no{{- end }}'
    assert render_text(template, {"x": 1, "y": 0}) == 'a: "1" no'
    bad_templates = ("{{ .Values.missing }}", "{{ .Values.x | upper }}", "{{ if .Values.x }}open",
                     '{{ include "t" . }}')
    for bad in bad_templates:
        with pytest.raises((TemplateError, KeyError)):
            render_text(bad, {"x": 1})


def test_make_image_says_why_it_cannot_build() -> None:
    """No container engine runs here: `make image` must say so in one clear line, not a traceback."""
    for engine, message in (("", "neither docker nor podman is installed"), ("/bin/false", "cannot reach")):
        done = subprocess.run(["make", "-s", "image", f"ENGINE={engine}"], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode != 0 and message in done.stderr, done.stderr


def test_the_image_vendors_ably_js_where_the_router_serves_it() -> None:
    containerfile = (REPO / "deploy" / "container" / "Containerfile").read_text()
    assert "npm ci" in containerfile and "FROM node:" in containerfile
    assert "COPY --from=ably /build/node_modules/ably/build/ably.min.js node_modules/ably/build/ably.min.js" \
        in containerfile
    # router/static.py looks under the working directory, which the image sets before that copy.
    assert containerfile.index("WORKDIR /app") < containerfile.index("COPY --from=ably")
