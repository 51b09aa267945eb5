//! The back office of issue #5 on ClickHouse (migration 3): versioned reference data, the
//! close/reopen log and adjustments (append-only `MergeTree` history tables, read one row per
//! id so a row stored twice never shows twice), bill lines in force, and the usage per API key
//! and late usage that reconciliation and the close read from `events FINAL`.
//!
//! Results equal the SQLite backend's row for row, in the same order: sorting is done here in
//! Rust on the same keys (byte order, as SQLite's default collation), not left to the server.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use tollgate_ledger::{
    Adjustment, AdjustmentRecord, BillLineRecord, KeyUsage, LedgerError, PeriodAction,
    PeriodActionRecord, RefDataEntry, RefDataRecord, Result, StoredBillLine, TeamUsage, Totals,
};

use super::{
    ClickHouseLedger, ClickHouseWriter, Params, RANGE, Row, TOTALS_EVENTS, ch_instant, corrupt,
    ledger_instant, next_id, push_json_str, push_num, push_opt, range_params, read_totals,
};

const REFDATA_COLUMNS: &str = "id, toString(changed_at), kind, key, team_id, cost_center,
    canonical_model, provider, role, removed, changed_by, note";

fn i64_at(r: &Row, i: usize) -> Result<i64> {
    let v = r.str(i);
    v.parse().map_err(|_| corrupt("id", v))
}

fn refdata_row(r: &Row) -> Result<RefDataRecord> {
    Ok(RefDataRecord {
        version: i64_at(r, 0)?,
        changed_at: ledger_instant(r.str(1)),
        entry: RefDataEntry {
            kind: r.s(2)?,
            key: r.s(3)?,
            team_id: r.opt(4),
            cost_center: r.opt(5),
            canonical_model: r.opt(6),
            provider: r.opt(7),
            role: r.opt(8),
            removed: match r.str(9) {
                "true" | "1" => true,
                "false" | "0" => false,
                other => return Err(corrupt("removed flag", other)),
            },
            changed_by: r.s(10)?,
            note: r.opt(11),
        },
    })
}

const PERIOD_LOG_COLUMNS: &str = "id, toString(at), period, action, reason, by, snapshot";

fn period_row(r: &Row) -> Result<PeriodActionRecord> {
    Ok(PeriodActionRecord {
        id: i64_at(r, 0)?,
        at: ledger_instant(r.str(1)),
        action: PeriodAction {
            period: r.s(2)?,
            action: r.s(3)?,
            reason: r.opt(4),
            by: r.s(5)?,
            snapshot: r.opt(6),
        },
    })
}

const ADJUSTMENT_COLUMNS: &str = "id, toString(recorded_at), period, kind, team_id, cost_center,
    amount, currency, reason, approver, requested_by, source, detail";

fn adjustment_row(r: &Row) -> Result<AdjustmentRecord> {
    Ok(AdjustmentRecord {
        id: i64_at(r, 0)?,
        recorded_at: ledger_instant(r.str(1)),
        adjustment: Adjustment {
            period: r.s(2)?,
            kind: r.s(3)?,
            team_id: r.s(4)?,
            cost_center: r.opt(5),
            amount: r.s(6)?,
            currency: r.s(7)?,
            reason: r.s(8)?,
            approver: r.opt(9),
            requested_by: r.s(10)?,
            source: r.opt(11),
            detail: r.opt(12),
        },
    })
}

/// A ledger instant text (`2026-07-01T10:00:00.000000Z`) as a `DateTime64(6)` value.
fn ch_text(what: &str, s: &str) -> Result<String> {
    let t: Timestamp = s
        .parse()
        .map_err(|_| LedgerError::Refused(format!("{what} {s:?} is not an instant")))?;
    Ok(ch_instant(t))
}

fn id_taken(what: &str, id: i64) -> LedgerError {
    LedgerError::Refused(format!(
        "{what} {id} exists in the target ledger with different content; a copy never overwrites history (copy into an empty ledger, or one copied from the same source)"
    ))
}

