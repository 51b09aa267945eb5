//! `tollgate ingest events`: good files, pricing at ingest, idempotence, CSV and stdin.

use serde_json::{Map, Value, json};

use crate::support::{Sandbox, event, event_id, jsonl, path_str};

/// Five events, with the ledger outcome worked by hand for each.
fn five_events() -> Vec<Map<String, Value>> {
    vec![
        // 1. The seed 003 usage in the first rate period: 0.00453 (see price.rs).
        event(
            1,
            json!({"input_tokens": 2200, "cache_read_tokens": 1200, "output_tokens": 620}),
        ),
        // 2. No team_id: quarantined, but still priced:
        //    1,000 x 0.75 / 1e6 + 100 x 4.50 / 1e6 = 0.00075 + 0.00045 = 0.0012
        event(
            2,
            json!({"team_id": null, "input_tokens": 1000, "output_tokens": 100}),
        ),
        // 3. A model no rate table knows: unpriced, no cost at all.
        event(
            3,
            json!({"model": "mystery-model", "input_tokens": 5000, "output_tokens": 50}),
        ),
        // 4. Carries its own cost: kept as given, not re-priced.
        event(
            4,
            json!({"cost": "0.5", "input_tokens": 2200, "output_tokens": 620}),
        ),
        // 5. After the price change of 2026-07-16 (1 / 0.1 / 5 per million):
        //    1,000 x 1 / 1e6 + 200 x 5 / 1e6 = 0.001 + 0.001 = 0.002
        event(
            5,
            json!({"occurred_at": "2026-07-20T08:00:00+02:00", "input_tokens": 1000, "output_tokens": 200}),
        ),
    ]
}

const LEDGER_QUERY: &str = "SELECT event_id, cost, pricing_status, attribution_status, price_version FROM events ORDER BY event_id";

#[test]
fn ingest_prices_quarantines_and_keeps_given_costs() {
    let sb = Sandbox::new();
    sb.write("events.jsonl", jsonl(&five_events()));
    let s = sb.ingest("events.jsonl");
    assert_eq!(s["read"], 5, "{s}");
    assert_eq!(s["ingested"], 5);
    assert_eq!(s["duplicates"], 0);
    assert_eq!(s["quarantined"], 1);
    assert_eq!(s["unpriced"], 1);

    let rows = sb.sql(LEDGER_QUERY);
    assert_eq!(rows.len(), 5, "{rows:?}");
    let ids: Vec<String> = (1..=5).map(event_id).collect();
    for (row, id) in rows.iter().zip(&ids) {
        assert_eq!(row["event_id"], id.as_str());
    }
    // 1: 0.00453, priced with the first period's version.
    assert_eq!(rows[0]["cost"], "0.00453", "{:?}", rows[0]);
    assert_eq!(rows[0]["pricing_status"], "priced");
    assert_eq!(rows[0]["attribution_status"], "ok");
    let v1 = rows[0]["price_version"]
        .as_str()
        .expect("version on a priced event");
    assert!(v1.ends_with("@-inf"), "{v1}");
    // 2: 0.0012, quarantined but priced.
    assert_eq!(rows[1]["cost"], "0.0012", "{:?}", rows[1]);
    assert_eq!(rows[1]["pricing_status"], "priced");
    assert_eq!(rows[1]["attribution_status"], "quarantined");
    assert_eq!(rows[1]["price_version"], v1);
    // 3: unpriced: NULL cost (never "0") and no version.
    assert_eq!(rows[2]["cost"], Value::Null, "{:?}", rows[2]);
    assert_eq!(rows[2]["pricing_status"], "unpriced");
    assert_eq!(rows[2]["attribution_status"], "ok");
    assert_eq!(rows[2]["price_version"], Value::Null);
    // 4: the given cost, untouched (repricing would have given 0.00444).
    assert_eq!(rows[3]["cost"], "0.5", "{:?}", rows[3]);
    assert_eq!(rows[3]["pricing_status"], "priced");
    // 5: 0.002 at the second period's prices and version.
    assert_eq!(rows[4]["cost"], "0.002", "{:?}", rows[4]);
    let v5 = rows[4]["price_version"].as_str().expect("version");
    assert!(v5.ends_with("@2026-07-16T00:00:00.000000Z"), "{v5}");

    // Instants are stored in UTC with six fraction digits: 08:00+02:00 is 06:00Z.
    let t = sb.sql(&format!(
        "SELECT occurred_at FROM events WHERE event_id = '{}'",
        event_id(5)
    ));
    assert_eq!(t[0]["occurred_at"], "2026-07-20T06:00:00.000000Z");

    // The versions used are recorded in the ledger.
    let pv = sb.sql("SELECT version FROM price_versions ORDER BY version");
    let mut want = vec![v1.to_string(), v5.to_string()];
    want.sort();
    let got: Vec<&str> = pv.iter().filter_map(|r| r["version"].as_str()).collect();
    assert_eq!(got, want);
}

