"""Locust users, load shapes and the reconciling load-test runner: not built yet."""
