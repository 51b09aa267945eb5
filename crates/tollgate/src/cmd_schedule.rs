//! `tollgate schedule run`: the scheduled jobs of `[[schedules]]` (the weekly digest, the CFO
//! PDF, the month's invoice drafts, the anomaly check), each at its own times in its own time
//! zone.
//!
//! Rules:
//! - a job's due instants come from its spec: `every = "5m"` (multiples of the interval since
//!   the Unix epoch), `weekly = "MON 09:00"` or `monthly = "1 06:00"` (wall-clock time in the
//!   schedule's time zone; a day past the month's end means its last day);
//! - each due instant runs once: the last one done per schedule is kept in
//!   `<data dir>/schedules/state.json` (written atomically after the run), and one scheduler
//!   at a time holds `<data dir>/schedules/lock` (an exclusive file lock), so a second
//!   scheduler on the same data directory waits rather than runs a job twice;
//! - a missed run is caught up: reports (digest, cfo, invoices) run for every due instant missed
//!   since the last one done (at most 24), oldest first; the anomaly check runs once, for the
//!   latest; a schedule seen for the first time runs its latest due instant only;
//! - a job's outputs are written atomically under its `out_dir`, so a run repeated after a
//!   crash rewrites the same files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use jiff::civil::{Date, Weekday};
use jiff::{Timestamp, ToSpan};
use serde::Deserialize;
use tollgate_core::event::format_instant;
use tollgate_core::period::{Period, civil_day, time_zone};

use crate::Ctx;
use crate::output::{outln, write_atomic};

/// `[[schedules]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    name: Option<String>,
    job: String,
    every: Option<String>,
    weekly: Option<String>,
    monthly: Option<String>,
    timezone: Option<String>,
    post: Option<bool>,
    out_dir: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Digest,
    Cfo,
    Invoices,
    Alerts,
}

impl Job {
    fn as_str(self) -> &'static str {
        match self {
            Job::Digest => "digest",
            Job::Cfo => "cfo",
            Job::Invoices => "invoices",
            Job::Alerts => "alerts",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Every this many seconds.
    Every(i64),
    Weekly(Weekday, i8, i8),
    /// Day of month (1-31), hour, minute.
    Monthly(i8, i8, i8),
}

/// One validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub job: Job,
    pub when: When,
    pub timezone: String,
    /// Post to Slack (digest, alerts) instead of writing a file.
    pub post: bool,
    /// Where files go (resolved against the config file's directory); None: `<data
    /// dir>/scheduled`.
    pub out_dir: Option<PathBuf>,
}

fn hh_mm(s: &str) -> Option<(i8, i8)> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some((h, m))
}

