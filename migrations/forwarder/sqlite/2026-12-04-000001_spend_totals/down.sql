ALTER TABLE subscribers DROP COLUMN spend_month;
ALTER TABLE subscribers DROP COLUMN spend_month_from;
ALTER TABLE subscribers DROP COLUMN spend_day;
ALTER TABLE subscribers DROP COLUMN spend_day_from;