impl ClickHouseLedger {
    /// History rows of `table` matching `cond` (bound by `params`), one per id, by id.
    fn history(
        &self,
        columns: &str,
        table: &str,
        cond: &str,
        params: &[(&str, String)],
    ) -> Result<Vec<Row>> {
        self.rows(
            &format!("SELECT {columns} FROM {table} WHERE {cond} ORDER BY id LIMIT 1 BY id"),
            params,
        )
    }

    pub(super) fn books_refdata(&self, as_of: Option<i64>) -> Result<Vec<RefDataRecord>> {
        let rows = self.history(
            REFDATA_COLUMNS,
            "refdata",
            "id <= {v:Int64}",
            &[("v", as_of.unwrap_or(i64::MAX).to_string())],
        )?;
        // The newest row per (kind, key) up to the version; removals left out.
        let mut latest: BTreeMap<(String, String), RefDataRecord> = BTreeMap::new();
        for r in &rows {
            let rec = refdata_row(r)?;
            latest.insert((rec.entry.kind.clone(), rec.entry.key.clone()), rec);
        }
        Ok(latest.into_values().filter(|r| !r.entry.removed).collect())
    }

    pub(super) fn books_refdata_history(
        &self,
        kind: Option<&str>,
        key: Option<&str>,
    ) -> Result<Vec<RefDataRecord>> {
        let mut cond = String::from("1");
        let mut p = Params::new();
        if let Some(k) = kind {
            cond.push_str(" AND kind = {k:String}");
            p.push(("k", k.to_string()));
        }
        if let Some(k) = key {
            cond.push_str(" AND key = {key:String}");
            p.push(("key", k.to_string()));
        }
        self.history(REFDATA_COLUMNS, "refdata", &cond, &p)?
            .iter()
            .map(refdata_row)
            .collect()
    }

    pub(super) fn books_period_actions(
        &self,
        period: Option<&str>,
    ) -> Result<Vec<PeriodActionRecord>> {
        let (cond, p) = match period {
            Some(x) => ("period = {p:String}", vec![("p", x.to_string())]),
            None => ("1", Params::new()),
        };
        self.history(PERIOD_LOG_COLUMNS, "period_log", cond, &p)?
            .iter()
            .map(period_row)
            .collect()
    }

    pub(super) fn books_adjustments(&self, period: Option<&str>) -> Result<Vec<AdjustmentRecord>> {
        let (cond, p) = match period {
            Some(x) => ("period = {p:String}", vec![("p", x.to_string())]),
            None => ("1", Params::new()),
        };
        self.history(ADJUSTMENT_COLUMNS, "adjustments", cond, &p)?
            .iter()
            .map(adjustment_row)
            .collect()
    }

    pub(super) fn books_bill_lines_in_force(
        &self,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<StoredBillLine>> {
        // period_start is stored as the ledger's instant text (as in SQLite), so the range
        // compares as text, exactly as there.
        let rows = self.rows(
            "SELECT i.bill_type, l.import_id, l.provider, l.line_kind, l.period_start,
                l.period_end, l.model, l.token_class, l.tokens, l.quantity, l.unit, l.cost,
                l.currency, l.account, l.project, l.workspace, l.api_key, l.principal, l.sku,
                l.service_tier, l.region, l.tags, l.source_line, l.id
             FROM current_bill_lines AS l
             INNER JOIN (SELECT id, bill_type FROM current_bill_imports) AS i ON i.id = l.import_id
             WHERE l.period_start >= {a:String} AND l.period_start < {b:String}",
            &[
                ("a", tollgate_core::event::format_instant(start)),
                ("b", tollgate_core::event::format_instant(end)),
            ],
        )?;
        let mut out: Vec<(i64, StoredBillLine)> = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push((
                i64_at(r, 23)?,
                StoredBillLine {
                    bill_type: r.s(0)?,
                    import_id: i64_at(r, 1)?,
                    line: BillLineRecord {
                        provider: r.s(2)?,
                        line_kind: r.s(3)?,
                        period_start: r.s(4)?,
                        period_end: r.s(5)?,
                        model: r.opt(6),
                        token_class: r.opt(7),
                        tokens: r.opt_u64(8)?,
                        quantity: r.opt(9),
                        unit: r.opt(10),
                        cost: r.opt(11),
                        currency: r.s(12)?,
                        account: r.opt(13),
                        project: r.opt(14),
                        workspace: r.opt(15),
                        api_key: r.opt(16),
                        principal: r.opt(17),
                        sku: r.opt(18),
                        service_tier: r.opt(19),
                        region: r.opt(20),
                        tags: r.opt(21),
                        source_line: r.u64(22)?,
                    },
                },
            ));
        }
        // Import and line order (ids increase in the order they were recorded).
        out.sort_by_key(|(id, l)| (l.import_id, *id));
        Ok(out.into_iter().map(|(_, l)| l).collect())
    }

