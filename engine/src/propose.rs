//! The proposer: the one task that hands this server's proposals to raft.
//! It batches whatever is waiting into one log entry (up to [`MAX_BATCH`]
//! commands or [`MAX_BATCH_BYTES`]), keeps at most [`MAX_IN_FLIGHT`]
//! entries proposed but not applied, and gives each proposer its own
//! response from the applied entry.

use std::sync::Arc;

use openraft::error::ClientWriteError;
use openraft::Raft;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::command::{Command, Response};
use crate::engine::{raft_err, Applied};
use crate::error::{Error, Result};
use crate::raft::TypeConfig;

/// A command waiting to be proposed, and where its outcome goes.
pub(crate) struct Proposal {
    pub(crate) cmd: Command,
    pub(crate) reply: oneshot::Sender<Result<Applied>>,
}

/// Most commands in one batched log entry.
const MAX_BATCH: usize = 1024;
/// Most bytes (roughly) in one batched log entry.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Batches proposed but not yet applied. Two keep the log busy while the
/// previous batch is applied and answered; more would only make batches
/// smaller.
const MAX_IN_FLIGHT: usize = 2;

/// Take proposals off the queue, batch whatever is waiting, and hand each
/// batch to raft in arrival order. Ends when every `Engine` handle is gone.
pub(crate) async fn proposer(
    raft: Raft<TypeConfig>,
    mut queue: mpsc::Receiver<Proposal>,
    hold: std::time::Duration,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // A proposal taken while batching that must go alone: the next entry.
    let mut carried: Option<Proposal> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match queue.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.cmd.approx_size();
        let alone = first.cmd.alone();
        let mut batch = vec![first];
        while !alone && batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(p) if p.cmd.alone() => {
                    carried = Some(p);
                    break;
                }
                Ok(p) => {
                    bytes += p.cmd.approx_size();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        if raft.metrics().borrow().current_leader.is_none() {
            let _ = raft
                .wait(Some(hold))
                .metrics(|m| m.current_leader.is_some(), "leader elected")
                .await;
        }
        let (cmds, replies): (Vec<Command>, Vec<_>) =
            batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
        let cmd = if cmds.len() == 1 {
            cmds.into_iter().next().unwrap_or(Command::Noop {})
        } else {
            Command::Batch { commands: cmds }
        };
        // Consul's `consul.raft.apply` (entries this leader appended) and
        // `consul.raft.commitTime` (append to commit); muster's batch size.
        muster_metrics::count!("consul.raft.apply", 1);
        muster_metrics::timing!(
            "muster.raft.batch_size",
            muster_metrics::size(replies.len())
        );
        let proposed = std::time::Instant::now();
        match raft.client_write_ff(cmd).await {
            Ok(pending) => {
                tokio::spawn(async move {
                    let committed = pending.await;
                    muster_metrics::timing!(
                        "consul.raft.commitTime",
                        muster_metrics::ms(proposed.elapsed())
                    );
                    let outcome = match committed {
                        Ok(Ok(resp)) => Ok((resp.log_id.index, resp.data)),
                        // Refused before it was appended, or truncated as
                        // uncommitted: never applied.
                        Ok(Err(ClientWriteError::ForwardToLeader(_))) => Err(Error::LeaderChanged),
                        Ok(Err(e)) => Err(raft_err(e)),
                        Err(_) => Err(Error::Shutdown),
                    };
                    drop(permit);
                    deliver(outcome, replies);
                });
            }
            Err(_) => deliver(Err(Error::Shutdown), replies),
        }
    }
}

/// Hand each proposer its own outcome of a (possibly batched) entry.
fn deliver(outcome: Result<(u64, Response)>, replies: Vec<oneshot::Sender<Result<Applied>>>) {
    match outcome {
        Ok((index, Response::Batch(responses))) if replies.len() > 1 => {
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(Applied { index, response }));
            }
        }
        Ok((index, response)) => {
            for reply in replies {
                let _ = reply.send(Ok(Applied {
                    index,
                    response: response.clone(),
                }));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            let no_leader = e.is_no_leader();
            let changed = matches!(e, Error::LeaderChanged);
            for reply in replies {
                let err = if changed {
                    Error::LeaderChanged
                } else if no_leader {
                    Error::NoLeader
                } else if matches!(e, Error::Shutdown) {
                    Error::Shutdown
                } else {
                    Error::Raft(msg.clone())
                };
                let _ = reply.send(Err(err));
            }
        }
    }
}
