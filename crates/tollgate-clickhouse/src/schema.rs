//! The ClickHouse schema: versioned migrations, rendered for a single node (the default) or for
//! a cluster (`ON CLUSTER`, `Replicated*` engines on `<table>_local`, a `Distributed` table with
//! the plain name on top, sharded by the table's key so duplicates meet on one shard).
//!
//! Every statement is idempotent (`IF NOT EXISTS`), so a migration interrupted half-way is
//! simply run again. A migration is recorded in `schema_migrations` after all its statements
//! succeeded; new migrations are appended at the end of [`MIGRATIONS`].

/// Single node or cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    Single,
    /// The cluster name of the server's `remote_servers` configuration.
    Cluster(String),
}

/// The table engines the schema uses (the replicated variants are derived for a cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    MergeTree,
    /// Rows with an equal sorting key collapse to one at merge time; readers use `FINAL`.
    ReplacingMergeTree,
    /// Numeric columns of rows with an equal sorting key are summed at merge time; readers
    /// `sum()` anyway, so unmerged parts never show.
    SummingMergeTree,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::MergeTree => "MergeTree",
            Engine::ReplacingMergeTree => "ReplacingMergeTree",
            Engine::SummingMergeTree => "SummingMergeTree",
        }
    }
}

/// A table.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    /// Column definitions (and skip indexes), comma separated.
    pub columns: &'static str,
    pub engine: Engine,
    pub partition_by: Option<&'static str>,
    pub order_by: &'static str,
    /// Extra `SETTINGS` of the table.
    pub settings: Option<&'static str>,
    /// The `Distributed` sharding expression on a cluster.
    pub shard_by: &'static str,
}

/// One statement of a migration.
#[derive(Debug, Clone, Copy)]
pub enum Stmt {
    Table(Table),
    /// A materialized view `name` writing into table `to` from `select`; `{events}` in the
    /// select names the source table (the local one on a cluster).
    MaterializedView {
        name: &'static str,
        to: &'static str,
        select: &'static str,
    },
    /// A plain view; `{db}` in the select is the database.
    View {
        name: &'static str,
        select: &'static str,
    },
    /// `INSERT INTO table` from `select` over the events stored so far (`{events}` becomes
    /// `events FINAL`: each event once): the backfill of a materialized view's target. Runs
    /// only while `table` is empty, so a migration run again after an interruption does not
    /// fill it twice.
    Fill {
        table: &'static str,
        select: &'static str,
    },
}

/// The dimension columns of `rollups`, in key order (as the SQLite backend).
pub const ROLLUP_DIMS: &str = "team_id, service, feature, model, provider, tenant_id, environment, cost_center, currency, attribution_status, pricing_status, price_version";

const EVENTS: Table = Table {
    name: "events",
    columns: "
    event_id String,
    request_id Nullable(String),
    attempt UInt32,
    parent_request_id Nullable(String),
    occurred_at DateTime64(6, 'UTC'),
    completed_at Nullable(DateTime64(6, 'UTC')),
    trace_id Nullable(String),
    span_id Nullable(String),
    session_id Nullable(String),
    team_id LowCardinality(Nullable(String)),
    cost_center LowCardinality(Nullable(String)),
    service LowCardinality(Nullable(String)),
    feature LowCardinality(Nullable(String)),
    environment LowCardinality(Nullable(String)),
    tenant_id LowCardinality(Nullable(String)),
    user_id Nullable(String),
    api_key_id LowCardinality(Nullable(String)),
    region LowCardinality(Nullable(String)),
    tags Map(String, String),
    attribution_status LowCardinality(String),
    provider LowCardinality(String),
    model_requested LowCardinality(Nullable(String)),
    model LowCardinality(String),
    operation LowCardinality(String),
    service_tier LowCardinality(Nullable(String)),
    status LowCardinality(String),
    http_status Nullable(UInt16),
    streamed Bool,
    latency_ms Nullable(UInt64),
    ttft_ms Nullable(UInt64),
    input_tokens UInt64,
    cache_read_tokens UInt64,
    cache_write_tokens UInt64,
    cache_write_1h_tokens UInt64,
    output_tokens UInt64,
    reasoning_tokens UInt64,
    units Map(String, String),
    currency LowCardinality(String),
    cost Nullable(String),
    cost_e12 Nullable(Int64),
    cost_input_e12 Nullable(Int64),
    cost_cache_read_e12 Nullable(Int64),
    cost_cache_write_e12 Nullable(Int64),
    cost_cache_write_1h_e12 Nullable(Int64),
    cost_output_e12 Nullable(Int64),
    cost_units Map(String, String),
    price_version LowCardinality(Nullable(String)),
    pricing_status LowCardinality(String),
    ingested_at DateTime64(6, 'UTC'),
    seq UInt64,
    INDEX events_occurred_at occurred_at TYPE minmax GRANULARITY 1",
    engine: Engine::ReplacingMergeTree,
    partition_by: Some("toYYYYMM(occurred_at)"),
    order_by: "event_id",
    settings: Some("non_replicated_deduplication_window = 1000"),
    shard_by: "cityHash64(event_id)",
};

