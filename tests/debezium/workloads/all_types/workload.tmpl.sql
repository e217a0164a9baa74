-- Row 1: ordinary values.
INSERT INTO @T@ VALUES (1,
  1, 2, 3, 12345.67, 3.14159265358979323846, 1.5, 2.25, true, 'hello ✓ "q"', 'varchar', 'ab', 'nm', '\x00ff10',
  '2024-02-29', '13:45:30.123456', '13:45:30.123', '13:45:30.5+05:30', '2024-02-29 13:45:30.123456', '2024-02-29 13:45:30.123',
  '2024-02-29 13:45:30.123456+02', '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": 1, "b": [1, 2]}', '{"b": [1, 2], "a": 1}', '{1,2,3}', '{"x",NULL,"z"}', '{{1,2},{3,4}}', 'happy', 42,
  '192.168.1.5/24', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05', 12.34, B'1', B'10101010', B'101',
  '<a b="1">x</a>', '(1.5,2.5)', '{1,2,3}', '[(0,0),(1,1)]', '((0,0),(1,1))', '[(0,0),(1,1),(2,0)]', '((0,0),(1,1),(1,0))',
  '<(1,1),2>', '[1,10)', '[1.5,2.5]', '[2024-01-01 00:00,2024-12-31 23:59:59.5)', '[2024-01-01 00:00+00,2024-06-01 00:00+02)',
  '[2024-01-01,2024-02-01)', '[1,9223372036854775806)', 12345);
-- Row 2: edge values (extremes, NaN, infinities, pre-1970, post-2038).
INSERT INTO @T@ VALUES (2,
  -32768, -2147483648, 9223372036854775807, 'NaN', 'NaN', 'NaN', 'NaN', false, '', '', '', '', '\x',
  '1900-01-01', '00:00:00', '23:59:59.999', '00:00:00-12', '1900-01-01 00:00:00', '1969-12-31 23:59:59.999',
  '1969-12-31 23:59:59.999999+00', '-1 days -00:00:01', '00000000-0000-0000-0000-000000000000',
  'null', '[]', '{}', '{}', '{{1},{2}}', 'sad', 1,
  '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', '00:00:00:00:00:00:00:00', -92233720368547758.08, B'0', B'00000000', B'',
  '<r/>', '(-1e300,1e-300)', '{0,1,0}', '[(0,0),(0,0)]', '((0,0),(0,0))', '((0,0))', '((0,0))',
  '<(0,0),0>', 'empty', '(,)', '(,2000-01-01)', '[2000-01-01 00:00+00,)', 'empty', '(,)', 0);
-- Row 3: all NULL.
INSERT INTO @T@ (id) VALUES (3);
-- Row 4: the other infinities, far dates, max values.
INSERT INTO @T@ VALUES (4,
  32767, 2147483647, -9223372036854775808, -99999999.99, 'Infinity', 'Infinity', '-Infinity', true, repeat('x', 100), repeat('y', 20), 'abcde', repeat('n', 63), '\xdeadbeef',
  '2100-06-30', '24:00:00', '00:00:00.001', '23:59:59.999999+14', '2100-06-30 12:00:00.000001', '2100-06-30 12:00:00.001',
  '2100-06-30 12:00:00.000001-08', '-178000000 years', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '{"nested": {"k": "v"}, "n": 1.0e2}', '{"nested": {"k": "v"}, "n": 1.0e2}', '{-1,NULL}', '{NULL}', '{{{1}}}', 'ok', 2147483647,
  '255.255.255.255', '0.0.0.0/0', '00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff:ff:ff', 92233720368547758.07, B'1', B'11111111', B'1111111111111111111111111111111111111111111111111111111111111111111111',
  '<?xml version="1.0"?><doc/>', '(0,0)', '{1,-1,0.5}', '[(1.5,2.5),(-3,4)]', '((3,4),(1,2))', '[(0,0)]', '((0,0),(10,0),(10,10),(0,10))',
  '<(0.5,-0.5),100.25>', '(1,2]', '(,0)', '[infinity,infinity]', '[-infinity,infinity)', '(2000-01-01,infinity)', '[-9223372036854775808,0]', 4294967295);
-- Row 5: timestamp/date infinities (own row so the rest stays readable).
INSERT INTO @T@ (id, c_date, c_ts, c_ts3, c_tstz, c_num) VALUES (5, 'infinity', 'infinity', '-infinity', 'infinity', '-Infinity');
INSERT INTO @T@ (id, c_date, c_ts, c_ts3, c_tstz) VALUES (6, '-infinity', '-infinity', 'infinity', '-infinity');
-- Row 7: pre-1970/BC and post-2038 temporals.
INSERT INTO @T@ (id, c_date, c_ts, c_ts3, c_tstz, c_time) VALUES (7, '0001-01-01 BC', '1583-01-01 00:00:00.5', '2262-04-12 00:00:00', '2038-01-19 03:14:08+00', '00:00:00.000001');

-- Updates: all columns of row 1; one column of row 3 (was all NULL); the key-only column of row 2.
UPDATE @T@ SET
  c_int2 = 10, c_int4 = 20, c_int8 = 30, c_num_10_2 = -0.01, c_num = 0.000001, c_float4 = -0.0, c_float8 = 1e-300,
  c_bool = false, c_text = 'updated', c_varchar = 'v2', c_char = 'xyz', c_name = 'nm2', c_bytea = '\x01',
  c_date = '1970-01-01', c_time = '00:00:01', c_time3 = '00:00:01.5', c_timetz = '00:00:01+00', c_ts = '1970-01-01 00:00:00',
  c_ts3 = '1970-01-01 00:00:00.001', c_tstz = '1970-01-01 00:00:00+00', c_interval = '1 mon', c_uuid = '123e4567-e89b-12d3-a456-426614174000',
  c_json = '[1, "two", null]', c_jsonb = '{"a": null}', c_int4_arr = '{}', c_text_arr = '{"",NULL}', c_int4_2d = '{{5,6},{7,8}}',
  c_enum = 'ok', c_domain = 7, c_inet = '10.1.2.3', c_cidr = '192.168.0.0/16', c_macaddr = '01:02:03:04:05:06',
  c_macaddr8 = '01:02:03:04:05:06:07:08', c_money = 0, c_bit1 = B'0', c_bit8 = B'00001111', c_varbit = B'0',
  c_xml = '<b/>', c_point = '(0,0)', c_line = '{1,0,-1}', c_lseg = '[(1,1),(2,2)]', c_box = '((2,2),(1,1))',
  c_path = '((0,0),(1,0))', c_polygon = '((1,1))', c_circle = '<(0,0),1>', c_int4range = '[5,6)', c_numrange = 'empty',
  c_tsrange = 'empty', c_tstzrange = 'empty', c_daterange = '[2000-01-01,2000-01-02)', c_int8range = '(0,)', c_oid = 1
  WHERE id = 1;
UPDATE @T@ SET c_text = 'was null' WHERE id = 3;
UPDATE @T@ SET c_int4 = 0 WHERE id = 2;
-- Deletes: rows 1, 2 and 4 (3, 5, 6, 7 stay).
DELETE FROM @T@ WHERE id = 1;
DELETE FROM @T@ WHERE id = 2;
DELETE FROM @T@ WHERE id = 4;