#[test]
fn reingesting_the_same_file_only_counts_duplicates() {
    let sb = Sandbox::new();
    sb.write("events.jsonl", jsonl(&five_events()));
    let first = sb.ingest("events.jsonl");
    assert_eq!(first["ingested"], 5, "{first}");
    let before = sb.sql(LEDGER_QUERY);

    let again = sb.ingest("events.jsonl");
    assert_eq!(again["read"], 5, "{again}");
    assert_eq!(again["ingested"], 0);
    assert_eq!(again["duplicates"], 5);
    assert_eq!(sb.event_count(), 5);
    assert_eq!(
        sb.sql(LEDGER_QUERY),
        before,
        "a duplicate must not change the stored event"
    );
    // Rollups are not double-counted either: 5 requests in all.
    let r = sb.sql("SELECT SUM(requests) AS n FROM rollups");
    assert_eq!(r[0]["n"], 5, "{r:?}");
}

#[test]
fn duplicate_event_ids_inside_one_file_are_stored_once() {
    let sb = Sandbox::new();
    let e = event(1, json!({"cost": "0.25"}));
    sb.write("dup.jsonl", jsonl(&[e.clone(), e]));
    let s = sb.ingest("dup.jsonl");
    assert_eq!(s["read"], 2, "{s}");
    assert_eq!(s["ingested"], 1);
    assert_eq!(s["duplicates"], 1);
    assert_eq!(sb.event_count(), 1);
}

/// Every stored column of every event, except when and in which order it was stored.
fn ledger_content(sb: &Sandbox) -> Vec<Value> {
    let mut rows = sb.sql("SELECT * FROM events ORDER BY event_id");
    for r in &mut rows {
        let o = r.as_object_mut().expect("row object");
        assert!(
            o.remove("ingested_at").is_some(),
            "no ingested_at column: {o:?}"
        );
        o.remove("seq");
    }
    rows
}

#[test]
fn csv_and_jsonl_give_the_same_ledger() {
    let events = vec![
        event(
            1,
            json!({"tenant_id": "acme", "tags": {"k": "v", "x": "y"}, "input_tokens": 2200,
                   "cache_read_tokens": 1200, "output_tokens": 620, "reasoning_tokens": 20,
                   "units": {"web_search_requests": "2"}}),
        ),
        event(
            2,
            json!({"team_id": null, "cost": "0.125", "output_tokens": 7}),
        ),
        event(
            3,
            json!({"model": "mystery-model", "environment": "staging", "input_tokens": 9}),
        ),
    ];
    let csv = "event_id,occurred_at,provider,model,team_id,service,feature,environment,tenant_id,tags,input_tokens,cache_read_tokens,output_tokens,reasoning_tokens,units,cost\n"
        .to_string()
        + &format!(
            "{},2026-07-10T12:00:00Z,openai,seed-model,a,chat,answer,prod,acme,\"k=v,x=y\",2200,1200,620,20,web_search_requests=2,\n",
            event_id(1)
        )
        + &format!("{},2026-07-10T12:00:00Z,openai,seed-model,,chat,answer,prod,,,,,7,,,0.125\n", event_id(2))
        + &format!("{},2026-07-10T12:00:00Z,openai,mystery-model,a,chat,answer,staging,,,9,,,,,\n", event_id(3));

    let from_jsonl = Sandbox::new();
    from_jsonl.write("events.jsonl", jsonl(&events));
    from_jsonl.ingest("events.jsonl");
    let from_csv = Sandbox::new();
    from_csv.write("events.csv", csv);
    let s = from_csv.ingest("events.csv");
    assert_eq!(s["ingested"], 3, "{s}");
    assert_eq!(s["quarantined"], 1);
    assert_eq!(s["unpriced"], 1);

    let a = ledger_content(&from_jsonl);
    let b = ledger_content(&from_csv);
    assert_eq!(a.len(), 3);
    assert_eq!(a, b, "CSV and JSONL imports differ");
    // And the content is what we expect, so equality is not vacuous:
    // event 1: 0.00453 (seed usage) + 2 x 0.01 web searches = 0.02453
    assert_eq!(a[0]["cost"], "0.02453", "{:?}", a[0]);
    assert_eq!(a[1]["cost"], "0.125");
    assert_eq!(a[1]["attribution_status"], "quarantined");
    assert_eq!(a[2]["cost"], Value::Null);
    assert_eq!(a[2]["environment"], "staging");
}

