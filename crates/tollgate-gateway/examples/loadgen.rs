//! An open-loop HTTP/1.1 load generator for the gateway benchmark (`scripts/bench-gateway.sh`).
//!
//! `wrk` is a closed loop: each connection sends its next request when the last answer
//! arrives, so at saturation the latency it reports is mostly queueing (Little's law: mean
//! latency = connections / throughput), whatever the server's own cost per call. This tool
//! sends at a fixed rate instead: each of `--conns` keep-alive connections sends one request
//! every `conns / rate` seconds on a fixed schedule (connections staggered), and records, per
//! request, the time from writing the request to reading the last byte of the response. At a
//! rate below capacity that is the service time the server adds, which is what "added latency"
//! means; a send that starts more than 1 ms after its slot is counted as late (the client or
//! the server could not keep up, and the figures are then not below capacity).
//!
//! ```text
//! loadgen --url http://127.0.0.1:8080/v1/chat/completions --conns 8 --rate 4000 --seconds 10 \
//!         --body-file body.json --header 'Authorization: Bearer tg_...' --header 'x-tollgate-feature: bench'
//! ```
//! Prints one line: `requests N, late L, errors E, p50 X us, p90 X us, p99 X us, p99.9 X us, max X us`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Args {
    host: String,
    path: String,
    conns: u32,
    rate: f64,
    seconds: f64,
    body: Vec<u8>,
    headers: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut conns = 8;
    let mut rate = 1000.0;
    let mut seconds = 10.0;
    let mut body = Vec::new();
    let mut headers = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--url" => url = Some(val()?),
            "--conns" => conns = val()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--rate" => rate = val()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--seconds" => seconds = val()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--body-file" => {
                let p = val()?;
                body = std::fs::read(&p).map_err(|e| format!("--body-file {p}: {e}"))?;
            }
            "--header" => headers.push(val()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let rest = url
        .strip_prefix("http://")
        .ok_or("--url must start with http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    };
    if conns == 0 || rate <= 0.0 || seconds <= 0.0 {
        return Err("--conns, --rate and --seconds must be positive".into());
    }
    Ok(Args {
        host,
        path,
        conns,
        rate,
        seconds,
        body,
        headers,
    })
}

/// Reads one response (status line, headers, a Content-Length or chunked body); returns the
/// status code.
fn read_response(r: &mut BufReader<TcpStream>, line: &mut String) -> std::io::Result<u16> {
    line.clear();
    r.read_line(line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut len: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(line)? == 0 {
            return Err(std::io::Error::other("connection closed in headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
    }
    let mut sink = vec![0u8; 16 * 1024];
    let mut skip = |r: &mut BufReader<TcpStream>, mut n: usize| -> std::io::Result<()> {
        while n > 0 {
            let k = n.min(sink.len());
            r.read_exact(&mut sink[..k])?;
            n -= k;
        }
        Ok(())
    };
    if chunked {
        loop {
            line.clear();
            r.read_line(line)?;
            let size =
                usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                    .map_err(|e| std::io::Error::other(format!("bad chunk size {line:?}: {e}")))?;
            if size == 0 {
                // trailers, then the empty line
                loop {
                    line.clear();
                    r.read_line(line)?;
                    if line.trim_end().is_empty() {
                        return Ok(status);
                    }
                }
            }
            skip(r, size + 2)?;
        }
    }
    skip(r, len.unwrap_or(0))?;
    Ok(status)
}

struct Outcome {
    latencies_ns: Vec<u64>,
    late: u64,
    errors: u64,
}

fn connection(a: &Args, index: u32, start: Instant, end: Instant) -> std::io::Result<Outcome> {
    let stream = TcpStream::connect(&a.host)?;
    stream.set_nodelay(true)?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
        a.path,
        a.host,
        a.body.len()
    );
    for h in &a.headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(&a.body);
    let interval = Duration::from_secs_f64(f64::from(a.conns) / a.rate);
    let offset = interval.mul_f64(f64::from(index) / f64::from(a.conns));
    let mut out = Outcome {
        latencies_ns: Vec::new(),
        late: 0,
        errors: 0,
    };
    let mut line = String::new();
    let mut slot = start + offset;
    while slot < end {
        let now = Instant::now();
        if now < slot {
            std::thread::sleep(slot - now);
        } else if now - slot > Duration::from_millis(1) {
            out.late += 1;
        }
        let t0 = Instant::now();
        w.write_all(&req)?;
        let status = read_response(&mut r, &mut line)?;
        let dt = t0.elapsed();
        if (200..300).contains(&status) {
            out.latencies_ns
                .push(u64::try_from(dt.as_nanos()).unwrap_or(u64::MAX));
        } else {
            out.errors += 1;
        }
        slot += interval;
    }
    Ok(out)
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    // Every connection is open before the first slot.
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs_f64(a.seconds);
    let results: Vec<std::io::Result<Outcome>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.conns)
            .map(|i| {
                let a = &a;
                s.spawn(move || connection(a, i, start, end))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("thread panicked")))
            })
            .collect()
    });
    let mut all = Vec::new();
    let (mut late, mut errors) = (0, 0);
    for r in results {
        match r {
            Ok(o) => {
                all.extend(o.latencies_ns);
                late += o.late;
                errors += o.errors;
            }
            Err(e) => {
                eprintln!("loadgen: a connection failed: {e}");
                std::process::exit(1);
            }
        }
    }
    if all.is_empty() {
        eprintln!("loadgen: no successful request");
        std::process::exit(1);
    }
    all.sort_unstable();
    let pct = |p: f64| {
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i] / 1000
    };
    println!(
        "requests {}, late {late}, errors {errors}, p50 {} us, p90 {} us, p99 {} us, p99.9 {} us, max {} us",
        all.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        all[all.len() - 1] / 1000
    );
}
