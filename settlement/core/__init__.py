"""The pure ledger core: values and the state machine, no I/O."""