#[test]
fn dash_reads_events_from_stdin() {
    let sb = Sandbox::new();
    let rates = sb.seed_rates();
    let r = sb.run_stdin(
        &[
            "--prices",
            path_str(&rates),
            "ingest",
            "events",
            "-",
            "--format",
            "json",
        ],
        jsonl(&five_events()).as_bytes(),
    );
    let s = r.json();
    assert_eq!(s["read"], 5, "{s}");
    assert_eq!(s["ingested"], 5);
    assert_eq!(s["quarantined"], 1);
    assert_eq!(s["unpriced"], 1);
    let rows = sb.sql(LEDGER_QUERY);
    assert_eq!(rows[0]["cost"], "0.00453");
    // Piped: no progress bar on stderr.
    assert!(r.stderr.is_empty(), "stderr: {}", r.stderr);
}

#[test]
fn csv_from_stdin_with_input_format() {
    let sb = Sandbox::new();
    let csv = format!(
        "event_id,occurred_at,provider,model,team_id,service,feature,environment,cost\n\
         {},2026-07-10T12:00:00Z,openai,seed-model,a,chat,answer,prod,0.125\n",
        event_id(1)
    );
    let s = sb
        .run_stdin(
            &[
                "ingest",
                "events",
                "-",
                "--input-format",
                "csv",
                "--format",
                "json",
            ],
            csv.as_bytes(),
        )
        .json();
    assert_eq!(s["ingested"], 1, "{s}");
    assert_eq!(
        sb.sql("SELECT cost FROM events"),
        vec![json!({"cost": "0.125"})]
    );
}

#[test]
fn stdin_errors_name_stdin_and_the_line() {
    let sb = Sandbox::new();
    let good = jsonl(&[event(1, json!({}))]);
    let bad = jsonl(&[event(2, json!({"output_tokens": "ten"}))]);
    let r = sb.run_stdin(
        &["ingest", "events", "-"],
        format!("{good}{bad}").as_bytes(),
    );
    let err = r.fails();
    assert!(err.contains("<stdin>:2: output_tokens:"), "{err}");
}

#[test]
fn table_summary_mentions_quarantined_and_unpriced() {
    let sb = Sandbox::new();
    let rates = sb.seed_rates();
    sb.write("events.jsonl", jsonl(&five_events()));
    let out = sb.run(&[
        "--prices",
        path_str(&rates),
        "ingest",
        "events",
        "events.jsonl",
    ]);
    let text = out.ok();
    assert!(text.contains("quarantined: 1 events"), "{text}");
    assert!(
        text.contains("unpriced: 1 events") && text.contains("mystery-model"),
        "{text}"
    );
}

#[test]
fn batch_events_and_missing_class_prices_at_ingest() {
    let sb = Sandbox::new();
    let seed = json!({"input_tokens": 2200, "cache_read_tokens": 1200, "output_tokens": 620});
    let with = |extra: Value| {
        let mut m = seed.as_object().unwrap().clone();
        m.extend(extra.as_object().unwrap().clone());
        Value::Object(m)
    };
    sb.write(
        "events.jsonl",
        jsonl(&[
            // operation "batch": the seed usage at batch prices, 0.00453 x 0.5 = 0.002265
            event(1, with(json!({"operation": "batch"}))),
            // service_tier "batch" too: 0.002265
            event(2, with(json!({"service_tier": "batch"}))),
            // cache-write tokens, which the rate does not price: unpriced, not zero
            event(3, json!({"input_tokens": 5, "cache_write_tokens": 10})),
            // batch after 2026-07-16, where the rate has no batch multiplier: unpriced
            event(4, json!({"occurred_at": "2026-07-20T00:00:00Z", "operation": "batch", "input_tokens": 1})),
        ]),
    );
    let s = sb.ingest("events.jsonl");
    assert_eq!(s["ingested"], 4, "{s}");
    assert_eq!(s["unpriced"], 2);
    let reasons = s["unpriced_reasons"].as_object().expect("reasons");
    assert!(
        reasons.keys().any(|k| k.contains("cache_write_tokens")),
        "{s}"
    );
    assert!(reasons.keys().any(|k| k.contains("batch")), "{s}");

    let rows = sb.sql("SELECT cost, pricing_status FROM events ORDER BY event_id");
    assert_eq!(
        rows[0],
        json!({"cost": "0.002265", "pricing_status": "priced"})
    );
    assert_eq!(
        rows[1],
        json!({"cost": "0.002265", "pricing_status": "priced"})
    );
    assert_eq!(rows[2], json!({"cost": null, "pricing_status": "unpriced"}));
    assert_eq!(rows[3], json!({"cost": null, "pricing_status": "unpriced"}));
}

