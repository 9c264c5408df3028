-- Account history, indexed behind the commit path.
--
-- Two history indexes on `transfers` (debit side, credit side) cost about 8.5 us of
-- server CPU per transfer inside every commit, more than the rest of the row together
-- (a 256-transfer batch: 4.5 ms with them, 1.4 ms without). They are replaced by
-- `account_entries`, one row per side of each transfer, which the writer fills in bulk
-- after the blocks are durable (its `HistoryIndexer`); transfers committed since
-- `ledgers.history_height` are answered from the writer's memory until then.
--
-- `transfers_by_block` becomes a btree: the indexer reads each new block's rows by
-- height, and a BRIN index would scan every range not yet summarised (autovacuum
-- summarises them only now and then). Heights grow with insertion, so each insert goes
-- to the rightmost leaf (about 0.3 us a row).

CREATE TABLE account_entries (
    ledger       integer NOT NULL,
    account_id   bytea NOT NULL,
    timestamp    bigint NOT NULL,      -- the transfer's, unique within the ledger
    transfer_id  bytea NOT NULL,
    is_credit    boolean NOT NULL,     -- the account is the transfer's credit side
    PRIMARY KEY (ledger, account_id, timestamp)
);

ALTER TABLE ledgers ADD COLUMN history_height bigint NOT NULL DEFAULT 0;

INSERT INTO account_entries (ledger, account_id, timestamp, transfer_id, is_credit)
SELECT ledger, debit_account_id, timestamp, id, false FROM transfers
UNION ALL
SELECT ledger, credit_account_id, timestamp, id, true FROM transfers;

UPDATE ledgers l SET history_height = coalesce(
    (SELECT max(height) FROM blocks b WHERE b.ledger = l.ledger), 0);

DROP INDEX transfers_debit_history;
DROP INDEX transfers_credit_history;
DROP INDEX transfers_by_block;
CREATE INDEX transfers_by_block ON transfers (ledger, block_height);
