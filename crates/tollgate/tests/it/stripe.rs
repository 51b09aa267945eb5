//! `invoice --push stripe` against a local receiver that speaks HTTP/1.1 and records every
//! request: paths, authentication, idempotency keys and form fields are all checked.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

use crate::support::{Sandbox, event, jsonl};

#[derive(Debug)]
struct Req {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    form: BTreeMap<String, String>,
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// Serves one connection (keep-alive: several requests) until it closes.
fn serve(stream: TcpStream, tx: &mpsc::Sender<Req>, n: &mut u32) -> bool {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return true;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        if method == "QUIT" {
            return false;
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers
            .get("content-length")
            .map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let form = String::from_utf8(body)
            .unwrap()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (decode(k), decode(v))
            })
            .collect();
        *n += 1;
        let id = if path == "/v1/invoices" {
            "in_test".to_string()
        } else {
            format!("ii_{n}")
        };
        let answer = format!("{{\"id\":\"{id}\",\"object\":\"x\"}}");
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        )
        .unwrap();
        w.flush().unwrap();
        tx.send(Req {
            method,
            path,
            headers,
            form,
        })
        .unwrap();
    }
}

#[test]
fn a_finalized_invoice_becomes_stripe_items_and_a_draft_invoice() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let mut n = 0;
        for s in listener.incoming() {
            if !serve(s.unwrap(), &tx, &mut n) {
                break;
            }
        }
    });

    let sb = Sandbox::new();
    // Two features at 1K-token prices: a 1,250,000 tokens x 0.008/1K = 10.00;
    // b 333,333 tokens x 0.012/1K = 3.999996 -> 4.00. Subtotal 14.00; VAT 20 % = 2.80.
    sb.write(
        "e.jsonl",
        jsonl(&[
            event(
                1,
                serde_json::json!({"tenant_id": "acme", "feature": "a", "input_tokens": 1_250_000}),
            ),
            event(
                2,
                serde_json::json!({"tenant_id": "acme", "feature": "b", "input_tokens": 333_333}),
            ),
        ]),
    );
    sb.ingest("e.jsonl");
    sb.write(
        "tollgate.toml",
        format!(
            "[stripe]\nbase_url = \"http://127.0.0.1:{port}\"\n[tenants.acme]\nname = \"ACME\"\nnumber = \"INV-{{SEQ:3}}\"\nplan = \"rate_card\"\ntax = {{ name = \"VAT\", rate = \"0.20\" }}\nstripe_customer = \"cus_test\"\n[[tenants.acme.lines]]\nfeature = \"a\"\nunit = \"1k_tokens\"\nprice = \"0.008\"\n[[tenants.acme.lines]]\nfeature = \"b\"\nunit = \"1k_tokens\"\nprice = \"0.012\"\n"
        ),
    );
    let mut c = sb.bare_command();
    c.env("STRIPE_API_KEY", "sk_test_secret")
        .arg("--data-dir")
        .arg(sb.data_dir())
        .args([
            "--config",
            "tollgate.toml",
            "invoice",
            "--tenant",
            "acme",
            "--period",
            "2026-07",
            "--finalize",
            "--push",
            "stripe",
            "--format",
            "json",
        ]);
    let out = c.output().unwrap();
    // Stop the receiver, then look at what it got.
    TcpStream::connect(("127.0.0.1", port))
        .unwrap()
        .write_all(b"QUIT / HTTP/1.1\r\n\r\n")
        .unwrap();
    server.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("in_test"), "{stderr}");
    assert!(
        !stderr.contains("sk_test_secret"),
        "the key must never be printed"
    );
    let reqs: Vec<Req> = rx.try_iter().collect();
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/v1/invoiceitems",
            "/v1/invoiceitems",
            "/v1/invoiceitems",
            "/v1/invoices"
        ]
    );
    for (i, r) in reqs.iter().enumerate() {
        assert_eq!(r.method, "POST");
        assert_eq!(r.headers["authorization"], "Bearer sk_test_secret");
        assert_eq!(
            r.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        let key = &r.headers["idempotency-key"];
        if i < 3 {
            assert_eq!(key, &format!("tollgate-INV-001-item-{}", i + 1));
        } else {
            assert_eq!(key, "tollgate-INV-001-invoice");
        }
        assert_eq!(r.form["customer"], "cus_test");
        assert_eq!(r.form["metadata[tollgate_invoice]"], "INV-001");
    }
    // Amounts in cents: 10.00 -> 1000, 4.00 -> 400, VAT 2.80 -> 280.
    let items: Vec<(&str, &str, &str)> = reqs[..3]
        .iter()
        .map(|r| {
            (
                r.form["description"].as_str(),
                r.form["amount"].as_str(),
                r.form["currency"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        items,
        vec![
            ("a", "1000", "usd"),
            ("b", "400", "usd"),
            ("VAT 20%", "280", "usd")
        ]
    );
    // The period of July 2026 in UTC as Unix seconds: 1782864000 .. 1785542400.
    assert_eq!(reqs[0].form["period[start]"], "1782864000");
    assert_eq!(reqs[0].form["period[end]"], "1785542400");
    let inv = &reqs[3].form;
    assert_eq!(inv["auto_advance"], "false");
    assert_eq!(inv["pending_invoice_items_behavior"], "include");
    assert_eq!(inv["metadata[tollgate_total]"], "16.80");
}

#[test]
fn drafts_and_missing_keys_are_refused_before_any_request() {
    let sb = Sandbox::new();
    sb.write(
        "e.jsonl",
        jsonl(&[event(
            1,
            serde_json::json!({"tenant_id": "acme", "feature": "a", "input_tokens": 1000}),
        )]),
    );
    sb.ingest("e.jsonl");
    // Port 9 (discard) is never contacted: both failures happen before any request.
    sb.write(
        "tollgate.toml",
        "[stripe]\nbase_url = \"http://127.0.0.1:9\"\n[tenants.acme]\nname = \"ACME\"\nnumber = \"INV-{SEQ}\"\nplan = \"rate_card\"\nstripe_customer = \"cus_x\"\n[[tenants.acme.lines]]\nfeature = \"a\"\nunit = \"request\"\nprice = \"1\"\n",
    );
    let run = |finalize: bool, key: Option<&str>| {
        let mut c = sb.bare_command();
        c.env_remove("STRIPE_API_KEY");
        if let Some(k) = key {
            c.env("STRIPE_API_KEY", k);
        }
        c.arg("--data-dir").arg(sb.data_dir()).args([
            "--config",
            "tollgate.toml",
            "invoice",
            "--tenant",
            "acme",
            "--period",
            "2026-07",
            "--push",
            "stripe",
        ]);
        if finalize {
            c.arg("--finalize");
        }
        let o = c.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(false, Some("sk_x"));
    assert_ne!(code, Some(0));
    assert!(err.contains("draft") && err.contains("--finalize"), "{err}");
    let (code, err) = run(true, None);
    assert_ne!(code, Some(0));
    assert!(err.contains("STRIPE_API_KEY"), "{err}");
}
