"""kernel.config: one loader for both daemons; type errors name the key; unsafe configs are refused
outside dev mode with what to do; the example files are generated from the dataclasses."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from frontend.__main__ import parse_args as frontend_args
from frontend.config import FrontendConfig
from frontend.config import example as frontend_example
from kernel.config import DEFAULT_GOSSIP_PROFILE, DEV_CLUSTER_SECRET, ConfigError
from router.__main__ import parse_args as router_args
from router.config import RouterConfig
from router.config import example as router_example

REPO = Path(__file__).resolve().parents[3]
GOOD = "a-long-enough-random-cluster-secret"
PUBLIC = (f'cluster_secret = "{GOOD}"\nhost = "0.0.0.0"\nadvertise_host = "10.0.0.5"\n'
          'gossip_bind = "10.0.0.5:7946"\n')
PLACEHOLDER = 'cluster_secret = "REPLACE-ME-with-32-random-bytes"\n'
WILD_GOSSIP = f'cluster_secret = "{GOOD}"\ngossip_bind = "0.0.0.0:7946"\nadvertise_host = "10.0.0.5"\n'
KEY = '[keys."app.k"]\nsecret = "a-long-enough-api-key-secret"\n'


def _load(cls: type, tmp_path: Path, text: str, **overrides: object) -> object:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return cls.load(path, env={}, **overrides)  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", [FrontendConfig, RouterConfig])
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('port = "8080"\n', "port: expected an integer, got the string '8080'"),
        ("dev = 1\n", "dev: expected a boolean"),
        ("header_timeout_s = true\n", "header_timeout_s: expected a number, got the boolean True"),
        ('seeds = "h:1"\n', "seeds: expected a list of strings"),
        ("seeds = [1]\n", "seeds: expected a list of strings"),
        ("node_id = 7\n", "node_id: expected a string, got the integer 7"),
        ("bogus = 1\n", "unknown config keys: bogus"),
    ],
)
def test_a_wrong_type_names_the_key_and_the_type(cls: type, tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        _load(cls, tmp_path, text + f'cluster_secret = "{GOOD}"\n')


def test_env_values_are_typed_and_errors_name_the_variable() -> None:
    cfg = FrontendConfig.load(None, env={"CONTINUITY_SEEDS": "10.0.0.1:7946, 10.0.0.2:7946",
                                         "CONTINUITY_DEV": "on", "CONTINUITY_MAX_IDLE_INTERVAL_MS": "900"})
    assert cfg.seeds == ("10.0.0.1:7946", "10.0.0.2:7946") and cfg.dev and cfg.max_idle_interval_ms == 900
    with pytest.raises(ConfigError, match="CONTINUITY_DEV='maybe': dev expects a boolean"):
        FrontendConfig.load(None, env={"CONTINUITY_DEV": "maybe"})


REFUSALS = [
    # (daemon, toml, what the message must say)
    (FrontendConfig, "", "cluster_secret is the built-in development secret"),
    (RouterConfig, "", "cluster_secret is the built-in development secret"),
    (FrontendConfig, PLACEHOLDER, "cluster_secret is a placeholder"),
    (RouterConfig, PLACEHOLDER, "cluster_secret is a placeholder"),
    (FrontendConfig, f'cluster_secret = "{GOOD}"\n[keys."app.k"]\nsecret = "REPLACE-ME-long-secret"\n',
     'keys."app.k".secret is a placeholder'),
    (FrontendConfig, f'cluster_secret = "{GOOD}"\n[keys."app.k"]\nsecret = "short-secret"\n',
     'keys."app.k".secret is shorter than 16 bytes'),
    (RouterConfig, f'cluster_secret = "{GOOD}"\nold_cluster_secrets = ["change-me-later-please"]\n',
     "old_cluster_secrets is a placeholder"),
    (FrontendConfig, WILD_GOSSIP, "gossip_bind='0.0.0.0' is a wildcard address"),
    (RouterConfig, WILD_GOSSIP, "gossip_bind='0.0.0.0' is a wildcard address"),
    (FrontendConfig, f'cluster_secret = "{GOOD}"\ngossip_bind = "10.0.0.5:7946"\nhost = "0.0.0.0"\n',
     "host (advertised, as advertise_host is unset)='0.0.0.0'"),
    (RouterConfig, f'cluster_secret = "{GOOD}"\ngossip_bind = "10.0.0.5:7946"\nadvertise_host = "::"\n',
     "advertise_host='::' is a wildcard"),
    (RouterConfig, PUBLIC,
     "the admin surfaces (/dashboard, /cluster, /metrics, /admin) would be served without auth"),
    (FrontendConfig, PUBLIC, "the admin surfaces"),
    (RouterConfig, PUBLIC + 'admin_token = "short"\n', "admin_token is shorter than 16 bytes"),
]


@pytest.mark.parametrize("cls", [FrontendConfig, RouterConfig])
@pytest.mark.parametrize("fix", ["admin_port = 9090\n", 'admin_token = "a-long-enough-admin-token"\n'])
def test_an_admin_listener_or_a_token_makes_a_public_port_safe(cls: type, tmp_path: Path, fix: str) -> None:
    cfg = _load(cls, tmp_path, PUBLIC + fix)
    assert cfg.admin_gate.admin_listener in (None, "127.0.0.1:9090")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("cls", "text", "message"), REFUSALS)
def test_unsafe_configs_are_refused_outside_dev_mode(
    cls: type, tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(cls, tmp_path, text)
    assert message in str(caught.value)
    assert "outside dev mode" in str(caught.value)
    assert ": set " in str(caught.value) or "bind this" in str(caught.value)  # says what to do
    _load(cls, tmp_path, text, dev=True)  # dev mode allows it


def test_a_safe_config_loads(tmp_path: Path) -> None:
    cfg = _load(FrontendConfig, tmp_path, f'cluster_secret = "{GOOD}"\ngossip_bind = "10.0.0.5:7946"\n' + KEY)
    assert isinstance(cfg, FrontendConfig) and cfg.cluster_secret == GOOD
    assert cfg.cluster_secret != DEV_CLUSTER_SECRET


def test_one_default_gossip_profile() -> None:
    assert FrontendConfig().gossip_profile == RouterConfig().gossip_profile == DEFAULT_GOSSIP_PROFILE


@pytest.mark.parametrize(
    ("name", "render"),
    [("frontend.example.toml", frontend_example), ("router.example.toml", router_example)],
)
def test_example_files_list_every_key_and_do_not_drift(name: str, render: object) -> None:
    text = (REPO / "deploy" / name).read_text()
    assert callable(render)
    assert text == render(), f"deploy/{name} drifted from the config dataclass: run `make examples`"
    cls = FrontendConfig if name.startswith("frontend") else RouterConfig
    fields = {f for f in cls.__dataclass_fields__ if f != "keys"}
    listed = {line.split()[1].rstrip(":") if line.startswith("# ") else line.split(" =")[0]
              for line in text.splitlines() if (line and not line.startswith(("#", "[", " "))) or
              (line.startswith("# ") and line.endswith("unset by default"))}
    assert fields <= listed, f"missing from deploy/{name}: {sorted(fields - listed)}"
    tomllib.loads(text)  # valid TOML
    with pytest.raises(ConfigError, match="placeholder"):  # its example secret is refused as is
        cls.load(REPO / "deploy" / name, env={})  # type: ignore[attr-defined]


def test_both_daemons_take_the_same_cluster_options() -> None:
    argv = ["--seed", "10.0.0.1:7946", "--seed", "10.0.0.2:7946", "--gossip-bind", "10.0.0.9:7946",
            "--gossip-profile", "wan", "--zone", "b", "--node-id", "n1", "--port", "0", "--dev"]
    for parse in (frontend_args, router_args):
        args = parse(argv)
        assert args.seeds == ["10.0.0.1:7946", "10.0.0.2:7946"]
        assert (args.gossip_bind, args.gossip_profile, args.zone, args.node_id) == ("10.0.0.9:7946", "wan",
                                                                                   "b", "n1")


def test_tls_files_go_together_and_must_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_cert_file and tls_key_file go together"):
        RouterConfig(tls_cert_file="cert.pem")
    with pytest.raises(ConfigError, match="clustered frontend: routers reach frontends over plain TCP"):
        FrontendConfig(gossip_bind="127.0.0.1:0", tls_cert_file="c.pem", tls_key_file="k.pem")
    missing = RouterConfig(tls_cert_file=str(tmp_path / "nope.pem"), tls_key_file=str(tmp_path / "k.pem"))
    with pytest.raises(ConfigError, match="cannot be loaded"):
        missing.tls_context()
    assert RouterConfig().tls_context() is None
