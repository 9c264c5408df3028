"""The reliability suite: faults, crashes, races and replays (`pytest -m reliability`)."""
