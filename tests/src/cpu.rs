//! CPU time of processes, from `/proc/<pid>/stat` (user + system, all threads), for
//! benchmarks that report throughput per core of a process's own CPU time.

use std::time::Duration;

/// Linux reports times in USER_HZ ticks, which is 100 on every mainstream architecture.
const TICKS_PER_SEC: u64 = 100;

/// CPU time used so far by process `pid` ("self" for this process).
pub fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(14) + ticks(15)) * 1000 / TICKS_PER_SEC)
}

/// CPU time used so far by the threads of process `pid` whose name starts with `prefix`
/// (librdkafka's I/O threads are `rdk:broker…`, `rdk:main`).
pub fn threads_cpu_time(pid: &str, prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|name| name.trim_end().starts_with(prefix))
        })
        .map(|t| cpu_time(&format!("{pid}/task/{}", t.file_name().to_string_lossy())))
        .sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_cpu_time_grows() {
        let a = super::cpu_time("self");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let b = super::cpu_time("self");
        assert!(b > a, "{a:?} -> {b:?}");
    }
}
