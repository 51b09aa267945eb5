//! The ledger test suite, written against the [`Ledger`] trait so that every backend runs the
//! same checks. A backend's tests call [`run_all`] with a factory of fresh, empty ledgers.
//!
//! Expected values are worked by hand in each check, not computed by the code under test.

#![allow(clippy::unwrap_used, clippy::panic)] // a test suite: a failed unwrap is a failed check

use std::collections::BTreeMap;

use jiff::Timestamp;
use rust_decimal::Decimal;
use tollgate_core::{
    Attribution, AttributionStatus, CostBreakdown, Currency, Environment, Operation, Pricing,
    PricingStatus, Status, Usage, UsageEvent,
};

use crate::{Dim, Ledger, PriceVersionRecord, SqlValue, SummaryQuery};

fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("test instant {s}: {e}"))
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap_or_else(|e| panic!("test decimal {s}: {e}"))
}

/// A priced test event: `n` makes the id unique; `cost` None means unpriced.
pub fn event(n: u32, at: &str, team: Option<&str>, input: u64, cost: Option<&str>) -> UsageEvent {
    let pricing = match cost {
        Some(c) => Pricing {
            currency: Currency::USD,
            cost: Some(dec(c)),
            cost_breakdown: CostBreakdown {
                input: dec(c),
                ..CostBreakdown::default()
            },
            price_version: Some("aaaaaaaaaaaa@-inf".into()),
            pricing_status: PricingStatus::Priced,
        },
        None => Pricing::unpriced(),
    };
    let mut tags = BTreeMap::new();
    tags.insert("exp".to_string(), "a\"b".to_string());
    UsageEvent {
        event_id: format!("0190a000-0000-7000-8000-{n:012x}"),
        request_id: Some(format!("req-{n}")),
        attempt: 1,
        parent_request_id: None,
        occurred_at: ts(at),
        completed_at: Some(ts(at)),
        trace_id: None,
        span_id: None,
        session_id: Some("s1".into()),
        attribution: Attribution {
            team_id: team.map(String::from),
            cost_center: team.map(|_| "CC-1".to_string()),
            service: team.map(|_| "svc".to_string()),
            feature: team.map(|_| "feat".to_string()),
            environment: team.map(|_| Environment::Prod),
            tenant_id: None,
            user_id: None,
            api_key_id: Some("key-1".into()),
            region: None,
            tags,
        },
        attribution_status: if team.is_some() {
            AttributionStatus::Ok
        } else {
            AttributionStatus::Quarantined
        },
        provider: "openai".into(),
        model_requested: None,
        model: "gpt-4o".into(),
        operation: Operation::Chat,
        service_tier: None,
        status: Status::Ok,
        http_status: Some(200),
        streamed: true,
        latency_ms: Some(1200),
        ttft_ms: Some(300),
        usage: Usage {
            input_tokens: input,
            cache_read_tokens: 10,
            cache_write_tokens: 0,
            cache_write_1h_tokens: 0,
            output_tokens: 7,
            reasoning_tokens: 2,
            units: BTreeMap::from([("images".to_string(), dec("1.5"))]),
        },
        pricing,
    }
}

/// Runs every check, each on a fresh ledger from `make`.
pub fn run_all(make: &mut dyn FnMut() -> Box<dyn Ledger>) {
    appends_are_idempotent(make().as_mut());
    events_round_trip_exactly(make().as_mut());
    summaries_are_exact_on_and_off_the_hour(make().as_mut());
    unpriced_and_quarantined_stay_visible(make().as_mut());
    uncommitted_writes_leave_nothing(make().as_mut());
    sql_is_read_only(make().as_mut());
    price_versions_are_recorded_once(make().as_mut());
    filters_and_sessions(make().as_mut());
    finalized_invoices_are_kept(make().as_mut());
    bills_are_superseded_not_edited(make().as_mut());
    streamed_bills_supersede_or_leave_nothing(make().as_mut());
    annotations_budgets_and_users(make().as_mut());
    audit_scan_is_ordered_filtered_and_exact(make().as_mut());
    class_costs_add_up_to_the_cost(make().as_mut());
    large_sums_and_tenant_filters(make().as_mut());
    refdata_is_versioned_history(make().as_mut());
    usage_by_key_and_bill_lines_in_force(make().as_mut());
    close_log_adjustments_and_late_usage(make().as_mut());
    copies_keep_history_ids_and_instants(make().as_mut());
}

/// Month totals beyond what a 64-bit count of 10^-12 dollars holds, and summaries filtered by
/// tenant and environment (the invoice's queries).
pub fn large_sums_and_tenant_filters(l: &mut dyn Ledger) {
    // Three events of $4,000,000 each in three different hours of tenant "big" (prod), one of
    // $1 of tenant "small" (prod) and one of $2 of "big" in staging.
    let mut evs = Vec::new();
    for (n, at) in [
        (1, "2026-07-01T01:00:00Z"),
        (2, "2026-07-02T02:00:00Z"),
        (3, "2026-07-03T03:00:00Z"),
    ] {
        let mut e = event(n, at, Some("a"), 1, Some("4000000"));
        e.attribution.tenant_id = Some("big".into());
        e.attribution.environment = Some(Environment::Prod);
        evs.push(e);
    }
    let mut small = event(4, "2026-07-01T01:30:00Z", Some("a"), 1, Some("1"));
    small.attribution.tenant_id = Some("small".into());
    small.attribution.environment = Some(Environment::Prod);
    let mut staging = event(5, "2026-07-01T01:40:00Z", Some("a"), 1, Some("2"));
    staging.attribution.tenant_id = Some("big".into());
    staging.attribution.environment = Some(Environment::Staging);
    evs.extend([small, staging]);
    l.append(&evs).unwrap();
    let month = |filters: &[(Dim, &str)], by: Vec<Dim>| {
        let mut q = SummaryQuery::new(ts("2026-07-01T00:00:00Z"), ts("2026-08-01T00:00:00Z"), by);
        for (d, v) in filters {
            q = q.filter(*d, v);
        }
        l.summarize(&q).unwrap()
    };
    // big, prod: 3 x 4,000,000 = 12,000,000 (1.2e19 in 10^-12 dollars: more than i64's 9.2e18).
    let rows = month(&[(Dim::Tenant, "big"), (Dim::Environment, "prod")], vec![]);
    assert_eq!(rows[0].totals.cost().unwrap(), dec("12000000"));
    assert_eq!(rows[0].totals.requests, 3);
    // big, any environment: 12,000,000 + 2.
    let rows = month(&[(Dim::Tenant, "big")], vec![Dim::Environment]);
    let got: Vec<(String, Decimal)> = rows
        .iter()
        .map(|r| (r.keys[0].clone(), r.totals.cost().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("prod".into(), dec("12000000")),
            ("staging".into(), dec("2"))
        ]
    );
    // Everything: 12,000,000 + 1 + 2.
    let rows = month(&[], vec![]);
    assert_eq!(rows[0].totals.cost().unwrap(), dec("12000003"));
}

