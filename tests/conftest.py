"""Shared test configuration: every test is bounded in time (pytest-timeout in pyproject.toml)."""