    /// [`tollgate_ledger::Ledger::bill_lines_in_force_merged`]: the lines in force (import and
    /// line order) merged per import by the same identity as the SQLite backend (everything
    /// but amounts and the charge period, with the day of `period_start` in `day_tz`); groups
    /// in order of their first line, sums exact.
    pub(super) fn books_bill_lines_in_force_merged(
        &self,
        start: Timestamp,
        end: Timestamp,
        day_tz: &jiff::tz::TimeZone,
    ) -> Result<Vec<StoredBillLine>> {
        type Key = (
            i64,
            String,
            String,
            String,
            [Option<String>; 9],
            (bool, bool),
        );
        let mut out: Vec<StoredBillLine> = Vec::new();
        // Per group: (tokens, cost, has tokens, has cost).
        let mut sums: Vec<(u64, rust_decimal::Decimal, bool, bool)> = Vec::new();
        let mut index: HashMap<Key, usize> = HashMap::new();
        let mut days: HashMap<String, String> = HashMap::new();
        for b in self.books_bill_lines_in_force(start, end)? {
            let l = &b.line;
            let day = match days.get(&l.period_start) {
                Some(d) => d.clone(),
                None => {
                    let t: Timestamp = l
                        .period_start
                        .parse()
                        .map_err(|_| corrupt("period_start", &l.period_start))?;
                    let d = tollgate_core::period::civil_day(t, day_tz).to_string();
                    days.insert(l.period_start.clone(), d.clone());
                    d
                }
            };
            let key: Key = (
                b.import_id,
                l.provider.clone(),
                l.line_kind.clone(),
                day,
                [
                    l.model.clone(),
                    l.token_class.clone(),
                    Some(l.currency.clone()),
                    l.account.clone(),
                    l.project.clone(),
                    l.workspace.clone(),
                    l.api_key.clone(),
                    l.principal.clone(),
                    l.tags.clone(),
                ],
                (l.tokens.is_some(), l.cost.is_some()),
            );
            let i = match index.get(&key) {
                Some(i) => *i,
                None => {
                    out.push(StoredBillLine {
                        bill_type: b.bill_type.clone(),
                        import_id: b.import_id,
                        line: BillLineRecord {
                            provider: l.provider.clone(),
                            line_kind: l.line_kind.clone(),
                            period_start: l.period_start.clone(),
                            period_end: l.period_end.clone(),
                            model: l.model.clone(),
                            token_class: l.token_class.clone(),
                            currency: l.currency.clone(),
                            account: l.account.clone(),
                            project: l.project.clone(),
                            workspace: l.workspace.clone(),
                            api_key: l.api_key.clone(),
                            principal: l.principal.clone(),
                            tags: l.tags.clone(),
                            source_line: l.source_line,
                            ..Default::default()
                        },
                    });
                    sums.push((
                        0,
                        rust_decimal::Decimal::ZERO,
                        l.tokens.is_some(),
                        l.cost.is_some(),
                    ));
                    index.insert(key, out.len() - 1);
                    out.len() - 1
                }
            };
            let m = &mut out[i].line;
            if l.period_start < m.period_start {
                m.period_start = l.period_start.clone();
            }
            if l.period_end > m.period_end {
                m.period_end = l.period_end.clone();
            }
            if let Some(t) = l.tokens {
                sums[i].0 += t;
            }
            if let Some(c) = &l.cost {
                sums[i].1 += tollgate_core::money::parse_decimal("cost", c)?;
            }
        }
        for (m, (t, c, has_tokens, has_cost)) in out.iter_mut().zip(sums) {
            m.line.tokens = has_tokens.then_some(t);
            m.line.cost = has_cost.then(|| c.normalize().to_string());
        }
        Ok(out)
    }

