DROP INDEX cdrs_ended_by_subscriber;
CREATE INDEX cdrs_by_subscriber_ended ON cdrs (subscriber_id, ended_at);
DROP INDEX cdrs_open_by_subscriber;
CREATE INDEX cdrs_by_status ON cdrs (status);
CREATE INDEX cdrs_by_subscriber_status ON cdrs (subscriber_id, status);
