//! The SQLite side of [`crate::books`]: reference data (migration 6), bill lines in force and
//! usage per API key for reconciliation.

use jiff::Timestamp;
use rusqlite::{Connection, params};
use tollgate_core::event::format_instant;

use super::{corrupt, opt_str};
use crate::{
    BillLineRecord, KeyUsage, RefDataEntry, RefDataRecord, Result, StoredBillLine, Totals,
};

const REFDATA_COLUMNS: &str = "id, changed_at, kind, key, team_id, cost_center, canonical_model,
    provider, role, removed, changed_by, note";

fn refdata_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RefDataRecord> {
    Ok(RefDataRecord {
        version: r.get(0)?,
        changed_at: r.get(1)?,
        entry: RefDataEntry {
            kind: r.get(2)?,
            key: r.get(3)?,
            team_id: opt_str(r, 4)?,
            cost_center: opt_str(r, 5)?,
            canonical_model: opt_str(r, 6)?,
            provider: opt_str(r, 7)?,
            role: opt_str(r, 8)?,
            removed: r.get::<_, i64>(9)? != 0,
            changed_by: r.get(10)?,
            note: opt_str(r, 11)?,
        },
    })
}

pub(super) fn record_refdata(tx: &Connection, now: &str, e: &RefDataEntry) -> Result<i64> {
    tx.execute(
        "INSERT INTO refdata (changed_at, kind, key, team_id, cost_center, canonical_model,
         provider, role, removed, changed_by, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            now,
            e.kind,
            e.key,
            e.team_id,
            e.cost_center,
            e.canonical_model,
            e.provider,
            e.role,
            i64::from(e.removed),
            e.changed_by,
            e.note
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

pub(super) fn refdata(conn: &Connection, as_of: Option<i64>) -> Result<Vec<RefDataRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REFDATA_COLUMNS} FROM refdata r WHERE id = (
             SELECT MAX(id) FROM refdata c WHERE c.kind = r.kind AND c.key = r.key AND c.id <= ?1)
         AND removed = 0 ORDER BY kind, key"
    ))?;
    let rows = stmt.query_map([as_of.unwrap_or(i64::MAX)], refdata_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn refdata_history(
    conn: &Connection,
    kind: Option<&str>,
    key: Option<&str>,
) -> Result<Vec<RefDataRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REFDATA_COLUMNS} FROM refdata
         WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR key = ?2) ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![kind, key], refdata_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn bill_lines_in_force(
    conn: &Connection,
    start: Timestamp,
    end: Timestamp,
) -> Result<Vec<StoredBillLine>> {
    let mut stmt = conn.prepare_cached(
        "SELECT i.bill_type, l.import_id, l.provider, l.line_kind, l.period_start, l.period_end,
         l.model, l.token_class, l.tokens, l.quantity, l.unit, l.cost, l.currency, l.account,
         l.project, l.workspace, l.api_key, l.principal, l.sku, l.service_tier, l.region, l.tags,
         l.source_line
         FROM current_bill_lines l JOIN bill_imports i ON i.id = l.import_id
         WHERE l.period_start >= ?1 AND l.period_start < ?2 ORDER BY l.import_id, l.id",
    )?;
    let rows = stmt.query_map(params![format_instant(start), format_instant(end)], |r| {
        let tokens: Option<i64> = r.get(8)?;
        let line: i64 = r.get(22)?;
        Ok(StoredBillLine {
            bill_type: r.get(0)?,
            import_id: r.get(1)?,
            line: BillLineRecord {
                provider: r.get(2)?,
                line_kind: r.get(3)?,
                period_start: r.get(4)?,
                period_end: r.get(5)?,
                model: opt_str(r, 6)?,
                token_class: opt_str(r, 7)?,
                tokens: tokens.map(|t| u64::try_from(t).unwrap_or(0)),
                quantity: opt_str(r, 9)?,
                unit: opt_str(r, 10)?,
                cost: opt_str(r, 11)?,
                currency: r.get(12)?,
                account: opt_str(r, 13)?,
                project: opt_str(r, 14)?,
                workspace: opt_str(r, 15)?,
                api_key: opt_str(r, 16)?,
                principal: opt_str(r, 17)?,
                sku: opt_str(r, 18)?,
                service_tier: opt_str(r, 19)?,
                region: opt_str(r, 20)?,
                tags: opt_str(r, 21)?,
                source_line: u64::try_from(line).unwrap_or(0),
            },
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Adds key totals to `key_rollups`, in the order given (sorted by key, the inserts go to
/// neighbouring B-tree pages).
pub(super) fn upsert_key_rollups<'k>(
    tx: &Connection,
    m: impl IntoIterator<Item = (&'k (i64, [&'k str; 5]), &'k (Totals, u64))>,
) -> Result<()> {
    let mut up = tx.prepare_cached(
        "INSERT INTO key_rollups (hour, provider, model, api_key_id, team_id, cost_center,
         requests, input_tokens, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
         output_tokens, reasoning_tokens, cost_e12, unpriced)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT DO UPDATE SET requests = requests + excluded.requests,
            input_tokens = input_tokens + excluded.input_tokens,
            cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens,
            cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
            cache_write_1h_tokens = cache_write_1h_tokens + excluded.cache_write_1h_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
            cost_e12 = cost_e12 + excluded.cost_e12,
            unpriced = unpriced + excluded.unpriced",
    )?;
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for ((hour, k), (t, unpriced)) in m {
        let cost = i64::try_from(t.cost_e12)
            .map_err(|_| crate::LedgerError::Refused("rollup cost out of range".into()))?;
        up.execute(params![
            hour,
            k[0],
            k[1],
            k[2],
            k[3],
            k[4],
            n(t.requests),
            n(t.input_tokens),
            n(t.cache_read_tokens),
            n(t.cache_write_tokens),
            n(t.cache_write_1h_tokens),
            n(t.output_tokens),
            n(t.reasoning_tokens),
            cost,
            n(*unpriced)
        ])?;
    }
    Ok(())
}

pub(super) fn rebuild_key_rollups(tx: &Connection) -> Result<()> {
    tx.execute("DELETE FROM key_rollups", [])?;
    tx.execute(
        "INSERT INTO key_rollups SELECT CAST(strftime('%s', substr(occurred_at, 1, 13) || ':00:00Z') AS INTEGER),
         provider, model, COALESCE(api_key_id, ''), COALESCE(team_id, ''), COALESCE(cost_center, ''),
         COUNT(*), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens),
         SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens),
         COALESCE(SUM(cost_e12), 0), SUM(cost_e12 IS NULL)
         FROM events GROUP BY 1, 2, 3, 4, 5, 6",
        [],
    )?;
    Ok(())
}

/// Whole hours `[h0, h1)` (unix seconds) from `key_rollups`.
fn key_rollup_rows(conn: &Connection, h0: i64, h1: i64) -> Result<Vec<KeyUsage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider, model, hour, api_key_id, team_id, cost_center, requests, input_tokens,
         cache_read_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens,
         reasoning_tokens, cost_e12, unpriced FROM key_rollups WHERE hour >= ?1 AND hour < ?2",
    )?;
    let mut rows = stmt.query(params![h0, h1])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let n = |i: usize| -> Result<u64> {
            let v: i64 = r.get(i)?;
            u64::try_from(v).map_err(|_| corrupt("total", &v.to_string()))
        };
        let hour: i64 = r.get(2)?;
        let t = Timestamp::from_second(hour).map_err(|e| corrupt("hour", &e.to_string()))?;
        out.push(KeyUsage {
            provider: r.get(0)?,
            model: r.get(1)?,
            bucket: format_instant(t),
            api_key_id: r.get(3)?,
            team_id: r.get(4)?,
            cost_center: r.get(5)?,
            totals: Totals {
                requests: n(6)?,
                input_tokens: n(7)?,
                cache_read_tokens: n(8)?,
                cache_write_tokens: n(9)?,
                cache_write_1h_tokens: n(10)?,
                output_tokens: n(11)?,
                reasoning_tokens: n(12)?,
                cost_e12: i128::from(r.get::<_, i64>(13)?),
            },
            unpriced: n(14)?,
        });
    }
    Ok(out)
}