    /// Usage per provider, model, hour (or minute), API key, team and cost center, as the
    /// SQLite ledger answers it: per hour, whole hours come from `key_rollups` (migration 4,
    /// a materialized view) and the partial hours at either edge from `events FINAL`; per
    /// minute, everything from `events FINAL`. A whole hour is taken from `key_rollups` only
    /// when its request count there equals the count in `rollups` (the summaries' view of the
    /// same inserts, complete since migration 1); an hour where they differ — before the
    /// migration's backfill, or an insert that raced it — is read from the events, so the
    /// answer is exact either way.
    pub(super) fn books_usage_by_key(
        &self,
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
            return Ok(sorted(self.usage_by_key_events(start, end, minute)?));
        }
        let ts =
            |secs: i64| Timestamp::from_second(secs).map_err(|e| corrupt("hour", &e.to_string()));
        let hours: Params = vec![("h0", h0.to_string()), ("h1", h1.to_string())];
        const IN_HOURS: &str =
            "hour >= toDateTime({h0:Int64}, 'UTC') AND hour < toDateTime({h1:Int64}, 'UTC')";
        let per_hour = |table: &str| -> Result<HashMap<i64, u64>> {
            let mut m = HashMap::new();
            for r in self.rows(
                &format!(
                    "SELECT toUnixTimestamp(hour), sum(requests) FROM {table} WHERE {IN_HOURS} GROUP BY 1"
                ),
                &hours,
            )? {
                m.insert(i64_at(&r, 0)?, r.u64(1)?);
            }
            Ok(m)
        };
        let want = per_hour("rollups")?;
        let have = per_hour("key_rollups")?;
        let good =
            |h: i64| want.get(&h).copied().unwrap_or(0) == have.get(&h).copied().unwrap_or(0);
        let mut parts = Vec::new();
        if !have.is_empty() {
            for r in self.rows(
                &format!(
                    "SELECT provider, model, toString(hour), api_key_id, team_id, cost_center,
                        sum(requests), sum(input_tokens), sum(cache_read_tokens),
                        sum(cache_write_tokens), sum(cache_write_1h_tokens), sum(output_tokens),
                        sum(reasoning_tokens), sum(cost_e12), sum(unpriced), toUnixTimestamp(hour)
                     FROM key_rollups WHERE {IN_HOURS} GROUP BY 1, 2, 3, 4, 5, 6, 16"
                ),
                &hours,
            )? {
                if good(i64_at(&r, 15)?) {
                    parts.push(key_usage_row(&r)?);
                }
            }
        }
        // Hours to read from the events: the edges, and runs of whole hours that failed the
        // check (every hour, on a ledger whose key rollups are empty).
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        let mut h = h0;
        while h < h1 {
            if good(h) {
                h += 3600;
                continue;
            }
            let a = h;
            while h < h1 && !good(h) {
                h += 3600;
            }
            ranges.push((a, h));
        }
        if start < ts(h0)? {
            parts.extend(self.usage_by_key_events(start, ts(h0)?, false)?);
        }
        for (a, b) in ranges {
            parts.extend(self.usage_by_key_events(ts(a)?, ts(b)?, false)?);
        }
        if ts(h1)? < end {
            parts.extend(self.usage_by_key_events(ts(h1)?, end, false)?);
        }
        Ok(sorted(parts))
    }

    /// Usage by key straight from `events FINAL`.
    fn usage_by_key_events(
        &self,
        start: Timestamp,
        end: Timestamp,
        minute: bool,
    ) -> Result<Vec<KeyUsage>> {
        let bucket = if minute {
            "toStartOfMinute(occurred_at)"
        } else {
            "toStartOfHour(occurred_at)"
        };
        let rows = self.rows(
            &format!(
                "SELECT provider, model, toString(toDateTime({bucket}, 'UTC')), ifNull(api_key_id, ''),
                    ifNull(team_id, ''), ifNull(cost_center, ''), {TOTALS_EVENTS},
                    countIf(cost_e12 IS NULL)
                 FROM events FINAL WHERE {RANGE} GROUP BY 1, 2, 3, 4, 5, 6"
            ),
            &range_params(start, end),
        )?;
        rows.iter().map(key_usage_row).collect()
    }

    pub(super) fn books_usage_ingested_after(
        &self,
        start: Timestamp,
        end: Timestamp,
        after: &str,
    ) -> Result<Vec<TeamUsage>> {
        if end <= start {
            return Ok(Vec::new());
        }
        let mut p = range_params(start, end);
        p.push(("after", ch_text("instant", after)?));
        let mut acc: HashMap<Vec<String>, Totals> = HashMap::new();
        self.grouped(
            &format!(
                "SELECT ifNull(team_id, ''), ifNull(cost_center, ''), {TOTALS_EVENTS}
                 FROM events FINAL WHERE {RANGE} AND ingested_at > {{after:DateTime64(6, 'UTC')}}
                 GROUP BY 1, 2"
            ),
            &p,
            2,
            &mut acc,
        )?;
        let mut out: Vec<TeamUsage> = acc
            .into_iter()
            .map(|(mut k, totals)| {
                let cost_center = k.pop().unwrap_or_default();
                let team_id = k.pop().unwrap_or_default();
                TeamUsage {
                    team_id,
                    cost_center,
                    totals,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.team_id, &a.cost_center).cmp(&(&b.team_id, &b.cost_center)));
        Ok(out)
    }

    /// The stored row with this id, if any (one per id).
    fn history_row<T>(
        &self,
        columns: &str,
        table: &str,
        id: i64,
        read: fn(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        self.history(columns, table, "id = {id:Int64}", &[("id", id.to_string())])?
            .first()
            .map(read)
            .transpose()
    }
}

fn refdata_json(r: &RefDataRecord, changed_at: &str) -> String {
    let e = &r.entry;
    let mut s = String::from("{");
    push_num(&mut s, "id", Some(i128::from(r.version)));
    push_opt(&mut s, "changed_at", Some(changed_at));
    push_opt(&mut s, "kind", Some(&e.kind));
    push_opt(&mut s, "key", Some(&e.key));
    push_opt(&mut s, "team_id", e.team_id.as_deref());
    push_opt(&mut s, "cost_center", e.cost_center.as_deref());
    push_opt(&mut s, "canonical_model", e.canonical_model.as_deref());
    push_opt(&mut s, "provider", e.provider.as_deref());
    push_opt(&mut s, "role", e.role.as_deref());
    push_opt(&mut s, "changed_by", Some(&e.changed_by));
    push_opt(&mut s, "note", e.note.as_deref());
    push_json_str(&mut s, "removed");
    s.push_str(if e.removed { ":true}\n" } else { ":false}\n" });
    s
}

fn period_json(id: i64, at: &str, a: &PeriodAction) -> String {
    let mut s = String::from("{");
    push_num(&mut s, "id", Some(i128::from(id)));
    push_opt(&mut s, "period", Some(&a.period));
    push_opt(&mut s, "action", Some(&a.action));
    push_opt(&mut s, "reason", a.reason.as_deref());
    push_opt(&mut s, "by", Some(&a.by));
    push_opt(&mut s, "snapshot", a.snapshot.as_deref());
    push_json_str(&mut s, "at");
    s.push(':');
    push_json_str(&mut s, at);
    s.push_str("}\n");
    s
}

fn adjustment_json(id: i64, at: &str, a: &Adjustment) -> String {
    let mut s = String::from("{");
    push_num(&mut s, "id", Some(i128::from(id)));
    push_opt(&mut s, "period", Some(&a.period));
    push_opt(&mut s, "kind", Some(&a.kind));
    push_opt(&mut s, "team_id", Some(&a.team_id));
    push_opt(&mut s, "cost_center", a.cost_center.as_deref());
    push_opt(&mut s, "amount", Some(&a.amount));
    push_opt(&mut s, "currency", Some(&a.currency));
    push_opt(&mut s, "reason", Some(&a.reason));
    push_opt(&mut s, "approver", a.approver.as_deref());
    push_opt(&mut s, "requested_by", Some(&a.requested_by));
    push_opt(&mut s, "source", a.source.as_deref());
    push_opt(&mut s, "detail", a.detail.as_deref());
    push_json_str(&mut s, "recorded_at");
    s.push(':');
    push_json_str(&mut s, at);
    s.push_str("}\n");
    s
}

impl ClickHouseWriter<'_> {
    pub(super) fn books_record_refdata(&mut self, e: &RefDataEntry) -> Result<i64> {
        let id = next_id();
        let rec = RefDataRecord {
            version: id,
            changed_at: String::new(),
            entry: e.clone(),
        };
        let row = refdata_json(&rec, &self.now);
        self.push_side("refdata", row);
        Ok(id)
    }

    pub(super) fn books_record_period_action(&mut self, a: &PeriodAction) -> Result<i64> {
        let id = next_id();
        let row = period_json(id, &self.now, a);
        self.push_side("period_log", row);
        Ok(id)
    }

    pub(super) fn books_record_adjustment(&mut self, a: &Adjustment) -> Result<i64> {
        let id = next_id();
        let row = adjustment_json(id, &self.now, a);
        self.push_side("adjustments", row);
        Ok(id)
    }

    pub(super) fn books_copy_refdata(&mut self, r: &RefDataRecord) -> Result<()> {
        match self
            .ledger
            .history_row(REFDATA_COLUMNS, "refdata", r.version, refdata_row)?
        {
            Some(x) if x == *r => Ok(()),
            Some(_) => Err(id_taken("reference data version", r.version)),
            None => {
                let row = refdata_json(r, &ch_text("changed_at", &r.changed_at)?);
                self.push_side("refdata", row);
                Ok(())
            }
        }
    }

    pub(super) fn books_copy_period_action(&mut self, r: &PeriodActionRecord) -> Result<()> {
        match self
            .ledger
            .history_row(PERIOD_LOG_COLUMNS, "period_log", r.id, period_row)?
        {
            Some(x) if x == *r => Ok(()),
            Some(_) => Err(id_taken("period log entry", r.id)),
            None => {
                let row = period_json(r.id, &ch_text("at", &r.at)?, &r.action);
                self.push_side("period_log", row);
                Ok(())
            }
        }
    }

    pub(super) fn books_copy_adjustment(&mut self, r: &AdjustmentRecord) -> Result<()> {
        match self
            .ledger
            .history_row(ADJUSTMENT_COLUMNS, "adjustments", r.id, adjustment_row)?
        {
            Some(x) if x == *r => Ok(()),
            Some(_) => Err(id_taken("adjustment", r.id)),
            None => {
                let row = adjustment_json(
                    r.id,
                    &ch_text("recorded_at", &r.recorded_at)?,
                    &r.adjustment,
                );
                self.push_side("adjustments", row);
                Ok(())
            }
        }
    }
}

/// A usage-by-key row: provider, model, bucket, key, team, cost center, totals, unpriced.
fn key_usage_row(r: &Row) -> Result<KeyUsage> {
    Ok(KeyUsage {
        provider: r.s(0)?,
        model: r.s(1)?,
        bucket: ledger_instant(r.str(2)),
        api_key_id: r.str(3).to_string(),
        team_id: r.str(4).to_string(),
        cost_center: r.str(5).to_string(),
        totals: read_totals(r, 6)?,
        unpriced: r.u64(14)?,
    })
}

/// Sorted by key (byte order, as SQLite); the parts of a usage-by-key answer cover disjoint
/// buckets, so no two rows share a key.
fn sorted(mut out: Vec<KeyUsage>) -> Vec<KeyUsage> {
    out.sort_by(|a, b| {
        (
            &a.provider,
            &a.model,
            &a.bucket,
            &a.api_key_id,
            &a.team_id,
            &a.cost_center,
        )
            .cmp(&(
                &b.provider,
                &b.model,
                &b.bucket,
                &b.api_key_id,
                &b.team_id,
                &b.cost_center,
            ))
    });
    out
}
