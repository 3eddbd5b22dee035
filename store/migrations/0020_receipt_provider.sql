-- Which provider answered a delivery's last attempt: an SMTP relay by its configured name (the
-- primary or a failover relay), apns, fcm or inbox.
ALTER TABLE receipts ADD COLUMN provider TEXT;