const ROLLUPS: Table = Table {
    name: "rollups",
    columns: "
    hour DateTime('UTC'),
    team_id LowCardinality(String),
    service LowCardinality(String),
    feature LowCardinality(String),
    model LowCardinality(String),
    provider LowCardinality(String),
    tenant_id LowCardinality(String),
    environment LowCardinality(String),
    cost_center LowCardinality(String),
    currency LowCardinality(String),
    attribution_status LowCardinality(String),
    pricing_status LowCardinality(String),
    price_version LowCardinality(String),
    requests UInt64,
    input_tokens UInt64,
    cache_read_tokens UInt64,
    cache_write_tokens UInt64,
    cache_write_1h_tokens UInt64,
    output_tokens UInt64,
    reasoning_tokens UInt64,
    cost_e12 Int128",
    engine: Engine::SummingMergeTree,
    partition_by: Some("toYYYYMM(hour)"),
    order_by: "(hour, team_id, service, feature, model, provider, tenant_id, environment, cost_center, currency, attribution_status, pricing_status, price_version)",
    settings: None,
    shard_by: "cityHash64(hour, team_id, service, feature, model)",
};

const ROLLUPS_MV: &str = "SELECT toStartOfHour(occurred_at) AS hour,
    ifNull(team_id, '') AS team_id, ifNull(service, '') AS service,
    ifNull(feature, '') AS feature, model, provider, ifNull(tenant_id, '') AS tenant_id,
    ifNull(environment, '') AS environment, ifNull(cost_center, '') AS cost_center, currency,
    attribution_status, pricing_status, ifNull(price_version, '') AS price_version,
    count() AS requests, sum(input_tokens) AS input_tokens,
    sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens,
    sum(cache_write_1h_tokens) AS cache_write_1h_tokens, sum(output_tokens) AS output_tokens,
    sum(reasoning_tokens) AS reasoning_tokens, sum(toInt128(ifNull(cost_e12, 0))) AS cost_e12
FROM {events}
GROUP BY hour, team_id, service, feature, model, provider, tenant_id, environment, cost_center,
    currency, attribution_status, pricing_status, price_version";

/// Hourly usage per provider, model, API key, team and cost center (as SQLite's `key_rollups`,
/// its migration 8): what reconciliation against provider bills reads for whole hours.
const KEY_ROLLUPS: Table = Table {
    name: "key_rollups",
    columns: "
    hour DateTime('UTC'),
    provider LowCardinality(String),
    model LowCardinality(String),
    api_key_id LowCardinality(String),
    team_id LowCardinality(String),
    cost_center LowCardinality(String),
    requests UInt64,
    input_tokens UInt64,
    cache_read_tokens UInt64,
    cache_write_tokens UInt64,
    cache_write_1h_tokens UInt64,
    output_tokens UInt64,
    reasoning_tokens UInt64,
    cost_e12 Int128,
    unpriced UInt64",
    engine: Engine::SummingMergeTree,
    partition_by: Some("toYYYYMM(hour)"),
    order_by: "(hour, provider, model, api_key_id, team_id, cost_center)",
    settings: None,
    shard_by: "cityHash64(hour, provider, model, api_key_id)",
};

