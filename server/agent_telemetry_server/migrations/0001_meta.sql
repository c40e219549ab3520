-- Facts about this database that the server needs at start, such as the storage mode
-- chosen at the first migration ('timescaledb' or 'plain').
CREATE TABLE server_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
