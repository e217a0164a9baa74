//! The Iceberg REST catalog (`catalog.kind = "rest"`): a small client of the REST spec's
//! routes that the sink and the Iceberg source need, on the same snapshots the SQL catalog
//! commits ([`super::snapshot`] writes the manifests and the manifest list; only the metadata
//! pointer moves through the server).
//!
//! ```text
//! GET  /v1/config[?warehouse=w]                      → prefix (overrides > config > defaults)
//! GET  /v1/{prefix}/namespaces[?parent=p]            → list (with GET …/{ns}/tables)
//! GET  /v1/{prefix}/namespaces/{ns}                  → 404: POST /v1/{prefix}/namespaces
//! POST /v1/{prefix}/namespaces/{ns}/tables           → create (409: someone else did: load)
//! GET  /v1/{prefix}/namespaces/{ns}/tables/{t}       → load (404: None)
//! POST /v1/{prefix}/namespaces/{ns}/tables/{t}       → commit {identifier, requirements, updates}
//! ```
//!
//! A commit sends exactly the updates the SQL catalog applies itself (`add-schema` +
//! `set-current-schema -1` for schema evolution, `add-snapshot`, `set-snapshot-ref main`,
//! `remove-snapshots` for expiry) with two requirements: `assert-table-uuid` and
//! `assert-ref-snapshot-id` of `main` = the snapshot the commit was built on. The server
//! checks them and swaps its pointer atomically, so its 409 (`CommitFailedException`) is the
//! SQL compare-and-swap's lost race ([`IcebergError::Conflict`]).
//!
//! # Errors
//! Connection failures, timeouts, 5xx, 408 and 429 are transient; other 4xx are definite
//! ([`IcebergError::Rest`], with the error model's `type` and `message`). A 5xx or a timeout
//! on a commit leaves its outcome unknown (the spec's `CommitStateUnknownException`): the
//! pipeline restarts, reloads the table and its `tidemark.position` tells what landed.
//!
//! # Traps
//! - The iceberg crate's own REST client (`iceberg-catalog-rest`) cannot send these commits:
//!   its `TableCommit` can only be built inside the crate.
//! - Namespace levels are joined with the unit separator `0x1F` in paths (`a.b` → `a%1Fb`).
//! - New tables get the location the server assigns (none is sent), and the server may
//!   reassign field ids of the schema it is given; the sink reads both back from the answer.
//! - The server's `config` in a load answer (vended storage credentials) is not used: files
//!   are read and written with the sink's `storage` settings.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use iceberg::spec::{Schema, SortOrder, TableMetadata, UnboundPartitionSpec, MAIN_BRANCH};
use iceberg::{TableCreation, TableRequirement, TableUpdate};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::catalog::{LoadedTable, TableIdent};
use crate::config::RestCatalogConfig;
use crate::error::{IcebergError, RestError};

/// A REST catalog connection.
pub(crate) struct RestCatalog {
    http: reqwest::Client,
    /// `{uri}/v1`.
    v1: String,
    /// `{uri}/v1/{prefix}` (or `{uri}/v1` without a prefix): the base of the catalog routes.
    base: String,
    auth: Auth,
}

enum Auth {
    None,
    Bearer(String),
    OAuth2(OAuth2),
}

struct OAuth2 {
    token_uri: String,
    client_id: String,
    client_secret: String,
    scope: String,
    /// The current token and when to renew it.
    token: tokio::sync::Mutex<Option<(String, Option<Instant>)>>,
}

// --- Wire types (Iceberg REST OpenAPI spec, kebab-case) -------------------------------------

/// `GET /v1/config` → `CatalogConfig`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConfigResponse {
    #[serde(default)]
    pub defaults: HashMap<String, String>,
    #[serde(default)]
    pub overrides: HashMap<String, String>,
}

/// `POST /v1/{prefix}/namespaces` → `CreateNamespaceRequest`.
#[derive(Debug, Serialize)]
pub(crate) struct CreateNamespaceRequest {
    pub namespace: Vec<String>,
    pub properties: HashMap<String, String>,
}

/// `POST /v1/{prefix}/namespaces/{ns}/tables` → `CreateTableRequest`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct CreateTableRequest<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<&'a str>,
    pub schema: &'a Schema,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_spec: Option<&'a UnboundPartitionSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_order: Option<&'a SortOrder>,
    pub stage_create: bool,
    pub properties: &'a HashMap<String, String>,
}

