-- SPEC section 11, as migration 0009 on SQLite: sign-in sessions kept by the server,
-- shared by every `serve`, so signing out on one ends the session on all of them.
CREATE TABLE sessions (
    key        TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
