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
}

/// Runs the gateway until SIGTERM / Ctrl-C.
pub fn serve(opts: ServeOptions) -> Result<()> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = opts.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.build().context("cannot start the async runtime")?;
    rt.block_on(run(opts))
}

async fn run(opts: ServeOptions) -> Result<()> {
    let cfg = opts.config;
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("cannot create {}", opts.data_dir.display()))?;
    let spool_dir = cfg
        .spool_dir
        .clone()
        .unwrap_or_else(|| opts.data_dir.join("spool"));
    let pricer = Arc::new(opts.pricer);
    let replayed = crate::spool::replay(&spool_dir, &opts.data_dir, &pricer)?;
    if replayed > 0 {
        eprintln!("tollgate serve: replayed {replayed} spooled events into the ledger");
    }
    let spool = Spool::start(
        &spool_dir,
        &opts.data_dir,
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
    let gw = Arc::new(Gateway::new(
        cfg,
        opts.data_dir.clone(),
        pricer,
        spool.clone(),
    )?);

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

    if let Some(f) = &opts.addr_file {
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, format!("{addr}\n"))
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, f).with_context(|| format!("cannot write {}", f.display()))?;
    }
    eprintln!("tollgate serve: listening on {addr}");

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    loop {
        tokio::select! {
            acc = listener.accept() => {
                let Ok((stream, _)) = acc else { continue };
                let _ = stream.set_nodelay(true);
                let gw = gw.clone();
                let conn = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(
                        TokioIo::new(stream),
                        service_fn(move |req| gw.clone().handle(req)),
                    );
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    drop(listener);
    eprintln!("tollgate serve: shutting down: draining in-flight requests");
    let _ = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await;
    let stats = spool.stats.clone();
    tokio::task::spawn_blocking(move || spool.shutdown())
        .await
        .context("flushing the spool")?;
    eprintln!(
        "tollgate serve: stopped; {} events spooled, {} in the ledger",
        stats.spooled.load(std::sync::atomic::Ordering::Relaxed),
        stats.committed.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}
