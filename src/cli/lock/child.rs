//! The child of `muster lock`: how it is started (through `$SHELL -c` or
//! directly, in its own process group unless it takes stdin), stopped
//! (SIGTERM, then SIGKILL after a grace period) and how its end becomes
//! `muster lock`'s exit code. It knows nothing of locks.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use rustix::process::{Pid, Signal};

use super::LockArgs;

/// How long the child gets to exit after SIGTERM before SIGKILL (Consul's
/// `lockKillGracePeriod`).
const KILL_GRACE: Duration = Duration::from_secs(5);

/// The child process, not yet started.
pub(super) fn child_command(args: &LockArgs) -> tokio::process::Command {
    let mut cmd = if args.shell {
        let mut cmd = tokio::process::Command::new(shell());
        cmd.arg("-c").arg(args.child.join(" "));
        cmd
    } else {
        let mut cmd = tokio::process::Command::new(&args.child[0]);
        cmd.args(&args.child[1..]);
        cmd
    };
    cmd.stdin(if args.pass_stdin {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    // Its own process group, so stopping it reaches what it started
    // (`sh -c 'a; b'`); not with -pass-stdin, which needs the terminal.
    if !args.pass_stdin {
        cmd.process_group(0);
    }
    // Never leave the child running if this process fails.
    cmd.kill_on_drop(true);
    cmd
}

/// `$SHELL`, else `/bin/sh` (as Consul's lock does).
pub(super) fn shell() -> String {
    std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".to_string())
}

/// Stop the child (its process group if it has one): SIGTERM, then SIGKILL
/// after [`KILL_GRACE`].
pub(super) async fn stop(
    child: &mut tokio::process::Child,
    group: bool,
) -> anyhow::Result<ExitStatus> {
    signal_child(child, Signal::TERM, group).await;
    match tokio::time::timeout(KILL_GRACE, child.wait()).await {
        Ok(status) => status.context("Error! Failed to wait for the child"),
        Err(_) => {
            signal_child(child, Signal::KILL, group).await;
            child
                .kill()
                .await
                .context("Error! Failed to kill the child")?;
            child
                .wait()
                .await
                .context("Error! Failed to wait for the child")
        }
    }
}

/// Send `sig` to the child, or to its process group. The child is not
/// reaped yet, so its pid (and group id) cannot have been reused. Best
/// effort: `stop` falls back to SIGKILL.
async fn signal_child(child: &tokio::process::Child, sig: Signal, group: bool) {
    let Some(pid) = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .and_then(Pid::from_raw)
    else {
        return;
    };
    let _ = if group {
        rustix::process::kill_process_group(pid, sig)
    } else {
        rustix::process::kill_process(pid, sig)
    };
}

/// The child's exit code, or 128 + the signal that killed it.
pub(super) fn exit_code(status: ExitStatus) -> ExitCode {
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_child() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), ExitCode::from(3));
        // Killed by SIGTERM (15): 128 + 15.
        assert_eq!(exit_code(ExitStatus::from_raw(15)), ExitCode::from(143));
    }
}
