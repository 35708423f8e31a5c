//! CPU time of the nodes and of the generator itself, from `/proc`: user
//! plus system time (`utime` + `stime` of `/proc/<pid>/stat`, in clock
//! ticks), read when sending starts and when the drain ends, so the figures
//! cover exactly the measured window.

use std::process::Command;

/// Clock ticks per second for `/proc` times: `getconf CLK_TCK`, else 100
/// (the value on every common Linux).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

/// `utime + stime` from the text of a `/proc/<pid>/stat`. The command name
/// (field 2) is in parentheses and may itself hold spaces or parentheses,
/// so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0, so utime (field 14) is
    // index 11 and stime (field 15) index 12.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks used so far by process `pid` (`None`: this process).
pub fn ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// CPU readings of the nodes and of this process at one instant.
#[derive(Debug, Clone)]
pub struct Reading {
    nodes: Vec<Option<u64>>,
    generator: Option<u64>,
}

impl Reading {
    /// Reads every node in `pids` and this process now.
    pub fn take(pids: &[u32]) -> Self {
        Self {
            nodes: pids.iter().map(|pid| ticks(Some(*pid))).collect(),
            generator: ticks(None),
        }
    }
}

/// CPU seconds spent between two readings.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuUse {
    /// The nodes' process ids, as given.
    pub pids: Vec<u32>,
    /// Seconds per node (`None`: unreadable at the start or the end).
    pub nodes: Vec<Option<f64>>,
    /// Seconds of this process (`None`: no `/proc/self/stat`).
    pub generator: Option<f64>,
    /// Alerts plus withdrawals the generator's streams received in between.
    pub delivered_events: u64,
}

impl CpuUse {
    /// The CPU used from `start` to `end`, at `ticks_per_s` clock ticks.
    pub fn between(
        pids: &[u32],
        start: &Reading,
        end: &Reading,
        ticks_per_s: u64,
        delivered_events: u64,
    ) -> Self {
        let seconds = |a: Option<u64>, b: Option<u64>| {
            Some(b?.saturating_sub(a?) as f64 / ticks_per_s.max(1) as f64)
        };
        Self {
            pids: pids.to_vec(),
            nodes: start
                .nodes
                .iter()
                .zip(&end.nodes)
                .map(|(a, b)| seconds(*a, *b))
                .collect(),
            generator: seconds(start.generator, end.generator),
            delivered_events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_read_after_the_command_name() {
        // A name with a space and a parenthesis, as `comm` allows.
        let stat = "4242 (collabd (x) y) S 1 4242 4242 0 -1 4194560 1067 0 0 0 \
                    250 75 0 0 20 0 9 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(325));
        assert_eq!(parse_stat("4242 (short) S 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_has_readable_cpu_time_and_a_clock() {
        assert!(clock_ticks_per_second() > 0);
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(ticks(None).is_some());
            assert!(ticks(Some(std::process::id())).is_some());
        }
    }

    #[test]
    fn use_between_readings_is_in_seconds_and_tolerates_a_vanished_node() {
        let start = Reading {
            nodes: vec![Some(100), Some(50)],
            generator: Some(10),
        };
        let end = Reading {
            nodes: vec![Some(350), None],
            generator: Some(60),
        };
        let used = CpuUse::between(&[7, 8], &start, &end, 100, 1000);
        assert_eq!(used.nodes, vec![Some(2.5), None]);
        assert_eq!(used.generator, Some(0.5));
        assert_eq!(used.pids, vec![7, 8]);
    }
}