pub fn filters_and_sessions(l: &mut dyn Ledger) {
    let mut evs = vec![
        event(1, "2026-07-01T10:00:00Z", Some("a"), 1, Some("1")),
        event(2, "2026-07-01T10:30:00.5Z", Some("a"), 1, Some("2")),
        event(3, "2026-07-01T11:00:00Z", Some("b"), 1, Some("4")),
        event(4, "2026-07-01T11:10:00Z", Some("a"), 1, Some("8")),
    ];
    evs[0].attribution.tenant_id = Some("acme".into());
    evs[1].attribution.tenant_id = Some("acme".into());
    evs[1].session_id = Some("s2".into());
    evs[2].attribution.tenant_id = Some("acme".into());
    evs[3].attribution.environment = Some(tollgate_core::Environment::Staging);
    evs[3].attribution.tenant_id = Some("acme".into());
    l.append(&evs).unwrap();
    // acme in prod, by team, over a range with a partial first hour (10:15 .. 12:00):
    // a = event 2 (2), b = event 3 (4); event 1 is before the range, event 4 is staging.
    let q = SummaryQuery::new(
        ts("2026-07-01T10:15:00Z"),
        ts("2026-07-01T12:00:00Z"),
        vec![Dim::Team],
    )
    .filter(Dim::Tenant, "acme")
    .filter(Dim::Environment, "prod");
    let got: Vec<(String, Decimal)> = l
        .summarize(&q)
        .unwrap()
        .iter()
        .map(|r| (r.keys[0].clone(), r.totals.cost().unwrap()))
        .collect();
    assert_eq!(got, vec![("a".into(), dec("2")), ("b".into(), dec("4"))]);
    // An empty filter value matches absent values: no event lacks a tenant here.
    let none = SummaryQuery::new(
        ts("2026-07-01T00:00:00Z"),
        ts("2026-07-02T00:00:00Z"),
        vec![],
    )
    .filter(Dim::Tenant, "");
    assert!(l.summarize(&none).unwrap().is_empty());
    // Distinct sessions of acme/prod over the day: s1 (events 1, 3) and s2 (event 2) = 2;
    // by team: a has s1, s2 = 2; b has s1 = 1.
    let day = SummaryQuery::new(
        ts("2026-07-01T00:00:00Z"),
        ts("2026-07-02T00:00:00Z"),
        vec![],
    )
    .filter(Dim::Tenant, "acme")
    .filter(Dim::Environment, "prod");
    assert_eq!(l.distinct_sessions(&day).unwrap(), vec![(vec![], 2)]);
    let by_team = SummaryQuery {
        group_by: vec![Dim::Team],
        ..day
    };
    assert_eq!(
        l.distinct_sessions(&by_team).unwrap(),
        vec![(vec!["a".to_string()], 2), (vec!["b".to_string()], 1)]
    );
}

pub fn finalized_invoices_are_kept(l: &mut dyn Ledger) {
    let inv = |number: &str, kind: &str, seq: u64, revision: u64| crate::StoredInvoice {
        number: number.into(),
        kind: kind.into(),
        tenant_id: "acme".into(),
        period: "2026-07".into(),
        pattern: "INV-{SEQ}".into(),
        seq,
        revision,
        currency: "USD".into(),
        total: "638.88".into(),
        document: "{}".into(),
        corrects: None,
        reason: None,
    };
    assert_eq!(l.last_invoice_seq("INV-{SEQ}").unwrap(), 0);
    let mut w = l.writer().unwrap();
    w.record_invoice(&inv("INV-1", "invoice", 1, 1)).unwrap();
    w.commit().unwrap();
    // The same number again is refused.
    let mut w = l.writer().unwrap();
    assert!(w.record_invoice(&inv("INV-1", "invoice", 2, 2)).is_err());
    drop(w);
    // A second invoice for the same revision of the period is refused too.
    let mut w = l.writer().unwrap();
    assert!(w.record_invoice(&inv("INV-2", "invoice", 2, 1)).is_err());
    drop(w);
    let mut w = l.writer().unwrap();
    w.record_invoice(&inv("INV-2", "credit_note", 2, 1))
        .unwrap();
    w.commit().unwrap();
    assert_eq!(l.last_invoice_seq("INV-{SEQ}").unwrap(), 2);
    let got: Vec<(String, String)> = l
        .invoices_for("acme", "2026-07")
        .unwrap()
        .into_iter()
        .map(|i| (i.number, i.kind))
        .collect();
    assert_eq!(
        got,
        vec![
            ("INV-1".into(), "invoice".into()),
            ("INV-2".into(), "credit_note".into())
        ]
    );
    assert!(l.query_sql("UPDATE invoices SET total = '0'").is_err());
}

pub fn appends_are_idempotent(l: &mut dyn Ledger) {
    let evs = vec![
        event(1, "2026-07-01T10:00:00Z", Some("t1"), 100, Some("0.5")),
        event(2, "2026-07-01T10:30:00Z", Some("t1"), 100, Some("0.25")),
    ];
    let first = l.append(&evs).unwrap();
    assert_eq!((first.inserted, first.duplicates), (2, 0));
    // The same two again plus one new: 1 inserted, 2 duplicates.
    let mut again = evs.clone();
    again.push(event(3, "2026-07-01T11:00:00Z", Some("t1"), 100, Some("1")));
    let second = l.append(&again).unwrap();
    assert_eq!((second.inserted, second.duplicates), (1, 2));
    assert_eq!(l.event_count().unwrap(), 3);
    // Duplicates do not reach the rollups: 0.5 + 0.25 + 1 = 1.75, 3 requests.
    let rows = l
        .summarize(&SummaryQuery {
            start: ts("2026-07-01T00:00:00Z"),
            end: ts("2026-07-02T00:00:00Z"),
            group_by: vec![],
            filters: vec![],
        })
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].totals.requests, 3);
    assert_eq!(rows[0].totals.cost().unwrap(), dec("1.75"));
}

