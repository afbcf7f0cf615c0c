//! A node-exporter-like remote-write load, pre-encoded as snappy-compressed
//! `prometheus.WriteRequest` bodies so that encoding costs nothing during
//! the measured send.
//!
//! Each simulated host exposes about 250 series in the shape node-exporter
//! 1.x produces (cpu × mode counters, memory gauges, per-device network and
//! disk counters, per-mount filesystem gauges, load averages, vmstat and
//! netstat counters), scraped every 15 s with a few milliseconds of jitter.
//! Values move as real ones do: counters grow by noisy increments with the
//! same precision node-exporter reports (1/100 s for CPU, whole bytes and
//! packets), gauges random-walk, constants stay constant.

use strata::api::prom::proto::v1::{Label, Sample, TimeSeries, WriteRequest};

/// A deterministic splitmix64 generator (reproducible loads, no deps).
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// How one series' value evolves from scrape to scrape.
#[derive(Clone, Copy)]
enum Kind {
    /// Counter growing by about `rate` per second, rounded to `quantum`.
    Counter { rate: f64, quantum: f64 },
    /// Gauge random-walking by up to `step`, rounded to `quantum`, kept ≥ 0.
    Gauge { step: f64, quantum: f64 },
    /// Constant (sizes, boot time, info metrics).
    Constant,
    /// The scrape time itself in seconds with nanosecond noise (node_time_seconds).
    Clock,
}

/// One generated series: its labels and how its value moves.
pub struct SeriesGen {
    /// Index of the simulated host it belongs to.
    pub host: usize,
    /// Sorted labels, `__name__` included.
    pub labels: Vec<Label>,
    kind: Kind,
    value: f64,
}

