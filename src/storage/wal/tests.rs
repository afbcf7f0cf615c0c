use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::format::{segment_path, HEADER_LEN, RECORD_HEADER_LEN};
use super::segment::list;
use super::*;

fn opts() -> WalOptions {
    WalOptions::default()
}

/// `(segment, payload)` pairs as replayed.
type Records = Vec<(u64, Vec<u8>)>;
/// Damage done to a copy of a WAL directory.
type Damage = Box<dyn Fn(&Path)>;

/// Every `(segment, payload)` in `dir`, with the stats.
fn read_all(dir: &Path) -> Result<(Records, ReplayStats), WalError> {
    let mut out = Vec::new();
    let stats = replay(dir, &mut |seg, p| {
        out.push((seg, p.to_vec()));
        Ok(())
    })?;
    Ok((out, stats))
}

fn payloads(dir: &Path) -> Vec<Vec<u8>> {
    read_all(dir)
        .expect("replay")
        .0
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = vec![
        b"one".to_vec(),
        Vec::new(),
        vec![7u8; 100_000],
        b"four".to_vec(),
    ];
    {
        let wal = Wal::open(dir.path(), opts()).unwrap();
        wal.append(&[&recs[0], &recs[1]]).unwrap();
        wal.append(&[]).unwrap();
        wal.append(&[&recs[2]]).unwrap();
        wal.append(&[&recs[3]]).unwrap();
        wal.close().unwrap();
        wal.close().unwrap();
        assert!(matches!(wal.append(&[b"late"]), Err(WalError::Failed(_))));
    }
    let (got, stats) = read_all(dir.path()).unwrap();
    assert_eq!(got.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(), recs);
    assert!(got.iter().all(|(seg, _)| *seg == 0));
    assert_eq!(stats.records, 4);
    assert_eq!(stats.bytes, 100_007);
    assert_eq!(stats.segments, 1);
    assert_eq!(stats.torn_tail_bytes, 0);

    // Reopening starts a new segment after the existing one.
    let wal = Wal::open(dir.path(), opts()).unwrap();
    wal.append(&[b"five"]).unwrap();
    drop(wal);
    let (got, stats) = read_all(dir.path()).unwrap();
    assert_eq!(got.last().unwrap(), &(1, b"five".to_vec()));
    assert_eq!(stats.segments, 2);
}

#[test]
fn replay_of_missing_dir_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let stats = replay(&dir.path().join("nope"), &mut |_, _| Ok(())).unwrap();
    assert_eq!(stats.records, 0);
}

#[test]
fn concurrent_appends_all_replayed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), opts()).unwrap());
    let (threads, per) = (16, 100);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let a = format!("{t}:{i}:a");
                    let b = format!("{t}:{i}:b");
                    wal.append(&[a.as_bytes(), b.as_bytes()]).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (groups, records) = wal.writer.group_stats();
    assert_eq!(records, threads * per * 2);
    assert!(groups <= threads * per);
    drop(wal);
    let got = payloads(dir.path());
    assert_eq!(got.len() as u64, threads * per * 2);
    // Each thread's records arrive in its order, the two of a call adjacent.
    let mut next = vec![0u64; threads as usize];
    for pair in got.chunks(2) {
        let a = String::from_utf8(pair[0].clone()).unwrap();
        let b = String::from_utf8(pair[1].clone()).unwrap();
        let parts: Vec<&str> = a.split(':').collect();
        let (t, i): (usize, u64) = (parts[0].parse().unwrap(), parts[1].parse().unwrap());
        assert_eq!(parts[2], "a");
        assert_eq!(b, format!("{t}:{i}:b"));
        assert_eq!(i, next[t]);
        next[t] += 1;
    }
}

#[test]
fn rollover_at_segment_size() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            segment_size: 300,
            ..opts()
        },
    )
    .unwrap();
    let recs: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 50]).collect();
    for r in &recs {
        wal.append(&[r]).unwrap();
    }
    let segs = list(dir.path()).unwrap();
    // 24-byte header + 58-byte records: 4 records per 300-byte segment.
    assert_eq!(segs.len(), 10, "{segs:?}");
    for &s in &segs {
        let len = fs::metadata(segment_path(dir.path(), s)).unwrap().len();
        assert!(len <= 300, "segment {s} is {len} bytes");
    }
    assert_eq!(wal.writer.current_segment(), 9);
    drop(wal);
    let (got, stats) = read_all(dir.path()).unwrap();
    assert_eq!(got.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(), recs);
    assert_eq!(got[5].0, 1);
    assert_eq!(stats.segments, 10);
}

