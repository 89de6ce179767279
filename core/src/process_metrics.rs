//! Metrics of the process itself, read from `/proc/self` at scrape time
//! (a few small reads per scrape, nothing in between), named as Prometheus'
//! client libraries name them so existing dashboards work; and a build-info
//! series carrying the version.

use crate::metrics::Registry;

/// Registers `<build_info>{version, commit, rustc}` (commit and rustc when
/// the build set `WEIR_BUILD_COMMIT` / `WEIR_BUILD_RUSTC`) and the
/// `process_*` metrics on `registry`.
pub fn register(registry: &Registry, build_info: &'static str, version: &'static str) {
    let mut labels = vec![("version", version)];
    if let Some(c) = option_env!("WEIR_BUILD_COMMIT").filter(|c| !c.is_empty()) {
        labels.push(("commit", c));
    }
    if let Some(r) = option_env!("WEIR_BUILD_RUSTC").filter(|r| !r.is_empty()) {
        labels.push(("rustc", r));
    }
    registry
        .gauge(
            build_info,
            "Always 1; the labels say which build is running.",
            &labels,
        )
        .set(1);
    registry.dynamic(
        "process_resident_memory_bytes",
        "Resident set size of the process.",
        "gauge",
        |emit| {
            if let Some(s) = Stat::read() {
                emit(&[], s.rss_pages as f64 * page_size());
            }
        },
    );
    registry.dynamic(
        "process_cpu_seconds_total",
        "User and system CPU time of the process.",
        "counter",
        |emit| {
            if let Some(s) = Stat::read() {
                emit(&[], (s.utime + s.stime) as f64 / clock_ticks());
            }
        },
    );
    registry.dynamic(
        "process_start_time_seconds",
        "When the process started, in seconds since the Unix epoch.",
        "gauge",
        |emit| {
            if let (Some(s), Some(boot)) = (Stat::read(), boot_time()) {
                emit(&[], boot + s.start_ticks as f64 / clock_ticks());
            }
        },
    );
    registry.dynamic(
        "process_open_fds",
        "File descriptors the process has open.",
        "gauge",
        |emit| {
            if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
                // The directory handle itself is one of them.
                emit(&[], dir.count().saturating_sub(1) as f64);
            }
        },
    );
    registry.dynamic(
        "process_max_fds",
        "The process's limit on open file descriptors.",
        "gauge",
        |emit| {
            if let Some(n) = max_fds() {
                emit(&[], n as f64);
            }
        },
    );
}

/// The fields of `/proc/self/stat` we report.
#[derive(Debug, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    start_ticks: u64,
    rss_pages: u64,
}

impl Stat {
    fn read() -> Option<Stat> {
        Self::parse(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// Parses a stat line; the command name (field 2) may hold spaces and
    /// parentheses, so fields are counted from the last `)`.
    fn parse(line: &str) -> Option<Stat> {
        let rest = &line[line.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // f[0] is field 3 (state): field n is f[n - 3].
        let n = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
        Some(Stat {
            utime: n(14)?,
            stime: n(15)?,
            start_ticks: n(22)?,
            rss_pages: n(24)?,
        })
    }
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as f64
    } else {
        4096.0
    }
}

fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_and_parentheses_in_the_name_parses() {
        let line = "42 (we ir) (x)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 4 0 5000 1000000 250 18446744073709551615";
        assert_eq!(
            Stat::parse(line),
            Some(Stat {
                utime: 7,
                stime: 3,
                start_ticks: 5000,
                rss_pages: 250
            })
        );
    }

    #[test]
    fn process_metrics_and_build_info_render_with_live_values() {
        let r = Registry::new();
        register(&r, "weir_build_info", "1.2.3");
        let text = r.render();
        assert!(text.contains("weir_build_info{version=\"1.2.3\""), "{text}");
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in {text}"))
        };
        assert!(value("process_resident_memory_bytes") > 1e5);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_cpu_seconds_total") >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(
            start > now - 3600.0 && start <= now + 1.0,
            "{start} vs {now}"
        );
    }
}
