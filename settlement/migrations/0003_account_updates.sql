-- Changes to an account's flags, balance cap and debit limits (a wallet changing class,
-- a frozen wallet). `accounts` always holds the current definition; this journal keeps
-- each change, and what it replaced, with its block, so every block's entries (the
-- account's creation included) can be re-derived and audited.
CREATE TABLE account_updates (
    ledger              integer NOT NULL,
    id                  bytea NOT NULL,
    flags               integer NOT NULL,
    user_data           bytea NOT NULL,
    balance_cap         bigint,
    debit_limit_single  bigint,
    debit_limit_daily   bigint,
    debit_limit_yearly  bigint,
    timestamp           bigint NOT NULL,
    block_height        bigint NOT NULL,
    previous_flags      integer NOT NULL,
    previous_user_data  bytea NOT NULL,
    previous_balance_cap         bigint,
    previous_debit_limit_single  bigint,
    previous_debit_limit_daily   bigint,
    previous_debit_limit_yearly  bigint,
    PRIMARY KEY (ledger, timestamp)
);
CREATE INDEX account_updates_by_block ON account_updates (ledger, block_height);
CREATE INDEX account_updates_by_account ON account_updates (ledger, id, timestamp);