/// `LoadTableResult` (load and create answers).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct LoadTableResult {
    /// Absent only for a staged create, which is never asked for.
    #[serde(default)]
    pub metadata_location: Option<String>,
    pub metadata: TableMetadata,
    // `config` (vended storage settings) is not used: see the module's traps.
}

/// `TableIdentifier`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identifier {
    pub namespace: Vec<String>,
    pub name: String,
}

/// `POST /v1/{prefix}/namespaces/{ns}/tables/{t}` → `CommitTableRequest`.
#[derive(Debug, Serialize)]
pub(crate) struct CommitTableRequest<'a> {
    pub identifier: Identifier,
    pub requirements: Vec<TableRequirement>,
    pub updates: &'a [TableUpdate],
}

/// `CommitTableResponse`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct CommitTableResponse {
    pub metadata_location: String,
    pub metadata: TableMetadata,
}

/// `ListNamespacesResponse`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct ListNamespacesResponse {
    #[serde(default)]
    pub namespaces: Vec<Vec<String>>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// `ListTablesResponse`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct ListTablesResponse {
    #[serde(default)]
    pub identifiers: Vec<Identifier>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// `IcebergErrorResponse`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorResponse {
    pub error: ErrorModel,
}

/// `ErrorModel`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorModel {
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// `OAuthTokenResponse` (client-credentials grant).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

// --- Pure helpers ----------------------------------------------------------------------------

/// Percent-encodes one path segment or query value (everything but RFC 3986 unreserved).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The namespace's levels (`a.b` → `["a", "b"]`, the convention pyiceberg and Spark use).
pub(crate) fn levels(namespace: &str) -> Vec<String> {
    namespace.split('.').map(str::to_owned).collect()
}

/// The `{namespace}` path segment: levels joined by `0x1F`, percent-encoded.
pub(crate) fn namespace_segment(namespace: &str) -> String {
    encode(&levels(namespace).join("\u{1f}"))
}

/// The prefix to use: the server's override, else the config's, else the server's default.
pub(crate) fn choose_prefix(cfg: Option<&str>, server: &ConfigResponse) -> Option<String> {
    server
        .overrides
        .get("prefix")
        .map(String::as_str)
        .or(cfg)
        .or(server.defaults.get("prefix").map(String::as_str))
        .filter(|p| !p.is_empty())
        .map(|p| p.trim_matches('/').to_owned())
}

/// The requirements of a commit built on `base`: same table, `main` still at its snapshot.
pub(crate) fn requirements(base: &TableMetadata) -> Vec<TableRequirement> {
    vec![
        TableRequirement::UuidMatch { uuid: base.uuid() },
        TableRequirement::RefSnapshotIdMatch {
            r#ref: MAIN_BRANCH.to_owned(),
            snapshot_id: base.snapshot_for_ref(MAIN_BRANCH).map(|s| s.snapshot_id()),
        },
    ]
}

/// The error an answer with a non-success `status` means.
pub(crate) fn error_of(
    what: &'static str,
    location: &str,
    status: u16,
    body: &[u8],
) -> IcebergError {
    let (kind, message) = match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(r) => (r.error.kind, r.error.message),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().take(500).collect();
            (String::new(), text)
        }
    };
    IcebergError::Rest(Box::new(RestError {
        what,
        location: location.to_owned(),
        status,
        kind,
        message,
    }))
}

fn parse<T: serde::de::DeserializeOwned>(location: &str, body: &[u8]) -> Result<T, IcebergError> {
    serde_json::from_slice(body)
        .map_err(|e| IcebergError::corrupt(location, format!("REST catalog answer: {e}")))
}

// --- The client --------------------------------------------------------------------------------