/// Validates `[[schedules]]` entry `i`; errors name `schedules[i].KEY`.
pub fn parse(
    i: usize,
    r: RawSchedule,
    base: &Path,
    default_tz: &str,
) -> std::result::Result<Schedule, String> {
    let at = |k: &str| format!("schedules[{i}].{k}");
    let job = match r.job.as_str() {
        "digest" => Job::Digest,
        "cfo" => Job::Cfo,
        "invoices" => Job::Invoices,
        "alerts" => Job::Alerts,
        o => {
            return Err(format!(
                "{}: {o:?} is not a job; use \"digest\" (the weekly digest of the week before), \"cfo\" (the CFO PDF of the month before), \"invoices\" (every tenant's draft invoice of the month before) or \"alerts\" (the anomaly check)",
                at("job")
            ));
        }
    };
    let when = match (&r.every, &r.weekly, &r.monthly) {
        (Some(e), None, None) => {
            let secs = e
                .strip_suffix('m')
                .and_then(|n| n.parse::<i64>().ok())
                .map(|n| n * 60)
                .or_else(|| {
                    e.strip_suffix('h')
                        .and_then(|n| n.parse::<i64>().ok())
                        .map(|n| n * 3600)
                })
                .filter(|s| *s > 0 && *s <= 7 * 86_400)
                .ok_or_else(|| {
                    format!(
                        "{}: {e:?} is not an interval; write minutes or hours: \"5m\", \"1h\" (at most a week)",
                        at("every")
                    )
                })?;
            When::Every(secs)
        }
        (None, Some(w), None) => {
            let bad = || {
                format!(
                    "{}: {w:?} is not a weekday and time; write \"MON 09:00\" (MON TUE WED THU FRI SAT SUN, 24-hour time)",
                    at("weekly")
                )
            };
            let (d, t) = w.trim().split_once(' ').ok_or_else(bad)?;
            let day = match d.to_ascii_uppercase().as_str() {
                "MON" => Weekday::Monday,
                "TUE" => Weekday::Tuesday,
                "WED" => Weekday::Wednesday,
                "THU" => Weekday::Thursday,
                "FRI" => Weekday::Friday,
                "SAT" => Weekday::Saturday,
                "SUN" => Weekday::Sunday,
                _ => return Err(bad()),
            };
            let (h, m) = hh_mm(t.trim()).ok_or_else(bad)?;
            When::Weekly(day, h, m)
        }
        (None, None, Some(mo)) => {
            let bad = || {
                format!(
                    "{}: {mo:?} is not a day of the month and time; write \"1 06:00\" (day 1-31; a day past the month's end means its last day)",
                    at("monthly")
                )
            };
            let (d, t) = mo.trim().split_once(' ').ok_or_else(bad)?;
            let day: i8 = d
                .parse()
                .ok()
                .filter(|d| (1..=31).contains(d))
                .ok_or_else(bad)?;
            let (h, m) = hh_mm(t.trim()).ok_or_else(bad)?;
            When::Monthly(day, h, m)
        }
        _ => {
            return Err(format!(
                "schedules[{i}]: give exactly one of every (\"5m\"), weekly (\"MON 09:00\") or monthly (\"1 06:00\")"
            ));
        }
    };
    let timezone = r.timezone.unwrap_or_else(|| default_tz.to_string());
    time_zone(&timezone).map_err(|e| format!("{}: {e}", at("timezone")))?;
    let post = r.post.unwrap_or(false);
    if post && matches!(job, Job::Cfo | Job::Invoices) {
        return Err(format!(
            "{}: only the digest and alerts jobs post (to Slack); {} writes files to out_dir",
            at("post"),
            job.as_str()
        ));
    }
    Ok(Schedule {
        name: r.name.unwrap_or_else(|| format!("{}-{i}", job.as_str())),
        job,
        when,
        timezone,
        post,
        out_dir: r.out_dir.map(|d| base.join(d)),
    })
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn local(d: Date, h: i8, m: i8, tz: &jiff::tz::TimeZone) -> Result<Timestamp> {
    Ok(d.at(h, m, 0, 0)
        .to_zoned_datetime(tz.clone())
        .map_err(err)?
        .timestamp())
}

fn monthly_on(
    year: i16,
    month: i8,
    day: i8,
    h: i8,
    m: i8,
    tz: &jiff::tz::TimeZone,
) -> Result<Timestamp> {
    let first = Date::new(year, month, 1).map_err(err)?;
    let d = day.min(first.days_in_month());
    local(Date::new(year, month, d).map_err(err)?, h, m, tz)
}

/// The due instants of `s` in `(after, now]`, oldest first, at most `max` (the latest ones).
pub fn dues(
    s: &Schedule,
    after: Option<Timestamp>,
    now: Timestamp,
    max: usize,
) -> Result<Vec<Timestamp>> {
    let tz = time_zone(&s.timezone).map_err(err)?;
    let mut out = Vec::new();
    let mut t = match s.when {
        When::Every(p) => Timestamp::from_second(now.as_second().div_euclid(p) * p).map_err(err)?,
        When::Weekly(wd, h, m) => {
            let mut d = civil_day(now, &tz);
            loop {
                if d.weekday() == wd {
                    let t = local(d, h, m, &tz)?;
                    if t <= now {
                        break t;
                    }
                }
                d = d.yesterday().map_err(err)?;
            }
        }
        When::Monthly(day, h, m) => {
            let d = civil_day(now, &tz);
            let t = monthly_on(d.year(), d.month(), day, h, m, &tz)?;
            if t <= now {
                t
            } else {
                let p = d.first_of_month().yesterday().map_err(err)?;
                monthly_on(p.year(), p.month(), day, h, m, &tz)?
            }
        }
    };
    // Walk back from the latest due instant.
    while out.len() < max && after.is_none_or(|a| t > a) {
        out.push(t);
        if after.is_none() {
            break;
        }
        t = match s.when {
            When::Every(p) => t.checked_sub(p.seconds()).map_err(err)?,
            When::Weekly(_, h, m) => {
                let d = civil_day(t, &tz).checked_sub(7.days()).map_err(err)?;
                local(d, h, m, &tz)?
            }
            When::Monthly(day, h, m) => {
                let p = civil_day(t, &tz)
                    .first_of_month()
                    .yesterday()
                    .map_err(err)?;
                monthly_on(p.year(), p.month(), day, h, m, &tz)?
            }
        };
    }
    out.reverse();
    Ok(out)
}

#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Run the jobs of [[schedules]] when they are due (until stopped), catching up missed runs.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Do what is due now, then exit (for cron and tests).
    #[arg(long)]
    pub once: bool,
    /// With --once: take this instant (RFC 3339) as now.
    #[arg(long, requires = "once")]
    pub at: Option<String>,
}

