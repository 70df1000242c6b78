-- Run once by the postgres image at its first start: central's database is
-- POSTGRES_DB; the forwarder gets its own database and role.
CREATE ROLE forwarder LOGIN PASSWORD 'forwarder-demo-password';
CREATE DATABASE forwarder OWNER forwarder;
CREATE ROLE central LOGIN PASSWORD 'central-demo-password';
ALTER DATABASE central OWNER TO central;