/// Sums usage rows with equal keys; sorted by key.
fn merge(parts: impl IntoIterator<Item = KeyUsage>) -> Vec<KeyUsage> {
    let mut merged: std::collections::BTreeMap<KeyOf, (Totals, u64)> =
        std::collections::BTreeMap::new();
    for u in parts {
        let e = merged
            .entry((
                u.provider,
                u.model,
                u.bucket,
                u.api_key_id,
                u.team_id,
                u.cost_center,
            ))
            .or_default();
        e.0.add(&u.totals);
        e.1 += u.unpriced;
    }
    merged
        .into_iter()
        .map(|(k, (totals, unpriced))| KeyUsage {
            provider: k.0,
            model: k.1,
            bucket: k.2,
            api_key_id: k.3,
            team_id: k.4,
            cost_center: k.5,
            totals,
            unpriced,
        })
        .collect()
}

/// [`crate::Ledger::usage_by_key`]: per hour, whole hours come from `key_rollups` (kept by
/// `append` in the same transaction as the events) and partial edge hours from the raw events;
/// per minute, everything comes from the raw events.
pub(super) fn usage_by_key_ledger(
    l: &super::SqliteLedger,
    start: Timestamp,
    end: Timestamp,
    minute: bool,
) -> Result<Vec<KeyUsage>> {
    if end <= start {
        return Ok(Vec::new());
    }
    let (s, e) = (start.as_second(), end.as_second());
    let h0 = if s.rem_euclid(3600) == 0 && start.subsec_nanosecond() == 0 {
        s
    } else {
        (s.div_euclid(3600) + 1) * 3600
    };
    let h1 = e.div_euclid(3600) * 3600;
    if minute || h0 >= h1 {
        return usage_by_key_raw(l, start, end, minute);
    }
    let ts = |secs: i64| Timestamp::from_second(secs).map_err(|e| corrupt("hour", &e.to_string()));
    let mut parts = key_rollup_rows(&l.conn, h0, h1)?;
    if start < ts(h0)? {
        parts.extend(usage_by_key_raw(l, start, ts(h0)?, false)?);
    }
    if ts(h1)? < end {
        parts.extend(usage_by_key_raw(l, ts(h1)?, end, false)?);
    }
    Ok(merge(parts))
}

