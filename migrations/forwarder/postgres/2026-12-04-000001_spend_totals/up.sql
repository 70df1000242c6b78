-- Running totals of a subscriber's call charges in the local day and month
-- of its latest charge, kept in the transaction that records each charge, so
-- that a call's spend-cap check reads one row instead of summing the period's
-- ledger entries. A total counts the charges created in
-- [spend_*_from, the end of that local day or month); NULL means unknown (a
-- subscriber from before this migration, or one whose time zone changed),
-- and the ledger is summed instead.
ALTER TABLE subscribers ADD COLUMN spend_day_from BIGINT;
ALTER TABLE subscribers ADD COLUMN spend_day NUMERIC;
ALTER TABLE subscribers ADD COLUMN spend_month_from BIGINT;
ALTER TABLE subscribers ADD COLUMN spend_month NUMERIC;
