-- SPEC section 11: sign-in sessions kept by the server, so that signing out ends a
-- session for good. `key` is an HMAC of the cookie's random id keyed by the token: the
-- table alone signs no one in, and a new token leaves every old row unmatched.
CREATE TABLE sessions (
    key        TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
