-- Opaque notes a service attaches to a transfer (for the central bank: the pseudonymous
-- wallet references and memo of an interbank payment). Written in the same transaction
-- as the transfer; the transfer's user_data carries the note's hash, so the signed block
-- commits to it.
CREATE TABLE transfer_notes (
    ledger        integer NOT NULL,
    id            bytea NOT NULL,
    note          bytea NOT NULL,
    block_height  bigint NOT NULL,
    PRIMARY KEY (ledger, id)
);
