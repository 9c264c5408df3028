-- The central bank's own tables beside the settlement ledger: operator banks and their
-- request-signing keys, the nonces and idempotency keys of signed requests, and each
-- operator's acknowledged position in its events feed.

CREATE TABLE operators (
    code        text PRIMARY KEY,
    name        text NOT NULL,
    status      text NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE operator_keys (
    key_id         text PRIMARY KEY,
    operator_code  text NOT NULL REFERENCES operators,
    public_key     bytea NOT NULL,             -- DER SubjectPublicKeyInfo, P-256
    status         text NOT NULL CHECK (status IN ('pending', 'active', 'retired')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    changed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operator_keys_by_operator ON operator_keys (operator_code);

-- A nonce is refused a second time for as long as its signature could be accepted
-- (rows older than that are pruned).
CREATE TABLE request_nonces (
    key_id   text NOT NULL,
    nonce    text NOT NULL,
    created  bigint NOT NULL,                  -- the signature's created, seconds
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX request_nonces_by_age ON request_nonces (created);

CREATE TABLE idempotency_keys (
    operator_code  text NOT NULL,
    key            text NOT NULL,
    request_hash   bytea NOT NULL,             -- sha256 of method, path and body
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (operator_code, key)
);

CREATE TABLE event_cursors (
    operator_code  text PRIMARY KEY REFERENCES operators,
    acknowledged   bigint NOT NULL,            -- feed position the operator has confirmed
    updated_at     timestamptz NOT NULL DEFAULT now()
);
