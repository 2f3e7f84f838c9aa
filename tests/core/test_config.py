"""core.config: zero config, the example file, per-service sections, and every error with its path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from checks import health as health_check
from core import config as config_module
from core.config import Config, Settings, load
from core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "deploy" / "postdeploy.example.yaml"
CHECK_NAMES = "deployment, health"
SETTINGS_KEYS = ("checks, deadline_s, follow_up, follow_up_notify, on_fail, on_pass, region, rubric, signed_url_ttl, "
                 "step_wait_s, steps, verdict_topic")
HEALTH_KEYS = ("auth, category, critical, enabled, expect_json, expect_status, interval_s, latency_budget_ms, "
               "max_body_bytes, path, request_timeout_s, timeout_s, tries")


def health(settings: Settings) -> health_check.Config:
    """The typed health section of some settings."""
    section = settings.check("health")
    assert isinstance(section, health_check.Config)
    return section


def parse(text: str) -> Config:
    return Config.parse(textwrap.dedent(text), "test.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.source == "test.yaml"
    return caught.value.problems


def test_zero_config_has_every_check_with_its_defaults() -> None:
    settings = Config.default().for_service("anything")

    assert settings.deadline_s == 480
    assert settings.region == ""
    assert settings.rubric.weights == {"Deployment": 20, "Migration": 25, "Stability": 20, "Business": 20, "Testing": 15}
    assert (settings.rubric.thresholds.pass_, settings.rubric.thresholds.warn) == (90, 75)
    assert settings.check("deployment").enabled and settings.check("deployment").critical
    section = health(settings)
    assert (section.enabled, section.critical, section.path, section.expect_status, section.tries) == (True, True, "/", [200], 3)


def test_missing_default_file_means_zero_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("POSTDEPLOY_CONFIG", raising=False)
    # the real default sits beside main.py, where a developer may keep one; isolate from it
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "postdeploy.yaml")

    loaded = load()

    assert loaded.source == "(defaults)"
    assert health(loaded.for_service("orders")).path == "/"


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError) as caught:
        load(str(missing))

    assert caught.value.problems == [f"(file): expected a config file at {missing}, found nothing"]


def test_env_var_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "pd.yaml"
    path.write_text("version: 1\ndefaults: {region: europe-west1}\n", encoding="utf-8")
    monkeypatch.setenv("POSTDEPLOY_CONFIG", str(path))

    assert load().for_service("x").region == "europe-west1"


def test_example_file_parses() -> None:
    example = load(str(EXAMPLE))

    orders = example.for_service("orders")
    assert health(orders).path == "/healthz"
    assert health(orders).expect_json == ['status == "ok"', "db exists"]
    assert orders.region == "us-central1"
    web = example.for_service("web-frontend")
    assert (web.rubric.thresholds.pass_, web.rubric.thresholds.warn) == (85, 70)
    assert health(web).path == "/health"
    other = example.for_service("billing")
    assert health(other).expect_json == ['status == "healthy"']
    assert (other.rubric.thresholds.pass_, other.rubric.thresholds.warn) == (90, 75)


SECTIONS = """\
version: 1
defaults:
  checks:
    health: {path: /health}
services:
  "ord*": {checks: {health: {path: /glob-ord}}}
  orders: {checks: {health: {path: /exact}}}
  "*-api": {checks: {health: {path: /glob-api}}}
  "o*": {checks: {health: {path: /glob-o}}}
