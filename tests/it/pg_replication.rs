//! Integration tests of the PostgreSQL replication connection and control plane against the
//! local server (PostgreSQL 15 at 127.0.0.1:5432; role `tidemark`/`tidemark` with SCRAM and
//! REPLICATION; `postgres` with trust). Skipped with a note unless `TIDEMARK_TEST_PG=1`.
//!
//! Every test creates its objects with a random suffix in database `tidemark` and drops them at
//! the end, also when the test body panics (the body runs in a spawned task).

use std::future::Future;
use std::time::Duration;

use bytes::Buf;
use tidemark::source::postgres::{
    parse_lsn, PgConnectConfig, PgControl, PgOutputOptions, PgSourceError, PublicationTables,
    ReplicationConnection, StreamMessage, TlsMode,
};

use super::support::{pg_enabled as enabled, suffix};

fn scram_cfg() -> PgConnectConfig {
    let mut c = PgConnectConfig::new("127.0.0.1", "tidemark", "tidemark");
    c.password = Some("tidemark".into());
    c.tls = TlsMode::Disable;
    c.connect_timeout = Duration::from_secs(5);
    c
}

fn trust_cfg() -> PgConnectConfig {
    let mut c = PgConnectConfig::new("127.0.0.1", "postgres", "tidemark");
    c.tls = TlsMode::Disable;
    c
}

