"""The central bank (ledger of record for operator banks): not built yet."""
