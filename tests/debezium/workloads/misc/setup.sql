-- Non-type scenarios: tables without a primary key, a primary-key change, TRUNCATE, an unchanged
-- TOASTed column, and logical decoding messages.
CREATE TABLE nopk_full (a int4, b text);
ALTER TABLE nopk_full REPLICA IDENTITY FULL;
CREATE TABLE nopk_default (a int4, b text);  -- no replica identity: INSERT only
CREATE TABLE pk_change (id int4 PRIMARY KEY, v text);
CREATE TABLE pk_change_full (id int4 PRIMARY KEY, v text);
ALTER TABLE pk_change_full REPLICA IDENTITY FULL;
CREATE TABLE trunc (id int4 PRIMARY KEY, v text);
CREATE TABLE toast_default (id int4 PRIMARY KEY, small int4, big text);
CREATE TABLE toast_full (id int4 PRIMARY KEY, small int4, big text);
ALTER TABLE toast_full REPLICA IDENTITY FULL;
CREATE PUBLICATION dbz_pub FOR TABLE nopk_full, nopk_default, pk_change, pk_change_full, trunc, toast_default, toast_full;
