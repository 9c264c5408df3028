"""Tests of the whole project: unit/ (pure code) and integration/ (real stores)."""