fn state_dir(ctx: &Ctx) -> PathBuf {
    ctx.data_dir.join("schedules")
}

/// Runs one job for its due instant `t`; returns what it did, for the log.
fn run_job(ctx: &Ctx, s: &Schedule, t: Timestamp) -> Result<String> {
    let out_dir = s
        .out_dir
        .clone()
        .unwrap_or_else(|| ctx.data_dir.join("scheduled"));
    let tz = time_zone(&s.timezone).map_err(err)?;
    let day = civil_day(t, &tz);
    let prev_month = || -> Result<Period> {
        let p = day.first_of_month().yesterday().map_err(err)?;
        Period::month(p.year(), p.month(), &s.timezone).map_err(err)
    };
    match s.job {
        Job::Digest => {
            let w = day.checked_sub(7.days()).map_err(err)?.iso_week_date();
            let week = format!("{:04}-W{:02}", w.year(), w.week());
            let d = crate::cmd_digest::build(
                ctx,
                &crate::cmd_digest::DigestArgs {
                    week: week.clone(),
                    tz: Some(s.timezone.clone()),
                    currency: None,
                    fx_rate: None,
                    post: s.post,
                    out: None,
                },
            )?;
            let message = d.to_slack();
            if s.post {
                crate::cmd_digest::post(
                    &crate::cmd_digest::webhook_url(ctx, "post = true")?,
                    &message,
                )?;
                Ok(format!("posted the {week} digest to Slack"))
            } else {
                let p = out_dir.join(format!("digest-{week}.json"));
                write_atomic(
                    &p,
                    format!("{}\n", serde_json::to_string_pretty(&message)?).as_bytes(),
                )?;
                Ok(format!("wrote {}", p.display()))
            }
        }
        Job::Cfo => {
            let month = prev_month()?.label();
            let p = out_dir.join(format!("cfo-{month}.pdf"));
            let r = crate::cmd_cfo::build(
                ctx,
                &crate::cmd_cfo::CfoArgs {
                    period: month,
                    out: p.clone(),
                    tz: Some(s.timezone.clone()),
                    currency: None,
                    fx_rate: None,
                    target: None,
                },
                t,
            )?;
            write_atomic(&p, &tollgate_pdf::cfo::render(&r)?)?;
            Ok(format!("wrote {}", p.display()))
        }
        Job::Invoices => {
            let month = prev_month()?.label();
            let mut ledger = crate::cmd_ledger::open_read_only(ctx)?;
            let mut n = 0;
            for tenant in ctx.config.tenants.values() {
                let inv = crate::cmd_invoice::draft_invoice(ctx, tenant, &month, &mut *ledger)?;
                for (fmt, ext) in [
                    (crate::cmd_invoice::InvoiceFormat::Json, "json"),
                    (crate::cmd_invoice::InvoiceFormat::Pdf, "pdf"),
                ] {
                    let p = out_dir
                        .join("invoices")
                        .join(format!("{}.{ext}", inv.number));
                    write_atomic(&p, &crate::cmd_invoice::render_invoice(&inv, fmt)?)?;
                }
                n += 1;
            }
            Ok(format!(
                "wrote {n} draft invoice(s) for {month} under {}",
                out_dir.join("invoices").display()
            ))
        }
        Job::Alerts => {
            let ledger = crate::cmd_ledger::open_read_only(ctx)?;
            let th = ctx.config.alerts.clone().unwrap_or_default();
            let found = tollgate_finance::alerts::check(&*ledger, t, &s.timezone, &th)?;
            if s.post {
                let mut sent = crate::cmd_alerts::Sent::load(&ctx.data_dir)?;
                let new = sent.unsent(&found);
                sent.post(ctx, &new, t, "post = true")?;
                Ok(format!("posted {} new alert(s)", new.len()))
            } else {
                let p = out_dir.join(format!("alerts-{}.json", t.strftime("%Y-%m-%dT%H%M")));
                let doc = crate::cmd_alerts::to_json(&found, t, &s.timezone, None);
                write_atomic(
                    &p,
                    format!("{}\n", serde_json::to_string_pretty(&doc)?).as_bytes(),
                )?;
                Ok(format!("wrote {} ({} alert(s))", p.display(), found.len()))
            }
        }
    }
}

