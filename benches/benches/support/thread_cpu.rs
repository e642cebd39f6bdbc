//! Criterion measurement in CPU time of the benchmarking thread (`CLOCK_THREAD_CPUTIME_ID`), so
//! figures stay meaningful on a shared, loaded machine. With `Throughput::Elements(n)` the
//! throughput line reads directly as CPU nanoseconds per element.

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};

/// Criterion measurement: CPU time consumed by the measuring thread, in nanoseconds.
pub struct ThreadCpuTime;

/// CPU time consumed by the calling thread so far, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid clock id and a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuNanos
    }
}

/// Prints CPU time in ns/µs and throughput as CPU ns per element.
struct CpuNanos;

impl ValueFormatter for CpuNanos {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        if typical < 10_000.0 {
            "ns cpu"
        } else {
            values.iter_mut().for_each(|v| *v /= 1000.0);
            "µs cpu"
        }
    }
    fn scale_throughputs(&self, _typical: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match throughput {
            Throughput::Elements(n) => *n as f64,
            _ => 1.0,
        };
        values.iter_mut().for_each(|v| *v /= n.max(1.0));
        "ns cpu/element"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}
