"""Locust files: run by `locust -f` in their own processes (gevent), never imported by a
service or by code that runs an asyncio loop."""