/// The aggregation of `key_rollups` over events (`{events}`: the source table; `unpriced`
/// names the column `{events}.cost_e12`, as `cost_e12` alone is the sum's alias here).
const KEY_ROLLUPS_SELECT: &str = "SELECT toStartOfHour(occurred_at) AS hour, provider, model,
    ifNull(api_key_id, '') AS api_key_id, ifNull(team_id, '') AS team_id,
    ifNull(cost_center, '') AS cost_center,
    count() AS requests, sum(input_tokens) AS input_tokens,
    sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens,
    sum(cache_write_1h_tokens) AS cache_write_1h_tokens, sum(output_tokens) AS output_tokens,
    sum(reasoning_tokens) AS reasoning_tokens, sum(toInt128(ifNull(cost_e12, 0))) AS cost_e12,
    countIf({events}.cost_e12 IS NULL) AS unpriced
FROM {events}
GROUP BY hour, provider, model, api_key_id, team_id, cost_center";

const PRICE_VERSIONS: Table = Table {
    name: "price_versions",
    columns: "
    version String,
    provider LowCardinality(String),
    model LowCardinality(String),
    effective_from Nullable(String),
    effective_to Nullable(String),
    rate_json String,
    recorded_at DateTime64(6, 'UTC')",
    engine: Engine::ReplacingMergeTree,
    partition_by: None,
    order_by: "version",
    settings: None,
    shard_by: "cityHash64(version)",
};

const IMPORTS: Table = Table {
    name: "imports",
    columns: "
    id Int64,
    source String,
    imported_at DateTime64(6, 'UTC'),
    read UInt64,
    ingested UInt64,
    duplicates UInt64,
    quarantined UInt64,
    unpriced UInt64",
    engine: Engine::ReplacingMergeTree,
    partition_by: None,
    order_by: "id",
    settings: None,
    shard_by: "cityHash64(id)",
};

const INVOICES: Table = Table {
    name: "invoices",
    columns: "
    id Int64,
    number String,
    kind LowCardinality(String),
    tenant_id String,
    period String,
    pattern String,
    seq UInt64,
    revision UInt64,
    currency LowCardinality(String),
    total String,
    document String,
    corrects Nullable(String),
    reason Nullable(String),
    finalized_at DateTime64(6, 'UTC')",
    engine: Engine::ReplacingMergeTree,
    partition_by: None,
    order_by: "number",
    settings: None,
    shard_by: "cityHash64(number)",
};

const BILL_IMPORTS: Table = Table {
    name: "bill_imports",
    columns: "
    id Int64,
    bill_type LowCardinality(String),
    provider LowCardinality(String),
    source String,
    month String,
    period_start String,
    period_end String,
    currency LowCardinality(String),
    lines UInt64,
    cost Nullable(String),
    imported_at DateTime64(6, 'UTC')",
    engine: Engine::ReplacingMergeTree,
    partition_by: None,
    order_by: "id",
    settings: None,
    shard_by: "cityHash64(id)",
};

const BILL_LINES: Table = Table {
    name: "bill_lines",
    columns: "
    id Int64,
    import_id Int64,
    provider LowCardinality(String),
    line_kind LowCardinality(String),
    period_start String,
    period_end String,
    model LowCardinality(Nullable(String)),
    token_class LowCardinality(Nullable(String)),
    tokens Nullable(UInt64),
    quantity Nullable(String),
    unit LowCardinality(Nullable(String)),
    cost Nullable(String),
    currency LowCardinality(String),
    account Nullable(String),
    project Nullable(String),
    workspace Nullable(String),
    api_key Nullable(String),
    principal Nullable(String),
    sku Nullable(String),
    service_tier LowCardinality(Nullable(String)),
    region LowCardinality(Nullable(String)),
    tags Nullable(String),
    source_line UInt64",
    engine: Engine::ReplacingMergeTree,
    partition_by: None,
    order_by: "id",
    settings: None,
    shard_by: "cityHash64(import_id)",
};

