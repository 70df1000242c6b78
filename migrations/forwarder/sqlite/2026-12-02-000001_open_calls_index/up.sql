-- Calls in progress per subscriber (the concurrent-call count at every call)
-- without scanning the subscriber's whole history.
CREATE INDEX cdrs_by_subscriber_status ON cdrs (subscriber_id, status);