const CPU_MODES: &[&str] = &[
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
const MEM: &[&str] = &[
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "Active",
    "Inactive",
    "Active_anon",
    "Inactive_anon",
    "Active_file",
    "Inactive_file",
    "Unevictable",
    "Mlocked",
    "SwapTotal",
    "SwapFree",
    "Dirty",
    "Writeback",
    "AnonPages",
    "Mapped",
    "Shmem",
    "KReclaimable",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "NFS_Unstable",
    "Bounce",
    "WritebackTmp",
    "CommitLimit",
    "Committed_AS",
    "VmallocTotal",
    "VmallocUsed",
    "VmallocChunk",
    "Percpu",
    "HardwareCorrupted",
    "AnonHugePages",
    "HugePages_Total",
    "Hugepagesize",
];
/// Meminfo fields that do not move on a running host without swap or huge
/// pages in use.
const STATIC_MEM: &[&str] = &[
    "SwapCached",
    "SwapFree",
    "Unevictable",
    "Mlocked",
    "NFS_Unstable",
    "Bounce",
    "WritebackTmp",
    "HardwareCorrupted",
    "Hugepagesize",
    "VmallocChunk",
    "CommitLimit",
];
const NET_DEVICES: &[&str] = &["eth0", "eth1", "lo", "docker0"];
const NET_FIELDS: &[(&str, f64)] = &[
    ("receive_bytes", 2e5),
    ("transmit_bytes", 1e5),
    ("receive_packets", 300.0),
    ("transmit_packets", 200.0),
    ("receive_errs", 0.001),
    ("transmit_errs", 0.001),
    ("receive_drop", 0.01),
    ("transmit_drop", 0.0),
];
const DISKS: &[&str] = &["sda", "sdb", "nvme0n1"];
const DISK_FIELDS: &[(&str, f64, f64)] = &[
    ("reads_completed_total", 20.0, 1.0),
    ("writes_completed_total", 50.0, 1.0),
    ("read_bytes_total", 4e5, 512.0),
    ("written_bytes_total", 9e5, 512.0),
    ("io_time_seconds_total", 0.05, 0.001),
    ("read_time_seconds_total", 0.02, 0.001),
    ("write_time_seconds_total", 0.04, 0.001),
];
const MOUNTS: &[(&str, &str, &str)] = &[
    ("/dev/sda1", "ext4", "/"),
    ("/dev/sdb1", "xfs", "/data"),
    ("tmpfs", "tmpfs", "/run"),
    ("/dev/nvme0n1p1", "ext4", "/var/lib/docker"),
];
const VMSTAT: &[&str] = &[
    "pgpgin",
    "pgpgout",
    "pswpin",
    "pswpout",
    "pgfault",
    "pgmajfault",
    "oom_kill",
];
const NETSTAT: &[&str] = &[
    "Tcp_ActiveOpens",
    "Tcp_PassiveOpens",
    "Tcp_InSegs",
    "Tcp_OutSegs",
    "Tcp_RetransSegs",
    "Udp_InDatagrams",
    "Udp_OutDatagrams",
    "Udp_NoPorts",
    "TcpExt_ListenDrops",
    "TcpExt_SyncookiesSent",
    "Icmp_InMsgs",
    "Icmp_OutMsgs",
    "IpExt_InOctets",
    "IpExt_OutOctets",
];

fn labels(name: &str, host: &[(String, String)], extra: &[(&str, &str)]) -> Vec<Label> {
    let mut l: Vec<Label> = host
        .iter()
        .map(|(n, v)| Label {
            name: n.clone(),
            value: v.clone(),
        })
        .chain(extra.iter().map(|(n, v)| Label {
            name: n.to_string(),
            value: v.to_string(),
        }))
        .chain(std::iter::once(Label {
            name: "__name__".into(),
            value: name.into(),
        }))
        .collect();
    l.sort_by(|a, b| a.name.cmp(&b.name));
    l
}

/// The series of one host, about 250 of them.
pub fn host_series(host_idx: usize, rng: &mut Rng) -> Vec<SeriesGen> {
    let host = vec![
        (
            "instance".to_string(),
            format!(
                "10.{}.{}.{}:9100",
                host_idx / 65536 % 256,
                host_idx / 256 % 256,
                host_idx % 256
            ),
        ),
        ("job".to_string(), "node".to_string()),
        (
            "region".to_string(),
            ["eu-west-1", "us-east-1", "ap-south-1"][host_idx % 3].to_string(),
        ),
    ];
    let mut out = Vec::new();
    let mut push = |name: &str, extra: &[(&str, &str)], kind: Kind, value: f64| {
        out.push(SeriesGen {
            host: host_idx,
            labels: labels(name, &host, extra),
            kind,
            value,
        });
    };
    let cpus = 8;
    for cpu in 0..cpus {
        let c = cpu.to_string();
        for (i, mode) in CPU_MODES.iter().enumerate() {
            let rate = [0.85, 0.01, 0.0, 0.001, 0.005, 0.0, 0.04, 0.09][i];
            push(
                "node_cpu_seconds_total",
                &[("cpu", &c), ("mode", mode)],
                Kind::Counter {
                    rate,
                    quantum: 0.01,
                },
                (rate * 1e6 * (0.5 + rng.unit()) * 100.0).round() / 100.0,
            );
        }
        for mode in ["nice", "user"] {
            push(
                "node_cpu_guest_seconds_total",
                &[("cpu", &c), ("mode", mode)],
                Kind::Constant,
                0.0,
            );
        }
    }
    for m in MEM {
        let total = 64.0 * 1024.0 * 1024.0 * 1024.0;
        let v = (rng.unit() * total / 4096.0).round() * 4096.0;
        let kind = if STATIC_MEM.contains(m) || m.ends_with("Total") {
            Kind::Constant
        } else {
            Kind::Gauge {
                step: 4096.0 * 64.0,
                quantum: 4096.0,
            }
        };
        push(&format!("node_memory_{m}_bytes"), &[], kind, v);
    }
    for d in NET_DEVICES {
        for (f, rate) in NET_FIELDS {
            push(
                &format!("node_network_{f}_total"),
                &[("device", d)],
                Kind::Counter {
                    rate: *rate,
                    quantum: 1.0,
                },
                (rate * 1e6 * rng.unit()).round(),
            );
        }
        push("node_network_up", &[("device", d)], Kind::Constant, 1.0);
        push(
            "node_network_mtu_bytes",
            &[("device", d)],
            Kind::Constant,
            1500.0,
        );
    }
    for d in DISKS {
        for (f, rate, q) in DISK_FIELDS {
            push(
                &format!("node_disk_{f}"),
                &[("device", d)],
                Kind::Counter {
                    rate: *rate,
                    quantum: *q,
                },
                (rate * 1e6 * rng.unit() / q).round() * q,
            );
        }
        push(
            "node_disk_io_now",
            &[("device", d)],
            Kind::Gauge {
                step: 2.0,
                quantum: 1.0,
            },
            0.0,
        );
    }
    for (dev, fs, mp) in MOUNTS {
        let size = ((1u64 << 30) * (16 + rng.below(2000))) as f64;
        let extra = [("device", *dev), ("fstype", *fs), ("mountpoint", *mp)];
        push("node_filesystem_size_bytes", &extra, Kind::Constant, size);
        let free = (size * rng.unit() / 4096.0).round() * 4096.0;
        for n in ["node_filesystem_free_bytes", "node_filesystem_avail_bytes"] {
            push(
                n,
                &extra,
                Kind::Gauge {
                    step: 4096.0 * 256.0,
                    quantum: 4096.0,
                },
                free,
            );
        }
        push("node_filesystem_files", &extra, Kind::Constant, 6_553_600.0);
        push(
            "node_filesystem_files_free",
            &extra,
            Kind::Gauge {
                step: 20.0,
                quantum: 1.0,
            },
            6_000_000.0,
        );
        push("node_filesystem_readonly", &extra, Kind::Constant, 0.0);
        push("node_filesystem_device_error", &extra, Kind::Constant, 0.0);
    }
    for (n, base) in [
        ("node_load1", 1.2),
        ("node_load5", 1.0),
        ("node_load15", 0.9),
    ] {
        push(
            n,
            &[],
            Kind::Gauge {
                step: 0.3,
                quantum: 0.01,
            },
            base,
        );
    }
    for v in VMSTAT {
        push(
            &format!("node_vmstat_{v}"),
            &[],
            Kind::Counter {
                rate: 50.0,
                quantum: 1.0,
            },
            1e7 * rng.unit(),
        );
    }
    for n in NETSTAT {
        push(
            &format!("node_netstat_{n}"),
            &[],
            Kind::Counter {
                rate: 30.0,
                quantum: 1.0,
            },
            1e6 * rng.unit(),
        );
    }
    push(
        "node_context_switches_total",
        &[],
        Kind::Counter {
            rate: 4000.0,
            quantum: 1.0,
        },
        1e9,
    );
    push(
        "node_intr_total",
        &[],
        Kind::Counter {
            rate: 2000.0,
            quantum: 1.0,
        },
        5e8,
    );
    push(
        "node_forks_total",
        &[],
        Kind::Counter {
            rate: 5.0,
            quantum: 1.0,
        },
        1e6,
    );
    push(
        "node_procs_running",
        &[],
        Kind::Gauge {
            step: 2.0,
            quantum: 1.0,
        },
        3.0,
    );
    push(
        "node_procs_blocked",
        &[],
        Kind::Gauge {
            step: 1.0,
            quantum: 1.0,
        },
        0.0,
    );
    push(
        "node_boot_time_seconds",
        &[],
        Kind::Constant,
        1.7e9 + rng.below(1_000_000) as f64,
    );
    push("node_time_seconds", &[], Kind::Clock, 0.0);
    push(
        "node_entropy_available_bits",
        &[],
        Kind::Gauge {
            step: 10.0,
            quantum: 1.0,
        },
        3500.0,
    );
    push(
        "node_filefd_allocated",
        &[],
        Kind::Gauge {
            step: 20.0,
            quantum: 1.0,
        },
        3000.0,
    );
    push(
        "node_exporter_build_info",
        &[("version", "1.5.0"), ("goversion", "go1.19.8")],
        Kind::Constant,
        1.0,
    );
    push(
        "node_scrape_collector_success",
        &[("collector", "cpu")],
        Kind::Constant,
        1.0,
    );
    push(
        "node_scrape_collector_duration_seconds",
        &[("collector", "cpu")],
        Kind::Gauge {
            step: 1e-4,
            quantum: 1e-9,
        },
        0.001,
    );
    push("up", &[], Kind::Constant, 1.0);
    out
}

/// `v` rounded to a multiple of `quantum` the way exporters compute such
/// values: a whole number of units times the unit or, for fractions, a count
/// of ticks divided by the ticks per unit (node-exporter divides jiffies by
/// USER_HZ and milliseconds by 1000; /proc/loadavg's "0.42" parses to the
/// same float), which is the float nearest to the decimal.
fn quantize(v: f64, quantum: f64) -> f64 {
    if quantum >= 1.0 {
        (v / quantum).round() * quantum
    } else {
        let per_unit = (1.0 / quantum).round();
        (v * per_unit).round() / per_unit
    }
}

impl SeriesGen {
    /// The value at the scrape at `t_ms`, `interval_s` after the previous one.
    pub fn advance(&mut self, rng: &mut Rng, interval_s: f64, t_ms: i64) -> f64 {
        match self.kind {
            Kind::Counter { rate, quantum } => {
                let inc = rate * interval_s * (0.5 + rng.unit());
                self.value = quantize(self.value + inc, quantum);
            }
            Kind::Gauge { step, quantum } => {
                let d = (rng.unit() * 2.0 - 1.0) * step;
                self.value = quantize((self.value + d).max(0.0), quantum);
            }
            Kind::Constant => {}
            Kind::Clock => {
                self.value = t_ms as f64 / 1000.0 + rng.below(1_000_000) as f64 * 1e-9;
            }
        }
        self.value
    }
}

/// The timestamps a Prometheus scrape loop gives one host's samples.
struct ScrapeClock {
    host: usize,
    /// Scheduled time of scrape 0 (the host's phase in the interval).
    first_ms: i64,
    interval_ms: i64,
    /// Timestamp of the previous scrape.
    last: Option<i64>,
}

impl ScrapeClock {
    /// Prometheus's default scrape timestamp tolerance.
    const TOLERANCE_MS: i64 = 2;

    fn new(host: usize, first_ms: i64, interval_ms: i64) -> ScrapeClock {
        let phase = Rng::new(host as u64 ^ 0x9e37).below(interval_ms as u64 / 2) as i64;
        ScrapeClock {
            host,
            first_ms: first_ms + phase,
            interval_ms,
            last: None,
        }
    }

    /// Timestamp of scrape `step`: the scheduled time plus a start delay,
    /// snapped to the previous timestamp plus the interval when within the
    /// tolerance.
    fn next(&mut self, step: usize) -> i64 {
        let mut rng = Rng::new((self.host as u64) << 32 | step as u64);
        let delay = if rng.below(50) == 0 {
            3 + rng.below(28) as i64
        } else {
            rng.below(2) as i64
        };
        let actual = self.first_ms + step as i64 * self.interval_ms + delay;
        let t = match self.last {
            Some(l) if (actual - (l + self.interval_ms)).abs() < Self::TOLERANCE_MS => {
                l + self.interval_ms
            }
            _ => actual,
        };
        self.last = Some(t);
        t
    }
}

/// Shape of a load.
#[derive(Clone, Copy, Debug)]
pub struct LoadSpec {
    /// Series in total (rounded up to whole hosts).
    pub series: usize,
    /// Samples per series.
    pub samples_per_series: usize,
    /// Series per request (each carrying one sample, as Prometheus sends
    /// them in steady state; 2000 is Prometheus 3's max_samples_per_send).
    pub batch: usize,
    /// Sending clients; series blocks are split between them so that each
    /// series' samples arrive in time order.
    pub clients: usize,
    /// Scrape interval in milliseconds.
    pub interval_ms: i64,
}

/// The pre-encoded load: per client, the request bodies in send order.
pub struct Load {
    /// `per_client[k]` is what client `k` sends, in order.
    pub per_client: Vec<Vec<bytes::Bytes>>,
    /// Series actually generated.
    pub series: usize,
    /// Samples in all bodies.
    pub samples: u64,
    /// Sum of compressed body sizes.
    pub wire_bytes: u64,
    /// Sum of uncompressed protobuf sizes.
    pub raw_bytes: u64,
    /// Scheduled time of the first scrape (ms).
    pub first_ms: i64,
    /// Timestamp of the last scrape (ms, the latest host's).
    pub last_ms: i64,
    /// True when the window was moved earlier to stay inside one block.
    pub moved: bool,
    /// Series named `node_cpu_seconds_total` (checked after ingestion).
    pub cpu_series: usize,
}

/// The block range of Strata's and Prometheus's default configuration.
pub const BLOCK_MS: i64 = 2 * 3_600_000;

/// Scheduled time of the first scrape. The window ends about a minute before
/// `now_ms`, unless it would then straddle a block boundary (a multiple of
/// [`BLOCK_MS`] since the epoch): it is then moved earlier to end just before
/// that boundary, so every series lands in one block and the bytes per sample
/// after the flush do not depend on the time of day the bench runs at. Every
/// timestamp is below `start + span` (host phases are under half an interval,
/// late scrapes 30 ms at most). Also says whether the window was moved.
pub fn window_start(now_ms: i64, span: i64, interval_ms: i64) -> (i64, bool) {
    let first = (now_ms - span - 60_000).div_euclid(interval_ms) * interval_ms;
    let boundary = (first + span).div_euclid(BLOCK_MS) * BLOCK_MS;
    if first < boundary && span + interval_ms <= BLOCK_MS {
        (
            (boundary - span).div_euclid(interval_ms) * interval_ms,
            true,
        )
    } else {
        (first, false)
    }
}

/// Generates and encodes the load; the last sample is a minute before
/// `now_ms`, or up to one window length earlier (see [`window_start`]).
pub fn generate(spec: LoadSpec, now_ms: i64) -> Load {
    use prost::Message;
    let mut rng = Rng::new(0x5742_a7a5);
    let mut all: Vec<SeriesGen> = Vec::with_capacity(spec.series + 300);
    let mut host = 0;
    while all.len() < spec.series {
        all.extend(host_series(host, &mut rng));
        host += 1;
    }
    let span = spec.interval_ms * spec.samples_per_series as i64;
    let (first_ms, moved) = window_start(now_ms, span, spec.interval_ms);
    let blocks: Vec<std::ops::Range<usize>> = (0..all.len())
        .step_by(spec.batch)
        .map(|s| s..(s + spec.batch).min(all.len()))
        .collect();
    let mut per_client = vec![Vec::new(); spec.clients.max(1)];
    let (mut samples, mut wire, mut raw) = (0u64, 0u64, 0u64);
    let mut encoder = snap::raw::Encoder::new();
    // One reusable request per block: labels cloned once, samples rewritten.
    let mut reqs: Vec<WriteRequest> = blocks
        .iter()
        .map(|r| WriteRequest {
            timeseries: all[r.clone()]
                .iter()
                .map(|s| TimeSeries {
                    labels: s.labels.clone(),
                    samples: vec![Sample {
                        value: 0.0,
                        timestamp: 0,
                    }],
                    ..Default::default()
                })
                .collect(),
            metadata: Vec::new(),
        })
        .collect();
    let mut buf = Vec::new();
    let mut scrapes: Vec<ScrapeClock> = (0..host)
        .map(|h| ScrapeClock::new(h, first_ms, spec.interval_ms))
        .collect();
    for step in 0..spec.samples_per_series {
        let stamps: Vec<i64> = scrapes.iter_mut().map(|c| c.next(step)).collect();
        for (b, range) in blocks.iter().enumerate() {
            for (ts, gen) in reqs[b].timeseries.iter_mut().zip(&mut all[range.clone()]) {
                // One timestamp per host and scrape.
                let t = stamps[gen.host];
                let v = gen.advance(&mut rng, spec.interval_ms as f64 / 1000.0, t);
                ts.samples[0] = Sample {
                    value: v,
                    timestamp: t,
                };
            }
            buf.clear();
            reqs[b]
                .encode(&mut buf)
                .expect("encoding into a Vec cannot fail");
            let body = encoder.compress_vec(&buf).expect("snappy compression");
            samples += range.len() as u64;
            raw += buf.len() as u64;
            wire += body.len() as u64;
            per_client[b % spec.clients.max(1)].push(bytes::Bytes::from(body));
        }
    }
    let cpu_series = all
        .iter()
        .filter(|s| {
            s.labels
                .iter()
                .any(|l| l.name == "__name__" && l.value == "node_cpu_seconds_total")
        })
        .count();
    Load {
        per_client,
        series: all.len(),
        samples,
        wire_bytes: wire,
        raw_bytes: raw,
        first_ms,
        moved,
        last_ms: scrapes
            .iter()
            .filter_map(|c| c.last)
            .max()
            .unwrap_or(first_ms),
        cpu_series,
    }
}
