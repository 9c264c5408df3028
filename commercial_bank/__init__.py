"""A commercial (operator) bank running retail wallets: not built yet."""
