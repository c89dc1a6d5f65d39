//! `kith run`: the node in the foreground until SIGINT or SIGTERM.

use std::path::Path;

use anyhow::Result;
use kith_node::Device;
use kith_node::node::{self, Options};
use tokio::signal::unix::{SignalKind, signal};

use crate::Exit;
use crate::cli::{LogFormat, RunArgs};

/// The node's log on standard error: `RUST_LOG` chooses what (default: kith at
/// info, libp2p and mDNS at warn); colours only when standard error is a terminal.
fn logging(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p=warn,mdns_sd=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// How long `kith run` waits for a command that holds the data directory.
pub(crate) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether a node answers on the directory's control socket.
fn node_answers(dir: &Path) -> bool {
    matches!(
        crate::ops::via_node(
            dir,
            &kith_node::api::Request::Status,
            &mut crate::ops::no_progress
        ),
        Ok(Some(_))
    )
}

pub(crate) fn run(dir: &Path, args: RunArgs) -> Result<()> {
    logging(args.log_format);
    // A CLI command may hold the store for a while (the first open of a large store
    // after a crash checks every row): wait for it, up to a minute. A node holding
    // it (its control socket answers) is refused at once.
    let start = std::time::Instant::now();
    let mut told = false;
    let key_files = crate::passphrase::key_files(dir)?;
    let device = loop {
        match Device::open_with(dir, key_files.clone()) {
            Err(kith_node::device::Error::Store(kith_node::store::Error::Locked(_)))
                if start.elapsed() < LOCK_WAIT && !node_answers(dir) =>
            {
                if !told {
                    tracing::info!(
                        "waiting for another kith command to finish with {}",
                        dir.display()
                    );
                    told = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => break other.map_err(Exit::from)?,
        }
    };
    let mut device = device;
    if let Some(every) = args.ack_interval {
        device.set_ack_interval(every);
    }
    let options = Options {
        listen: args.listen,
        peers: args.peers,
        mdns: !args.no_mdns,
        mdns_interfaces: args.mdns_interfaces,
        xmpp_port: args.xmpp_port,
        xmpp_lan: args.xmpp_lan,
        calendar: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let running = node::start(device, options)
            .await
            .map_err(|e| Exit::from(&e))?;
        tracing::info!(
            "node running; control socket {}",
            dir.join("control.sock").display()
        );
        let mut term = signal(SignalKind::terminate())?;
        let mut task = running.task;
        let stop = running.stop;
        let ended = tokio::select! {
            _ = tokio::signal::ctrl_c() => None,
            _ = term.recv() => None,
            r = &mut task => Some(r),
        };
        let result = match ended {
            Some(r) => r,
            None => {
                tracing::info!("stopping");
                let _ = stop.send(());
                task.await
            }
        };
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Exit::from(&e).into()),
            Err(e) => Err(anyhow::anyhow!("the node task failed: {e}")),
        }
    })
}