pub fn events_round_trip_exactly(l: &mut dyn Ledger) {
    let e = event(
        7,
        "2026-07-01T10:00:00.123456Z",
        Some("t1"),
        2200,
        Some("0.00453"),
    );
    l.append(std::slice::from_ref(&e)).unwrap();
    let back = l.get_event(&e.event_id).unwrap().unwrap();
    assert_eq!(back, e);
    assert!(
        l.get_event("0190a000-0000-7000-8000-ffffffffffff")
            .unwrap()
            .is_none()
    );
    let mut seen = Vec::new();
    l.scan_events(
        ts("2026-07-01T00:00:00Z"),
        ts("2026-07-02T00:00:00Z"),
        &mut |ev| {
            seen.push(ev.event_id);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(seen, vec![e.event_id]);
}

pub fn summaries_are_exact_on_and_off_the_hour(l: &mut dyn Ledger) {
    // Four events around a half-hour boundary (Asia/Kolkata is UTC+05:30, so its days start
    // at 18:30Z). Costs: 1 + 2 + 4 + 8.
    let evs = vec![
        event(1, "2026-07-01T18:00:00Z", Some("a"), 1, Some("1")),
        event(2, "2026-07-01T18:29:59.999999Z", Some("a"), 1, Some("2")),
        event(3, "2026-07-01T18:30:00Z", Some("a"), 1, Some("4")),
        event(4, "2026-07-01T19:45:00Z", Some("b"), 1, Some("8")),
    ];
    l.append(&evs).unwrap();
    let q = |start: &str, end: &str, by: Vec<Dim>| {
        l.summarize(&SummaryQuery {
            start: ts(start),
            end: ts(end),
            group_by: by,
            filters: vec![],
        })
        .unwrap()
    };
    // [18:30Z, 20:00Z): events 3 and 4 -> 4 + 8 = 12. The first hour is partial.
    let rows = q("2026-07-01T18:30:00Z", "2026-07-01T20:00:00Z", vec![]);
    assert_eq!(rows[0].totals.cost().unwrap(), dec("12"));
    assert_eq!(rows[0].totals.requests, 2);
    // [18:00Z, 18:30Z): events 1 and 2 -> 3. Shorter than an hour.
    let rows = q("2026-07-01T18:00:00Z", "2026-07-01T18:30:00Z", vec![]);
    assert_eq!(rows[0].totals.cost().unwrap(), dec("3"));
    // By team over the whole day: a = 1 + 2 + 4 = 7, b = 8; sorted by key.
    let rows = q(
        "2026-07-01T00:00:00Z",
        "2026-07-02T00:00:00Z",
        vec![Dim::Team],
    );
    let got: Vec<(String, Decimal)> = rows
        .iter()
        .map(|r| (r.keys[0].clone(), r.totals.cost().unwrap()))
        .collect();
    assert_eq!(got, vec![("a".into(), dec("7")), ("b".into(), dec("8"))]);
    // Tokens add up per class: 4 events x (1 input, 10 cache read, 7 output, 2 reasoning).
    let t = q("2026-07-01T00:00:00Z", "2026-07-02T00:00:00Z", vec![])[0].totals;
    assert_eq!(
        (
            t.input_tokens,
            t.cache_read_tokens,
            t.output_tokens,
            t.reasoning_tokens
        ),
        (4, 40, 28, 8)
    );
    // An empty range has no rows.
    assert!(q("2026-08-01T00:00:00Z", "2026-08-02T00:00:00Z", vec![]).is_empty());
    // Ungrouped, with an empty partial edge hour (20:00-20:30 has no event): events 3 and 4
    // are in [18:30, 20:30) -> 4 + 8 = 12; the empty edge contributes nothing, not an error.
    let rows = q("2026-07-01T18:30:00Z", "2026-07-01T19:30:00Z", vec![]);
    assert_eq!(rows[0].totals.cost().unwrap(), dec("4"));
    let rows = q("2026-07-01T18:30:00Z", "2026-07-01T20:30:00Z", vec![]);
    assert_eq!(rows[0].totals.cost().unwrap(), dec("12"));
}

pub fn unpriced_and_quarantined_stay_visible(l: &mut dyn Ledger) {
    let evs = vec![
        event(1, "2026-07-01T10:00:00Z", Some("a"), 1, Some("1.5")),
        event(2, "2026-07-01T10:00:01Z", Some("a"), 1, None),
        event(3, "2026-07-01T10:00:02Z", None, 1, Some("0.25")),
    ];
    let out = l.append(&evs).unwrap();
    // One quarantined (no team) and one unpriced (no cost) among the three inserted.
    assert_eq!((out.inserted, out.quarantined, out.unpriced), (3, 1, 1));
    // Appending them again inserts nothing, so nothing is counted twice.
    let again = l.append(&evs).unwrap();
    assert_eq!(
        (again.duplicates, again.quarantined, again.unpriced),
        (3, 0, 0)
    );
    let rows = l
        .summarize(&SummaryQuery {
            start: ts("2026-07-01T00:00:00Z"),
            end: ts("2026-07-02T00:00:00Z"),
            group_by: vec![Dim::AttributionStatus, Dim::PricingStatus],
            filters: vec![],
        })
        .unwrap();
    let got: Vec<(String, String, u64, Decimal)> = rows
        .iter()
        .map(|r| {
            (
                r.keys[0].clone(),
                r.keys[1].clone(),
                r.totals.requests,
                r.totals.cost().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("ok".into(), "priced".into(), 1, dec("1.5")),
            ("ok".into(), "unpriced".into(), 1, dec("0")),
            ("quarantined".into(), "priced".into(), 1, dec("0.25")),
        ]
    );
    // The unpriced event has no cost at all, not zero.
    let t = l
        .query_sql("SELECT cost, cost_e12 FROM events WHERE request_id = 'req-2'")
        .unwrap();
    assert_eq!(t.rows, vec![vec![SqlValue::Null, SqlValue::Null]]);
}

pub fn uncommitted_writes_leave_nothing(l: &mut dyn Ledger) {
    {
        let mut w = l.writer().unwrap();
        w.append(&[event(1, "2026-07-01T10:00:00Z", Some("a"), 1, Some("1"))])
            .unwrap();
        // dropped without commit
    }
    assert_eq!(l.event_count().unwrap(), 0);
    let rows = l
        .summarize(&SummaryQuery {
            start: ts("2026-07-01T00:00:00Z"),
            end: ts("2026-07-02T00:00:00Z"),
            group_by: vec![],
            filters: vec![],
        })
        .unwrap();
    assert!(rows.is_empty());
}

pub fn sql_is_read_only(l: &mut dyn Ledger) {
    l.append(&[event(1, "2026-07-01T10:00:00Z", Some("a"), 5, Some("1"))])
        .unwrap();
    let t = l
        .query_sql("SELECT team_id, input_tokens, cost FROM events")
        .unwrap();
    assert_eq!(t.columns, vec!["team_id", "input_tokens", "cost"]);
    assert_eq!(
        t.rows,
        vec![vec![
            SqlValue::Text("a".into()),
            SqlValue::Integer(5),
            SqlValue::Text("1".into())
        ]]
    );
    for bad in [
        "DELETE FROM events",
        "UPDATE events SET cost = '0'",
        "DROP TABLE events",
        "INSERT INTO imports (source, imported_at, read, ingested, duplicates, quarantined, unpriced) VALUES ('x','y',0,0,0,0,0)",
    ] {
        assert!(l.query_sql(bad).is_err(), "{bad} must be refused");
    }
    assert_eq!(l.event_count().unwrap(), 1);
}

pub fn price_versions_are_recorded_once(l: &mut dyn Ledger) {
    let rec = PriceVersionRecord {
        version: "abc123abc123@-inf".into(),
        provider: "openai".into(),
        model: "gpt-4o".into(),
        effective_from: None,
        effective_to: Some("2026-07-16T00:00:00.000000Z".into()),
        rate_json: "{\"input_per_mtok\":\"2.5\"}".into(),
    };
    for _ in 0..2 {
        let mut w = l.writer().unwrap();
        w.record_price_versions(std::slice::from_ref(&rec)).unwrap();
        w.commit().unwrap();
    }
    let got = l
        .price_versions(&["abc123abc123@-inf".into(), "missing@-inf".into()])
        .unwrap();
    assert_eq!(got, vec![rec]);
}

pub fn audit_scan_is_ordered_filtered_and_exact(l: &mut dyn Ledger) {
    use crate::LedgerError;
    let mut evs = vec![
        event(1, "2026-07-01T10:00:00Z", Some("a"), 2200, Some("0.00453")),
        event(2, "2026-07-01T09:00:00.25Z", Some("a"), 5, None),
        event(3, "2026-07-01T11:00:00Z", Some("a"), 1, Some("1")),
        event(4, "2026-07-01T10:00:00Z", Some("b"), 1, Some("0.1")),
    ];
    evs[0].attribution.tenant_id = Some("acme".into());
    evs[0].attribution.user_id = Some("u-1".into());
    evs[1].attribution.tenant_id = Some("beta".into());
    evs[3].request_id = None;
    l.append(&evs).unwrap();
    // [09:00, 11:00): events 2 (09:00:00.25), 1 and 4 (both 10:00, in append order); event 3
    // sits on the excluded end.
    let mut seen: Vec<(String, String, String, String, u64, String)> = Vec::new();
    l.scan_audit(
        ts("2026-07-01T09:00:00Z"),
        ts("2026-07-01T11:00:00Z"),
        None,
        &mut |r| {
            let s = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
            seen.push((
                s(r.occurred_at),
                s(r.request_id),
                s(r.tenant_id),
                s(r.cost),
                r.input_tokens,
                s(r.pricing_status),
            ));
            Ok(())
        },
    )
    .unwrap();
    let row = |at: &str, req: &str, tenant: &str, cost: &str, input: u64, status: &str| {
        (
            at.to_string(),
            req.to_string(),
            tenant.to_string(),
            cost.to_string(),
            input,
            status.to_string(),
        )
    };
    assert_eq!(
        seen,
        vec![
            // Unpriced: no cost at all (empty), never 0.
            row(
                "2026-07-01T09:00:00.250000Z",
                "req-2",
                "beta",
                "",
                5,
                "unpriced"
            ),
            row(
                "2026-07-01T10:00:00.000000Z",
                "req-1",
                "acme",
                "0.00453",
                2200,
                "priced"
            ),
            row("2026-07-01T10:00:00.000000Z", "", "", "0.1", 1, "priced"),
        ]
    );
    // Every column of one row, as stored.
    let mut one = None;
    l.scan_audit(
        ts("2026-07-01T00:00:00Z"),
        ts("2026-07-02T00:00:00Z"),
        Some("acme"),
        &mut |r| {
            assert!(one.is_none(), "only event 1 has tenant acme");
            one = Some(format!("{r:?}"));
            assert_eq!(
                (r.event_id, r.user_id, r.team_id, r.service, r.feature),
                (
                    &b"0190a000-0000-7000-8000-000000000001"[..],
                    &b"u-1"[..],
                    &b"a"[..],
                    &b"svc"[..],
                    &b"feat"[..]
                )
            );
            assert_eq!(
                (r.environment, r.provider, r.model, r.status, r.http_status),
                (
                    &b"prod"[..],
                    &b"openai"[..],
                    &b"gpt-4o"[..],
                    &b"ok"[..],
                    Some(200)
                )
            );
            assert_eq!(
                (
                    r.latency_ms,
                    r.cache_read_tokens,
                    r.cache_write_tokens,
                    r.cache_write_1h_tokens,
                    r.output_tokens,
                    r.reasoning_tokens
                ),
                (Some(1200), 10, 0, 0, 7, 2)
            );
            assert_eq!(
                (r.currency, r.price_version, r.attribution_status),
                (&b"USD"[..], &b"aaaaaaaaaaaa@-inf"[..], &b"ok"[..])
            );
            Ok(())
        },
    )
    .unwrap();
    assert!(one.is_some());
    // export_audit hands the same rows, encoded, in the same order, and counts them.
    let mut bytes: Vec<u8> = Vec::new();
    let encode = |r: &crate::AuditRow<'_>, out: &mut Vec<u8>| {
        out.extend_from_slice(r.request_id);
        out.push(b';');
    };
    let rows = l
        .export_audit(
            ts("2026-07-01T09:00:00Z"),
            ts("2026-07-01T11:00:00Z"),
            None,
            &encode,
            &mut |b| {
                bytes.extend_from_slice(b);
                Ok(())
            },
        )
        .unwrap();
    assert_eq!((rows, &bytes[..]), (3, &b"req-2;req-1;;"[..]));
    // An empty or inverted range yields nothing.
    let mut n = 0;
    l.scan_audit(
        ts("2026-07-01T11:00:00Z"),
        ts("2026-07-01T10:00:00Z"),
        None,
        &mut |_| {
            n += 1;
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(n, 0);
    // The callback's error stops the scan after the first row and comes back.
    let mut calls = 0;
    let err = l
        .scan_audit(
            ts("2026-07-01T00:00:00Z"),
            ts("2026-07-02T00:00:00Z"),
            None,
            &mut |_| {
                calls += 1;
                Err(LedgerError::Refused("stop".into()))
            },
        )
        .unwrap_err();
    assert!(matches!(err, LedgerError::Refused(m) if m == "stop"));
    assert_eq!(calls, 1);
}

pub fn class_costs_add_up_to_the_cost(l: &mut dyn Ledger) {
    use std::collections::BTreeMap;
    // Event 1: the seed 003 request: 2,200 input (0.00165), 1,200 cache read (0.00009),
    // 620 output (0.00279) = 0.00453.
    let mut e1 = event(1, "2026-07-01T10:00:00Z", Some("a"), 2200, Some("0.00453"));
    e1.usage.cache_read_tokens = 1200;
    e1.usage.output_tokens = 620;
    e1.pricing.cost_breakdown = CostBreakdown {
        input: dec("0.00165"),
        cache_read: dec("0.00009"),
        output: dec("0.00279"),
        ..CostBreakdown::default()
    };
    // Event 2: a cost imported without a breakdown: all of it in class `other`.
    let mut e2 = event(
        2,
        "2026-07-01T23:59:59.999999Z",
        Some("a"),
        100,
        Some("0.5"),
    );
    e2.pricing.cost_breakdown = CostBreakdown {
        units: BTreeMap::from([("other".to_string(), dec("0.5"))]),
        ..CostBreakdown::default()
    };
    // Event 3: unpriced; event 4: the next day (outside the range).
    let e3 = event(3, "2026-07-01T12:00:00Z", Some("a"), 40, None);
    let e4 = event(4, "2026-07-02T00:00:00Z", Some("a"), 1, Some("9"));
    l.append(&[e1, e2, e3, e4]).unwrap();
    let rows = l
        .class_costs(&SummaryQuery::new(
            ts("2026-07-01T00:00:00Z"),
            ts("2026-07-02T00:00:00Z"),
            vec![Dim::Model, Dim::PricingStatus],
        ))
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (p, u) = (&rows[0], &rows[1]);
    assert_eq!(p.keys, vec!["gpt-4o".to_string(), "priced".to_string()]);
    assert_eq!(p.totals.requests, 2);
    // Tokens: input 2,200 + 100; cache read 1,200 + 10; output 620 + 7.
    assert_eq!(p.token_counts(), [2300, 1210, 0, 0, 627]);
    // Costs in 1e-12: 0.00165 = 1,650,000,000; 0.00009 = 90,000,000; 0.00279 = 2,790,000,000.
    assert_eq!(
        p.token_cost_e12,
        [1_650_000_000, 90_000_000, 0, 0, 2_790_000_000]
    );
    // Total 0.00453 + 0.5 = 0.50453 = 504,530,000,000e-12; `other` carries 0.5, no quantity.
    assert_eq!(p.totals.cost_e12, 504_530_000_000);
    assert_eq!(
        p.units.get("other"),
        Some(&crate::UnitTotals {
            quantity: None,
            cost: Some(dec("0.5"))
        })
    );
    // Both events recorded 1.5 images (unpriced as a class here): quantity 3.
    assert_eq!(p.units["images"].quantity, Some(dec("3")));
    assert_eq!(p.units["images"].cost, None);
    // The unpriced event: tokens, no cost anywhere.
    assert_eq!(u.keys, vec!["gpt-4o".to_string(), "unpriced".to_string()]);
    assert_eq!(u.token_counts(), [40, 10, 0, 0, 7]);
    assert_eq!(u.token_cost_e12, [0; 5]);
    assert_eq!(u.totals.cost_e12, 0);
    assert_eq!(u.units["images"].cost, None);
    // An empty range has no groups.
    assert!(
        l.class_costs(&SummaryQuery::new(
            ts("2026-08-01T00:00:00Z"),
            ts("2026-08-02T00:00:00Z"),
            vec![]
        ))
        .unwrap()
        .is_empty()
    );
}

pub fn bills_are_superseded_not_edited(l: &mut dyn Ledger) {
    let imp = |cost: &str, lines: u64| crate::BillImport {
        bill_type: "aws-cur".into(),
        provider: "aws.bedrock".into(),
        source: "cur.csv".into(),
        month: "2026-10".into(),
        period_start: "2026-10-01T00:00:00.000000Z".into(),
        period_end: "2026-10-16T00:00:00.000000Z".into(),
        currency: "USD".into(),
        lines,
        cost: Some(cost.into()),
    };
    let line = |cost: &str| crate::BillLineRecord {
        provider: "aws.bedrock".into(),
        line_kind: "usage".into(),
        period_start: "2026-10-01T00:00:00.000000Z".into(),
        period_end: "2026-10-02T00:00:00.000000Z".into(),
        token_class: Some("input".into()),
        tokens: Some(1000),
        cost: Some(cost.into()),
        currency: "USD".into(),
        source_line: 2,
        ..Default::default()
    };
    // The first delivery of October's CUR, then AWS redelivers it with one more line.
    let mut w = l.writer().unwrap();
    w.record_bill(&imp("1.5", 1), &[line("1.5")]).unwrap();
    w.commit().unwrap();
    let mut w = l.writer().unwrap();
    w.record_bill(&imp("2.25", 2), &[line("1.5"), line("0.75")])
        .unwrap();
    w.commit().unwrap();
    let current = l
        .query_sql("SELECT cost FROM current_bill_lines ORDER BY id")
        .unwrap();
    assert_eq!(
        current.rows,
        vec![
            vec![SqlValue::Text("1.5".into())],
            vec![SqlValue::Text("0.75".into())]
        ]
    );
    // Nothing was deleted: all three lines are kept, two imports recorded.
    let all = l.query_sql("SELECT COUNT(*) FROM bill_lines").unwrap();
    assert_eq!(all.rows, vec![vec![SqlValue::Integer(3)]]);
    assert!(l.query_sql("DELETE FROM bill_lines").is_err());
}

/// [`crate::LedgerWriter::record_bill_streamed`]: lines arrive in batches while a source
/// parses them and the import row comes last; the stored bill is the same as with
/// `record_bill`, it supersedes the earlier import, and a source that fails stores nothing
/// (the earlier import stays in force).
pub fn streamed_bills_supersede_or_leave_nothing(l: &mut dyn Ledger) {
    struct Source {
        batches: Vec<Vec<crate::BillLineRecord>>,
        lines: u64,
        cost: &'static str,
        fail: bool,
    }
    impl crate::BillLineSource for Source {
        fn next_lines(&mut self, out: &mut Vec<crate::BillLineRecord>) -> bool {
            if self.batches.is_empty() {
                return false;
            }
            *out = self.batches.remove(0);
            self.lines += out.len() as u64;
            true
        }
        fn finish(&mut self) -> Option<crate::BillImport> {
            (!self.fail).then(|| crate::BillImport {
                bill_type: "aws-cur".into(),
                provider: "aws.bedrock".into(),
                source: "cur.csv".into(),
                month: "2026-10".into(),
                period_start: "2026-10-01T00:00:00.000000Z".into(),
                period_end: "2026-10-02T00:00:00.000000Z".into(),
                currency: "USD".into(),
                lines: self.lines,
                cost: Some(self.cost.into()),
            })
        }
    }
    let line = |cost: &str, source_line: u64| crate::BillLineRecord {
        provider: "aws.bedrock".into(),
        line_kind: "usage".into(),
        period_start: "2026-10-01T00:00:00.000000Z".into(),
        period_end: "2026-10-02T00:00:00.000000Z".into(),
        token_class: Some("input".into()),
        tokens: Some(1000),
        cost: Some(cost.into()),
        currency: "USD".into(),
        source_line,
        ..Default::default()
    };
    // Three lines in two batches: 1.5 + 0.75 + 0.25 = 2.5.
    let mut w = l.writer().unwrap();
    let id = w
        .record_bill_streamed(&mut Source {
            batches: vec![vec![line("1.5", 2), line("0.75", 3)], vec![line("0.25", 4)]],
            lines: 0,
            cost: "2.5",
            fail: false,
        })
        .unwrap();
    assert!(id.is_some());
    w.commit().unwrap();
    let current = |l: &dyn Ledger| {
        l.query_sql(
            "SELECT l.cost, l.source_line, i.lines, i.cost FROM current_bill_lines l
             JOIN bill_imports i ON i.id = l.import_id ORDER BY l.source_line",
        )
        .unwrap()
        .rows
    };
    let first = vec![
        vec![
            SqlValue::Text("1.5".into()),
            SqlValue::Integer(2),
            SqlValue::Integer(3),
            SqlValue::Text("2.5".into()),
        ],
        vec![
            SqlValue::Text("0.75".into()),
            SqlValue::Integer(3),
            SqlValue::Integer(3),
            SqlValue::Text("2.5".into()),
        ],
        vec![
            SqlValue::Text("0.25".into()),
            SqlValue::Integer(4),
            SqlValue::Integer(3),
            SqlValue::Text("2.5".into()),
        ],
    ];
    assert_eq!(current(l), first);
    // A redelivery whose parse fails after a batch was stored: dropping the writer leaves
    // nothing of it, and the first import stays in force.
    let mut w = l.writer().unwrap();
    let id = w
        .record_bill_streamed(&mut Source {
            batches: vec![vec![line("9", 2)]],
            lines: 0,
            cost: "9",
            fail: true,
        })
        .unwrap();
    assert_eq!(id, None);
    drop(w);
    assert_eq!(current(l), first);
    let all = l.query_sql("SELECT COUNT(*) FROM bill_lines").unwrap();
    assert_eq!(all.rows, vec![vec![SqlValue::Integer(3)]]);
    // A good redelivery supersedes it: one line of 4.
    let mut w = l.writer().unwrap();
    w.record_bill_streamed(&mut Source {
        batches: vec![vec![line("4", 2)]],
        lines: 0,
        cost: "4",
        fail: false,
    })
    .unwrap();
    w.commit().unwrap();
    assert_eq!(
        current(l),
        vec![vec![
            SqlValue::Text("4".into()),
            SqlValue::Integer(2),
            SqlValue::Integer(1),
            SqlValue::Text("4".into()),
        ]]
    );
    let imports = l.query_sql("SELECT COUNT(*) FROM bill_imports").unwrap();
    assert_eq!(imports.rows, vec![vec![SqlValue::Integer(2)]]);
}

pub fn annotations_budgets_and_users(l: &mut dyn Ledger) {
    let mut evs = vec![
        event(1, "2026-07-01T10:00:00Z", Some("a"), 1, Some("3")),
        event(2, "2026-07-02T10:00:00Z", Some("a"), 1, Some("1")),
        event(3, "2026-07-02T11:00:00Z", Some("a"), 1, Some("2")),
    ];
    evs[0].attribution.user_id = Some("u1".into());
    evs[1].attribution.user_id = Some("u2".into());
    evs[2].attribution.user_id = Some("u1".into());
    l.append(&evs).unwrap();
    // u1: 3 + 2 = 5 over two days (summed across days), u2: 1; largest first.
    let users: Vec<(String, Decimal)> = l
        .spend_by_user(ts("2026-07-01T00:00:00Z"), ts("2026-08-01T00:00:00Z"))
        .unwrap()
        .into_iter()
        .map(|(u, t)| (u, t.cost().unwrap()))
        .collect();
    assert_eq!(
        users,
        vec![("u1".into(), dec("5")), ("u2".into(), dec("1"))]
    );
    let mut w = l.writer().unwrap();
    w.record_annotation(&crate::Annotation {
        at: "2026-07-02T09:00:00.000000Z".into(),
        note: "deploy".into(),
        service: None,
    })
    .unwrap();
    let budget = |limit: &str, comment: Option<&str>| crate::BudgetEntry {
        team_id: "a".into(),
        period: "2026-07".into(),
        limit: limit.into(),
        currency: "USD".into(),
        owner: None,
        comment: comment.map(String::from),
    };
    w.record_budget(&budget("10", None)).unwrap();
    w.record_budget(&budget("12", Some("raised"))).unwrap();
    w.commit().unwrap();
    // Half-open range: an annotation at the end instant is outside.
    assert_eq!(
        l.annotations(ts("2026-07-02T00:00:00Z"), ts("2026-07-02T09:00:00Z"))
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        l.annotations(ts("2026-07-02T00:00:00Z"), ts("2026-07-03T00:00:00Z"))
            .unwrap()[0]
            .note,
        "deploy"
    );
    // The latest budget row is in force; earlier rows stay as history.
    assert_eq!(
        l.budgets("2026-07").unwrap(),
        vec![budget("12", Some("raised"))]
    );
    assert!(l.query_sql("DELETE FROM budgets").is_err());
}

pub fn refdata_is_versioned_history(l: &mut dyn Ledger) {
    let owner = |key: &str, team: &str, removed: bool| crate::RefDataEntry {
        kind: "api_key".into(),
        key: key.into(),
        team_id: Some(team.into()),
        cost_center: Some("CC-1".into()),
        removed,
        changed_by: "ana".into(),
        ..Default::default()
    };
    let mut w = l.writer().unwrap();
    let v1 = w.record_refdata(&owner("k1", "search", false)).unwrap();
    let v2 = w.record_refdata(&owner("k2", "support", false)).unwrap();
    let v3 = w.record_refdata(&owner("k1", "growth", false)).unwrap();
    let v4 = w.record_refdata(&owner("k2", "support", true)).unwrap();
    w.commit().unwrap();
    assert!(v1 < v2 && v2 < v3 && v3 < v4);
    // In force now: k1 -> growth (the newer row); k2 removed.
    let now = l.refdata(None).unwrap();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].entry.key, "k1");
    assert_eq!(now[0].entry.team_id.as_deref(), Some("growth"));
    // As of version 2: k1 -> search, k2 -> support.
    let then = l.refdata(Some(v2)).unwrap();
    let teams: Vec<(&str, &str)> = then
        .iter()
        .map(|r| (r.entry.key.as_str(), r.entry.team_id.as_deref().unwrap()))
        .collect();
    assert_eq!(teams, vec![("k1", "search"), ("k2", "support")]);
    // History keeps all four changes, who made them, oldest first.
    let h = l.refdata_history(Some("api_key"), Some("k1")).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].entry.changed_by, "ana");
    assert_eq!(l.refdata_history(None, None).unwrap().len(), 4);
    assert!(l.query_sql("DELETE FROM refdata").is_err());
}

