DROP TABLE operator_certificates;
DROP TABLE subscriber_tokens;
DROP TABLE cdrs;
DROP TABLE ledger_entries;
DROP TABLE forwarding_rules;
DROP TABLE numbers;
DROP TABLE subscribers;
