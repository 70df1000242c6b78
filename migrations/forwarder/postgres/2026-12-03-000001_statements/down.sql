DROP TABLE statement_holds;
DROP TABLE statement_schedules;
DROP INDEX cdrs_by_subscriber_ended;
DROP TABLE statements;
