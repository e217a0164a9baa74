-- Differential workload, part 3 (after the all_types and misc workloads): what the fixtures do not
-- cover. A multi-row transaction touching several tables, a rolled-back subtransaction, a
-- schema change mid-stream, a new table created after the pipelines started, a key update of
-- several rows, and an empty transaction.
BEGIN;
INSERT INTO trunc SELECT g, 'bulk ' || g FROM generate_series(100, 149) g;
UPDATE pk_change SET v = 'in bulk txn';
SAVEPOINT s1;
INSERT INTO trunc VALUES (999, 'rolled back');
DELETE FROM trunc WHERE id = 100;
ROLLBACK TO SAVEPOINT s1;
UPDATE trunc SET v = 'after savepoint' WHERE id BETWEEN 100 AND 109;
COMMIT;
ALTER TABLE trunc ADD COLUMN extra numeric(6,2) DEFAULT 1.25;
INSERT INTO trunc VALUES (200, 'with extra', 7.5);
UPDATE trunc SET extra = NULL WHERE id = 101;
ALTER TABLE trunc RENAME COLUMN v TO label;
INSERT INTO trunc VALUES (201, 'renamed', 0.01);
ALTER TABLE trunc DROP COLUMN extra;
INSERT INTO trunc VALUES (202, 'dropped');
CREATE TABLE late (id bigint PRIMARY KEY, t timestamptz, j jsonb, a text[]);
INSERT INTO late VALUES (1, '2025-06-01 12:00:00.25+02', '{"k": [1, 2]}', '{a,NULL,"b c"}');
UPDATE trunc SET id = id + 1000 WHERE id BETWEEN 140 AND 144;
BEGIN;
COMMIT;
DELETE FROM trunc WHERE id > 145 AND id < 150;
SELECT pg_logical_emit_message(false, 'tm-late', 'last');
