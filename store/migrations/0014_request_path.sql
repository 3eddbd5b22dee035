-- How each request is delivered: 'tree' (child workflows per page) or 'direct' (one execution),
-- shown in status. Requests recorded before the direct path existed ran as trees.
ALTER TABLE requests ADD COLUMN path TEXT NOT NULL DEFAULT 'tree';