/// Runs `body` in its own task so a panic still lets `cleanup` run, then re-raises it.
async fn with_cleanup<B, C>(body: B, cleanup: C)
where
    B: Future<Output = ()> + Send + 'static,
    C: Future<Output = ()>,
{
    let result = tokio::spawn(body).await;
    cleanup.await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn scram_and_trust_login() {
    if !enabled("scram_and_trust_login") {
        return;
    }
    let mut conn = ReplicationConnection::connect(&scram_cfg())
        .await
        .expect("SCRAM login as tidemark");
    let id = conn.identify_system().await.expect("IDENTIFY_SYSTEM");
    assert_eq!(id.dbname.as_deref(), Some("tidemark"));
    assert!(id.timeline >= 1 && id.xlogpos > 0, "{id:?}");
    assert!(conn.server_version_num().expect("server_version") >= 100000);
    assert!(conn.startup_info().backend_pid > 0);

    // SQL works on a replication=database connection; errors keep their SQLSTATE and the
    // connection stays usable.
    let rows = conn
        .simple_query("SELECT 1, NULL::text")
        .await
        .expect("select");
    assert_eq!(rows, vec![vec![Some("1".to_string()), None]]);
    let err = conn
        .simple_query("SELECT * FROM no_such_table_tidemark")
        .await
        .expect_err("missing table");
    assert_eq!(err.sqlstate(), Some("42P01"));
    assert!(!err.is_transient());
    assert_eq!(
        conn.simple_query("SELECT 2").await.expect("still usable")[0][0].as_deref(),
        Some("2")
    );
    conn.close().await;

    let mut bad = scram_cfg();
    bad.password = Some("wrong".into());
    let err = ReplicationConnection::connect(&bad)
        .await
        .err()
        .expect("wrong password must fail");
    assert!(matches!(err, PgSourceError::Auth { .. }), "{err:?}");
    assert!(!err.is_transient(), "auth failure is definite");
    assert!(err.to_string().contains("tidemark"), "{err}");
    let err = PgControl::connect(&bad)
        .await
        .err()
        .expect("control with wrong password");
    assert!(!err.is_transient(), "{err}");

    let mut conn = ReplicationConnection::connect(&trust_cfg())
        .await
        .expect("trust login as postgres");
    conn.identify_system()
        .await
        .expect("IDENTIFY_SYSTEM as postgres");
    conn.close().await;

    let socket_dir = "/var/run/postgresql";
    if std::path::Path::new(&format!("{socket_dir}/.s.PGSQL.5432")).exists() {
        let mut unix = trust_cfg();
        unix.host = socket_dir.into();
        let mut conn = ReplicationConnection::connect(&unix)
            .await
            .expect("Unix socket login");
        conn.identify_system()
            .await
            .expect("IDENTIFY_SYSTEM over the Unix socket");
        conn.close().await;
        PgControl::connect(&unix)
            .await
            .expect("control over the Unix socket");
    }

    let mut nodb = trust_cfg();
    nodb.dbname = format!("no_such_db_{}", suffix());
    let err = ReplicationConnection::connect(&nodb)
        .await
        .err()
        .expect("missing database");
    assert_eq!(err.sqlstate(), Some("3D000"));
    assert!(!err.is_transient());

    let mut closed = trust_cfg();
    closed.port = 1; // nothing listens there
    let err = ReplicationConnection::connect(&closed)
        .await
        .err()
        .expect("refused");
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn tls_modes() {
    if !enabled("tls_modes") {
        return;
    }
    let control = PgControl::connect(&trust_cfg()).await.expect("control");
    let ssl: String = control
        .client
        .query_one("SHOW ssl", &[])
        .await
        .expect("show ssl")
        .get(0);
    let mut prefer = scram_cfg();
    prefer.tls = TlsMode::Prefer;
    let mut conn = ReplicationConnection::connect(&prefer)
        .await
        .expect("prefer connects either way");
    conn.identify_system()
        .await
        .expect("IDENTIFY_SYSTEM over prefer");
    conn.close().await;
    PgControl::connect(&prefer)
        .await
        .expect("control with prefer");

    let mut require = scram_cfg();
    require.tls = TlsMode::Require;
    if ssl == "on" {
        let mut conn = ReplicationConnection::connect(&require)
            .await
            .expect("require with ssl on");
        let rows = conn
            .simple_query("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .await
            .expect("pg_stat_ssl");
        assert_eq!(
            rows[0][0].as_deref(),
            Some("true"),
            "the replication connection is encrypted"
        );
        conn.close().await;
        let c = PgControl::connect(&require)
            .await
            .expect("control with require");
        let row = c
            .client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("ssl");
        assert!(row.get::<_, bool>(0), "the control connection is encrypted");

        // verify-full against the public roots must reject the local self-signed certificate.
        let mut full = require.clone();
        full.tls = TlsMode::VerifyFull;
        let err = ReplicationConnection::connect(&full)
            .await
            .err()
            .expect("self-signed cert must fail verify-full");
        assert!(
            matches!(err, PgSourceError::Tls { .. }) && !err.is_transient(),
            "{err}"
        );
        // When the server uses Debian's self-signed snakeoil certificate (CN=localhost), trust
        // it explicitly: verify-full needs the right name, verify-ca only the chain.
        let cert_file: String = control
            .client
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .expect("show ssl_cert_file")
            .get(0);
        let snakeoil = std::path::Path::new("/etc/ssl/certs/ssl-cert-snakeoil.pem");
        if cert_file == snakeoil.to_string_lossy() {
            full.tls_root_cert = Some(snakeoil.to_path_buf());
            let err = ReplicationConnection::connect(&full)
                .await
                .err()
                .expect("verify-full: 127.0.0.1 is not the certificate's name");
            assert!(err.to_string().contains("handshake failed"), "{err}");
            let mut ca = full.clone();
            ca.tls = TlsMode::VerifyCa;
            ReplicationConnection::connect(&ca)
                .await
                .expect("verify-ca ignores the name")
                .close()
                .await;
            PgControl::connect(&ca)
                .await
                .expect("control with verify-ca");
            full.host = "localhost".into();
            ReplicationConnection::connect(&full)
                .await
                .expect("verify-full with the right name and root")
                .close()
                .await;
        } else {
            eprintln!("server certificate is {cert_file}; skipping the verify-ca/verify-full success cases");
        }
    } else {
        let err = ReplicationConnection::connect(&require)
            .await
            .err()
            .expect("require with ssl off must fail");
        assert!(err.to_string().contains("does not accept SSL"), "{err}");
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn relation_catalog_resolves_types() {
    if !enabled("relation_catalog_resolves_types") {
        return;
    }
    let s = suffix();
    let control = PgControl::connect(&scram_cfg()).await.expect("control");
    let (mood, dom, posint, table) = (
        format!("mood_{s}"),
        format!("mood_d_{s}"),
        format!("posint_{s}"),
        format!("cat_{s}"),
    );
    let setup = format!(
        "CREATE TYPE {mood} AS ENUM ('sad', 'ok', 'happy');
         CREATE DOMAIN {dom} AS {mood};
         CREATE DOMAIN {posint} AS int4 CHECK (VALUE > 0);
         CREATE TABLE {table} (b text NOT NULL, a {posint}, gone int, m {dom}, ms {dom}[], v varchar(20),
                               ids int8[], PRIMARY KEY (a, b));
         ALTER TABLE {table} DROP COLUMN gone;
         ALTER TABLE {table} REPLICA IDENTITY FULL;"
    );
    let cleanup = format!("DROP TABLE IF EXISTS {table}; DROP DOMAIN IF EXISTS {dom}, {posint}; DROP TYPE IF EXISTS {mood};");
    control.client.batch_execute(&setup).await.expect("setup");
    let oid: u32 = control
        .client
        .query_one(&format!("SELECT '{table}'::regclass::oid"), &[])
        .await
        .expect("oid")
        .get(0);
    let cat = control.relation_catalog(oid).await;
    control
        .client
        .batch_execute(&cleanup)
        .await
        .expect("cleanup");
    let cat = cat.expect("relation_catalog");

    assert_eq!(
        (cat.schema.as_str(), cat.table.as_str()),
        ("public", table.as_str())
    );
    assert_eq!(
        cat.primary_key,
        vec!["a", "b"],
        "key order, not column order"
    );
    assert_eq!(cat.replica_identity, 'f');
    let names: Vec<&str> = cat.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["b", "a", "m", "ms", "v", "ids"],
        "dropped column skipped"
    );
    let col = |n: &str| cat.columns.iter().find(|c| c.name == n).expect("column");
    assert!(!col("b").nullable && !col("a").nullable && col("m").nullable);
    assert_eq!(
        col("a").base_type_oid,
        23,
        "domain over int4 resolves to int4"
    );
    assert_eq!(col("a").type_name, posint);
    let labels = Some(vec!["sad".to_string(), "ok".into(), "happy".into()]);
    assert_eq!(
        col("m").enum_labels,
        labels,
        "domain over enum resolves to the enum"
    );
    assert!(!col("m").is_array);
    assert!(col("ms").is_array);
    assert_eq!(
        col("ms").enum_labels,
        labels,
        "array of domain over enum: element labels"
    );
    assert_eq!(col("ms").element_type_oid, Some(col("m").base_type_oid));
    assert_eq!(
        (
            col("v").type_oid,
            col("v").typmod,
            col("v").formatted_type.as_str()
        ),
        (1043, 24, "character varying(20)")
    );
    assert_eq!(
        (
            col("ids").is_array,
            col("ids").element_type_oid,
            col("ids").enum_labels.clone()
        ),
        (true, Some(20), None)
    );
}

#[tokio::test]
async fn missing_slot_is_definite() {
    if !enabled("missing_slot_is_definite") {
        return;
    }
    let slot = format!("tidemark_missing_{}", suffix());
    let control = PgControl::connect(&scram_cfg()).await.expect("control");
    let err = control
        .ensure_slot(&slot, false)
        .await
        .expect_err("missing slot");
    assert!(
        matches!(err, PgSourceError::SlotMissing { .. }) && !err.is_transient(),
        "{err}"
    );
    let mut conn = ReplicationConnection::connect(&scram_cfg())
        .await
        .expect("connect");
    let err = conn
        .start_replication(
            &slot,
            0,
            &[("proto_version", "1"), ("publication_names", "x")],
        )
        .await
        .expect_err("start");
    assert!(
        matches!(err, PgSourceError::SlotMissing { .. }) && !err.is_transient(),
        "{err}"
    );
    assert!(err.to_string().contains(&slot), "{err}");
    let err = control
        .start_replication_reclaiming(&mut conn, &slot, 0, &[], true)
        .await
        .expect_err("reclaiming");
    assert!(matches!(err, PgSourceError::SlotMissing { .. }), "{err}");
    let err = control
        .ensure_publication(
            &format!("nopub_{}", suffix()),
            &PublicationTables::All,
            false,
        )
        .await
        .expect_err("missing publication");
    assert!(
        matches!(err, PgSourceError::Publication { .. }) && !err.is_transient(),
        "{err}"
    );
    conn.close().await;
}

struct Names {
    table: String,
    publication: String,
    slot: String,
}

#[tokio::test]
async fn stream_feedback_keepalive_and_reclaim() {
    if !enabled("stream_feedback_keepalive_and_reclaim") {
        return;
    }
    let s = suffix();
    let names = Names {
        table: format!("repl_{s}"),
        publication: format!("tidemark_pub_{s}"),
        slot: format!("tidemark_slot_{s}"),
    };
    let cleanup_sql = format!(
        "DROP PUBLICATION IF EXISTS {}; DROP TABLE IF EXISTS {};",
        names.publication, names.table
    );
    let slot = names.slot.clone();
    with_cleanup(stream_body(names), async move {
        let control = PgControl::connect(&scram_cfg())
            .await
            .expect("control for cleanup");
        for _ in 0..50 {
            // The slot may still be active for a moment after its walsender was terminated.
            match control.drop_slot(&slot).await {
                Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(100)).await,
                other => {
                    other.expect("drop slot");
                    break;
                }
            }
        }
        control
            .client
            .batch_execute(&cleanup_sql)
            .await
            .expect("cleanup");
    })
    .await;
}

async fn stream_body(n: Names) {
    let cfg = scram_cfg();
    let control = PgControl::connect(&cfg).await.expect("control");
    let info = control
        .check_server()
        .await
        .expect("server ready for logical replication");
    assert_eq!(info.wal_level, "logical");
    control
        .client
        .batch_execute(&format!(
            "CREATE TABLE {} (id int PRIMARY KEY, v text)",
            n.table
        ))
        .await
        .expect("create table");
    let tables = PublicationTables::Tables(vec![("public".into(), n.table.clone())]);
    assert!(control
        .ensure_publication(&n.publication, &tables, true)
        .await
        .expect("create publication"));
    assert!(!control
        .ensure_publication(&n.publication, &tables, false)
        .await
        .expect("existing publication"));
    let more = PublicationTables::Tables(vec![
        ("public".into(), n.table.clone()),
        ("public".into(), "not_in_pub".into()),
    ]);
    let err = control
        .ensure_publication(&n.publication, &more, true)
        .await
        .expect_err("incomplete publication");
    assert!(
        err.to_string().contains("\"public\".\"not_in_pub\"") && !err.is_transient(),
        "{err}"
    );

    let ensured = control
        .ensure_slot(&n.slot, true)
        .await
        .expect("create slot");
    assert!(ensured.created && ensured.confirmed_flush_lsn > 0);
    assert!(
        !control
            .ensure_slot(&n.slot, false)
            .await
            .expect("existing slot")
            .created
    );

    control
        .client
        .batch_execute(&format!(
            "BEGIN; INSERT INTO {t} VALUES (1, 'a'); INSERT INTO {t} VALUES (2, 'b'); COMMIT;",
            t = n.table
        ))
        .await
        .expect("insert");

    let mut conn = ReplicationConnection::connect(&cfg)
        .await
        .expect("replication connection");
    let mut opts = PgOutputOptions::new(vec![n.publication.clone()]);
    opts.max_proto_version = Some(2);
    let opts = opts.to_options(conn.server_version_num().expect("version"));
    assert!(
        opts.contains(&("streaming".into(), "on".into())),
        "{opts:?}"
    );
    let opt_refs: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    control
        .start_replication_reclaiming(
            &mut conn,
            &n.slot,
            ensured.confirmed_flush_lsn,
            &opt_refs,
            false,
        )
        .await
        .expect("start replication");

    // B, R, I, I, C for the transaction; keepalives may be interleaved.
    let mut tags = Vec::new();
    let commit_end = loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), conn.recv_message())
            .await
            .expect("no timeout")
            .expect("recv")
            .expect("stream open");
        if let StreamMessage::XLogData { mut data, .. } = msg {
            let tag = data.first().copied().expect("non-empty pgoutput message");
            tags.push(tag as char);
            if tag == b'C' {
                // Commit: tag, flags (1), commit_lsn (8), end_lsn (8), timestamp (8).
                data.advance(10);
                break data.get_u64();
            }
        }
    };
    assert_eq!(tags, ['B', 'R', 'I', 'I', 'C']);

    // Feedback with the commit end LSN moves confirmed_flush_lsn there. Asking for a reply
    // makes the walsender answer with a keepalive at once.
    conn.send_standby_status(commit_end, commit_end, commit_end, true)
        .await
        .expect("status");
    let keepalive = loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), conn.recv_message())
            .await
            .expect("no timeout")
            .expect("recv");
        if let Some(StreamMessage::PrimaryKeepalive {
            wal_end,
            reply_requested,
            ..
        }) = msg
        {
            break (wal_end, reply_requested);
        }
    };
    assert!(
        keepalive.0 >= commit_end,
        "keepalive wal_end is at least what was sent"
    );
    // Answer the keepalive (whether or not it asked for a reply).
    conn.send_standby_status(commit_end, commit_end, commit_end, false)
        .await
        .expect("answer keepalive");
    let mut confirmed = None;
    for _ in 0..100 {
        let slot = control
            .slot_info(&n.slot)
            .await
            .expect("slot_info")
            .expect("slot exists");
        assert!(slot.active && slot.active_pid == Some(conn.startup_info().backend_pid));
        confirmed = slot.confirmed_flush_lsn;
        if confirmed >= Some(commit_end) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        confirmed,
        Some(commit_end),
        "confirmed_flush_lsn advanced to the commit end LSN"
    );

    // A second consumer gets object_in_use; terminate_stale takes the slot over.
    let mut second = ReplicationConnection::connect(&cfg)
        .await
        .expect("second connection");
    let err = second
        .start_replication(&n.slot, commit_end, &opt_refs)
        .await
        .expect_err("slot in use");
    match &err {
        PgSourceError::SlotInUse { active_pid, .. } => {
            assert_eq!(*active_pid, Some(conn.startup_info().backend_pid))
        }
        other => panic!("expected SlotInUse, got {other:?}"),
    }
    assert!(err.is_transient() && err.sqlstate() == Some("55006"));
    control
        .start_replication_reclaiming(&mut second, &n.slot, commit_end, &opt_refs, true)
        .await
        .expect("terminate_stale reclaims the slot");
    let first_end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match conn.recv().await {
                Ok(Some(_)) => continue,
                other => break other,
            }
        }
    })
    .await
    .expect("the terminated consumer notices");
    match first_end {
        Err(e) => assert!(e.is_transient(), "termination is transient: {e}"),
        Ok(None) => {}
        Ok(Some(_)) => unreachable!(),
    }
    let slot = control
        .slot_info(&n.slot)
        .await
        .expect("slot_info")
        .expect("slot");
    assert_eq!(slot.active_pid, Some(second.startup_info().backend_pid));
    assert_eq!(slot.lag_bytes.map(|l| l >= 0), Some(true));

    // New changes reach the new consumer; stop() returns the connection to command mode.
    control
        .client
        .batch_execute(&format!("INSERT INTO {} VALUES (3, 'c')", n.table))
        .await
        .expect("insert");
    let mut got_insert = false;
    while !got_insert {
        let msg = tokio::time::timeout(Duration::from_secs(20), second.recv_message())
            .await
            .expect("no timeout")
            .expect("recv");
        if let Some(StreamMessage::XLogData { data, .. }) = msg {
            got_insert = data.first() == Some(&b'I');
        }
    }
    second.stop().await.expect("clean stop");
    let id = second
        .identify_system()
        .await
        .expect("commands work after stop");
    assert!(id.xlogpos >= commit_end);

    // A transaction larger than logical_decoding_work_mem is streamed while in progress with
    // proto_version 2 + streaming 'on': Stream Start 'S' ... Stream Stop 'E', then Stream Commit 'c'.
    // A second START_REPLICATION on a stopped connection ends at once (module trap): recv -> None.
    second
        .start_replication(&n.slot, id.xlogpos, &opt_refs)
        .await
        .expect("restart after stop");
    let ended = tokio::time::timeout(Duration::from_secs(10), second.recv())
        .await
        .expect("no timeout");
    assert!(matches!(ended, Ok(None)), "{ended:?}");
    second.identify_system().await.expect("still usable");
    second.close().await;
    // The walsender takes the setting from its session, so SET on this connection suffices.
    let mut second = ReplicationConnection::connect(&cfg)
        .await
        .expect("third connection");
    second
        .simple_query("SET logical_decoding_work_mem = '64kB'")
        .await
        .expect("set work mem");
    second
        .start_replication(&n.slot, id.xlogpos, &opt_refs)
        .await
        .expect("start on a fresh connection");
    let big = format!(
        "INSERT INTO {} SELECT g, repeat('x', 100) FROM generate_series(10, 5009) g",
        n.table
    );
    control
        .client
        .batch_execute(&big)
        .await
        .expect("large insert");
    let mut streamed = Vec::new();
    while streamed.last() != Some(&'c') {
        let msg = tokio::time::timeout(Duration::from_secs(30), second.recv_message())
            .await
            .expect("no timeout")
            .expect("recv")
            .expect("stream open");
        if let StreamMessage::XLogData { data, .. } = msg {
            let tag = data.first().copied().expect("non-empty") as char;
            if matches!(tag, 'S' | 'E' | 'c' | 'B' | 'C') {
                streamed.push(tag);
            }
        }
    }
    assert_eq!(
        streamed.first(),
        Some(&'S'),
        "in-progress streaming: {streamed:?}"
    );
    assert!(
        !streamed.contains(&'B'),
        "no regular Begin for a streamed transaction: {streamed:?}"
    );
    second.stop().await.expect("clean stop after streaming");
    second.close().await;
    assert!(parse_lsn("0/0").is_some());
}