"""


@pytest.mark.parametrize(
    ("service", "path"),
    [
        pytest.param("orders", "/exact", id="exact-name-beats-earlier-glob"),
        pytest.param("ordering", "/glob-ord", id="first-matching-glob-in-file-order"),
        pytest.param("orders-api", "/glob-ord", id="earlier-glob-wins-over-later"),
        pytest.param("billing-api", "/glob-api", id="suffix-glob"),
        pytest.param("other", "/glob-o", id="last-glob"),
        pytest.param("billing", "/health", id="no-match-uses-defaults"),
        pytest.param("Orders", "/health", id="case-sensitive"),
    ],
)
def test_service_sections_by_name_then_glob(service: str, path: str) -> None:
    assert health(parse(SECTIONS).for_service(service)).path == path


def test_service_sections_deep_merge_over_defaults() -> None:
    config = parse("""\
        version: 1
        defaults:
          region: europe-west1
          rubric: {thresholds: {pass: 95, warn: 80}}
          checks:
            health: {path: /health, tries: 5, expect_json: ['status == "healthy"']}
        services:
          orders:
            rubric: {thresholds: {pass: 85}}
            checks:
              health: {path: /healthz}
              deployment: {critical: false}
        """)

    orders = config.for_service("orders")

    assert orders.region == "europe-west1"
    assert (orders.rubric.thresholds.pass_, orders.rubric.thresholds.warn) == (85, 80)
    section = health(orders)
    assert (section.path, section.tries, section.expect_json) == ("/healthz", 5, ['status == "healthy"'])
    assert orders.check("deployment").critical is False
    assert health(config.for_service("other")).path == "/health"
    assert config.for_service("other").check("deployment").critical is True


@pytest.mark.parametrize(
    ("text", "path", "fragments"),
    [
        pytest.param("version: 1\nbogus: 1\n", "bogus", ["unknown key", "valid keys: defaults, notify, services, version"],
                     id="unknown-top-level-key"),
        pytest.param("version: 1\ndefaults: {regoin: x}\n", "defaults.regoin", ["unknown key", f"valid keys: {SETTINGS_KEYS}"],
                     id="unknown-key-in-defaults"),
        pytest.param("version: 1\ndefaults: {checks: {health: {pth: /h}}}\n", "defaults.checks.health.pth",
                     ["unknown key", f"valid keys: {HEALTH_KEYS}"], id="unknown-key-in-check-section"),
        pytest.param("version: 1\ndefaults: {checks: {helth: {}}}\n", "defaults.checks.helth",
                     ["unknown key", f"valid keys: {CHECK_NAMES}"], id="unknown-check-name"),
        pytest.param("version: 1\nservices: {orders: {checks: {helth: {}}}}\n", "services.orders.checks.helth",
                     ["unknown key", f"valid keys: {CHECK_NAMES}"], id="unknown-check-name-in-service"),
        pytest.param("version: 1\ndefaults: {rubric: {thresholds: {fail: 10}}}\n", "defaults.rubric.thresholds.fail",
                     ["unknown key", "valid keys: pass, warn"], id="unknown-threshold-key"),
        pytest.param("version: 1\ndefaults: {checks: {health: {expect_json: ['status = \"ok\"']}}}\n",
                     "defaults.checks.health.expect_json",
                     ["expected '<path> <op> <value>', '<path> exists', '<path> not exists' or '<path> matches <regex>'",
                      "found 'status = \"ok\"'"], id="bad-expect-json"),
        pytest.param("version: 1\ndefaults: {checks: {health: {expect_json: ['status == healthy']}}}\n",
                     "defaults.checks.health.expect_json",
                     ["expected a JSON literal after '==', found bare word healthy", 'quote strings: "healthy"'],
                     id="bare-word-in-expect-json"),
        pytest.param("version: 1\ndefaults: {checks: {window: {min_availability: 0.9}}}\n", "defaults.checks.window",
                     ["min_availability was renamed to warn_below"], id="renamed-window-threshold"),
        pytest.param("version: 1\ndefaults: {checks: {health: {path: health}}}\n", "defaults.checks.health.path",
                     ["expected a path starting with '/'", "found 'health'"], id="relative-health-path"),
        pytest.param("version: 1\ndefaults: {rubric: {thresholds: {pass: 70, warn: 80}}}\n", "defaults.rubric.thresholds",
                     ["expected warn <= pass", "found warn 80.0 > pass 70.0"], id="thresholds-warn-above-pass"),
        pytest.param("version: 1\ndefaults: {rubric: {weights: {Performance: 10}}}\n", "defaults.rubric.weights",
                     ["unknown category Performance", "Deployment, Migration, Stability, Business, Testing"],
                     id="unknown-rubric-category"),
        pytest.param("version: 1\ndefaults: {checks: {health: {category: Speed}}}\n", "defaults.checks.health.category",
                     ["expected one of Deployment, Migration, Stability, Business, Testing", "found 'Speed'"],
                     id="unknown-check-category"),
        pytest.param("version: 1\ndefaults: {deadline_s: 600}\n", "defaults.deadline_s", ["510", "found 600"],
                     id="deadline-over-function-timeout"),
        pytest.param("version: 1\ndefaults: {deadline_s: 520}\n", "defaults.deadline_s", ["510", "found 520"],
                     id="deadline-inside-timeout-but-no-margin"),
        pytest.param("version: 1\nservices: {orders: {deadline_s: 541}}\n", "services.orders.deadline_s", ["found 541"],
                     id="deadline-in-service-section"),
        pytest.param("version: 2\n", "version", ["found 2"], id="version-2"),
        pytest.param("defaults: {}\n", "version", ["Field required"], id="version-missing"),
        pytest.param("- version: 1\n", "(top level)", ["expected a mapping, found list"], id="not-a-mapping"),
        pytest.param("version: 1\ndefaults: [\n", "(top level)", ["expected YAML"], id="yaml-syntax-error"),
    ],
)
def test_each_error_names_its_path(text: str, path: str, fragments: list[str]) -> None:
    found = problems(text)

    assert len(found) == 1, found
    assert found[0].startswith(f"{path}: "), found[0]
    for fragment in fragments:
        assert fragment in found[0]


def test_every_error_is_reported_at_once() -> None:
    found = problems("""\
        version: 1
        defaults:
          deadline_s: 600
          checks: {health: {path: health}}
        services:
          web: {rubric: {weights: {Speed: 1}}}
        """)

    assert len(found) == 3, found
    assert sorted(p.split(":", 1)[0] for p in found) == [
        "defaults.checks.health.path", "defaults.deadline_s", "services.web.rubric.weights",
    ]


def test_an_error_inherited_from_defaults_is_reported_once() -> None:
    found = problems("version: 1\ndefaults: {deadline_s: 600}\nservices: {orders: {region: x}, web: {region: y}}\n")

    assert [p.split(":", 1)[0] for p in found] == ["defaults.deadline_s"]


def test_top_level_errors_do_not_hide_section_errors() -> None:
    found = problems("version: 2\ndefaults: {deadline_s: 600}\n")

    assert [p.split(":", 1)[0] for p in found] == ["version", "defaults.deadline_s"]


def test_triple_equals_is_rejected() -> None:
    found = problems("version: 1\ndefaults: {checks: {health: {expect_json: ['status === \"ok\"']}}}\n")

    assert found[0].startswith("defaults.checks.health.expect_json: ")


def test_partial_weights_keep_the_other_defaults() -> None:
    weights = parse("version: 1\ndefaults: {rubric: {weights: {Testing: 0}}}\n").defaults.rubric.weights

    assert weights == {"Deployment": 20, "Migration": 25, "Stability": 20, "Business": 20, "Testing": 0}


# Run `python main.py check-config` in a child whose audit hook records every socket operation and which reports the
# Google modules loaded at exit. functions-framework ships its own google.cloud.functions shim, which is not an SDK.
_WRAPPER = """
import json, runpy, sys
report_path, config_path = sys.argv[1], sys.argv[2]
sockets = []
sys.addaudithook(lambda event, args: sockets.append(event) if event.startswith("socket.") else None)
sys.argv = ["main.py", "check-config", config_path]
code = 0
try:
    runpy.run_path("main.py", run_name="__main__")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
