-- Calls in progress by subscriber, and nothing else: the concurrent-call
-- count at every call and crash recovery's list of open calls read only
-- this index, which stays as small as the number of calls up, however long
-- the history. (The full indexes it replaces took an entry per version of
-- every record, and the count walked all of a subscriber's records.) In
-- progress means not ended: every close sets the end time with the final
-- status, and `cdrs::StillOpen` is this predicate.
DROP INDEX cdrs_by_subscriber_status;
DROP INDEX cdrs_by_status;
CREATE INDEX cdrs_open_by_subscriber ON cdrs (subscriber_id) WHERE ended_at IS NULL;
-- Calls by end time (statements, opening balances): only ended calls are
-- looked up by their end, so the versions of a call in progress are not
-- indexed here. Any comparison on ended_at implies the predicate.
DROP INDEX cdrs_by_subscriber_ended;
CREATE INDEX cdrs_ended_by_subscriber ON cdrs (subscriber_id, ended_at) WHERE ended_at IS NOT NULL;
-- What the index of calls in progress relies on.
ALTER TABLE cdrs ADD CONSTRAINT cdrs_open_until_ended
    CHECK ((status IN ('open', 'answered')) = (ended_at IS NULL));
-- Room on each page for a record's answer to be written beside it (a
-- heap-only update: the answer changes no indexed column, so no index is
-- touched when the new version fits on the same page).
ALTER TABLE cdrs SET (fillfactor = 70);
