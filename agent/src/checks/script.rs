//! Script checks: run an argv with `tokio::process`, capture stdout and
//! stderr together (keeping the tail), and map the exit code: 0 passing,
//! 1 warning, anything else (or death by signal) critical.
//!
//! The child runs in its own process group; at the timeout the whole group
//! is killed (so `sh -c 'sleep 5'` leaves no orphan holding the pipes) and
//! the result is critical `Timed out (<timeout>) running check`, followed by
//! whatever was printed. Whether scripts may run at all is the agent's
//! decision (`enable_script_checks`), not this module's.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::{timed_out, CheckResult, TailBuf};

/// Run `args` once.
pub(super) async fn run(args: &[String], timeout: Duration, max: usize) -> CheckResult {
    let Some((program, rest)) = args.split_first() else {
        return CheckResult::critical("Failed to invoke check: no command given");
    };
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return CheckResult::critical(format!("Failed to invoke {program:?}: {e}")),
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut output = TailBuf::new(max);
    let finished = tokio::time::timeout(timeout, async {
        pump(stdout, stderr, &mut output).await;
        child.wait().await
    })
    .await;
    match finished {
        Ok(Ok(status)) => {
            CheckResult::from_exit_code(status.code().map(i64::from), output.captured())
        }
        Ok(Err(e)) => CheckResult::critical(format!("Failed to wait for check: {e}")),
        Err(_) => {
            kill_group(&mut child).await;
            let mut msg = timed_out(timeout);
            if !output.is_empty() {
                msg.push_str("\n\n");
                msg.push_str(&output.captured());
            }
            CheckResult::critical(msg)
        }
    }
}

/// Kill the child's process group (then the child itself, and reap it).
async fn kill_group(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        // The group id is the child's pid (process_group(0)). Failure means
        // the group is already gone.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill().await;
}

/// Read both pipes until both reach EOF (or fail), appending to `out` in
/// arrival order.
async fn pump<A, B>(mut a: Option<A>, mut b: Option<B>, out: &mut TailBuf)
where
    A: AsyncRead + Unpin,
    B: AsyncRead + Unpin,
{
    let mut buf_a = [0u8; 4096];
    let mut buf_b = [0u8; 4096];
    while a.is_some() || b.is_some() {
        tokio::select! {
            r = read_some(&mut a, &mut buf_a), if a.is_some() => match r {
                Ok(n) if n > 0 => out.push(buf_a.get(..n).unwrap_or_default()),
                _ => a = None,
            },
            r = read_some(&mut b, &mut buf_b), if b.is_some() => match r {
                Ok(n) if n > 0 => out.push(buf_b.get(..n).unwrap_or_default()),
                _ => b = None,
            },
        }
    }
}

async fn read_some<R: AsyncRead + Unpin>(
    r: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_engine::Status;
    use std::time::Instant;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    const T: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn script_exit_codes_map_to_statuses() {
        let r = run(&sh("echo ok; exit 0"), T, 4096).await;
        assert_eq!(r, CheckResult::passing("ok\n"));
        let r = run(&sh("echo meh >&2; exit 1"), T, 4096).await;
        assert_eq!((r.status, r.output.as_str()), (Status::Warning, "meh\n"));
        let r = run(&sh("exit 2"), T, 4096).await;
        assert_eq!((r.status, r.output.as_str()), (Status::Critical, ""));
        let r = run(&sh("kill -9 $$"), T, 4096).await;
        assert_eq!(r.status, Status::Critical);
    }

    #[tokio::test]
    async fn script_captures_stdout_and_stderr() {
        let r = run(&sh("echo out; sleep 0.05; echo err >&2"), T, 4096).await;
        assert_eq!(r.output, "out\nerr\n");
    }

    #[tokio::test]
    async fn script_output_keeps_tail() {
        let r = run(
            &sh("i=0; while [ $i -lt 100 ]; do echo line$i; i=$((i+1)); done"),
            T,
            8,
        )
        .await;
        assert!(
            r.output.starts_with("Captured 8 of 690 bytes\n...\n"),
            "{}",
            r.output
        );
        assert!(r.output.ends_with("\nline99\n"), "{}", r.output);
    }

    #[tokio::test]
    async fn script_killed_at_timeout() {
        let start = Instant::now();
        let args = vec!["sleep".to_string(), "5".to_string()];
        let r = run(&args, Duration::from_millis(200), 4096).await;
        assert_eq!(r, CheckResult::critical("Timed out (200ms) running check"));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn script_timeout_kills_the_group_and_keeps_output() {
        let start = Instant::now();
        // The shell forks `sleep`, which inherits the pipes: only killing
        // the whole group lets the check return promptly.
        let r = run(
            &sh("echo started; sleep 5; echo never"),
            Duration::from_millis(300),
            4096,
        )
        .await;
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.output, "Timed out (300ms) running check\n\nstarted\n");
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn script_missing_program_is_critical() {
        let r = run(&["/nonexistent/muster-check".to_string()], T, 4096).await;
        assert_eq!(r.status, Status::Critical);
        assert!(r.output.starts_with("Failed to invoke"), "{}", r.output);
        let r = run(&[], T, 4096).await;
        assert_eq!(r.status, Status::Critical);
    }
}
