-- No primary key.
INSERT INTO nopk_full VALUES (1, 'a'), (2, 'b');
UPDATE nopk_full SET b = 'a2' WHERE a = 1;
DELETE FROM nopk_full WHERE a = 2;
INSERT INTO nopk_default VALUES (1, 'a');
-- Primary key change (DEFAULT and FULL identity).
INSERT INTO pk_change VALUES (1, 'one');
UPDATE pk_change SET id = 2 WHERE id = 1;
INSERT INTO pk_change_full VALUES (1, 'one');
UPDATE pk_change_full SET id = 2, v = 'two' WHERE id = 1;
-- TRUNCATE (skipped by Debezium unless skipped.operations excludes 't').
INSERT INTO trunc VALUES (1, 'x');
TRUNCATE trunc;
INSERT INTO trunc VALUES (2, 'y');
-- TOAST: 12800 chars of md5 hex (pglz cannot compress it 25%), so it is stored out of line;
-- then an UPDATE of another column leaves it unchanged (pgoutput sends 'u' = unchanged toast).
INSERT INTO toast_default SELECT 1, 1, string_agg(md5(i::text), '' ORDER BY i) FROM generate_series(1, 400) i;
INSERT INTO toast_full SELECT 1, 1, string_agg(md5(i::text), '' ORDER BY i) FROM generate_series(1, 400) i;
UPDATE toast_default SET small = 2 WHERE id = 1;
UPDATE toast_full SET small = 2 WHERE id = 1;
DELETE FROM toast_default WHERE id = 1;
-- Logical decoding messages: transactional (inside a transaction with a row change) and not.
BEGIN;
INSERT INTO trunc VALUES (3, 'with message');
SELECT pg_logical_emit_message(true, 'tm-prefix', 'transactional content');
COMMIT;
SELECT pg_logical_emit_message(false, 'tm-prefix', 'non-transactional content');
SELECT pg_logical_emit_message(true, 'tm-bytes', '\x00ff'::bytea);