const ANNOTATIONS: Table = Table {
    name: "annotations",
    columns: "
    id Int64,
    at DateTime64(6, 'UTC'),
    note String,
    service Nullable(String),
    recorded_at DateTime64(6, 'UTC')",
    engine: Engine::ReplacingMergeTree,
    partition_by: None,
    order_by: "id",
    settings: None,
    shard_by: "cityHash64(id)",
};

const BUDGETS: Table = Table {
    name: "budgets",
    columns: "
    id Int64,
    team_id String,
    period String,
    limit_amount String,
    currency LowCardinality(String),
    owner Nullable(String),
    comment Nullable(String),
    recorded_at DateTime64(6, 'UTC')",
    engine: Engine::ReplacingMergeTree,
    partition_by: None,
    order_by: "id",
    settings: None,
    shard_by: "cityHash64(team_id)",
};

const LEASES: Table = Table {
    name: "leases",
    columns: "
    name String,
    holder String,
    term UInt64,
    expires_at DateTime64(6, 'UTC'),
    written_at DateTime64(6, 'UTC')",
    engine: Engine::MergeTree,
    partition_by: None,
    order_by: "(name, term, holder)",
    settings: None,
    shard_by: "cityHash64(name)",
};

// The back-office history tables (issue #5): append-only `MergeTree`s keyed by the row id,
// which is the version (reference data) or the entry's id; nothing is ever updated. A row
// stored twice (a retried or repeated copy) has the same id and content, and every read takes
// one row per id (`LIMIT 1 BY id`), so unmerged or kept duplicates never show.

const REFDATA: Table = Table {
    name: "refdata",
    columns: "
    id Int64,
    changed_at DateTime64(6, 'UTC'),
    kind LowCardinality(String),
    key String,
    team_id Nullable(String),
    cost_center Nullable(String),
    canonical_model Nullable(String),
    provider Nullable(String),
    role Nullable(String),
    removed Bool,
    changed_by String,
    note Nullable(String)",
    engine: Engine::MergeTree,
    partition_by: None,
    order_by: "id",
    settings: Some("non_replicated_deduplication_window = 1000"),
    shard_by: "0",
};

const PERIOD_LOG: Table = Table {
    name: "period_log",
    columns: "
    id Int64,
    period String,
    action LowCardinality(String),
    reason Nullable(String),
    by String,
    at DateTime64(6, 'UTC'),
    snapshot Nullable(String)",
    engine: Engine::MergeTree,
    partition_by: None,
    order_by: "id",
    settings: Some("non_replicated_deduplication_window = 1000"),
    shard_by: "0",
};

const ADJUSTMENTS: Table = Table {
    name: "adjustments",
    columns: "
    id Int64,
    period String,
    kind LowCardinality(String),
    team_id String,
    cost_center Nullable(String),
    amount String,
    currency LowCardinality(String),
    reason String,
    approver Nullable(String),
    requested_by String,
    source Nullable(String),
    detail Nullable(String),
    recorded_at DateTime64(6, 'UTC')",
    engine: Engine::MergeTree,
    partition_by: None,
    order_by: "id",
    settings: Some("non_replicated_deduplication_window = 1000"),
    shard_by: "0",
};

