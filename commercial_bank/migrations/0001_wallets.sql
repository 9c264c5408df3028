-- A commercial bank's customers, wallets and deposit accounts, beside its ledger.
-- Balances live in the settlement ledger; these tables hold who is who.

CREATE TABLE customers (
    id            bigserial PRIMARY KEY,
    phone         text NOT NULL,
    name          text,
    resident_id   text,                       -- validated checksum, compact form
    bank_card     boolean NOT NULL DEFAULT false,
    in_person     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE wallets (
    number         bigint PRIMARY KEY,        -- the wallet number in its address
    customer_id    bigint NOT NULL REFERENCES customers,
    public_key     bytea NOT NULL,            -- DER SubjectPublicKeyInfo, P-256
    class          smallint NOT NULL CHECK (class BETWEEN 1 AND 4),
    status         text NOT NULL CHECK (status IN ('active', 'frozen', 'lost', 'closed')),
    deposit_number bigint,                    -- the linked deposit account
    created_at     timestamptz NOT NULL DEFAULT now(),
    changed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX wallets_by_key ON wallets (public_key) WHERE status <> 'closed';
CREATE SEQUENCE wallet_numbers START 100001;

CREATE TABLE deposit_accounts (
    number       bigint PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES customers,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE deposit_numbers START 500001;
