"""Fixture plugins, one module per real component, so each stays small and readable."""

pytest_plugins = [
    "tests.support.fixtures_k8s",
    "tests.support.fixtures_db",
    "tests.support.fixtures_nginx",
    "tests.support.fixtures_registry",
]
