-- The settlement ledger: accounts, transfers, rejected transfers, pending expiries, and
-- the hash-chained, signed blocks that seal each committed batch.
-- Balances: the transfers table is the journal of record. The balance columns of
-- `accounts` are a checkpoint as of `ledgers.checkpoint_height`; an account's current
-- balances are that checkpoint plus the effects of the transfers and expirations in later
-- blocks (the writer replays them on start; `cbdc audit verify` re-derives them).
-- Ids are unsigned 128-bit integers stored as 16 big-endian bytes (byte order is
-- numeric order); amounts are fen in bigint; timestamps are ns since the epoch and
-- unique within a ledger.

CREATE TABLE ledgers (
    ledger      integer PRIMARY KEY CHECK (ledger > 0),
    public_key  bytea NOT NULL,               -- DER SubjectPublicKeyInfo, P-256
    checkpoint_height bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id                  bytea NOT NULL CHECK (length(id) = 16),
    ledger              integer NOT NULL REFERENCES ledgers,
    code                integer NOT NULL,
    flags               integer NOT NULL,
    user_data           bytea NOT NULL,
    balance_cap         bigint,
    debit_limit_single  bigint,
    debit_limit_daily   bigint,
    debit_limit_yearly  bigint,
    debits_posted       bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    debits_pending      bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_posted      bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    credits_pending     bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    usage_day           integer NOT NULL DEFAULT 0,
    debits_today        bigint NOT NULL DEFAULT 0,
    usage_year          integer NOT NULL DEFAULT 0,
    debits_this_year    bigint NOT NULL DEFAULT 0,
    timestamp           bigint NOT NULL,
    block_height        bigint NOT NULL,
    PRIMARY KEY (ledger, id)
) WITH (fillfactor = 70);  -- room for HOT updates at checkpoints

CREATE TABLE transfers (
    ledger             integer NOT NULL,
    id                 bytea NOT NULL,
    debit_account_id   bytea NOT NULL,
    credit_account_id  bytea NOT NULL,
    amount             bigint NOT NULL CHECK (amount >= 0),
    pending_id         bytea,                 -- NULL unless posting or voiding
    user_data          bytea NOT NULL,
    timeout            bigint NOT NULL,
    code               integer NOT NULL,
    flags              integer NOT NULL,
    timestamp          bigint NOT NULL,
    block_height       bigint NOT NULL,
    PRIMARY KEY (ledger, id)
);
CREATE INDEX transfers_debit_history ON transfers (ledger, debit_account_id, timestamp);
CREATE INDEX transfers_credit_history ON transfers (ledger, credit_account_id, timestamp);
-- block_height grows with insertion order, so a BRIN index finds a block's rows at
-- almost no cost per insert.
CREATE INDEX transfers_by_block ON transfers USING brin (ledger, block_height);
CREATE INDEX transfers_resolving ON transfers (ledger, pending_id) WHERE pending_id IS NOT NULL;

-- Transfers refused for a reason that depends on ledger state, kept so that a retry
-- with the same id gets the same answer.
CREATE TABLE rejected_transfers (
    ledger             integer NOT NULL,
    id                 bytea NOT NULL,
    debit_account_id   bytea NOT NULL,
    credit_account_id  bytea NOT NULL,
    amount             bigint NOT NULL,
    pending_id         bytea NOT NULL,
    user_data          bytea NOT NULL,
    timeout            bigint NOT NULL,
    code               integer NOT NULL,
    flags              integer NOT NULL,
    result             integer NOT NULL,
    timestamp          bigint NOT NULL,
    block_height       bigint NOT NULL,
    PRIMARY KEY (ledger, id)
);

CREATE TABLE expirations (
    ledger        integer NOT NULL,
    pending_id    bytea NOT NULL,
    timestamp     bigint NOT NULL,
    block_height  bigint NOT NULL,
    PRIMARY KEY (ledger, pending_id)
);
CREATE INDEX expirations_by_block ON expirations (ledger, block_height);

CREATE TABLE blocks (
    ledger         integer NOT NULL REFERENCES ledgers,
    height         bigint NOT NULL CHECK (height > 0),
    previous_hash  bytea NOT NULL,
    merkle_root    bytea NOT NULL,
    time_ns        bigint NOT NULL,
    entry_count    integer NOT NULL,
    version        smallint NOT NULL,
    hash           bytea NOT NULL,
    signature      bytea NOT NULL,
    PRIMARY KEY (ledger, height)
);
CREATE INDEX accounts_by_block ON accounts (ledger, block_height);