pub fn usage_by_key_and_bill_lines_in_force(l: &mut dyn Ledger) {
    let mut evs = vec![
        event(1, "2026-07-01T10:05:00Z", Some("a"), 100, Some("1.5")),
        event(2, "2026-07-01T10:55:00Z", Some("a"), 50, Some("0.25")),
        event(3, "2026-07-01T11:00:00Z", Some("a"), 7, None),
        event(4, "2026-07-02T00:00:00Z", Some("a"), 9, Some("9")),
    ];
    evs[0].attribution.api_key_id = Some("k1".into());
    evs[1].attribution.api_key_id = Some("k1".into());
    evs[2].attribution.api_key_id = None;
    l.append(&evs).unwrap();
    let u = l
        .usage_by_key(
            ts("2026-07-01T00:00:00Z"),
            ts("2026-07-02T00:00:00Z"),
            false,
        )
        .unwrap();
    // Hour 10 on k1: 100 + 50 input tokens, 1.5 + 0.25 = 1.75; hour 11 without a key: one
    // unpriced event of 7 tokens. Event 4 is at the end instant: outside.
    assert_eq!(u.len(), 2);
    assert_eq!(u[0].api_key_id, "k1");
    assert_eq!(u[0].bucket, "2026-07-01T10:00:00.000000Z");
    assert_eq!(u[0].totals.input_tokens, 150);
    assert_eq!(u[0].totals.cost().unwrap(), dec("1.75"));
    assert_eq!(u[1].api_key_id, "");
    assert_eq!(u[1].bucket, "2026-07-01T11:00:00.000000Z");
    assert_eq!((u[1].totals.input_tokens, u[1].unpriced), (7, 1));
    let by_minute = l
        .usage_by_key(ts("2026-07-01T00:00:00Z"), ts("2026-07-02T00:00:00Z"), true)
        .unwrap();
    assert_eq!(by_minute.len(), 3);
    // Off the hour: 10:30-11:30 holds the 10:55 call (50 tokens, 0.25) and the 11:00 one.
    let edges = l
        .usage_by_key(
            ts("2026-07-01T10:30:00Z"),
            ts("2026-07-01T11:30:00Z"),
            false,
        )
        .unwrap();
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[0].totals.input_tokens, 50);
    assert_eq!(edges[0].totals.cost().unwrap(), dec("0.25"));
    assert_eq!(edges[1].totals.input_tokens, 7);
    // Bill lines: only the newest import of the month is in force, filtered by start.
    let imp = crate::BillImport {
        bill_type: "openai-usage".into(),
        provider: "openai".into(),
        source: "u.json".into(),
        month: "2026-07".into(),
        period_start: "2026-07-01T00:00:00.000000Z".into(),
        period_end: "2026-07-03T00:00:00.000000Z".into(),
        currency: "USD".into(),
        lines: 2,
        cost: None,
    };
    let line = |day: &str, tokens: u64| crate::BillLineRecord {
        provider: "openai".into(),
        line_kind: "usage".into(),
        period_start: format!("2026-07-{day}T00:00:00.000000Z"),
        period_end: "2026-07-03T00:00:00.000000Z".into(),
        token_class: Some("input".into()),
        tokens: Some(tokens),
        currency: "USD".into(),
        api_key: Some("k1".into()),
        source_line: 1,
        ..Default::default()
    };
    let mut w = l.writer().unwrap();
    w.record_bill(&imp, &[line("01", 1)]).unwrap();
    let mut later = line("01", 50);
    later.period_start = "2026-07-01T13:00:00.000000Z".into();
    w.record_bill(&imp, &[line("01", 150), line("02", 9), later])
        .unwrap();
    w.commit().unwrap();
    // Merged per UTC day: the two lines of the 1st (00:00 and 13:00) become one of
    // 150 + 50 = 200 tokens from the earlier start; no cost on either.
    let m = l
        .bill_lines_in_force_merged(
            ts("2026-07-01T00:00:00Z"),
            ts("2026-07-03T00:00:00Z"),
            &jiff::tz::TimeZone::UTC,
        )
        .unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].line.tokens, Some(200));
    assert_eq!(m[0].line.period_start, "2026-07-01T00:00:00.000000Z");
    assert_eq!(m[0].line.cost, None);
    assert_eq!(m[1].line.tokens, Some(9));
    let b = l
        .bill_lines_in_force(ts("2026-07-01T00:00:00Z"), ts("2026-07-02T00:00:00Z"))
        .unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].bill_type, "openai-usage");
    assert_eq!(b[0].line.tokens, Some(150));
    assert_eq!(b[0].line.api_key.as_deref(), Some("k1"));
}

