-- The blast-radius guard: the largest audience a tenant lets one notify reach without an
-- explicit confirmation. NULL means the platform default applies.
ALTER TABLE tenants ADD COLUMN blast_radius_limit BIGINT;
