//! `tollgate serve`: replay the spool, start the spool and ledger threads, accept HTTP/1.1
//! connections (TCP_NODELAY), and on SIGTERM or Ctrl-C stop accepting, let in-flight requests
//! finish, flush the spool into the ledger and exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tollgate_core::Pricer;

use crate::config::GatewayConfig;
use crate::proxy::Gateway;
use crate::spool::Spool;

/// What `serve` needs besides the config.
pub struct ServeOptions {
    pub config: GatewayConfig,
    pub data_dir: PathBuf,
    pub pricer: Pricer,
    /// Write the bound address to this file once listening (for scripts and tests).
    pub addr_file: Option<PathBuf>,
    /// Worker threads (default: the number of CPUs).
    pub threads: Option<usize>,
    /// Opens the ledger the spool writes to (`[ledger] backend`); None: the SQLite ledger in
    /// `data_dir`.
    pub ledger: Option<crate::spool::OpenLedger>,
    /// Honour the demo's clock and attribution stamp ([`crate::demo`]). Only `tollgate demo`
    /// sets it, for its in-process gateway; `tollgate serve` never does.
    pub demo_stamps: bool,
    /// IANA zone of the budgets' months when a budget names none (`reporting.timezone`).
    pub timezone: String,
}

/// Runs the gateway until SIGTERM / Ctrl-C.
pub fn serve(opts: ServeOptions) -> Result<()> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = opts.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.build().context("cannot start the async runtime")?;
    rt.block_on(run(opts, None, None))
}

/// A gateway running on a background thread (the demo uses it).
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Running {
    /// Stops accepting, drains, flushes the spool into the ledger and waits for it.
    pub fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("the gateway thread panicked"),
            None => Ok(()),
        }
    }
}

/// Starts the gateway on a background thread; returns once it listens.
pub fn start(opts: ServeOptions) -> Result<Running> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let threads = opts.threads.unwrap_or(2).max(1);
    let thread = std::thread::Builder::new()
        .name("tollgate-gateway".into())
        .spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(run(opts, Some(ready_tx), Some(stop_rx)))
        })?;
    match ready_rx.recv() {
        Ok(addr) => Ok(Running {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }),
        Err(_) => match thread.join() {
            Ok(Err(e)) => Err(e),
            _ => anyhow::bail!("the gateway did not start"),
        },
    }
}

async fn run(
    opts: ServeOptions,
    ready: Option<std::sync::mpsc::Sender<SocketAddr>>,
    stop: Option<tokio::sync::oneshot::Receiver<()>>,
) -> Result<()> {
    let cfg = opts.config;
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("cannot create {}", opts.data_dir.display()))?;
    let spool_dir = cfg
        .spool_dir
        .clone()
        .unwrap_or_else(|| opts.data_dir.join("spool"));
    let pricer = Arc::new(opts.pricer);
    let open = opts
        .ledger
        .clone()
        .unwrap_or_else(|| crate::spool::sqlite_ledger(&opts.data_dir));
    // A ledger that cannot take the leftover events yet (ClickHouse down) does not stop the
    // gateway: they are replayed in the background while it serves and spools.
    let replayed = crate::spool::replay_or_defer(&spool_dir, &open, pricer.clone())?;
    if replayed.events > 0 {
        eprintln!(
            "tollgate serve: replayed {} spooled events into the ledger",
            replayed.events
        );
    }
    let budgets = if cfg.budgets.is_empty() {
        None
    } else {
        // Hard limits need the month's spend so far: without the ledger, refuse to start
        // rather than enforce them from zero.
        let loaded = open().and_then(|ledger| {
            crate::budget::Budgets::load(
                cfg.budgets.clone(),
                &opts.timezone,
                ledger.as_ref(),
                jiff::Timestamp::now(),
            )
        });
        Some(loaded.context(
            "gateway.budgets: cannot read the month's spend so far from the ledger; start the gateway when the ledger is reachable, or remove the budgets",
        )?)
    };
    let spool = Spool::start(
        &spool_dir,
        &open,
        cfg.durability,
        cfg.group_commit,
        pricer.clone(),
    )?;
    let listen: SocketAddr = cfg
        .listen
        .parse()
        .with_context(|| format!("listen address {:?}", cfg.listen))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let tls = match &cfg.tls {
        Some((cert, key)) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
            crate::tls::server_config(cert, key).map_err(anyhow::Error::msg)?,
        ))),
        None => None,
    };
    let gw = Arc::new(
        Gateway::new(cfg, opts.data_dir.clone(), pricer, spool.clone())?
            .with_demo_stamps(opts.demo_stamps)
            .with_budgets(budgets),
    );

    // Keys added or revoked while serving take effect within a second.
    {
        let gw = gw.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_millis(500));
            loop {
                t.tick().await;
                let _ = gw.reload_keys(false);
            }
        });
    }

    // The process's signals belong to `serve` only, not to an embedding program (the demo);
    // installed before the address is published, so a SIGTERM right after is handled.
    let quiet = ready.is_some();
    let term = if quiet {
        None
    } else {
        Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot install the SIGTERM handler")?,
        )
    };
    if let Some(f) = &opts.addr_file {
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, format!("{addr}\n"))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, f).with_context(|| format!("cannot write {}", f.display()))?;
    }
    if let Some(r) = ready {
        let _ = r.send(addr);
    } else {
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!("tollgate serve: listening on {addr} ({scheme})");
    }
    let mut stop = stop;
    let stopped = async move {
        match stop.take() {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(stopped);

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let signals = async move {
        match term {
            None => std::future::pending::<()>().await,
            Some(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
        }
    };
    tokio::pin!(signals);
    loop {
        tokio::select! {
            acc = listener.accept() => {
                let Ok((stream, _)) = acc else { continue };
                let _ = stream.set_nodelay(true);
                let gw = gw.clone();
                let watcher = graceful.watcher();
                let svc = service_fn(move |req| gw.clone().handle(req));
                match &tls {
                    None => {
                        let conn = http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), svc);
                        tokio::spawn(async move {
                            let _ = watcher.watch(conn).await;
                        });
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            // A client that does not finish its handshake is dropped.
                            let Ok(Ok(stream)) = tokio::time::timeout(
                                Duration::from_secs(10),
                                acceptor.accept(stream),
                            )
                            .await
                            else {
                                return;
                            };
                            let conn = http1::Builder::new()
                                .keep_alive(true)
                                .serve_connection(TokioIo::new(stream), svc);
                            let _ = watcher.watch(conn).await;
                        });
                    }
                }
            }
            _ = &mut signals => break,
            _ = &mut stopped => break,
        }
    }
    drop(listener);
    if !quiet {
        eprintln!("tollgate serve: shutting down: draining in-flight requests");
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await;
    gw.flush_otel().await;
    let stats = spool.stats.clone();
    tokio::task::spawn_blocking(move || {
        spool.shutdown();
        // A deferred replay still running: give it the same minute (its segments stay on
        // disk for the next start otherwise).
        if let Some(done) = replayed.deferred {
            let _ = done.recv_timeout(Duration::from_secs(60));
        }
    })
    .await
    .context("flushing the spool")?;
    if !quiet {
        eprintln!(
            "tollgate serve: stopped; {} events spooled, {} in the ledger",
            stats.spooled.load(std::sync::atomic::Ordering::Relaxed),
            stats.committed.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    Ok(())
}