/// The migrations, in order: (version, description, statements).
pub const MIGRATIONS: &[(i64, &str, &[Stmt])] = &[
    (
        1,
        "events, rollups (materialized view), price versions, imports, invoices, bills, annotations, budgets",
        &[
            Stmt::Table(EVENTS),
            Stmt::Table(ROLLUPS),
            Stmt::MaterializedView {
                name: "rollups_mv",
                to: "rollups",
                select: ROLLUPS_MV,
            },
            Stmt::Table(PRICE_VERSIONS),
            Stmt::Table(IMPORTS),
            Stmt::Table(INVOICES),
            Stmt::Table(BILL_IMPORTS),
            Stmt::Table(BILL_LINES),
            Stmt::View {
                name: "current_bill_imports",
                select: "SELECT * FROM {db}.bill_imports FINAL
WHERE (bill_type, provider, month, id) IN (
    SELECT bill_type, provider, month, max(id) FROM {db}.bill_imports
    GROUP BY bill_type, provider, month)",
            },
            Stmt::View {
                name: "current_bill_lines",
                select: "SELECT * FROM {db}.bill_lines FINAL
WHERE import_id IN (SELECT id FROM {db}.current_bill_imports)",
            },
            Stmt::Table(ANNOTATIONS),
            Stmt::Table(BUDGETS),
        ],
    ),
    (
        2,
        "leases for once-per-schedule batch jobs",
        &[Stmt::Table(LEASES)],
    ),
    (
        3,
        "reference data, period log (close/reopen), adjustments and corrections",
        &[
            Stmt::Table(REFDATA),
            Stmt::Table(PERIOD_LOG),
            Stmt::Table(ADJUSTMENTS),
        ],
    ),
    (
        4,
        "hourly usage per provider, model, API key, team and cost center (reconciliation)",
        &[
            Stmt::Table(KEY_ROLLUPS),
            // The events stored so far (FINAL: each once), then the view for every insert
            // from now on. Reads check each hour against `rollups` (see `usage_by_key`), so
            // an hour that an insert racing this migration left short or counted twice is
            // read from the events instead.
            Stmt::Fill {
                table: "key_rollups",
                select: KEY_ROLLUPS_SELECT,
            },
            Stmt::MaterializedView {
                name: "key_rollups_mv",
                to: "key_rollups",
                select: KEY_ROLLUPS_SELECT,
            },
        ],
    ),
];

/// The schema version this build writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// `CREATE DATABASE` for the layout.
pub fn create_database(db: &str, layout: &Layout) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {db}{}", on_cluster(layout))
}

/// The `schema_migrations` table.
pub fn migrations_table(db: &str, layout: &Layout) -> Vec<String> {
    render(
        db,
        layout,
        &Stmt::Table(Table {
            name: "schema_migrations",
            columns: "
    version Int64,
    description String,
    applied_at DateTime64(6, 'UTC')",
            engine: Engine::ReplacingMergeTree,
            partition_by: None,
            order_by: "version",
            settings: None,
            shard_by: "0",
        }),
    )
}

fn on_cluster(layout: &Layout) -> String {
    match layout {
        Layout::Single => String::new(),
        Layout::Cluster(c) => format!(" ON CLUSTER {c}"),
    }
}

/// The DDL of one statement: one `CREATE` on a single node; on a cluster the local replicated
/// table and the `Distributed` table over it (or the view over the local tables).
pub fn render(db: &str, layout: &Layout, s: &Stmt) -> Vec<String> {
    let oc = on_cluster(layout);
    match s {
        Stmt::Table(t) => {
            let (local, engine) = match layout {
                Layout::Single => (t.name.to_string(), format!("{}()", t.engine.name())),
                Layout::Cluster(_) => (
                    format!("{}_local", t.name),
                    format!(
                        "Replicated{}('/clickhouse/tables/{{shard}}/{db}/{}_local', '{{replica}}')",
                        t.engine.name(),
                        t.name
                    ),
                ),
            };
            let mut sql = format!(
                "CREATE TABLE IF NOT EXISTS {db}.{local}{oc} ({}\n) ENGINE = {engine}",
                t.columns
            );
            if let Some(p) = t.partition_by {
                sql.push_str(&format!("\nPARTITION BY {p}"));
            }
            sql.push_str(&format!("\nORDER BY {}", t.order_by));
            if let Some(st) = t.settings {
                sql.push_str(&format!("\nSETTINGS {st}"));
            }
            let mut out = vec![sql];
            if let Layout::Cluster(c) = layout {
                out.push(format!(
                    "CREATE TABLE IF NOT EXISTS {db}.{}{oc} AS {db}.{local}\nENGINE = Distributed({c}, {db}, {local}, {})",
                    t.name, t.shard_by
                ));
            }
            out
        }
        Stmt::MaterializedView { name, to, select } => {
            let (to, src) = match layout {
                Layout::Single => (to.to_string(), format!("{db}.events")),
                Layout::Cluster(_) => (format!("{to}_local"), format!("{db}.events_local")),
            };
            vec![format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{name}{oc} TO {db}.{to} AS\n{}",
                select.replace("{events}", &src)
            )]
        }
        Stmt::View { name, select } => vec![format!(
            "CREATE VIEW IF NOT EXISTS {db}.{name}{oc} AS\n{}",
            select.replace("{db}", db)
        )],
        // On a cluster: the Distributed tables (duplicates of an event meet on one shard).
        Stmt::Fill { table, select } => vec![format!(
            "INSERT INTO {db}.{table}\n{}",
            select
                .replace(
                    "FROM {events}\n",
                    &format!(
                        "FROM {db}.events FINAL\nWHERE (SELECT count() FROM {db}.{table}) = 0\n"
                    ),
                )
                .replace("{events}", &format!("{db}.events"))
        )],
    }
}