pub fn close_log_adjustments_and_late_usage(l: &mut dyn Ledger) {
    let mut w = l.writer().unwrap();
    let close = crate::PeriodAction {
        period: "2026-07".into(),
        action: "close".into(),
        reason: None,
        by: "ana".into(),
        snapshot: Some("{}".into()),
    };
    w.record_period_action(&close).unwrap();
    w.record_period_action(&crate::PeriodAction {
        action: "reopen".into(),
        reason: Some("late bill".into()),
        snapshot: None,
        ..close.clone()
    })
    .unwrap();
    w.record_period_action(&crate::PeriodAction {
        period: "2026-08".into(),
        ..close.clone()
    })
    .unwrap();
    let adj = crate::Adjustment {
        period: "2026-07".into(),
        kind: "adjustment".into(),
        team_id: "a".into(),
        amount: "-12.50".into(),
        currency: "USD".into(),
        reason: "credit".into(),
        approver: Some("key_cfo".into()),
        requested_by: "ana".into(),
        ..Default::default()
    };
    w.record_adjustment(&adj).unwrap();
    w.commit().unwrap();
    let log = l.period_actions(Some("2026-07")).unwrap();
    let actions: Vec<&str> = log.iter().map(|r| r.action.action.as_str()).collect();
    assert_eq!(actions, vec!["close", "reopen"]);
    assert_eq!(log[1].action.reason.as_deref(), Some("late bill"));
    assert_eq!(l.period_actions(None).unwrap().len(), 3);
    let adjs = l.adjustments(Some("2026-07")).unwrap();
    assert_eq!(adjs.len(), 1);
    assert_eq!(adjs[0].adjustment, adj);
    assert!(l.adjustments(Some("2026-08")).unwrap().is_empty());
    assert!(l.query_sql("DELETE FROM adjustments").is_err());
    assert!(l.query_sql("DELETE FROM period_log").is_err());
    // Late usage: events ingested after an instant, per team; 1.5 + 2 = 3.5 for team a.
    l.append(&[
        event(1, "2026-07-01T10:00:00Z", Some("a"), 10, Some("1.5")),
        event(2, "2026-07-02T10:00:00Z", Some("a"), 20, Some("2")),
        event(3, "2026-08-01T00:00:00Z", Some("a"), 40, Some("4")),
    ])
    .unwrap();
    let (s, e) = (ts("2026-07-01T00:00:00Z"), ts("2026-08-01T00:00:00Z"));
    let late = l
        .usage_ingested_after(s, e, "2000-01-01T00:00:00.000000Z")
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].team_id, "a");
    assert_eq!(late[0].totals.input_tokens, 30);
    assert_eq!(late[0].totals.cost().unwrap(), dec("3.5"));
    assert!(
        l.usage_ingested_after(s, e, "9999-01-01T00:00:00.000000Z")
            .unwrap()
            .is_empty()
    );
}