/// Usage by key from the raw events: over 200k events, the range is cut into time slices read
/// by two (or more) snapshot readers at once (as the audit export does), and the groups of the
/// slices are summed; otherwise one query on the ledger's connection.
pub(super) fn usage_by_key_raw(
    l: &super::SqliteLedger,
    start: Timestamp,
    end: Timestamp,
    minute: bool,
) -> Result<Vec<KeyUsage>> {
    let plan = super::AuditScanPlan {
        readers: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        slice_rows: 1 << 20,
        parallel_min_rows: 200_000,
    };
    usage_by_key_with(l, start, end, minute, plan)
}

pub(super) fn usage_by_key_with(
    l: &super::SqliteLedger,
    start: Timestamp,
    end: Timestamp,
    minute: bool,
    plan: super::AuditScanPlan,
) -> Result<Vec<KeyUsage>> {
    if end <= start {
        return Ok(Vec::new());
    }
    let (a, b) = (format_instant(start), format_instant(end));
    if plan.readers >= 2
        && let Some(slices) = super::audit_slices(&l.conn, (start, end), &a, &b, plan)?
        && let Some(readers) = super::snapshot_readers(&l.path, plan.readers)?
    {
        let n = readers.len();
        let parts: Vec<Result<Vec<KeyUsage>>> = std::thread::scope(|s| {
            let handles: Vec<_> = readers
                .into_iter()
                .enumerate()
                .map(|(i, conn)| {
                    let slices = &slices;
                    s.spawn(move || -> Result<Vec<KeyUsage>> {
                        let mut out = Vec::new();
                        for (sa, sb) in slices.iter().skip(i).step_by(n) {
                            out.extend(usage_by_key(&conn, sa, sb, minute)?);
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(crate::LedgerError::Corrupt("a reader thread failed".into()))
                    })
                })
                .collect()
        });
        let mut all = Vec::new();
        for part in parts {
            all.extend(part?);
        }
        return Ok(merge(all));
    }
    usage_by_key(&l.conn, &a, &b, minute)
}

/// (provider, model, bucket, API key, team, cost center).
type KeyOf = (String, String, String, String, String, String);

fn usage_by_key(conn: &Connection, a: &str, b: &str, minute: bool) -> Result<Vec<KeyUsage>> {
    // occurred_at is `YYYY-MM-DDTHH:MM:SS.ffffffZ`: its first 13 (16) characters name the hour
    // (minute).
    let width = if minute { 16 } else { 13 };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT provider, model, substr(occurred_at, 1, {width}), COALESCE(api_key_id, ''),
         COALESCE(team_id, ''), COALESCE(cost_center, ''), COUNT(*), SUM(input_tokens),
         SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(cache_write_1h_tokens),
         SUM(output_tokens), SUM(reasoning_tokens), COALESCE(SUM(cost_e12), 0),
         SUM(cost_e12 IS NULL)
         FROM events WHERE occurred_at >= ?1 AND occurred_at < ?2
         GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6"
    ))?;
    let mut rows = stmt.query(params![a, b])?;
    let mut out = Vec::new();
    let suffix = if minute {
        ":00.000000Z"
    } else {
        ":00:00.000000Z"
    };
    while let Some(r) = rows.next()? {
        let n = |i: usize| -> Result<u64> {
            let v: i64 = r.get(i)?;
            u64::try_from(v).map_err(|_| corrupt("total", &v.to_string()))
        };
        let bucket: String = r.get(2)?;
        out.push(KeyUsage {
            provider: r.get(0)?,
            model: r.get(1)?,
            bucket: format!("{bucket}{suffix}"),
            api_key_id: r.get(3)?,
            team_id: r.get(4)?,
            cost_center: r.get(5)?,
            totals: Totals {
                requests: n(6)?,
                input_tokens: n(7)?,
                cache_read_tokens: n(8)?,
                cache_write_tokens: n(9)?,
                cache_write_1h_tokens: n(10)?,
                output_tokens: n(11)?,
                reasoning_tokens: n(12)?,
                cost_e12: i128::from(r.get::<_, i64>(13)?),
            },
            unpriced: n(14)?,
        });
    }
    Ok(out)
}