#[test]
fn event_ids_are_compared_case_insensitively() {
    let sb = Sandbox::new();
    let upper = event(
        1,
        json!({"event_id": "0000000A-0000-7000-8000-00000000000B", "cost": "0.1"}),
    );
    let lower = event(
        2,
        json!({"event_id": "0000000a-0000-7000-8000-00000000000b", "cost": "0.2"}),
    );
    sb.write("events.jsonl", jsonl(&[upper, lower]));
    let s = sb.ingest("events.jsonl");
    assert_eq!(s["ingested"], 1, "{s}");
    assert_eq!(s["duplicates"], 1);
    // The first one wins, stored lower-case.
    let rows = sb.sql("SELECT event_id, cost FROM events");
    assert_eq!(
        rows,
        vec![json!({"event_id": "0000000a-0000-7000-8000-00000000000b", "cost": "0.1"})]
    );
}

/// The undocumented switch that cuts JSONL into chunks of N lines for the parallel parsers
/// (by default chunks are a few megabytes), so small files span many chunks.
const CHUNK_LINES: &str = "TOLLGATE_INGEST_CHUNK_LINES";

#[test]
fn a_file_of_many_chunks_is_stored_in_file_order() {
    // 60 events whose ids are not in file order (and blank lines among them), parsed in
    // chunks of 1, 4 and 7 lines by several threads: the ledger's seq follows the file.
    let order: Vec<u32> = (0..60u32).map(|i| (i * 37) % 60 + 1).collect();
    let mut text = String::new();
    for (i, n) in order.iter().enumerate() {
        text.push_str(&jsonl(&[event(*n, json!({"input_tokens": 100}))]));
        if i % 9 == 0 {
            text.push('\n');
        }
    }
    let want: Vec<String> = order.iter().map(|n| event_id(*n)).collect();
    for lines in ["1", "4", "7"] {
        let sb = Sandbox::new();
        sb.write("shuffled.jsonl", &text);
        let s = sb
            .ingest_run(&[(CHUNK_LINES, lines)], "shuffled.jsonl", &[])
            .json();
        assert_eq!(s["ingested"], 60, "{s}");
        let rows = sb.sql("SELECT event_id FROM events ORDER BY seq");
        let got: Vec<&str> = rows
            .iter()
            .map(|r| r["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(got, want, "chunks of {lines} lines");
    }
}

#[test]
fn events_stored_already_in_some_chunks_are_skipped_and_the_rest_kept_in_file_order() {
    // Events 11-15 are imported first; then events 1-40 in chunks of 4 lines. Chunks 9-12
    // and 13-16 hold stored events: the ledger refuses their prepared blocks and their events
    // are appended one by one (parsed again from the chunk, or kept by the parsers once a
    // refusal was seen); the other chunks go in as prepared blocks. Expected, by hand: 35
    // stored and 5 duplicates; seq order 11-15, then 1-10 and 16-40.
    let all: Vec<String> = (1..=40u32)
        .map(|n| jsonl(&[event(n, json!({"input_tokens": 100 + n}))]))
        .collect();
    let import =
        |sb: &Sandbox, env: &[(&str, &str)], file: &str| sb.ingest_run(env, file, &[]).json();
    let rows = |sb: &Sandbox| {
        sb.sql(
            "SELECT event_id, input_tokens, cost, cost_e12, pricing_status FROM events ORDER BY seq",
        )
    };
    let mut results = Vec::new();
    for lines in ["4", "1000"] {
        let sb = Sandbox::new();
        sb.write("first.jsonl", all[10..15].concat());
        sb.write("all.jsonl", all.concat());
        let first = import(&sb, &[], "first.jsonl");
        assert_eq!(first["ingested"], 5, "{first}");
        let s = import(&sb, &[(CHUNK_LINES, lines)], "all.jsonl");
        assert_eq!(
            (&s["ingested"], &s["duplicates"]),
            (&json!(35), &json!(5)),
            "{s}"
        );
        let got = rows(&sb);
        let order: Vec<u32> = (11..=15).chain(1..=10).chain(16..=40).collect();
        let ids: Vec<&str> = got
            .iter()
            .map(|r| r["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, order.iter().map(|&n| event_id(n)).collect::<Vec<_>>());
        // Tokens: 100 + n for event n, whichever path stored it.
        for (r, n) in got.iter().zip(&order) {
            assert_eq!(r["input_tokens"], 100 + n, "{r}");
        }
        let totals = sb.sql("SELECT SUM(requests) AS r, SUM(input_tokens) AS i FROM rollups");
        // 40 events; tokens 40 x 100 + (1 + ... + 40) = 4000 + 820.
        assert_eq!(totals[0]["r"], 40);
        assert_eq!(totals[0]["i"], 4820);
        results.push(got);
    }
    // In chunks of 4 lines (prepared blocks, refusals) or of the whole file (one chunk,
    // refused, every event appended one by one): the same rows.
    assert_eq!(results[0], results[1]);
}

/// The undocumented switch that sets the size from which an import is a bulk one (by
/// default 64 MiB): the ledger is written in rollback-journal mode when nothing else has it
/// open.
const BULK_BYTES: &str = "TOLLGATE_INGEST_BULK_BYTES";

#[test]
fn a_bulk_import_stores_what_a_shared_one_stores_and_a_failed_one_nothing() {
    let text = jsonl(
        &(1..=30u32)
            .map(|n| event(n, json!({"input_tokens": 10 * n})))
            .collect::<Vec<_>>(),
    );
    let import = |sb: &Sandbox, extra: &[&str]| {
        sb.ingest_run(
            &[(BULK_BYTES, "1"), (CHUNK_LINES, "7")],
            "events.jsonl",
            extra,
        )
    };
    let all = "SELECT event_id, occurred_at, input_tokens, cost_e12, price_version FROM events ORDER BY seq";
    let (bulk, shared) = (Sandbox::new(), Sandbox::new());
    for sb in [&bulk, &shared] {
        sb.write("events.jsonl", &text);
    }
    let b = import(&bulk, &[]).json();
    let s = import(&shared, &["--shared"]).json();
    assert_eq!(b["ingested"], 30, "{b}");
    assert_eq!(b, s);
    assert_eq!(bulk.sql(all), shared.sql(all));
    // 30 events of 10 n input tokens: 10 x (1 + ... + 30) = 4650.
    let sums = "SELECT SUM(requests) AS r, SUM(input_tokens) AS i FROM rollups";
    assert_eq!(bulk.sql(sums), vec![json!({"r": 30, "i": 4650})]);
    // The rollback journal is gone once the import is committed.
    let journal = bulk.data_dir().join("ledger.sqlite-journal");
    assert!(!journal.exists());

    // A bulk import that fails on its last line stores nothing and leaves no journal; the
    // ledger takes the next import.
    let mut bad = jsonl(
        &(31..=45u32)
            .map(|n| event(n, json!({})))
            .collect::<Vec<_>>(),
    );
    bad.push_str("{\"event_id\": 7}\n");
    bulk.write("events.jsonl", &bad);
    let err = import(&bulk, &[]).fails().to_string();
    assert!(err.contains("events.jsonl:16: event_id"), "{err}");
    assert!(!journal.exists());
    assert_eq!(bulk.event_count(), 30);
    bulk.write("events.jsonl", jsonl(&[event(46, json!({}))]));
    assert_eq!(import(&bulk, &[]).json()["ingested"], 1);
    assert_eq!(bulk.event_count(), 31);
}

/// Ten events, worked by hand, and a repeat of the first: 11 read, 10 stored, 1 duplicate;
/// quarantined: 3 (2: no team_id, 5: no service, 9: no environment); unpriced: 2 (4 and 7:
/// models without a rate; 9 is quarantined and priced).
fn ten_events_and_a_repeat() -> String {
    let mut events = vec![
        event(1, json!({"input_tokens": 1000})),
        event(2, json!({"team_id": null, "input_tokens": 10})),
        event(3, json!({"cost": "0.5"})),
        event(4, json!({"model": "mystery-model", "input_tokens": 5})),
        event(5, json!({"service": null})),
        event(6, json!({"output_tokens": 20})),
        event(7, json!({"model": "another-unknown", "output_tokens": 1})),
        event(8, json!({"occurred_at": "2026-07-20T08:00:00Z"})),
        event(9, json!({"environment": null, "input_tokens": 3})),
        event(10, json!({"cache_read_tokens": 7})),
    ];
    events.push(events[0].clone());
    jsonl(&events)
}

#[test]
fn check_writes_nothing_and_counts_as_an_import_would() {
    let sb = Sandbox::new();
    sb.write("ten.jsonl", ten_events_and_a_repeat());
    let rates = sb.seed_rates();
    let check = |env: &[(&str, &str)]| {
        sb.run_env(
            env,
            &[
                "--prices",
                path_str(&rates),
                "ingest",
                "events",
                "ten.jsonl",
                "--check",
                "--format",
                "json",
            ],
        )
        .json()
    };
    let checked = check(&[]);
    assert_eq!(checked["read"], 11, "{checked}");
    assert_eq!(checked["ingested"], 10);
    assert_eq!(checked["duplicates"], 1);
    assert_eq!(checked["quarantined"], 3);
    assert_eq!(checked["unpriced"], 2);
    assert_eq!(
        checked["unpriced_reasons"].as_object().unwrap().len(),
        2,
        "{checked}"
    );
    // Split into chunks of two lines, the same.
    assert_eq!(check(&[(CHUNK_LINES, "2")]), checked);
    // Nothing written: not even the ledger's directory.
    assert!(
        !sb.data_dir().exists(),
        "--check created the data directory"
    );

    // A real import of the same file reports the same.
    let imported = sb.ingest("ten.jsonl");
    assert_eq!(imported, checked);
    assert_eq!(sb.event_count(), 10);
    // --check looks for repeats within the file only, not in the ledger, and leaves it as it
    // is.
    assert_eq!(check(&[]), checked);
    assert_eq!(sb.event_count(), 10);
    let imports = sb.sql("SELECT COUNT(*) AS n FROM imports");
    assert_eq!(imports[0]["n"], 1);

    // The table says nothing was written.
    let table = sb
        .run(&[
            "--prices",
            path_str(&rates),
            "ingest",
            "events",
            "ten.jsonl",
            "--check",
        ])
        .ok()
        .to_string();
    assert!(table.contains("nothing was written"), "{table}");
}

#[test]
fn check_reads_csv_and_stdin_and_fails_like_an_import() {
    let sb = Sandbox::new();
    let rates = sb.seed_rates();
    let text = ten_events_and_a_repeat();
    let args = [
        "--prices",
        path_str(&rates),
        "ingest",
        "events",
        "-",
        "--check",
        "--format",
        "json",
    ];
    let s = sb.run_stdin(&args, text.as_bytes()).json();
    assert_eq!(
        (
            &s["read"],
            &s["ingested"],
            &s["quarantined"],
            &s["unpriced"]
        ),
        (&json!(11), &json!(10), &json!(3), &json!(2)),
        "{s}"
    );
    let csv = "event_id,occurred_at,provider,model,team_id,service,feature,environment,output_tokens\n\
               00000000-0000-7000-8000-000000000001,2026-07-10T12:00:00Z,openai,seed-model,a,chat,answer,prod,10\n\
               00000000-0000-7000-8000-000000000002,2026-07-10T12:00:00Z,openai,mystery,,chat,answer,prod,10\n";
    sb.write("two.csv", csv);
    let s = sb
        .run(&[
            "--prices",
            path_str(&rates),
            "ingest",
            "events",
            "two.csv",
            "--check",
            "--format",
            "json",
        ])
        .json();
    assert_eq!(
        (
            &s["read"],
            &s["ingested"],
            &s["quarantined"],
            &s["unpriced"]
        ),
        (&json!(2), &json!(2), &json!(1), &json!(1)),
        "{s}"
    );
    // A bad line fails the check with the import's message.
    sb.write(
        "bad.jsonl",
        format!(
            "{text}{}\n",
            Value::Object(event(12, json!({"input_tokens": -1})))
        ),
    );
    let err = sb
        .run(&["ingest", "events", "bad.jsonl", "--check"])
        .fails()
        .to_string();
    assert!(err.contains("bad.jsonl:12: input_tokens:"), "{err}");
    assert!(
        !sb.data_dir().exists(),
        "--check created the data directory"
    );
}