/// `ledger copy`: history rows keep their ids (versions) and instants in the target; copying
/// the same row again stores nothing; a different row under a taken id is refused; rows
/// recorded afterwards are newer than the copied ones.
pub fn copies_keep_history_ids_and_instants(l: &mut dyn Ledger) {
    let rd = |version: i64, team: &str| crate::RefDataRecord {
        version,
        changed_at: format!("2026-06-0{version}T08:00:00.000000Z"),
        entry: crate::RefDataEntry {
            kind: "api_key".into(),
            key: "k1".into(),
            team_id: Some(team.into()),
            changed_by: "ana".into(),
            note: Some("copied".into()),
            ..Default::default()
        },
    };
    let close = crate::PeriodActionRecord {
        id: 7,
        at: "2026-08-02T09:30:00.250000Z".into(),
        action: crate::PeriodAction {
            period: "2026-07".into(),
            action: "close".into(),
            reason: Some("month end".into()),
            by: "ana".into(),
            snapshot: Some("{\"lines\":[]}".into()),
        },
    };
    let adj = crate::AdjustmentRecord {
        id: 9,
        recorded_at: "2026-08-03T10:00:00.000001Z".into(),
        adjustment: crate::Adjustment {
            period: "2026-08".into(),
            kind: "reprice".into(),
            team_id: "a".into(),
            cost_center: Some("CC-1".into()),
            amount: "0.000000000001".into(),
            currency: "USD".into(),
            reason: "rates".into(),
            requested_by: "ana".into(),
            source: Some("2026-07".into()),
            detail: Some("[]".into()),
            ..Default::default()
        },
    };
    for _ in 0..2 {
        let mut w = l.writer().unwrap();
        w.copy_refdata(&rd(1, "search")).unwrap();
        w.copy_refdata(&rd(2, "growth")).unwrap();
        w.copy_period_action(&close).unwrap();
        w.copy_adjustment(&adj).unwrap();
        w.commit().unwrap();
    }
    assert_eq!(
        l.refdata_history(None, None).unwrap(),
        vec![rd(1, "search"), rd(2, "growth")]
    );
    assert_eq!(l.refdata(Some(1)).unwrap(), vec![rd(1, "search")]);
    assert_eq!(l.period_actions(None).unwrap(), vec![close.clone()]);
    assert_eq!(l.adjustments(None).unwrap(), vec![adj.clone()]);
    // Another change under a taken version is refused (nothing stored).
    let mut w = l.writer().unwrap();
    assert!(w.copy_refdata(&rd(2, "support")).is_err());
    drop(w);
    // A change recorded now is newer than the copied ones, and in force.
    let mut w = l.writer().unwrap();
    let v = w
        .record_refdata(&crate::RefDataEntry {
            team_id: Some("support".into()),
            ..rd(1, "").entry
        })
        .unwrap();
    w.commit().unwrap();
    assert!(v > 2);
    let now = l.refdata(None).unwrap();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].version, v);
    assert_eq!(now[0].entry.team_id.as_deref(), Some("support"));
    assert_eq!(
        l.refdata_history(Some("api_key"), Some("k1"))
            .unwrap()
            .len(),
        3
    );
    // Events copied with their first ingestion instant: not late for a close cut at
    // 2026-08-02 09:30; an event ingested now (by the clock) is.
    let e1 = event(1, "2026-07-01T10:00:00Z", Some("a"), 10, Some("1"));
    let e2 = event(2, "2026-07-02T10:00:00Z", Some("a"), 20, Some("2"));
    let mut w = l.writer().unwrap();
    assert!(w.set_ingested_at("yesterday").is_err());
    w.set_ingested_at("2026-07-05T00:00:00.000000Z").unwrap();
    w.append(std::slice::from_ref(&e1)).unwrap();
    w.commit().unwrap();
    l.append(std::slice::from_ref(&e2)).unwrap();
    let mut seen = Vec::new();
    l.scan_events_ingested(
        ts("2026-07-01T00:00:00Z"),
        ts("2026-08-01T00:00:00Z"),
        &mut |e, at| {
            seen.push((e, at.to_string()));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], (e1, "2026-07-05T00:00:00.000000Z".to_string()));
    assert_eq!(seen[1].0, e2);
    assert!(seen[1].1.as_str() > "2026-08-02T09:30:00.250000Z");
    let late = l
        .usage_ingested_after(
            ts("2026-07-01T00:00:00Z"),
            ts("2026-08-01T00:00:00Z"),
            &close.at,
        )
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(
        (late[0].totals.requests, late[0].totals.input_tokens),
        (1, 20)
    );
}