#[test]
fn cut_and_truncate_before() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts()).unwrap();
    wal.append(&[b"old"]).unwrap();
    let n = wal.cut().unwrap();
    assert_eq!(n, 1);
    wal.append(&[b"new"]).unwrap();
    // Truncating past the current segment keeps the current segment.
    wal.truncate_before(n + 5).unwrap();
    assert_eq!(list(dir.path()).unwrap(), vec![1]);
    wal.append(&[b"newer"]).unwrap();
    assert_eq!(wal.cut().unwrap(), 2);
    wal.truncate_before(2).unwrap();
    assert_eq!(list(dir.path()).unwrap(), vec![2]);
    wal.append(&[b"newest"]).unwrap();
    drop(wal);
    let (got, _) = read_all(dir.path()).unwrap();
    assert_eq!(got, vec![(2, b"newest".to_vec())]);
}

/// Builds a closed WAL of three records in one segment; returns the segment
/// file and where its last record starts.
fn three_records(dir: &Path) -> (std::path::PathBuf, u64) {
    let wal = Wal::open(dir, opts()).unwrap();
    wal.append(&[b"first record", b"second record"]).unwrap();
    wal.append(&[b"third and last record"]).unwrap();
    wal.close().unwrap();
    let path = segment_path(dir, 0);
    let len = fs::metadata(&path).unwrap().len();
    (path, len - (RECORD_HEADER_LEN as u64 + 21))
}

#[test]
fn torn_tail_tolerated_at_every_offset() {
    let src = tempfile::tempdir().unwrap();
    let (path, last_start) = three_records(src.path());
    let full = fs::metadata(&path).unwrap().len();
    for cut in last_start..full {
        // 0: replay only; 1: Wal::open; 2: Wal::open_replaying.
        for mode in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            copy_dir(src.path(), dir.path());
            let seg = segment_path(dir.path(), 0);
            fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .unwrap()
                .set_len(cut)
                .unwrap();
            if mode == 0 {
                let (got, stats) = read_all(dir.path()).unwrap();
                assert_eq!(got.len(), 2, "cut at {cut}");
                assert_eq!(stats.torn_tail_bytes, cut - last_start, "cut at {cut}");
            } else {
                // Opening repairs the tail before starting its new segment,
                // so the torn record never sits in the middle of the log.
                let wal = if mode == 1 {
                    Wal::open(dir.path(), opts()).unwrap()
                } else {
                    let mut seen = 0;
                    let (wal, stats) = Wal::open_replaying(dir.path(), opts(), &mut |_, _| {
                        seen += 1;
                        Ok(())
                    })
                    .unwrap();
                    assert_eq!((seen, stats.records), (2, 2), "cut at {cut}");
                    assert_eq!(stats.torn_tail_bytes, cut - last_start, "cut at {cut}");
                    wal
                };
                wal.append(&[b"after restart"]).unwrap();
                drop(wal);
                let got = payloads(dir.path());
                assert_eq!(got.len(), 3, "cut at {cut}");
                assert_eq!(got[2], b"after restart");
            }
            assert_eq!(fs::metadata(&seg).unwrap().len(), last_start);
            // A second replay finds a clean log.
            assert_eq!(read_all(dir.path()).unwrap().1.torn_tail_bytes, 0);
        }
    }
}

