"""Tests of pure code: no database, no Redis, no network."""