/// The whole schema as DDL text (for `tollgate ledger schema`), with `schema_migrations`.
pub fn full_ddl(db: &str, layout: &Layout) -> String {
    let mut out = vec![create_database(db, layout)];
    out.extend(migrations_table(db, layout));
    for (v, d, stmts) in MIGRATIONS {
        out.push(format!("-- migration {v}: {d}"));
        for s in *stmts {
            out.extend(render(db, layout, s));
        }
    }
    let mut text = String::new();
    for s in out {
        text.push_str(&s);
        if !s.starts_with("--") {
            text.push(';');
        }
        text.push_str("\n\n");
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cluster_layout_is_replicated_and_distributed() {
        let ddl = full_ddl("tollgate", &Layout::Cluster("prod".into()));
        assert!(ddl.contains("CREATE DATABASE IF NOT EXISTS tollgate ON CLUSTER prod;"));
        assert!(ddl.contains(
            "CREATE TABLE IF NOT EXISTS tollgate.events_local ON CLUSTER prod (\n    event_id String,"
        ));
        assert!(ddl.contains("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/tollgate/events_local', '{replica}')\nPARTITION BY toYYYYMM(occurred_at)\nORDER BY event_id"));
        assert!(ddl.contains("CREATE TABLE IF NOT EXISTS tollgate.events ON CLUSTER prod AS tollgate.events_local\nENGINE = Distributed(prod, tollgate, events_local, cityHash64(event_id))"));
        assert!(ddl.contains("ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/tollgate/rollups_local', '{replica}')"));
        assert!(ddl.contains("CREATE MATERIALIZED VIEW IF NOT EXISTS tollgate.rollups_mv ON CLUSTER prod TO tollgate.rollups_local AS"));
        assert!(ddl.contains("FROM tollgate.events_local"));
        // The back office's history tables: append-only, replicated, on one shard.
        for t in ["refdata", "period_log", "adjustments"] {
            assert!(ddl.contains(&format!(
                "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/tollgate/{t}_local', '{{replica}}')\nORDER BY id"
            )));
            assert!(ddl.contains(&format!(
                "ENGINE = Distributed(prod, tollgate, {t}_local, 0)"
            )));
        }
        // Migration 4: the key rollups, backfilled through the Distributed tables (events of
        // all shards, each once) while empty, then kept by a view on each shard.
        assert!(ddl.contains("ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/tollgate/key_rollups_local', '{replica}')"));
        assert!(ddl.contains(
            "INSERT INTO tollgate.key_rollups\nSELECT toStartOfHour(occurred_at) AS hour"
        ));
        assert!(ddl.contains("FROM tollgate.events FINAL\nWHERE (SELECT count() FROM tollgate.key_rollups) = 0\nGROUP BY"));
        assert!(ddl.contains("CREATE MATERIALIZED VIEW IF NOT EXISTS tollgate.key_rollups_mv ON CLUSTER prod TO tollgate.key_rollups_local AS"));
        assert!(ddl.contains("countIf(tollgate.events_local.cost_e12 IS NULL) AS unpriced\nFROM tollgate.events_local\n"));
        let single = full_ddl("tollgate", &Layout::Single);
        assert!(!single.contains("ON CLUSTER") && !single.contains("Replicated"));
        assert!(single.contains(
            ") ENGINE = ReplacingMergeTree()\nPARTITION BY toYYYYMM(occurred_at)\nORDER BY event_id"
        ));
    }
}