impl RestCatalog {
    /// Builds the client and reads `/v1/config` (prefix).
    pub(crate) async fn connect(cfg: &RestCatalogConfig) -> Result<Self, IcebergError> {
        let root = cfg.uri.trim_end_matches('/').to_owned();
        let v1 = format!("{root}/v1");
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| IcebergError::Config(format!("catalog: HTTP client: {e}")))?;
        let secret = |s: &crate::config::Secret, key: &str| {
            s.read()
                .map_err(|e| IcebergError::Config(format!("catalog.{key}: {e}")))
        };
        let auth = if let Some(t) = &cfg.token {
            Auth::Bearer(secret(t, "token")?)
        } else if let Some(c) = &cfg.credential {
            let c = secret(c, "credential")?;
            let (id, sec) = c.split_once(':').ok_or_else(|| {
                IcebergError::Config("catalog.credential: must be client_id:client_secret".into())
            })?;
            Auth::OAuth2(OAuth2 {
                token_uri: cfg
                    .oauth2_server_uri
                    .clone()
                    .unwrap_or_else(|| format!("{v1}/oauth/tokens")),
                client_id: id.to_owned(),
                client_secret: sec.to_owned(),
                scope: cfg.scope.clone(),
                token: tokio::sync::Mutex::new(None),
            })
        } else {
            Auth::None
        };
        let mut catalog = RestCatalog {
            http,
            base: v1.clone(),
            v1,
            auth,
        };
        let mut url = format!("{}/config", catalog.v1);
        if let Some(w) = &cfg.warehouse {
            url.push_str(&format!("?warehouse={}", encode(w)));
        }
        let (status, body) = catalog
            .send("read config of", &root, Method::GET, &url, None)
            .await?;
        if status != 200 {
            return Err(error_of("read config of", &root, status, &body));
        }
        let server: ConfigResponse = parse(&url, &body)?;
        if let Some(p) = choose_prefix(cfg.prefix.as_deref(), &server) {
            catalog.base = format!("{}/{}", catalog.v1, encode(&p));
        }
        tracing::info!(uri = %root, base = %catalog.base, "connected to the Iceberg REST catalog");
        Ok(catalog)
    }

    fn table_url(&self, ident: &TableIdent) -> String {
        format!(
            "{}/namespaces/{}/tables/{}",
            self.base,
            namespace_segment(&ident.namespace),
            encode(&ident.name)
        )
    }

    /// The bearer token to send (OAuth2: fetched or renewed when needed).
    async fn token(&self, renew: bool) -> Result<Option<String>, IcebergError> {
        let o = match &self.auth {
            Auth::None => return Ok(None),
            Auth::Bearer(t) => return Ok(Some(t.clone())),
            Auth::OAuth2(o) => o,
        };
        let mut cur = o.token.lock().await;
        if let Some((t, until)) = cur.as_ref() {
            if !renew && until.is_none_or(|u| Instant::now() < u) {
                return Ok(Some(t.clone()));
            }
        }
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
            encode(&o.client_id),
            encode(&o.client_secret),
            encode(&o.scope)
        );
        let resp = self
            .http
            .post(&o.token_uri)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| IcebergError::io("fetch OAuth2 token from", &o.token_uri, e))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| IcebergError::io("fetch OAuth2 token from", &o.token_uri, e))?;
        if status != 200 {
            // The token endpoint's errors are OAuth2's ({"error": "invalid_client", …}).
            let text: String = String::from_utf8_lossy(&body).chars().take(500).collect();
            return Err(IcebergError::Rest(Box::new(RestError {
                what: "fetch OAuth2 token from",
                location: o.token_uri.clone(),
                status,
                kind: "OAuthError".into(),
                message: text,
            })));
        }
        let t: TokenResponse = parse(&o.token_uri, &body)?;
        // Renew at 90 % of the lifetime.
        let until = t
            .expires_in
            .map(|s| Instant::now() + Duration::from_secs(s.saturating_mul(9) / 10));
        *cur = Some((t.access_token.clone(), until));
        Ok(Some(t.access_token))
    }

    /// One request; its status and body. Transport errors are transient `Io`; a 401 with
    /// OAuth2 renews the token and retries once.
    async fn send(
        &self,
        what: &'static str,
        location: &str,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, bytes::Bytes), IcebergError> {
        let mut renew = false;
        loop {
            let mut req = self.http.request(method.clone(), url);
            if let Some(t) = self.token(renew).await? {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(b.clone());
            }
            let resp = req
                .send()
                .await
                .map_err(|e| IcebergError::io(what, location, e))?;
            let status = resp.status().as_u16();
            if status == 401 && !renew && matches!(self.auth, Auth::OAuth2(_)) {
                renew = true;
                continue;
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| IcebergError::io(what, location, e))?;
            return Ok((status, bytes));
        }
    }

    async fn post_json<T: Serialize>(
        &self,
        what: &'static str,
        location: &str,
        url: &str,
        body: &T,
    ) -> Result<(u16, bytes::Bytes), IcebergError> {
        let json = serde_json::to_vec(body)
            .map_err(|e| IcebergError::corrupt(location, format!("REST request: {e}")))?;
        self.send(what, location, Method::POST, url, Some(json))
            .await
    }

    pub(crate) async fn load(
        &self,
        ident: &TableIdent,
    ) -> Result<Option<LoadedTable>, IcebergError> {
        let table = ident.to_string();
        let url = self.table_url(ident);
        let (status, body) = self
            .send("load table", &table, Method::GET, &url, None)
            .await?;
        match status {
            200 => Ok(Some(loaded(ident, parse(&table, &body)?)?)),
            404 => Ok(None),
            _ => Err(error_of("load table", &table, status, &body)),
        }
    }

    /// Namespaces under `parent` (every level below, depth first).
    async fn namespaces(
        &self,
        parent: Option<&[String]>,
    ) -> Result<Vec<Vec<String>>, IcebergError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut query = Vec::new();
            if let Some(p) = parent {
                query.push(format!("parent={}", encode(&p.join("\u{1f}"))));
            }
            if let Some(t) = &page {
                query.push(format!("pageToken={}", encode(t)));
            }
            let mut url = format!("{}/namespaces", self.base);
            if !query.is_empty() {
                url = format!("{url}?{}", query.join("&"));
            }
            let (status, body) = self
                .send("list namespaces of", &self.base, Method::GET, &url, None)
                .await?;
            if status != 200 {
                return Err(error_of("list namespaces of", &self.base, status, &body));
            }
            let r: ListNamespacesResponse = parse(&url, &body)?;
            out.extend(r.namespaces);
            match r.next_page_token {
                Some(t) if !t.is_empty() => page = Some(t),
                _ => return Ok(out),
            }
        }
    }

    pub(crate) async fn list(&self) -> Result<Vec<TableIdent>, IcebergError> {
        let mut todo = self.namespaces(None).await?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        while let Some(ns) = todo.pop() {
            // A server that answers every level at once, or ignores `parent`, is fine too.
            if ns.is_empty() || !seen.insert(ns.clone()) {
                continue;
            }
            let namespace = ns.join(".");
            let mut page: Option<String> = None;
            loop {
                let mut url = format!(
                    "{}/namespaces/{}/tables",
                    self.base,
                    namespace_segment(&namespace)
                );
                if let Some(t) = &page {
                    url.push_str(&format!("?pageToken={}", encode(t)));
                }
                let (status, body) = self
                    .send("list tables of", &namespace, Method::GET, &url, None)
                    .await?;
                if status != 200 {
                    return Err(error_of("list tables of", &namespace, status, &body));
                }
                let r: ListTablesResponse = parse(&url, &body)?;
                out.extend(r.identifiers.into_iter().map(|i| TableIdent {
                    namespace: i.namespace.join("."),
                    name: i.name,
                }));
                match r.next_page_token {
                    Some(t) if !t.is_empty() => page = Some(t),
                    _ => break,
                }
            }
            todo.extend(self.namespaces(Some(&ns)).await?);
        }
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out.dedup();
        Ok(out)
    }

    async fn ensure_namespace(&self, namespace: &str) -> Result<(), IcebergError> {
        let url = format!("{}/namespaces/{}", self.base, namespace_segment(namespace));
        let (status, body) = self
            .send("load namespace", namespace, Method::GET, &url, None)
            .await?;
        match status {
            200 => return Ok(()),
            404 => {}
            _ => return Err(error_of("load namespace", namespace, status, &body)),
        }
        let req = CreateNamespaceRequest {
            namespace: levels(namespace),
            properties: HashMap::new(),
        };
        let url = format!("{}/namespaces", self.base);
        let (status, body) = self
            .post_json("create namespace", namespace, &url, &req)
            .await?;
        match status {
            200 | 409 => Ok(()),
            _ => Err(error_of("create namespace", namespace, status, &body)),
        }
    }

    pub(crate) async fn create(
        &self,
        ident: &TableIdent,
        creation: TableCreation,
    ) -> Result<LoadedTable, IcebergError> {
        self.ensure_namespace(&ident.namespace).await?;
        let table = ident.to_string();
        // The REST create request carries the format version as the reserved table
        // property `format-version` (servers default to 2).
        let mut properties = creation.properties.clone();
        if creation.format_version != iceberg::spec::FormatVersion::V2 {
            properties.insert(
                "format-version".into(),
                (creation.format_version as u8).to_string(),
            );
        }
        let req = CreateTableRequest {
            name: &ident.name,
            location: creation.location.as_deref(),
            schema: &creation.schema,
            partition_spec: creation.partition_spec.as_ref(),
            write_order: creation.sort_order.as_ref(),
            stage_create: false,
            properties: &properties,
        };
        let url = format!(
            "{}/namespaces/{}/tables",
            self.base,
            namespace_segment(&ident.namespace)
        );
        let (status, body) = self.post_json("create table", &table, &url, &req).await?;
        match status {
            200 => loaded(ident, parse(&table, &body)?),
            409 => self
                .load(ident)
                .await?
                .ok_or_else(|| IcebergError::corrupt(&table, "vanished while being created")),
            _ => Err(error_of("create table", &table, status, &body)),
        }
    }

    pub(crate) async fn commit(
        &self,
        base: &LoadedTable,
        updates: Vec<TableUpdate>,
    ) -> Result<LoadedTable, IcebergError> {
        let table = base.ident.to_string();
        let req = CommitTableRequest {
            identifier: Identifier {
                namespace: levels(&base.ident.namespace),
                name: base.ident.name.clone(),
            },
            requirements: requirements(&base.metadata),
            updates: &updates,
        };
        let url = self.table_url(&base.ident);
        let (status, body) = self
            .post_json("commit to table", &table, &url, &req)
            .await?;
        match status {
            200 => {
                let r: CommitTableResponse = parse(&table, &body)?;
                Ok(LoadedTable {
                    ident: base.ident.clone(),
                    metadata_location: r.metadata_location,
                    metadata: r.metadata,
                })
            }
            409 => Err(IcebergError::Conflict {
                table,
                expected: base.metadata_location.clone(),
            }),
            _ => Err(error_of("commit to table", &table, status, &body)),
        }
    }
}

