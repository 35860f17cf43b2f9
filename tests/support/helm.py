"""Render deploy/helm/continuity: ``helm template`` when helm is installed, else the small renderer
below, which implements exactly the Go-template subset the chart uses (and fails on anything else).

The subset: ``{{ .Values.a.b }}``, ``.Release.Name``/``.Release.Namespace``, ``.Chart.*``, a range
variable's fields (``$key.secret``); pipelines through ``quote``, ``toYaml``, ``nindent N``,
``default "x"``; ``if`` / ``if not`` / ``else`` / ``end``; ``range $k, $v := <map>`` (sorted keys, as
Go ranges over maps); and the ``{{-`` / ``-}}`` whitespace trims. A missing value is an error (helm
would print ``<no value>``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "continuity"
_ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)


class TemplateError(Exception):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    """``[("text", ...), ("action", ...)]`` with the trim markers applied to the neighbouring text."""
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(text):
        chunk = text[pos:m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        out.append(("text", chunk))
        out.append(("action", m.group(2)))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = text[pos:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


def _parse(tokens: list[tuple[str, str]], i: int, stop: tuple[str, ...]) -> tuple[list[Any], int, str]:
    """Nodes up to an action in ``stop``: ``(nodes, index after it, the stopping action)``."""
    nodes: list[Any] = []
    while i < len(tokens):
        kind, value = tokens[i]
        i += 1
        if kind == "text":
            nodes.append(("text", value))
            continue
        word = value.split()[0] if value else ""
        if word in stop:
            return nodes, i, word
        if word == "if":
            body, i, ended = _parse(tokens, i, ("else", "end"))
            other: list[Any] = []
            if ended == "else":
                other, i, _ = _parse(tokens, i, ("end",))
            nodes.append(("if", value[2:].strip(), body, other))
        elif word == "range":
            m = re.fullmatch(r"range \$(\w+), \$(\w+) := (.+)", value)
            if not m:
                raise TemplateError(f"unsupported range: {value}")
            body, i, _ = _parse(tokens, i, ("end",))
            nodes.append(("range", m.group(1), m.group(2), m.group(3), body))
        elif word.startswith("/*"):
            continue
        else:
            nodes.append(("expr", value))
    if stop:
        raise TemplateError(f"missing {{{{ end }}}} (wanted one of {stop})")
    return nodes, i, ""


def _lookup(path: str, scope: dict[str, Any]) -> Any:
    if path.startswith("$"):
        name, _, rest = path[1:].partition(".")
        value = scope["$"][name]
        parts = rest.split(".") if rest else []
    elif path.startswith("."):
        value = scope
        parts = path[1:].split(".")
    else:
        raise TemplateError(f"unsupported term: {path}")
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            raise TemplateError(f"no value for {path}")
        value = value[part]
    return value


def _term(text: str, scope: dict[str, Any]) -> Any:
    text = text.strip()
    if text.startswith('"'):
        return json.loads(text)
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text.startswith("not "):
        return not _truthy(_term(text[4:], scope))
    return _lookup(text, scope)


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


def _pipeline(expr: str, scope: dict[str, Any]) -> Any:
    stages = [s.strip() for s in re.split(r"\|(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", expr)]
    head, _, rest = stages[0].partition(" ")
    if head in ("toYaml", "quote") and rest:  # ``toYaml X`` is ``X | toYaml``
        stages[:1] = [rest, head]
    try:
        value = _term(stages[0], scope)
    except TemplateError:
        if len(stages) < 2 or not stages[1].startswith("default "):
            raise
        value = None  # a missing value that ``default`` replaces
    for stage in stages[1:]:
        name, _, arg = stage.partition(" ")
        if name == "quote":
            value = json.dumps("" if value is None else str(value))
        elif name == "default":
            value = value if _truthy(value) else _term(arg, scope)
        elif name == "toYaml":
            value = yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")
        elif name == "nindent":
            pad = " " * int(arg)
            value = "\n" + "\n".join(pad + line if line else line for line in str(value).split("\n"))
        else:
            raise TemplateError(f"unsupported function: {name}")
    if value is None:
        raise TemplateError(f"no value for {expr}")
    return value


def _render(nodes: list[Any], scope: dict[str, Any]) -> str:
    out: list[str] = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "expr":
            value = _pipeline(node[1], scope)
            out.append(str(value).lower() if isinstance(value, bool) else str(value))
        elif node[0] == "if":
            out.append(_render(node[2] if _truthy(_term(node[1], scope)) else node[3], scope))
        else:
            _, key_var, value_var, source, body = node
            mapping = _term(source, scope)
            for key in sorted(mapping):
                inner = {**scope, "$": {**scope["$"], key_var: key, value_var: mapping[key]}}
                out.append(_render(body, inner))
    return "".join(out)


def render_text(template: str, values: dict[str, Any], *, release: str = "continuity",
                namespace: str = "continuity") -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    scope = {"Values": values, "Release": {"Name": release, "Namespace": namespace},
             "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
             "$": {}}
    nodes, _, _ = _parse(_tokens(template), 0, ())
    return _render(nodes, scope)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render_chart(overrides: dict[str, Any] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Every manifest of the chart with ``overrides`` merged into values.yaml: ``(how, documents)``."""
    values = merge(yaml.safe_load((CHART / "values.yaml").read_text()), overrides or {})
    helm = shutil.which("helm")
    if helm is not None:
        done = subprocess.run([helm, "template", "continuity", str(CHART), "--namespace", "continuity",
                               "--values", "-"], input=yaml.safe_dump(values), capture_output=True,
                              text=True, check=True)
        text, how = done.stdout, "helm template"
    else:
        text = "\n---\n".join(render_text(p.read_text(), values)
                              for p in sorted((CHART / "templates").glob("*.yaml")))
        how = "tests/support/helm.py"
    return how, [d for d in yaml.safe_load_all(text) if d]
