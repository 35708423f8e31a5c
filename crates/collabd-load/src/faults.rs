//! Faults on a schedule (`--fault AT=COMMAND`): at AT after the first
//! invitation, COMMAND runs under `sh -c` (e.g. `deploy/local-cluster.sh
//! kill-node 2`), and the run marks it on its timeline with its exit
//! status. The generator itself kills nothing: what a fault is belongs to
//! the deployment, whose scripts know its processes. The command gets
//! `COLLABD_LOAD_ACCOUNT` (the run's account id), so it can find, say, the
//! Redis master that owns the account's keys.

use std::cell::RefCell;
use std::rc::Rc;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

use super::parse_duration;
use super::timeline::Timeline;

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// When, from the first invitation.
    pub at: Duration,
    /// What to run (`sh -c`).
    pub command: String,
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (at, command) = text.split_once('=').ok_or_else(|| {
            format!("{text:?}: expected AT=COMMAND, e.g. 40s=deploy/local-cluster.sh kill-node 2")
        })?;
        let command = command.trim();
        if command.is_empty() {
            return Err(format!("{text:?}: the command is empty"));
        }
        Ok(Self {
            at: parse_duration(at)?,
            command: command.to_owned(),
        })
    }
}

/// Runs `faults` on schedule from `start`; each one's exit status lands on
/// `timeline` when it is known. Returns when every command was started.
pub async fn run(
    faults: Vec<Fault>,
    start: Instant,
    account: String,
    timeline: Rc<RefCell<Timeline>>,
) {
    let mut faults = faults;
    faults.sort_by_key(|f| f.at);
    for fault in faults {
        tokio::time::sleep_until(start + fault.at).await;
        let mark = timeline.borrow_mut().fault(Instant::now(), &fault.command);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let command = fault.command.clone();
        let account = account.clone();
        // A blocking wait of its own: the command may take seconds (a
        // restart that waits for readiness), the run must not.
        std::thread::spawn(move || {
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .env("COLLABD_LOAD_ACCOUNT", account)
                .stdin(std::process::Stdio::null())
                .status();
            let _ = tx.send(status.ok().and_then(|s| s.code()));
        });
        let timeline = Rc::clone(&timeline);
        actix_web::rt::spawn(async move {
            let exit = rx.await.ok().flatten();
            timeline.borrow_mut().fault_done(mark, exit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_a_time_and_a_command() {
        let f: Fault = "40s=deploy/local-cluster.sh kill-node 2".parse().unwrap();
        assert_eq!(f.at, Duration::from_secs(40));
        assert_eq!(f.command, "deploy/local-cluster.sh kill-node 2");
        // The command may hold `=` itself.
        let g: Fault = "1.5s=env A=1 true".parse().unwrap();
        assert_eq!(
            (g.at, g.command.as_str()),
            (Duration::from_millis(1500), "env A=1 true")
        );
        assert!("40s".parse::<Fault>().is_err());
        assert!("40s= ".parse::<Fault>().is_err());
        assert!("soon=true".parse::<Fault>().is_err());
    }

    #[test]
    fn faults_run_on_schedule_and_their_exit_is_marked() {
        actix_web::rt::System::new().block_on(faults_run());
    }

    async fn faults_run() {
        let timeline = Rc::new(RefCell::new(Timeline::default()));
        let start = Instant::now();
        timeline.borrow_mut().start(start);
        let faults = vec![
            "20ms=exit 3".parse().unwrap(),
            "0s=test -n \"$COLLABD_LOAD_ACCOUNT\"".parse().unwrap(),
        ];
        run(faults, start, "acct".into(), Rc::clone(&timeline)).await;
        for _ in 0..200 {
            if timeline.borrow().faults.iter().all(|f| f.exit.is_some()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let marks = timeline.borrow().faults.clone();
        assert_eq!(marks.len(), 2);
        // Sorted by time; the account reached the command.
        assert_eq!((marks[0].exit, marks[1].exit), (Some(0), Some(3)));
        assert!(marks[1].at_s >= 0.02, "{marks:?}");
    }
}
