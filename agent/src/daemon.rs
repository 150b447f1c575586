//! The agent's life: connect, set up the control collections, then run heartbeat and
//! command intake until shutdown; on shutdown let operations end (they release their
//! locks) and remove the agent's `pbmAgents` document.

use crate::control::heartbeat::Heartbeat;
use crate::control::ops::OpContext;
use crate::control::pbmlog::{Event, PbmLog};
use crate::control::{intake, setup, ControlError};
use crate::node::{ConnectOptions, Node, NodeError};
use rbm_protocol::meta::log::Severity;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::server::MetricsError),
}

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub connect: ConnectOptions,
    /// PBM: 5 s.
    pub heartbeat_interval: Duration,
    /// PBM: 1 s.
    pub poll_interval: Duration,
    /// Test-only, see [`OpContext::hold`].
    pub test_op_hold: Duration,
    /// `HOST:PORT` of the Prometheus endpoint; off when `None`.
    pub metrics_addr: Option<String>,
    /// Physical backups and restores: dbPath, how to stop and start the node.
    pub physical: crate::physical::PhysicalSettings,
}

impl AgentSettings {
    /// PBM's intervals.
    pub fn new(connect: ConnectOptions) -> Self {
        Self {
            connect,
            heartbeat_interval: rbm_protocol::defs::AGENTS_STAT_CHECK_RANGE,
            poll_interval: intake::POLL_INTERVAL,
            test_op_hold: Duration::ZERO,
            metrics_addr: None,
            physical: Default::default(),
        }
    }
}

/// Runs the agent until `shutdown` is cancelled.
///
/// # Errors
/// Start-up failures (connection, unsuitable server, control collections); after
/// start-up the agent keeps running through transient database errors.
pub async fn run(settings: AgentSettings, shutdown: CancellationToken) -> Result<(), AgentError> {
    let started = crate::control::unix_now();
    // Before connecting: a bad address fails at once, and `/healthz` answers 503 while
    // the mongod is looked for.
    let metrics = match &settings.metrics_addr {
        Some(addr) => Some(crate::metrics::server::serve(
            crate::metrics::server::bind(addr).await?,
            shutdown.clone(),
        )),
        None => None,
    };
    // A predecessor killed while it held the node stopped: bring the node back first,
    // or the connection below would wait for it forever.
    use crate::physical::stopmark::{self, Recovery};
    let abandoned = match stopmark::recover(&settings.physical).await {
        Ok(Recovery::Nothing) => None,
        Ok(Recovery::AlreadyRunning(m)) => {
            tracing::info!(
                "the node was left stopped for {} '{}' and has been started since",
                m.op,
                m.name
            );
            Some(m)
        }
        Ok(Recovery::Started(m)) => {
            tracing::warn!(
                "a previous agent died while the node was stopped for {} '{}': started it again",
                m.op,
                m.name
            );
            Some(m)
        }
        Err(e) => {
            tracing::error!("{e}");
            None
        }
    };
    let node = Node::connect(&settings.connect).await?;
    crate::metrics::attach(&node);
    let info = node.info.clone();
    tracing::info!(
        node = %info.name,
        rs = %info.replset,
        role = ?info.role,
        mongod = %info.mongo_version,
        uri = %node.uri(),
        "connected to the local mongod"
    );
    setup::ensure_collections(&node.pbm).await?;
    let mut hb = Heartbeat::new(&node);
    hb.beat().await?;
    let log = PbmLog::new(&node.pbm, &info.replset, &info.name);
    log.write(
        Severity::Info,
        &Event {
            event: "agentCheckup",
            ..Default::default()
        },
        &format!(
            "rbm-agent {} started on {}/{}",
            crate::VERSION,
            info.replset,
            info.name
        ),
    )
    .await;

    if let Some(m) = abandoned.filter(|m| !m.name.is_empty()) {
        let why = format!(
            "the agent on {} died while its node was stopped for the {}; the node was started again",
            info.name, m.op
        );
        // The node has just come back: it may take a moment to accept writes.
        for attempt in 1..=30 {
            match crate::backup::watchdog::fail_abandoned(&node, &log, &m.name, &why).await {
                Ok(true) => tracing::warn!("backup '{}' failed: {why}", m.name),
                Ok(false) => {}
                Err(e) if attempt < 30 => {
                    tracing::debug!("failing the abandoned backup '{}': {e}", m.name);
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    continue;
                }
                Err(e) => tracing::warn!("cannot fail the abandoned backup '{}': {e}", m.name),
            }
            break;
        }
    }

    let mut tasks: JoinSet<()> = JoinSet::new();
    let (pitr_wakeup, pitr_woken) = crate::pitr::slicer::Wakeup::new();
    let ctx = OpContext {
        node: node.clone(),
        log: log.clone(),
        hold: settings.test_op_hold,
        backups: Default::default(),
        physical: std::sync::Arc::new(settings.physical.clone()),
        pitr_wakeup,
    };
    // Outside `tasks`: the shutdown order below takes the first task to end for intake.
    let watchdog = tokio::spawn(crate::backup::watchdog::run(
        node.clone(),
        log.clone(),
        shutdown.clone(),
    ));
    // Outside `tasks` too: it holds no lock across a shutdown.
    let scheduler = tokio::spawn(crate::scheduler::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(intake::run(
        ctx,
        settings.poll_interval,
        started,
        shutdown.clone(),
    ));
    // Outside `tasks` too: on shutdown the slicer flushes a last chunk, then ends.
    let pitr = tokio::spawn(crate::pitr::slicer::run(
        node.clone(),
        log.clone(),
        pitr_woken,
        shutdown.clone(),
    ));
    let hb_cancel = CancellationToken::new();
    {
        let hb_cancel = hb_cancel.clone();
        let every = settings.heartbeat_interval;
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = hb_cancel.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Err(e) = hb.beat().await {
                    tracing::warn!("heartbeat failed: {e}");
                }
            }
            if let Err(e) = hb.remove().await {
                tracing::warn!("cannot remove the agent status: {e}");
            }
        });
    }

    shutdown.cancelled().await;
    tracing::info!("shutting down: stopping command intake");
    // Intake ends first (its operations release their locks), then the heartbeat
    // removes the status document, so `pbm status` never shows a live agent that is gone.
    let mut intake_done = false;
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res {
            tracing::error!("a task failed: {e}");
        }
        if !intake_done {
            intake_done = true;
            hb_cancel.cancel();
        }
    }
    if let Err(e) = scheduler.await {
        tracing::error!("the scheduler failed: {e}");
    }
    if let Err(e) = watchdog.await {
        tracing::error!("the stuck-backup watchdog failed: {e}");
    }
    if let Err(e) = pitr.await {
        tracing::error!("the PITR slicer failed: {e}");
    }
    if let Some(m) = metrics {
        let _ = m.await;
    }
    log.write(
        Severity::Info,
        &Event {
            event: "agentCheckup",
            ..Default::default()
        },
        &format!("rbm-agent stopped on {}/{}", info.replset, info.name),
    )
    .await;
    Ok(())
}
