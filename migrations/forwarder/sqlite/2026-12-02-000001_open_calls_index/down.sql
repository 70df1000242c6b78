DROP INDEX cdrs_by_subscriber_status;
