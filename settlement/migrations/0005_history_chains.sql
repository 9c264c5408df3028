-- Account history as chains through the transfers themselves.
--
-- `account_entries` (0004) cost a b-tree entry per side of each transfer: about 14 us
-- of server CPU a transfer, most of a core at half the engine's peak, written by index
-- rounds that crowded the commits. Instead each transfer row now names, for each of its
-- two accounts, the previous transfer on the same side of that account (its
-- `timestamp`, unique in the ledger; 0 for the first) and its own position in that
-- chain (1, 2, ...). The writer knows both when it decides the transfer, so they cost
-- the commit two bigints a side and nothing else. A history query walks a chain back
-- from a known transfer through `transfers_by_timestamp`, which grows at its right
-- edge only (timestamps rise with insertion).
--
-- Every 64th transfer of a chain is a mark, found through a partial index (a 64th of
-- the rows enter it), so a page after an old cursor starts its walk at the mark past the
-- page's end instead of at the account's newest transfer: a page of n entries walks at
-- most n + 127 rows, however long the account's history.

ALTER TABLE transfers
    ADD COLUMN debit_prev  bigint NOT NULL DEFAULT 0,
    ADD COLUMN debit_seq   bigint NOT NULL DEFAULT 0,
    ADD COLUMN credit_prev bigint NOT NULL DEFAULT 0,
    ADD COLUMN credit_seq  bigint NOT NULL DEFAULT 0;

UPDATE transfers t SET debit_prev = c.debit_prev, debit_seq = c.debit_seq,
                       credit_prev = c.credit_prev, credit_seq = c.credit_seq
FROM (
    SELECT ledger, id,
           coalesce(lag(timestamp) OVER debit_side, 0) AS debit_prev,
           row_number() OVER debit_side AS debit_seq,
           coalesce(lag(timestamp) OVER credit_side, 0) AS credit_prev,
           row_number() OVER credit_side AS credit_seq
    FROM transfers
    WINDOW debit_side AS (PARTITION BY ledger, debit_account_id ORDER BY timestamp),
           credit_side AS (PARTITION BY ledger, credit_account_id ORDER BY timestamp)
) c
WHERE t.ledger = c.ledger AND t.id = c.id;

CREATE UNIQUE INDEX transfers_by_timestamp ON transfers (ledger, timestamp);
CREATE INDEX transfers_debit_marks ON transfers (ledger, debit_account_id, timestamp)
    WHERE debit_seq % 64 = 0;
CREATE INDEX transfers_credit_marks ON transfers (ledger, credit_account_id, timestamp)
    WHERE credit_seq % 64 = 0;

DROP TABLE account_entries;
ALTER TABLE ledgers DROP COLUMN history_height;