pub(super) fn record_period_action(
    tx: &Connection,
    now: &str,
    a: &crate::PeriodAction,
) -> Result<i64> {
    tx.execute(
        "INSERT INTO period_log (period, action, reason, by, at, snapshot)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![a.period, a.action, a.reason, a.by, now, a.snapshot],
    )?;
    Ok(tx.last_insert_rowid())
}

pub(super) fn record_adjustment(tx: &Connection, now: &str, a: &crate::Adjustment) -> Result<i64> {
    tx.execute(
        "INSERT INTO adjustments (period, kind, team_id, cost_center, amount, currency, reason,
         approver, requested_by, source, detail, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            a.period,
            a.kind,
            a.team_id,
            a.cost_center,
            a.amount,
            a.currency,
            a.reason,
            a.approver,
            a.requested_by,
            a.source,
            a.detail,
            now
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

pub(super) fn period_actions(
    conn: &Connection,
    period: Option<&str>,
) -> Result<Vec<crate::PeriodActionRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, period, action, reason, by, snapshot FROM period_log
         WHERE ?1 IS NULL OR period = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![period], |r| {
        Ok(crate::PeriodActionRecord {
            id: r.get(0)?,
            at: r.get(1)?,
            action: crate::PeriodAction {
                period: r.get(2)?,
                action: r.get(3)?,
                reason: opt_str(r, 4)?,
                by: r.get(5)?,
                snapshot: opt_str(r, 6)?,
            },
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn adjustments(
    conn: &Connection,
    period: Option<&str>,
) -> Result<Vec<crate::AdjustmentRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, recorded_at, period, kind, team_id, cost_center, amount, currency, reason,
         approver, requested_by, source, detail FROM adjustments
         WHERE ?1 IS NULL OR period = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![period], |r| {
        Ok(crate::AdjustmentRecord {
            id: r.get(0)?,
            recorded_at: r.get(1)?,
            adjustment: crate::Adjustment {
                period: r.get(2)?,
                kind: r.get(3)?,
                team_id: r.get(4)?,
                cost_center: opt_str(r, 5)?,
                amount: r.get(6)?,
                currency: r.get(7)?,
                reason: r.get(8)?,
                approver: opt_str(r, 9)?,
                requested_by: r.get(10)?,
                source: opt_str(r, 11)?,
                detail: opt_str(r, 12)?,
            },
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn usage_ingested_after(
    conn: &Connection,
    start: Timestamp,
    end: Timestamp,
    after: &str,
) -> Result<Vec<crate::TeamUsage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(team_id, ''), COALESCE(cost_center, ''), COUNT(*), SUM(input_tokens),
         SUM(cache_read_tokens), SUM(cache_write_tokens), SUM(cache_write_1h_tokens),
         SUM(output_tokens), SUM(reasoning_tokens), COALESCE(SUM(cost_e12), 0)
         FROM events WHERE occurred_at >= ?1 AND occurred_at < ?2 AND ingested_at > ?3
         GROUP BY 1, 2 ORDER BY 1, 2",
    )?;
    let mut rows = stmt.query(params![format_instant(start), format_instant(end), after])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let n = |i: usize| -> Result<u64> {
            let v: i64 = r.get(i)?;
            u64::try_from(v).map_err(|_| corrupt("total", &v.to_string()))
        };
        out.push(crate::TeamUsage {
            team_id: r.get(0)?,
            cost_center: r.get(1)?,
            totals: Totals {
                requests: n(2)?,
                input_tokens: n(3)?,
                cache_read_tokens: n(4)?,
                cache_write_tokens: n(5)?,
                cache_write_1h_tokens: n(6)?,
                output_tokens: n(7)?,
                reasoning_tokens: n(8)?,
                cost_e12: i128::from(r.get::<_, i64>(9)?),
            },
        });
    }
    Ok(out)
}

/// A copied row whose id is taken by a different row: histories of two ledgers collide.
fn id_taken(what: &str, id: i64) -> crate::LedgerError {
    crate::LedgerError::Refused(format!(
        "{what} {id} exists in the target ledger with different content; a copy never overwrites history (copy into an empty ledger, or one copied from the same source)"
    ))
}

/// Whether a copied history row is already in the target: `true` when `found` (the row with
/// its id, looked up by the caller) equals `want`; an error when the id in `table` holds
/// anything else; `false` when the id is free.
fn already_copied<T: PartialEq>(
    tx: &Connection,
    found: Option<T>,
    want: &T,
    table: &str,
    what: &str,
    id: i64,
) -> Result<bool> {
    if let Some(x) = found {
        return if x == *want {
            Ok(true)
        } else {
            Err(id_taken(what, id))
        };
    }
    let taken: i64 = tx.query_row(
        &format!("SELECT COUNT(*) FROM {table} WHERE id = ?1"),
        [id],
        |x| x.get(0),
    )?;
    if taken > 0 {
        return Err(id_taken(what, id));
    }
    Ok(false)
}

/// [`crate::LedgerWriter::copy_refdata`]: inserts the change with its version and instant;
/// nothing when an identical row is there.
pub(super) fn copy_refdata(tx: &Connection, r: &RefDataRecord) -> Result<()> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {REFDATA_COLUMNS} FROM refdata WHERE id = ?1"
    ))?;
    let existing = stmt
        .query_map([r.version], refdata_row)?
        .next()
        .transpose()?;
    match existing {
        Some(x) if x == *r => return Ok(()),
        Some(_) => return Err(id_taken("reference data version", r.version)),
        None => {}
    }
    let e = &r.entry;
    tx.execute(
        "INSERT INTO refdata (id, changed_at, kind, key, team_id, cost_center, canonical_model,
         provider, role, removed, changed_by, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            r.version,
            r.changed_at,
            e.kind,
            e.key,
            e.team_id,
            e.cost_center,
            e.canonical_model,
            e.provider,
            e.role,
            i64::from(e.removed),
            e.changed_by,
            e.note
        ],
    )?;
    Ok(())
}

/// [`crate::LedgerWriter::copy_period_action`].
pub(super) fn copy_period_action(tx: &Connection, r: &crate::PeriodActionRecord) -> Result<()> {
    let found = period_actions(tx, Some(&r.action.period))?
        .into_iter()
        .find(|x| x.id == r.id);
    if already_copied(tx, found, r, "period_log", "period log entry", r.id)? {
        return Ok(());
    }
    let a = &r.action;
    tx.execute(
        "INSERT INTO period_log (id, period, action, reason, by, at, snapshot)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![r.id, a.period, a.action, a.reason, a.by, r.at, a.snapshot],
    )?;
    Ok(())
}

/// [`crate::LedgerWriter::copy_adjustment`].
pub(super) fn copy_adjustment(tx: &Connection, r: &crate::AdjustmentRecord) -> Result<()> {
    let found = adjustments(tx, Some(&r.adjustment.period))?
        .into_iter()
        .find(|x| x.id == r.id);
    if already_copied(tx, found, r, "adjustments", "adjustment", r.id)? {
        return Ok(());
    }
    let a = &r.adjustment;
    tx.execute(
        "INSERT INTO adjustments (id, period, kind, team_id, cost_center, amount, currency, reason,
         approver, requested_by, source, detail, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            r.id,
            a.period,
            a.kind,
            a.team_id,
            a.cost_center,
            a.amount,
            a.currency,
            a.reason,
            a.approver,
            a.requested_by,
            a.source,
            a.detail,
            r.recorded_at
        ],
    )?;
    Ok(())
}