#[test]
fn torn_tail_shapes() {
    // Garbage in the last record, zeros after the records, and a segment cut
    // inside its header (a crash while creating it) are all torn tails.
    let src = tempfile::tempdir().unwrap();
    let (path, last_start) = three_records(src.path());
    let full = fs::metadata(&path).unwrap().len();
    let cases: Vec<(&str, Damage)> = vec![
        (
            "flipped byte in the last record",
            Box::new(move |d: &Path| flip(&segment_path(d, 0), full - 3)),
        ),
        (
            "zeros after the records",
            Box::new(|d: &Path| {
                let mut data = fs::read(segment_path(d, 0)).unwrap();
                data.extend_from_slice(&[0u8; 4096]);
                fs::write(segment_path(d, 0), data).unwrap();
            }),
        ),
        (
            "half-written header of a new segment",
            Box::new(|d: &Path| fs::write(segment_path(d, 1), b"STRAT").unwrap()),
        ),
    ];
    for (name, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        damage(dir.path());
        let (got, stats) = read_all(dir.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = if name.starts_with("flipped") { 2 } else { 3 };
        assert_eq!(got.len(), want, "{name}");
        assert!(stats.torn_tail_bytes > 0, "{name}");
        assert_eq!(read_all(dir.path()).unwrap().1.torn_tail_bytes, 0, "{name}");
    }
    let _ = last_start;
}

fn flip(path: &Path, at: u64) {
    let mut data = fs::read(path).unwrap();
    data[at as usize] ^= 0x40;
    fs::write(path, data).unwrap();
}

#[test]
fn corruption_before_the_tail_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts()).unwrap();
    wal.append(&[b"aaaaaaaa", b"bbbbbbbb", b"cccccccc"])
        .unwrap();
    wal.cut().unwrap();
    wal.append(&[b"dddddddd", b"eeeeeeee", b"ffffffff"])
        .unwrap();
    drop(wal);
    let second = (HEADER_LEN + RECORD_HEADER_LEN + 8) as u64;
    let cases = [
        // (segment, byte to flip, offset reported)
        (0, second + 10, second), // payload of a record in an old segment
        (0, second, second),      // its length field
        (1, second + 10, second), // middle of the last segment, good data after
        (0, 2, 0),                // the magic
        (1, HEADER_LEN as u64 + 9, HEADER_LEN as u64), // first record of the last segment
    ];
    for (seg, at, want_offset) in cases {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        flip(&segment_path(copy.path(), seg), at);
        match read_all(copy.path()) {
            Err(WalError::Corrupt {
                segment, offset, ..
            }) => assert_eq!((segment, offset), (seg, want_offset), "flip {seg}@{at}"),
            other => panic!("flip {seg}@{at}: {other:?}"),
        }
        // Opening does not paper over it: it refuses when the damage is in
        // the tail it repairs, and replay still reports it otherwise.
        match Wal::open(copy.path(), opts()) {
            Ok(wal) => drop(wal),
            Err(WalError::Corrupt { segment, .. }) => assert_eq!(segment, seg),
            Err(e) => panic!("flip {seg}@{at}: open: {e}"),
        }
        assert!(matches!(
            read_all(copy.path()),
            Err(WalError::Corrupt { .. })
        ));
    }
    // A segment cut short that is not the tail is corruption too.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let seg0 = segment_path(copy.path(), 0);
    let len = fs::metadata(&seg0).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg0)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    assert!(matches!(
        read_all(copy.path()),
        Err(WalError::Corrupt { segment: 0, .. })
    ));
}

#[test]
fn lock_prevents_second_open() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts()).unwrap();
    let err = Wal::open(dir.path(), opts())
        .err()
        .expect("second open must fail");
    assert!(err.to_string().contains("already open"), "{err}");
    drop(wal);
    let wal = Wal::open(dir.path(), opts()).expect("open after the first one is dropped");
    wal.close().unwrap();
    Wal::open(dir.path(), opts()).expect("open after the first one is closed");
}

#[test]
fn failed_fsync_makes_the_wal_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), opts()).unwrap();
    wal.append(&[b"durable"]).unwrap();
    wal.writer.fail_next_sync.store(true, Ordering::SeqCst);
    let err = wal.append(&[b"lost"]).unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    for _ in 0..2 {
        assert!(matches!(
            wal.append(&[b"refused"]),
            Err(WalError::Failed(_))
        ));
    }
    assert!(matches!(wal.cut(), Err(WalError::Failed(_))));
    assert!(matches!(wal.close(), Err(WalError::Failed(_))));
}

#[test]
fn max_group_delay_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(60);
    let wal = Arc::new(
        Wal::open(
            dir.path(),
            WalOptions {
                max_group_delay: delay,
                ..opts()
            },
        )
        .unwrap(),
    );
    let start = Instant::now();
    wal.append(&[b"x"]).unwrap();
    assert!(start.elapsed() >= delay);
    // Writers arriving within the delay share the leader's group.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let wal = wal.clone();
            std::thread::spawn(move || wal.append(&[b"y"]).unwrap())
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (groups, records) = wal.writer.group_stats();
    assert_eq!(records, 9);
    assert!(groups < 9, "{groups} groups for 9 appends");
}

/// Appends/s and records per fsync at 1, 8 and 32 writers, one 100-byte
/// record per append, on the disk holding `target/` (tmpfs would make fsync
/// free). Run: cargo test --lib group_commit_figures -- --ignored --nocapture
#[test]
#[ignore]
fn group_commit_figures() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    fs::create_dir_all(&base).unwrap();
    let payload = [0x5au8; 100];
    for threads in [1u64, 8, 32] {
        let dir = tempfile::tempdir_in(&base).unwrap();
        let wal = Arc::new(Wal::open(dir.path(), opts()).unwrap());
        let run = Duration::from_secs(3);
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while start.elapsed() < run {
                        wal.append(&[&payload]).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let appends: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let secs = start.elapsed().as_secs_f64();
        let (groups, records) = wal.writer.group_stats();
        println!(
            "threads={threads:2} appends/s={:9.0} records/fsync={:6.2} fsyncs/s={:7.0}",
            appends as f64 / secs,
            records as f64 / groups as f64,
            groups as f64 / secs
        );
    }
}
