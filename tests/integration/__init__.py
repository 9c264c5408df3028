"""Tests against real PostgreSQL and Redis (shared servers or embedded ones)."""
