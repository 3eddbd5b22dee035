-- What a running request's status is read from, instead of a query to its workflow: the
-- audience snapshot's size as the resolver writes it, and the pages each channel has finished.
-- Both are written by activities that already touch the store, so no history event is added.

-- One row per resolver call, keyed by the first page it wrote: a retried call rewrites its own
-- row, so the sums over a request are the snapshot's size however often calls were retried.
CREATE TABLE resolved_chunks (
    request_id     TEXT NOT NULL,
    first_page     BIGINT NOT NULL,
    pages          BIGINT NOT NULL,
    recipients     BIGINT NOT NULL,
    excluded       BIGINT NOT NULL,
    -- 1 on the call that reached the audience's end.
    done           BIGINT NOT NULL,
    PRIMARY KEY (request_id, first_page)
);

-- A page's channel is finished when nothing is left to send on it (or its last round ran).
CREATE TABLE finished_pages (
    request_id     TEXT NOT NULL,
    page_no        BIGINT NOT NULL,
    channel        TEXT NOT NULL,
    PRIMARY KEY (request_id, page_no, channel)
);