pub(super) fn bill_lines_in_force_merged(
    conn: &Connection,
    start: Timestamp,
    end: Timestamp,
    day_tz: &jiff::tz::TimeZone,
) -> Result<Vec<StoredBillLine>> {
    use rusqlite::types::ValueRef;
    let imports: Vec<(i64, String)> = {
        let mut stmt =
            conn.prepare_cached("SELECT id, bill_type FROM current_bill_imports ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let (a, b) = (format_instant(start), format_instant(end));
    let mut stmt = conn.prepare_cached(
        "SELECT provider, line_kind, period_start, period_end, model, token_class, currency,
         account, project, workspace, api_key, principal, tags, tokens, cost, source_line
         FROM bill_lines WHERE import_id = ?1 AND period_start >= ?2 AND period_start < ?3
         ORDER BY id",
    )?;
    let mut out: Vec<StoredBillLine> = Vec::new();
    for (import_id, bill_type) in imports {
        // The identity as one text (fields separated by U+0001, NULL as U+0002, then whether
        // tokens and cost are given): looked up without allocating; allocated once per group.
        let mut index: super::FxMap<String, usize> = super::FxMap::default();
        // Per group: (tokens, cost, has tokens, has cost).
        let mut sums: Vec<(u64, rust_decimal::Decimal, bool, bool)> = Vec::new();
        let first = out.len();
        let mut rows = stmt.query(params![import_id, a, b])?;
        let mut key = String::with_capacity(512);
        // period_start text -> its day (few distinct values).
        let mut days: super::FxMap<String, String> = super::FxMap::default();
        while let Some(r) = rows.next()? {
            key.clear();
            for i in 0..13 {
                if i == 2 || i == 3 {
                    // The period: only the start's day is part of the identity.
                    if i == 2 {
                        let ps = match r.get_ref(2)? {
                            ValueRef::Text(t) => std::str::from_utf8(t)
                                .map_err(|e| corrupt("period_start", &e.to_string()))?,
                            other => return Err(corrupt("period_start", &format!("{other:?}"))),
                        };
                        match days.get(ps) {
                            Some(d) => key.push_str(d),
                            None => {
                                let t: Timestamp =
                                    ps.parse().map_err(|_| corrupt("period_start", ps))?;
                                let d = tollgate_core::period::civil_day(t, day_tz).to_string();
                                key.push_str(&d);
                                days.insert(ps.to_string(), d);
                            }
                        }
                    }
                    key.push('\u{1}');
                    continue;
                }
                match r.get_ref(i)? {
                    ValueRef::Null => key.push('\u{2}'),
                    ValueRef::Text(t) => key.push_str(&String::from_utf8_lossy(t)),
                    other => return Err(corrupt("bill line text", &format!("{other:?}"))),
                }
                key.push('\u{1}');
            }
            let tokens: Option<i64> = r.get(13)?;
            let cost: Option<&str> = match r.get_ref(14)? {
                ValueRef::Null => None,
                ValueRef::Text(t) => {
                    Some(std::str::from_utf8(t).map_err(|e| corrupt("cost", &e.to_string()))?)
                }
                other => return Err(corrupt("cost", &format!("{other:?}"))),
            };
            key.push(if tokens.is_some() { 't' } else { '-' });
            key.push(if cost.is_some() { 'c' } else { '-' });
            let i = match index.get(key.as_str()) {
                Some(i) => *i,
                None => {
                    let line: i64 = r.get(15)?;
                    let g = |i: usize| -> Result<Option<String>> { Ok(r.get(i)?) };
                    out.push(StoredBillLine {
                        bill_type: bill_type.clone(),
                        import_id,
                        line: BillLineRecord {
                            provider: g(0)?.unwrap_or_default(),
                            line_kind: g(1)?.unwrap_or_default(),
                            period_start: g(2)?.unwrap_or_default(),
                            period_end: g(3)?.unwrap_or_default(),
                            model: g(4)?,
                            token_class: g(5)?,
                            currency: g(6)?.unwrap_or_default(),
                            account: g(7)?,
                            project: g(8)?,
                            workspace: g(9)?,
                            api_key: g(10)?,
                            principal: g(11)?,
                            tags: g(12)?,
                            source_line: u64::try_from(line).unwrap_or(0),
                            ..Default::default()
                        },
                    });
                    sums.push((
                        0,
                        rust_decimal::Decimal::ZERO,
                        tokens.is_some(),
                        cost.is_some(),
                    ));
                    index.insert(key.clone(), sums.len() - 1);
                    sums.len() - 1
                }
            };
            if let (ValueRef::Text(ps), ValueRef::Text(pe)) = (r.get_ref(2)?, r.get_ref(3)?) {
                let l = &mut out[first + i].line;
                if ps < l.period_start.as_bytes() {
                    l.period_start = String::from_utf8_lossy(ps).into_owned();
                }
                if pe > l.period_end.as_bytes() {
                    l.period_end = String::from_utf8_lossy(pe).into_owned();
                }
            }
            if let Some(t) = tokens {
                sums[i].0 += u64::try_from(t).unwrap_or(0);
            }
            if let Some(c) = cost {
                sums[i].1 += tollgate_core::money::parse_decimal("cost", c)?;
            }
        }
        for (k, (t, c, has_tokens, has_cost)) in sums.into_iter().enumerate() {
            let l = &mut out[first + k].line;
            l.tokens = has_tokens.then_some(t);
            l.cost = has_cost.then(|| c.normalize().to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Ledger;
    use crate::conformance::event;

    #[test]
    fn parallel_slices_sum_to_the_single_query() {
        let d = tempfile::tempdir().unwrap();
        let mut l = super::super::SqliteLedger::open(d.path()).unwrap();
        let evs: Vec<_> = (0..60u32)
            .map(|n| {
                let at = format!("2026-07-01T{:02}:{:02}:00Z", n % 24, n % 60);
                event(
                    n + 1,
                    &at,
                    Some(if n % 3 == 0 { "a" } else { "b" }),
                    u64::from(n),
                    Some("0.5"),
                )
            })
            .collect();
        l.append(&evs).unwrap();
        let (s, e): (Timestamp, Timestamp) = (
            "2026-07-01T00:00:00Z".parse().unwrap(),
            "2026-07-02T00:00:00Z".parse().unwrap(),
        );
        let one = usage_by_key(&l.conn, &format_instant(s), &format_instant(e), false).unwrap();
        let plan = super::super::AuditScanPlan {
            readers: 2,
            slice_rows: 7,
            parallel_min_rows: 2,
        };
        let many = usage_by_key_with(&l, s, e, false, plan).unwrap();
        assert_eq!(one, many);
        // 60 events of 0.5: 30 in all.
        let total: i128 = many.iter().map(|u| u.totals.cost_e12).sum();
        assert_eq!(total, 30_000_000_000_000);
    }
}