fn loaded(ident: &TableIdent, r: LoadTableResult) -> Result<LoadedTable, IcebergError> {
    let metadata_location = r.metadata_location.ok_or_else(|| {
        IcebergError::corrupt(
            ident.to_string(),
            "REST catalog answer without metadata-location",
        )
    })?;
    Ok(LoadedTable {
        ident: ident.clone(),
        metadata_location,
        metadata: r.metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::{
        NestedField, Operation, PrimitiveType, Snapshot, SnapshotReference, SnapshotRetention,
        Summary, Type,
    };

    /// The table metadata of the REST spec's `LoadTableResult` example shape (a v2 table,
    /// one snapshot), as a server built on pyiceberg answers it.
    const LOAD_TABLE: &str = r#"{
      "metadata-location": "file:///w/managed/bronze/t-1/metadata/00001-a.metadata.json",
      "metadata": {
        "format-version": 2,
        "table-uuid": "9c12d441-03fe-4693-9a96-a0705ddf69c1",
        "location": "file:///w/managed/bronze/t-1",
        "last-sequence-number": 1,
        "last-updated-ms": 1602638573590,
        "last-column-id": 2,
        "current-schema-id": 0,
        "schemas": [{"type": "struct", "schema-id": 0, "identifier-field-ids": [1],
          "fields": [{"id": 1, "name": "id", "required": true, "type": "long"},
                     {"id": 2, "name": "v", "required": false, "type": "string"}]}],
        "default-spec-id": 0,
        "partition-specs": [{"spec-id": 0, "fields": []}],
        "last-partition-id": 999,
        "default-sort-order-id": 0,
        "sort-orders": [{"order-id": 0, "fields": []}],
        "properties": {"write.delete.mode": "merge-on-read"},
        "current-snapshot-id": 3051729675574597004,
        "snapshots": [{"snapshot-id": 3051729675574597004, "sequence-number": 1,
          "timestamp-ms": 1515100955770, "summary": {"operation": "append"},
          "manifest-list": "file:///w/managed/bronze/t-1/metadata/snap-1.avro", "schema-id": 0}],
        "refs": {"main": {"snapshot-id": 3051729675574597004, "type": "branch"}},
        "snapshot-log": [{"snapshot-id": 3051729675574597004, "timestamp-ms": 1515100955770}],
        "metadata-log": [],
        "statistics": [],
        "partition-statistics": []
      },
      "config": {}
    }"#;

    fn load_table() -> LoadTableResult {
        serde_json::from_str(LOAD_TABLE).expect("LoadTableResult")
    }

    #[test]
    fn load_table_result_parses_and_gives_the_requirements() {
        let r = load_table();
        assert_eq!(
            r.metadata_location.as_deref(),
            Some("file:///w/managed/bronze/t-1/metadata/00001-a.metadata.json")
        );
        let req = serde_json::to_value(requirements(&r.metadata)).expect("json");
        assert_eq!(
            req,
            serde_json::json!([
                {"type": "assert-table-uuid", "uuid": "9c12d441-03fe-4693-9a96-a0705ddf69c1"},
                {"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 3051729675574597004_i64}
            ])
        );
    }

    #[test]
    fn a_table_without_snapshots_requires_main_absent() {
        let mut v: serde_json::Value = serde_json::from_str(LOAD_TABLE).expect("json");
        let md = v["metadata"].as_object_mut().expect("object");
        for k in ["current-snapshot-id", "snapshots", "refs", "snapshot-log"] {
            md.remove(k);
        }
        let r: LoadTableResult = serde_json::from_value(v).expect("LoadTableResult");
        let req = serde_json::to_value(requirements(&r.metadata)).expect("json");
        // The spec: `snapshot-id: null` asserts that the ref does not exist.
        assert_eq!(
            req[1],
            serde_json::json!({"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": null})
        );
    }

    #[test]
    fn commit_request_has_the_spec_shape() {
        let r = load_table();
        let schema = Schema::builder()
            .with_schema_id(1)
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "v", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::optional(3, "w", Type::Primitive(PrimitiveType::Int)).into(),
            ])
            .with_identifier_field_ids(vec![1])
            .build()
            .expect("schema");
        let snapshot = Snapshot::builder()
            .with_snapshot_id(42)
            .with_parent_snapshot_id(Some(3051729675574597004))
            .with_sequence_number(2)
            .with_timestamp_ms(1515100955771)
            .with_manifest_list("file:///w/managed/bronze/t-1/metadata/snap-42-1-x.avro")
            .with_summary(Summary {
                operation: Operation::Overwrite,
                additional_properties: HashMap::from([(
                    "tidemark.position".to_string(),
                    "0/16B3748".to_string(),
                )]),
            })
            .with_schema_id(1)
            .build();
        let updates = vec![
            TableUpdate::AddSchema { schema },
            TableUpdate::SetCurrentSchema { schema_id: -1 },
            TableUpdate::AddSnapshot { snapshot },
            TableUpdate::SetSnapshotRef {
                ref_name: MAIN_BRANCH.into(),
                reference: SnapshotReference::new(42, SnapshotRetention::branch(None, None, None)),
            },
            TableUpdate::RemoveSnapshots {
                snapshot_ids: vec![7, 8],
            },
        ];
        let req = CommitTableRequest {
            identifier: Identifier {
                namespace: levels("bronze.cdc"),
                name: "orders".into(),
            },
            requirements: requirements(&r.metadata),
            updates: &updates,
        };
        let v = serde_json::to_value(&req).expect("json");
        assert_eq!(
            v["identifier"],
            serde_json::json!({"namespace": ["bronze", "cdc"], "name": "orders"})
        );
        let u = v["updates"].as_array().expect("updates");
        let actions: Vec<&str> = u.iter().filter_map(|u| u["action"].as_str()).collect();
        assert_eq!(
            actions,
            [
                "add-schema",
                "set-current-schema",
                "add-snapshot",
                "set-snapshot-ref",
                "remove-snapshots"
            ]
        );
        assert_eq!(u[0]["schema"]["schema-id"], 1);
        assert_eq!(u[0]["schema"]["type"], "struct");
        assert_eq!(
            u[0]["schema"]["identifier-field-ids"],
            serde_json::json!([1])
        );
        assert_eq!(u[1]["schema-id"], -1);
        let s = &u[2]["snapshot"];
        assert_eq!(s["snapshot-id"], 42);
        assert_eq!(s["parent-snapshot-id"], 3051729675574597004_i64);
        assert_eq!(s["sequence-number"], 2);
        assert_eq!(
            s["manifest-list"],
            "file:///w/managed/bronze/t-1/metadata/snap-42-1-x.avro"
        );
        assert_eq!(s["summary"]["operation"], "overwrite");
        assert_eq!(s["summary"]["tidemark.position"], "0/16B3748");
        assert_eq!(s["schema-id"], 1);
        assert_eq!(u[3]["ref-name"], "main");
        assert_eq!(u[3]["snapshot-id"], 42);
        assert_eq!(u[3]["type"], "branch");
        assert_eq!(u[4]["snapshot-ids"], serde_json::json!([7, 8]));
        // And it reads back as the same updates (the wire form is lossless).
        let back: Vec<TableUpdate> = serde_json::from_value(v["updates"].clone()).expect("back");
        assert_eq!(back, updates);
    }

    #[test]
    fn create_request_has_the_spec_shape() {
        let r = load_table();
        let schema = r.metadata.current_schema();
        let props = HashMap::from([("tidemark.mode".to_string(), "mirror".to_string())]);
        let spec = UnboundPartitionSpec::builder()
            .add_partition_field(1, "id_bucket", iceberg::spec::Transform::Bucket(4))
            .expect("field")
            .build();
        let req = CreateTableRequest {
            name: "orders",
            location: None,
            schema,
            partition_spec: Some(&spec),
            write_order: None,
            stage_create: false,
            properties: &props,
        };
        let v = serde_json::to_value(&req).expect("json");
        assert_eq!(v["name"], "orders");
        assert!(v.get("location").is_none(), "{v}");
        assert!(v.get("write-order").is_none(), "{v}");
        assert_eq!(v["stage-create"], false);
        assert_eq!(v["schema"]["fields"][0]["name"], "id");
        assert_eq!(v["partition-spec"]["fields"][0]["source-id"], 1);
        assert_eq!(v["partition-spec"]["fields"][0]["transform"], "bucket[4]");
        assert_eq!(v["properties"]["tidemark.mode"], "mirror");
    }

    #[test]
    fn errors_and_their_kinds() {
        let body = br#"{"error": {"message": "Requirement failed: branch main has changed", "type": "CommitFailedException", "code": 409}}"#;
        let e = error_of("commit to table", "bronze.t", 409, body);
        assert!(
            matches!(&e, IcebergError::Rest(r) if r.kind == "CommitFailedException" && r.status == 409)
        );
        assert!(e.to_string().contains("branch main has changed"), "{e}");
        assert!(!e.is_transient());
        let e = error_of("commit to table", "bronze.t", 503, b"<html>busy</html>");
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().contains("busy"), "{e}");
        let e = error_of(
            "load table",
            "bronze.t",
            403,
            br#"{"error": {"message": "no", "type": "ForbiddenException", "code": 403}}"#,
        );
        assert!(!e.is_transient(), "{e}");
        assert!(error_of("load table", "t", 429, b"").is_transient());
    }

    #[test]
    fn config_prefix_and_paths() {
        let server: ConfigResponse = serde_json::from_str(
            r#"{"defaults": {"prefix": "d"}, "overrides": {}, "endpoints": ["GET /v1/{prefix}/namespaces"]}"#,
        )
        .expect("config");
        assert_eq!(choose_prefix(None, &server).as_deref(), Some("d"));
        assert_eq!(choose_prefix(Some("c"), &server).as_deref(), Some("c"));
        let server: ConfigResponse =
            serde_json::from_str(r#"{"defaults": {}, "overrides": {"prefix": "o"}}"#)
                .expect("config");
        assert_eq!(choose_prefix(Some("c"), &server).as_deref(), Some("o"));
        assert_eq!(choose_prefix(None, &ConfigResponse::default()), None);
        assert_eq!(namespace_segment("bronze.cdc"), "bronze%1Fcdc");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        let l: ListNamespacesResponse = serde_json::from_str(
            r#"{"namespaces": [["bronze"], ["a", "b"]], "next-page-token": null}"#,
        )
        .expect("namespaces");
        assert_eq!(l.namespaces[1], ["a", "b"]);
        let t: ListTablesResponse =
            serde_json::from_str(r#"{"identifiers": [{"namespace": ["bronze"], "name": "t"}]}"#)
                .expect("tables");
        assert_eq!(t.identifiers[0].name, "t");
        let tok: TokenResponse = serde_json::from_str(
            r#"{"access_token": "x", "token_type": "bearer", "expires_in": 3600, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}"#,
        )
        .expect("token");
        assert_eq!(
            (tok.access_token.as_str(), tok.expires_in),
            ("x", Some(3600))
        );
    }

    /// A one-connection-per-request HTTP/1.1 fake: answers from `reply(method path, auth,
    /// body)` and records every request as `"METHOD path auth body"`.
    async fn fake_server(
        reply: impl Fn(&str, &str, &str) -> (u16, String) + Send + Sync + 'static,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = log.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break (String::new(), String::new());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if rest.len() >= len {
                            break (head.to_string(), rest[..len].to_string());
                        }
                    }
                };
                let mut lines = head.lines();
                let request = lines
                    .next()
                    .unwrap_or("")
                    .rsplit_once(' ')
                    .map_or("", |(a, _)| a)
                    .to_string();
                let auth = lines
                    .find_map(|l| {
                        l.strip_prefix("authorization: ")
                            .or(l.strip_prefix("Authorization: "))
                    })
                    .unwrap_or("-")
                    .to_string();
                seen.lock()
                    .expect("log")
                    .push(format!("{request} {auth} {body}").trim().to_string());
                let (status, text) = reply(&request, &auth, &body);
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            }
        });
        (format!("http://{addr}"), log)
    }

    #[tokio::test]
    async fn oauth2_client_credentials_are_exchanged_and_renewed_after_a_401() {
        let loads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tokens = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (l, t) = (loads.clone(), tokens.clone());
        let (uri, log) = fake_server(move |req, auth, _body| {
            use std::sync::atomic::Ordering::SeqCst;
            match req {
                "POST /v1/oauth/tokens" => {
                    let n = t.fetch_add(1, SeqCst) + 1;
                    (
                        200,
                        format!(
                            r#"{{"access_token":"tok{n}","token_type":"bearer","expires_in":3600}}"#
                        ),
                    )
                }
                "GET /v1/config?warehouse=w%201" => {
                    (200, r#"{"defaults":{},"overrides":{"prefix":"p"}}"#.into())
                }
                "GET /v1/p/namespaces/a%1Fb/tables/t" if l.fetch_add(1, SeqCst) == 0 => (
                    401,
                    r#"{"error":{"message":"expired","type":"NotAuthorizedException","code":401}}"#
                        .into(),
                ),
                "GET /v1/p/namespaces/a%1Fb/tables/t" if auth == "Bearer tok2" => (
                    404,
                    r#"{"error":{"message":"no table","type":"NoSuchTableException","code":404}}"#
                        .into(),
                ),
                _ => (500, "unexpected".into()),
            }
        })
        .await;
        std::env::set_var("TIDEMARK_TEST_REST_CREDENTIAL", "id:s:cret");
        let cfg = RestCatalogConfig {
            uri,
            warehouse: Some("w 1".into()),
            prefix: Some("ignored-by-override".into()),
            token: None,
            credential: Some(crate::config::Secret::Env(
                "TIDEMARK_TEST_REST_CREDENTIAL".into(),
            )),
            oauth2_server_uri: None,
            scope: "catalog".into(),
            timeout: Duration::from_secs(5),
        };
        let c = RestCatalog::connect(&cfg).await.expect("connect");
        let t = c
            .load(&TableIdent {
                namespace: "a.b".into(),
                name: "t".into(),
            })
            .await
            .expect("load");
        assert!(t.is_none());
        let log = log.lock().expect("log").clone();
        assert_eq!(
            log,
            [
                "POST /v1/oauth/tokens - grant_type=client_credentials&client_id=id&client_secret=s%3Acret&scope=catalog",
                "GET /v1/config?warehouse=w%201 Bearer tok1",
                "GET /v1/p/namespaces/a%1Fb/tables/t Bearer tok1",
                "POST /v1/oauth/tokens - grant_type=client_credentials&client_id=id&client_secret=s%3Acret&scope=catalog",
                "GET /v1/p/namespaces/a%1Fb/tables/t Bearer tok2",
            ]
        );
    }
}
