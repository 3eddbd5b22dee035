-- A tenant's share of queued Temporal work relative to other tenants (Temporal's fairness
-- weight, keyed by tenant). NULL means the server default weight of 1.
ALTER TABLE tenant_settings ADD COLUMN fairness_weight DOUBLE PRECISION;
