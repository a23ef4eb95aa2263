//! Process metrics read from `/proc/self` at scrape time: resident memory,
//! CPU seconds, open file descriptors and their limit, start time. A gateway
//! that runs out of descriptors stops accepting while its backends are
//! healthy, so the descriptor pair is what `GatewayFileDescriptorsNearLimit`
//! watches.
//!
//! The names are the conventional `process_*` ones every Prometheus client
//! exports (and that existing dashboards and mixins query), not
//! `portcullis_*`. Parsing is pure ([`parse_stat`], [`parse_status_rss`],
//! [`parse_fd_limit`]); [`Collector`] reads the files. On systems without
//! `/proc` nothing is exported.

use prometheus_client::collector::Collector as PromCollector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux's `USER_HZ`: the unit of the CPU times in `/proc/self/stat`. It is
/// part of the kernel ABI and 100 on every architecture Rust targets.
const USER_HZ: f64 = 100.0;

/// CPU times of `/proc/self/stat`, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTimes {
    /// User plus system CPU seconds.
    pub cpu_seconds: f64,
    /// Start of the process, in clock ticks since boot.
    pub start_ticks: u64,
}

/// Reads utime, stime (fields 14, 15) and starttime (field 22) of a
/// `/proc/PID/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub fn parse_stat(line: &str) -> Option<CpuTimes> {
    let rest = &line[line.rfind(')')? + 1..];
    // `rest` starts at field 3 (state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let (utime, stime, start) = (field(14)?, field(15)?, field(22)?);
    Some(CpuTimes {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        start_ticks: start,
    })
}

/// The `VmRSS` line of `/proc/self/status`, in bytes.
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The soft limit of "Max open files" in `/proc/self/limits`; `None` when
/// unlimited or absent.
pub fn parse_fd_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The boot time (`btime`) of `/proc/stat`, in Unix seconds.
pub fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Exports the `process_*` metrics on each scrape.
#[derive(Debug, Default)]
pub struct Collector;

impl PromCollector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(rss) = read("/proc/self/status").and_then(|s| parse_status_rss(&s)) {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss as f64,
            )?;
        }
        let cpu = read("/proc/self/stat").and_then(|s| parse_stat(&s));
        if let Some(cpu) = cpu {
            let counter = ConstCounter::new(cpu.cpu_seconds);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        let boot = read("/proc/stat").and_then(|s| parse_boot_time(&s));
        if let (Some(cpu), Some(boot)) = (cpu, boot) {
            let start = boot as f64 + cpu.start_ticks as f64 / USER_HZ;
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                start,
            )?;
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries.
            let open = entries.count().saturating_sub(1);
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                open as f64,
            )?;
        }
        if let Some(limit) = read("/proc/self/limits").and_then(|s| parse_fd_limit(&s)) {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors (soft limit).",
                limit as f64,
            )?;
        }
        Ok(())
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    let metric = encoder.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(metric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 123456 1000 200 18446744073709551615";
        let cpu = parse_stat(line).expect("parses");
        assert!((cpu.cpu_seconds - 3.0).abs() < 1e-9);
        assert_eq!(cpu.start_ticks, 123456);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn rss_is_read_in_kib_and_reported_in_bytes() {
        let status = "Name:\tportcullis\nVmRSS:\t   2048 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss(status), Some(2 * 1024 * 1024));
    }

    #[test]
    fn fd_limit_is_the_soft_limit_and_unlimited_is_none() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_fd_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_fd_limit(unlimited), None);
    }

    #[test]
    fn boot_time_comes_from_btime() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\n"),
            Some(1700000000)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reports_descriptors_below_their_limit() {
        let mut out = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Collector));
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in {out}"))
        };
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_open_fds") < value("process_max_fds"));
        assert!(value("process_resident_memory_bytes") > 0.0);
        assert!(out.contains("process_cpu_seconds_total "));
    }
}