/// One pass: every due run of every schedule, oldest first per schedule.
fn tick(ctx: &Ctx, now: Timestamp, state_path: &Path) -> Result<usize> {
    let mut state = crate::output::read_state(
        state_path,
        "schedule state tollgate writes (schedule name -> last due instant done); remove it and each schedule runs its latest due instant once",
    )?;
    let mut ran = 0;
    for s in &ctx.config.schedules {
        let after = match state.get(&s.name) {
            Some(v) => Some(v.parse::<Timestamp>().with_context(|| {
                format!(
                    "{}: schedule {:?} has last run {v:?}",
                    state_path.display(),
                    s.name
                )
            })?),
            None => None,
        };
        let max = if s.job == Job::Alerts { 1 } else { 24 };
        for t in dues(s, after, now, max)? {
            let what = run_job(ctx, s, t).with_context(|| {
                format!(
                    "schedule {:?} ({}) due {}",
                    s.name,
                    s.job.as_str(),
                    format_instant(t)
                )
            })?;
            outln!(
                "{} {} (due {}): {what}",
                s.name,
                s.job.as_str(),
                format_instant(t)
            );
            state.insert(s.name.clone(), format_instant(t));
            write_atomic(state_path, &serde_json::to_vec_pretty(&state)?)?;
            ran += 1;
        }
    }
    Ok(ran)
}

pub fn run(ctx: &Ctx, c: &ScheduleCommand) -> Result<()> {
    let ScheduleCommand::Run(a) = c;
    if ctx.config.schedules.is_empty() {
        bail!("no [[schedules]] in the config; see docs/schedules.md");
    }
    let dir = state_dir(ctx);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let lock_path = dir.join("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        eprintln!(
            "tollgate schedule: another scheduler holds {}; waiting for it",
            lock_path.display()
        );
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    }
    let state_path = dir.join("state.json");
    if a.once {
        let now = match &a.at {
            Some(s) => s
                .parse()
                .map_err(|e| anyhow::anyhow!("--at {s:?} is not an RFC 3339 instant: {e}"))?,
            None => Timestamp::now(),
        };
        let n = tick(ctx, now, &state_path)?;
        if n == 0 {
            outln!("nothing due at {}", format_instant(now));
        }
        return Ok(());
    }
    loop {
        if let Err(e) = tick(ctx, Timestamp::now(), &state_path) {
            // A failed run is retried at the next tick (its due instant is not recorded).
            eprintln!("tollgate schedule: {e:#}");
        }
        std::thread::sleep(Duration::from_secs(20));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sched(when: When, tz: &str) -> Schedule {
        Schedule {
            name: "s".into(),
            job: Job::Cfo,
            when,
            timezone: tz.into(),
            post: false,
            out_dir: None,
        }
    }

    #[test]
    fn month_days_past_the_end_clamp_and_missed_runs_come_oldest_first() {
        let s = sched(When::Monthly(31, 6, 0), "UTC");
        let now: Timestamp = "2026-04-15T00:00:00Z".parse().unwrap();
        let after: Timestamp = "2026-01-31T06:00:00Z".parse().unwrap();
        let got: Vec<String> = dues(&s, Some(after), now, 24)
            .unwrap()
            .into_iter()
            .map(format_instant)
            .collect();
        // February has 28 days in 2026, April's 31st is not reached yet on the 15th.
        assert_eq!(
            got,
            ["2026-02-28T06:00:00.000000Z", "2026-03-31T06:00:00.000000Z"]
        );
    }

    #[test]
    fn intervals_align_to_the_epoch_and_keep_only_the_latest_when_capped() {
        let s = sched(When::Every(300), "UTC");
        let now: Timestamp = "2026-04-15T10:17:59Z".parse().unwrap();
        let after: Timestamp = "2026-04-15T09:00:00Z".parse().unwrap();
        let got = dues(&s, Some(after), now, 1).unwrap();
        assert_eq!(
            got.iter().map(|t| format_instant(*t)).collect::<Vec<_>>(),
            ["2026-04-15T10:15:00.000000Z"]
        );
        // 09:05 .. 10:15 every 5 minutes: 15 instants.
        assert_eq!(dues(&s, Some(after), now, 100).unwrap().len(), 15);
    }
}