modules = [m for m in sys.modules if m.split(".")[0] in ("google", "grpc")]
with open(report_path, "w") as out:
    json.dump({"sockets": sockets, "modules": modules}, out)
sys.exit(code)
"""
SHIMS = ("google", "google.cloud")
SHIM_PREFIXES = ("google.cloud.functions",)


def check_config(path: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, list[str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTDEPLOY_", "GOOGLE_", "CLOUDSDK_"))}
    report = tmp_path / "child.json"
    done = subprocess.run([sys.executable, "-c", _WRAPPER, str(report), str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    seen: dict[str, list[str]] = json.loads(report.read_text(encoding="utf-8"))
    return done, seen


def assert_offline(seen: dict[str, list[str]]) -> None:
    sdk = [m for m in seen["modules"] if m not in SHIMS and not m.startswith(SHIM_PREFIXES)]
    assert sdk == [], f"check-config imported Google SDK modules: {sdk}"
    assert seen["sockets"] == [], f"check-config touched the network: {seen['sockets']}"


def test_check_config_good_file(tmp_path: Path) -> None:
    done, seen = check_config(EXAMPLE, tmp_path)

    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
    assert "2 service section(s)" in done.stdout
    assert done.stderr == ""
    assert_offline(seen)


def test_check_config_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ndefaults:\n  deadline_s: 600\n  bogus: 1\n  checks: {helth: {}}\n", encoding="utf-8")

    done, seen = check_config(bad, tmp_path)

    assert done.returncode == 4
    assert done.stdout == ""
    assert f"{bad}: 3 problem(s)" in done.stderr
    assert "  defaults.deadline_s: " in done.stderr
    assert f"  defaults.bogus: unknown key; valid keys: {SETTINGS_KEYS}" in done.stderr
    assert f"  defaults.checks.helth: unknown key; valid keys: {CHECK_NAMES}" in done.stderr
    assert_offline(seen)


def test_config_in_cloud_storage(gcs: tuple[object, str]) -> None:
    from sources.gcp import storage_client

    _, bucket = gcs
    storage_client().bucket(bucket).blob("cfg/postdeploy.yaml").upload_from_string(
        "version: 1\ndefaults: {region: europe-west1}\n")
    assert load(f"gs://{bucket}/cfg/postdeploy.yaml").defaults.region == "europe-west1"
    with pytest.raises(ConfigError, match=f"expected an object at gs://{bucket}/cfg/missing.yaml, found nothing"):
        load(f"gs://{bucket}/cfg/missing.yaml")


def test_a_rejected_header_value_is_never_echoed() -> None:
    text = "version: 1\ndefaults:\n  checks:\n    smoke:\n      paths:\n        - name: p\n          steps:\n" \
           "            - http: {path: /a, headers: {X-Api-Key: 81726354918273645}}\n"
    with pytest.raises(ConfigError) as caught:
        Config.parse(text, "t.yaml")
    assert caught.value.problems and "81726354918273645" not in " ".join(caught.value.problems)
