DROP TABLE rate_entries;
DROP TABLE rate_versions;
DROP TABLE certificates;
DROP TABLE providers;
