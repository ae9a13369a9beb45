"""Settings: documented, validated, and listed in the README."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from maint import settings
from maint.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_has_a_docstring_and_is_in_the_readme():
    text = README.read_text()
    documented = _fields_with_docstrings()
    for name in Settings.model_fields:
        assert name in documented, f"{name} has no docstring"
        assert f"`MAINT_{name.upper()}`" in text, f"MAINT_{name.upper()} missing from README"


def _fields_with_docstrings() -> set[str]:
    """The fields of ``Settings`` followed by a string (their docstring), read from the source:
    pydantic is not asked to (``use_attribute_docstrings`` parses the file at every start)."""
    tree = ast.parse(Path(settings.__file__).read_text())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings").body
    return {
        field.target.id
        for field, after in itertools.pairwise(body)
        if isinstance(field, ast.AnnAssign)
        and isinstance(field.target, ast.Name)
        and isinstance(after, ast.Expr)
        and isinstance(after.value, ast.Constant)
        and isinstance(after.value.value, str)
    }


def test_settings_come_from_maint_environment_variables(monkeypatch):
    monkeypatch.setenv("MAINT_PREPARE_LEAD", "30")
    monkeypatch.setenv("MAINT_REGISTRY_KIND", "ecr")
    settings = Settings()
    assert settings.lead().total_seconds() == 30
    assert settings.registry_kind == "ecr"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAINT_DISPLAY_TIMEZONE", "Mars/Olympus"),
        ("MAINT_REGISTRY_KIND", "gcr"),
        ("MAINT_POLL_INTERVAL", "0"),
        ("MAINT_PREPARE_LEAD", "-1"),
    ],
)
def test_bad_settings_are_refused(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()


def test_the_stores_own_limits_are_the_settings_defaults():
    """A store built without ``App`` (tests, the demo, benchmarks) waits as long as maint does."""
    from maint.notices import DatabaseLimits

    settings = Settings()
    limits = DatabaseLimits()
    for name in DatabaseLimits.__dataclass_fields__:
        assert getattr(limits, name) == getattr(settings, f"database_{name}"), name


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('["team=\\"{owner}\\""]', "unknown placeholder {owner}"),
        ('["service=~\\"web.*\\""]', "equality matchers only"),
        ('["service=\\"{service\\""]', "service"),
        ("[]", "at least one matcher"),
    ],
)
def test_a_bad_silence_matcher_template_is_refused_with_exit_2(monkeypatch, capsys, value, says):
    from maint.cli import main

    monkeypatch.setenv("MAINT_ALERTMANAGER_MATCHERS", value)
    with pytest.raises(ValidationError, match=r"(?s).*" + re.escape(says)):
        Settings()
    assert main(["notice", "list"]) == 2
    assert "bad setting MAINT_ALERTMANAGER_MATCHERS" in capsys.readouterr().err


def test_silence_matcher_templates_name_the_target(monkeypatch):
    monkeypatch.setenv(
        "MAINT_ALERTMANAGER_MATCHERS", '["namespace=\\"{namespace}\\"", "notice=\\"n{notice}\\""]'
    )
    assert Settings().alertmanager_matchers == ['namespace="{namespace}"', 'notice="n{notice}"']
