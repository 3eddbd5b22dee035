-- Fanout's store lives beside Temporal's on the same PostgreSQL server, in a database of its
-- own (Temporal's auto-setup creates `temporal` and `temporal_visibility`).
CREATE DATABASE fanout;
