//! A lease in the ledger, so that a batch job meant to run once per schedule (a nightly
//! digest, a month-end invoice run) runs once even when several `tollgate serve` replicas all
//! try: whichever acquires the lease runs the job.
//!
//! ClickHouse has no compare-and-set, so the lease is a small log (`leases`: name, holder,
//! term, expiry, write time) with a deterministic rule: the lease's state is its highest term;
//! a term's holder is the smallest holder name among the rows of that term, and its expiry is
//! the expiry that holder wrote last. To claim a free or expired lease, a replica writes a row
//! for the next term, waits `settle`, and reads again: it holds the lease only if it is that
//! term's holder. Two replicas racing for the same term both see both rows after `settle` (as
//! long as `settle` exceeds one insert round trip) and agree on one holder. The holder renews
//! by writing its term again with a later expiry and releases by writing an expiry of now.

use std::time::Duration;

use jiff::Timestamp;
use tollgate_core::event::push_json_str;
use tollgate_ledger::{LedgerError, Result};

use crate::client::Request;
use crate::ledger::{ClickHouseLedger, ch_instant};

/// What [`acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This holder has the lease for `term` until `expires_at`.
    Held { term: u64, expires_at: Timestamp },
    /// Another holder has it until `expires_at`.
    Busy {
        holder: String,
        expires_at: Timestamp,
    },
}

/// The current term, holder and expiry of `name` (term 0: never taken).
fn current(l: &ClickHouseLedger, name: &str) -> Result<(u64, String, Timestamp)> {
    let rows = l.client().rows(
        &Request::new(
            "SELECT term, holder, toUnixTimestamp64Micro(argMax(expires_at, written_at))
             FROM leases WHERE name = {n:String}
             GROUP BY term, holder ORDER BY term DESC, holder ASC LIMIT 1",
        )
        .params(&[("n", name.to_string())]),
    )?;
    let Some(r) = rows.first() else {
        return Ok((0, String::new(), Timestamp::UNIX_EPOCH));
    };
    let get = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
    let term = get(0)
        .parse()
        .map_err(|_| LedgerError::Corrupt("bad lease term".into()))?;
    let micros: i64 = get(2)
        .parse()
        .map_err(|_| LedgerError::Corrupt("bad lease expiry".into()))?;
    let exp =
        Timestamp::from_microsecond(micros).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
    Ok((term, get(1), exp))
}

fn write(l: &ClickHouseLedger, name: &str, holder: &str, term: u64, exp: Timestamp) -> Result<()> {
    let mut row = String::from("{\"name\":");
    push_json_str(&mut row, name);
    row.push_str(",\"holder\":");
    push_json_str(&mut row, holder);
    row.push_str(&format!(
        ",\"term\":{term},\"expires_at\":\"{}\",\"written_at\":\"{}\"}}\n",
        ch_instant(exp),
        ch_instant(Timestamp::now())
    ));
    l.client()
        .run(&Request::new("INSERT INTO leases FORMAT JSONEachRow").data(row.as_bytes()))?;
    Ok(())
}

fn later(t: Timestamp, d: Duration) -> Result<Timestamp> {
    let d = jiff::SignedDuration::try_from(d).map_err(|e| LedgerError::Refused(e.to_string()))?;
    t.checked_add(d)
        .map_err(|e| LedgerError::Refused(e.to_string()))
}

/// Tries to take (or renew) lease `name` for `holder` for `ttl`. `settle`: how long to wait
/// after claiming a new term before reading the outcome (at least one insert round trip; 1 s
/// is ample on one network).
pub fn acquire(
    l: &ClickHouseLedger,
    name: &str,
    holder: &str,
    ttl: Duration,
    settle: Duration,
) -> Result<Lease> {
    let now = Timestamp::now();
    let (term, who, exp) = current(l, name)?;
    if term > 0 && exp > now {
        if who == holder {
            let exp = later(now, ttl)?;
            write(l, name, holder, term, exp)?;
            return Ok(Lease::Held {
                term,
                expires_at: exp,
            });
        }
        return Ok(Lease::Busy {
            holder: who,
            expires_at: exp,
        });
    }
    let exp = later(now, ttl)?;
    write(l, name, holder, term + 1, exp)?;
    std::thread::sleep(settle);
    let (t2, who2, exp2) = current(l, name)?;
    if t2 == term + 1 && who2 == holder {
        Ok(Lease::Held {
            term: t2,
            expires_at: exp2,
        })
    } else {
        Ok(Lease::Busy {
            holder: who2,
            expires_at: exp2,
        })
    }
}

/// Gives the lease up (if `holder` holds it), so the next run need not wait for the expiry.
pub fn release(l: &ClickHouseLedger, name: &str, holder: &str) -> Result<()> {
    let (term, who, exp) = current(l, name)?;
    let now = Timestamp::now();
    if term > 0 && who == holder && exp > now {
        write(l, name, holder, term, now)?;
    }
    Ok(())
}
