"""The shared kernel: money, ids, signing, settings, storage, migrations and the `cbdc` CLI."""
